//! Starts, stops and restarts device actors.
//!
//! Every spawn goes through this one actor, so a device never runs twice on a node.
//! A device actor that crashes is restarted after a backoff that doubles per crash in
//! a row; after [`NodeConfig::max_crashes`](crate::context::NodeConfig) it is left
//! `FAILED` until someone starts it again. Reaching `READY` resets the count.
//!
//! A device started with a [`Fence`] runs under it until stopped, restarts included; a
//! start with another fence replaces the run. A run that stops because it was fenced
//! off is not a crash, and a crash whose record is fenced off is not restarted: either
//! way another node owns the device now.

use std::collections::HashMap;
use std::sync::Arc;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::{info, warn};

use super::connect::backoff;
use super::{DeviceActor, DeviceArgs};
use crate::context::NodeContext;
use crate::store::{DevicePatch, DeviceStatus, Fence, StoreError};

/// Messages of the supervisor.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Run the device under `fence` if it does not run under it yet; `reset` forgets
    /// its crash count.
    Start {
        device_id: String,
        reset: bool,
        fence: Option<Fence>,
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
    /// The fence each fenced device runs under, kept for its restarts.
    fences: HashMap<String, Fence>,
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
            fences: HashMap::new(),
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
                fence,
                reply,
            } => {
                if reset {
                    state.crashes.remove(&device_id);
                }
                let result = state.spawn(&myself, device_id, fence).await;
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
                if let Some(device_id) = state.forget_actor(cell.get_id())
                    && state.ctx.running.device(&device_id).is_none()
                {
                    state.fences.remove(&device_id);
                }
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
        fence: Option<Fence>,
    ) -> Result<(), String> {
        if self.ctx.running.device(&device_id).is_some() {
            if self.fences.get(&device_id) == fence.as_ref() {
                return Ok(());
            }
            // It runs under another lease (an older epoch) or unfenced: replace the run.
            self.stop(&device_id).await;
        }
        let args = DeviceArgs {
            device_id: device_id.clone(),
            fence,
            ctx: self.ctx.clone(),
            supervisor: myself.clone(),
        };
        let (actor, _) = Actor::spawn_linked(None, DeviceActor, args, myself.get_cell())
            .await
            .map_err(|e| e.to_string())?;
        match fence {
            Some(fence) => self.fences.insert(device_id.clone(), fence),
            None => self.fences.remove(&device_id),
        };
        self.by_actor.insert(actor.get_id(), device_id.clone());
        self.ctx.running.insert_device(device_id, actor);
        Ok(())
    }

    async fn stop(&mut self, device_id: &str) {
        let actor = self.ctx.running.remove_device(device_id);
        self.fences.remove(device_id);
        if let Some(actor) = actor {
            self.by_actor.remove(&actor.get_id());
            let _ = actor.stop_and_wait(Some("stopped".into()), None).await;
        }
    }

    /// Removes a terminated actor; returns its device if it was the device's current one.
    fn forget_actor(&mut self, actor_id: ActorId) -> Option<String> {
        let device_id = self.by_actor.remove(&actor_id)?;
        self.ctx.running.remove_device_if(&device_id, actor_id);
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
        let (status, reason, restart_in) = if crashes >= config.max_crashes {
            warn!(device_id = %device_id, crashes, %error, "device keeps crashing, giving up");
            (
                DeviceStatus::Failed,
                format!("crashed {crashes} times in a row, last: {error}"),
                None,
            )
        } else {
            let delay = backoff(config.crash_backoff, config.reconnect_max, crashes - 1);
            info!(device_id = %device_id, crashes, %error, delay_ms = delay.as_millis() as u64, "device crashed, restarting");
            (
                DeviceStatus::Disconnected,
                format!("crashed ({error}), restarting"),
                Some(delay),
            )
        };
        let fence = self.fences.get(&device_id).copied();
        match self
            .ctx
            .record_status(
                &device_id,
                None,
                status,
                Some(reason),
                DevicePatch::default(),
                fence.as_ref(),
            )
            .await
        {
            Ok(_) => {}
            Err(StoreError::Fenced { .. }) => {
                info!(device_id = %device_id, ?fence, "crashed device is owned elsewhere now, not restarting");
                self.fences.remove(&device_id);
                return;
            }
            Err(error) => warn!(device_id = %device_id, %error, "cannot record crash"),
        }
        match restart_in {
            Some(delay) => {
                myself.send_after(delay, move || SupervisorMsg::Restart(device_id));
            }
            None => {
                self.fences.remove(&device_id);
            }
        }
    }

    async fn restart(&mut self, myself: &ActorRef<SupervisorMsg>, device_id: String) {
        let wanted = matches!(
            self.ctx.store.get_device(&device_id).await,
            Ok(Some(record)) if record.desired_running && record.status != DeviceStatus::Failed
        );
        if !wanted {
            self.fences.remove(&device_id);
            return;
        }
        let fence = self.fences.get(&device_id).copied();
        if let Err(error) = self.spawn(myself, device_id.clone(), fence).await {
            warn!(device_id = %device_id, %error, "restart failed");
        }
    }
}
