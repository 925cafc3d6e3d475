//! Starts, stops and restarts device actors.
//!
//! Every spawn goes through this one actor, so a device never runs twice on a node.
//! A device actor that crashes is restarted after a backoff that doubles per crash in
//! a row; after [`NodeConfig::max_crashes`](crate::context::NodeConfig) it is left
//! `FAILED` until someone starts it again. Reaching `READY` resets the count.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::{info, warn};

use crate::context::NodeContext;
use crate::device_actor::{DeviceActor, DeviceArgs, backoff};
use crate::store::{DevicePatch, DeviceStatus};

/// Messages of the supervisor.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Run the device if it does not run yet; `reset` forgets its crash count.
    Start {
        device_id: String,
        reset: bool,
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// Stop the device's actor and wait until it has stopped.
    Stop {
        device_id: String,
        reply: RpcReplyPort<()>,
    },
    /// Restart after a crash's backoff (only if it is still wanted).
    Restart(String),
    /// The device reached READY: its crashes are forgiven.
    Healthy(String),
}

/// The supervisor; its data lives in [`SupervisorState`].
#[derive(Debug)]
pub struct DeviceSupervisor;

/// Which actor runs which device, and crash counts.
#[derive(Debug)]
pub struct SupervisorState {
    ctx: Arc<NodeContext>,
    by_actor: HashMap<ActorId, String>,
    crashes: HashMap<String, u32>,
}

impl Actor for DeviceSupervisor {
    type Msg = SupervisorMsg;
    type State = SupervisorState;
    type Arguments = Arc<NodeContext>;

    async fn pre_start(
        &self,
        _myself: ActorRef<SupervisorMsg>,
        ctx: Arc<NodeContext>,
    ) -> Result<SupervisorState, ActorProcessingErr> {
        Ok(SupervisorState {
            ctx,
            by_actor: HashMap::new(),
            crashes: HashMap::new(),
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<SupervisorMsg>,
        msg: SupervisorMsg,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            SupervisorMsg::Start {
                device_id,
                reset,
                reply,
            } => {
                if reset {
                    state.crashes.remove(&device_id);
                }
                let result = state.spawn(&myself, device_id).await;
                let _ = reply.send(result);
            }
            SupervisorMsg::Stop { device_id, reply } => {
                state.stop(&device_id).await;
                let _ = reply.send(());
            }
            SupervisorMsg::Restart(device_id) => state.restart(&myself, device_id).await,
            SupervisorMsg::Healthy(device_id) => {
                state.crashes.remove(&device_id);
            }
        }
        Ok(())
    }

    async fn handle_supervisor_evt(
        &self,
        myself: ActorRef<SupervisorMsg>,
        event: SupervisionEvent,
        state: &mut SupervisorState,
    ) -> Result<(), ActorProcessingErr> {
        match event {
            SupervisionEvent::ActorFailed(cell, error) => {
                if let Some(device_id) = state.forget_actor(cell.get_id()) {
                    state.crashed(&myself, device_id, error.to_string()).await;
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                state.forget_actor(cell.get_id());
            }
            _ => {}
        }
        Ok(())
    }
}

impl SupervisorState {
    async fn spawn(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        device_id: String,
    ) -> Result<(), String> {
        if self.ctx.running(&device_id).is_some() {
            return Ok(());
        }
        let args = DeviceArgs {
            device_id: device_id.clone(),
            ctx: self.ctx.clone(),
            supervisor: myself.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, DeviceActor, args, myself.get_cell())
            .await
            .map_err(|e| e.to_string())?;
        self.by_actor.insert(actor.get_id(), device_id.clone());
        self.ctx
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .insert(device_id, actor);
        Ok(())
    }

    async fn stop(&mut self, device_id: &str) {
        let actor = self
            .ctx
            .registry
            .write()
            .unwrap_or_else(|e| e.into_inner())
            .remove(device_id);
        if let Some(actor) = actor {
            self.by_actor.remove(&actor.get_id());
            let _ = actor.stop_and_wait(Some("stopped".into()), None).await;
        }
    }

    /// Removes a terminated actor; returns its device if it was the device's current one.
    fn forget_actor(&mut self, actor_id: ActorId) -> Option<String> {
        let device_id = self.by_actor.remove(&actor_id)?;
        let mut registry = self.ctx.registry.write().unwrap_or_else(|e| e.into_inner());
        if registry.get(&device_id).map(|a| a.get_id()) == Some(actor_id) {
            registry.remove(&device_id);
        }
        Some(device_id)
    }

    async fn crashed(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        device_id: String,
        error: String,
    ) {
        let crashes = self.crashes.entry(device_id.clone()).or_insert(0);
        *crashes += 1;
        let crashes = *crashes;
        crate::metrics::device_crashed();
        let config = &self.ctx.config;
        let (status, reason) = if crashes >= config.max_crashes {
            warn!(device_id = %device_id, crashes, %error, "device keeps crashing, giving up");
            (
                DeviceStatus::Failed,
                format!("crashed {crashes} times in a row, last: {error}"),
            )
        } else {
            let delay = backoff(config.crash_backoff, config.reconnect_max, crashes - 1);
            info!(device_id = %device_id, crashes, %error, delay_ms = delay.as_millis() as u64, "device crashed, restarting");
            let id = device_id.clone();
            myself.send_after(delay, move || SupervisorMsg::Restart(id));
            (
                DeviceStatus::Disconnected,
                format!("crashed ({error}), restarting"),
            )
        };
        if let Err(error) = self
            .ctx
            .record_status(
                &device_id,
                None,
                status,
                Some(reason),
                DevicePatch::default(),
            )
            .await
        {
            warn!(device_id = %device_id, %error, "cannot record crash");
        }
    }

    async fn restart(&mut self, myself: &ActorRef<SupervisorMsg>, device_id: String) {
        let wanted = matches!(
            self.ctx.store.get_device(&device_id).await,
            Ok(Some(record)) if record.desired_running && record.status != DeviceStatus::Failed
        );
        if wanted && let Err(error) = self.spawn(myself, device_id.clone()).await {
            warn!(device_id = %device_id, %error, "restart failed");
        }
    }
}
