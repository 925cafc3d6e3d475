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
//!
//! # Never waiting on one device
//!
//! The supervisor's handlers touch no store and no network, so one slow device never
//! delays another's start or stop: a device does its first store work in its own task
//! (`post_start`); a stop is waited for in a task of its own, at most
//! [`STOP_TIMEOUT`] before the actor is killed (a handshake may take 20 s, a logout
//! 12 s); a crash is recorded, and its restart decided, in a task. A start that comes
//! while the device's previous actor is still stopping waits for it, so that two runs
//! of a device never overlap.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use ractor::{Actor, ActorId, ActorProcessingErr, ActorRef, RpcReplyPort, SupervisionEvent};
use tracing::{info, warn};

use super::connect::backoff;
use super::{DeviceActor, DeviceArgs, DeviceMsg};
use crate::context::NodeContext;
use crate::store::{DevicePatch, DeviceStatus, Fence, StoreError};

/// How long a stopping device may take to finish what it is doing before it is killed.
pub const STOP_TIMEOUT: Duration = Duration::from_secs(3);
/// How long a killed device may take to end.
const KILL_TIMEOUT: Duration = Duration::from_secs(2);

/// Messages of the supervisor.
#[derive(Debug)]
pub enum SupervisorMsg {
    /// Run the device under `fence` if it does not run under it yet. `reset` forgets
    /// its crashes (an operator's start, a new lease); without it, a device waiting out
    /// a crash backoff or given up after too many crashes is left as it is (the
    /// reconcile pass).
    Start {
        device_id: String,
        reset: bool,
        fence: Option<Fence>,
        reply: RpcReplyPort<Result<(), String>>,
    },
    /// Stop the device's actor; answered once it has ended (or been killed).
    Stop {
        device_id: String,
        reply: RpcReplyPort<()>,
    },
    /// The stopped actor of this device has ended.
    Stopped(String),
    /// A crashed device's backoff has passed and it is still wanted: run it again.
    Restart(String),
    /// A crashed device is not to run again here: owned elsewhere, unwanted or gone.
    Forget(String),
    /// The device reached READY: its crashes are forgiven.
    Healthy(String),
}

/// The supervisor; its data lives in [`SupervisorState`].
#[derive(Debug)]
pub struct DeviceSupervisor;

/// A start that waits for the device's previous actor to end.
#[derive(Debug)]
struct WaitingStart {
    reset: bool,
    fence: Option<Fence>,
    reply: RpcReplyPort<Result<(), String>>,
}

/// A device whose actor is being stopped: who waits for it.
#[derive(Debug, Default)]
struct Stopping {
    stops: Vec<RpcReplyPort<()>>,
    starts: Vec<WaitingStart>,
}

/// Which actor runs which device, crash counts, and the devices between two runs.
#[derive(Debug)]
pub struct SupervisorState {
    ctx: Arc<NodeContext>,
    by_actor: HashMap<ActorId, String>,
    crashes: HashMap<String, u32>,
    /// The fence each running fenced device runs under.
    fences: HashMap<String, Fence>,
    /// Devices whose actor is stopping.
    stopping: HashMap<String, Stopping>,
    /// Crashed devices waiting out their backoff, with the fence to restart under.
    restarts: HashMap<String, Option<Fence>>,
    /// Devices left `FAILED` after too many crashes in a row.
    given_up: HashSet<String>,
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
            stopping: HashMap::new(),
            restarts: HashMap::new(),
            given_up: HashSet::new(),
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
                let start = WaitingStart {
                    reset,
                    fence,
                    reply,
                };
                state.start(&myself, device_id, start).await;
            }
            SupervisorMsg::Stop { device_id, reply } => {
                state.restarts.remove(&device_id);
                match state.begin_stop(&myself, &device_id) {
                    Some(stopping) => stopping.stops.push(reply),
                    None => {
                        let _ = reply.send(());
                    }
                }
            }
            SupervisorMsg::Stopped(device_id) => {
                let Some(stopping) = state.stopping.remove(&device_id) else {
                    return Ok(());
                };
                for reply in stopping.stops {
                    let _ = reply.send(());
                }
                for start in stopping.starts {
                    state.start(&myself, device_id.clone(), start).await;
                }
            }
            SupervisorMsg::Restart(device_id) => {
                let free = state.ctx.running.device(&device_id).is_none()
                    && !state.stopping.contains_key(&device_id);
                if let Some(fence) = state.restarts.remove(&device_id)
                    && free
                    && let Err(error) = state.spawn(&myself, device_id.clone(), fence).await
                {
                    warn!(device_id = %device_id, %error, "restart failed");
                }
            }
            SupervisorMsg::Forget(device_id) => {
                state.restarts.remove(&device_id);
            }
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
                    state.crashed(&myself, device_id, error.to_string());
                }
            }
            SupervisionEvent::ActorTerminated(cell, _, _) => {
                if let Some(device_id) = state.forget_actor(cell.get_id()) {
                    state.fences.remove(&device_id);
                }
            }
            _ => {}
        }
        Ok(())
    }
}

impl SupervisorState {
    async fn start(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        device_id: String,
        start: WaitingStart,
    ) {
        if start.reset {
            self.crashes.remove(&device_id);
            self.given_up.remove(&device_id);
            self.restarts.remove(&device_id);
        } else if self.restarts.contains_key(&device_id) || self.given_up.contains(&device_id) {
            let _ = start.reply.send(Ok(()));
            return;
        }
        if let Some(stopping) = self.stopping.get_mut(&device_id) {
            stopping.starts.push(start);
            return;
        }
        if self.ctx.running.device(&device_id).is_some() {
            if self.fences.get(&device_id) == start.fence.as_ref() {
                let _ = start.reply.send(Ok(()));
                return;
            }
            // It runs under another lease (an older epoch) or unfenced: replace the run
            // once the old one has ended.
            if let Some(stopping) = self.begin_stop(myself, &device_id) {
                stopping.starts.push(start);
                return;
            }
        }
        let result = self.spawn(myself, device_id, start.fence).await;
        let _ = start.reply.send(result);
    }

    async fn spawn(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        device_id: String,
        fence: Option<Fence>,
    ) -> Result<(), String> {
        let args = DeviceArgs {
            device_id: device_id.clone(),
            fence,
            ctx: self.ctx.clone(),
            supervisor: myself.clone(),
        };
        // `pre_start` does no I/O: this returns at once.
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

    /// Takes the device out of the registry and stops its actor in a task, which
    /// reports [`SupervisorMsg::Stopped`]; `None` if it has no actor and is not
    /// stopping.
    fn begin_stop(
        &mut self,
        myself: &ActorRef<SupervisorMsg>,
        device_id: &str,
    ) -> Option<&mut Stopping> {
        if let Some(actor) = self.ctx.running.remove_device(device_id) {
            self.fences.remove(device_id);
            self.stopping.entry(device_id.to_owned()).or_default();
            let (supervisor, device_id) = (myself.clone(), device_id.to_owned());
            tokio::spawn(async move {
                stop_or_kill(&actor, &device_id).await;
                let _ = supervisor.cast(SupervisorMsg::Stopped(device_id));
            });
        }
        self.stopping.get_mut(device_id)
    }

    /// Removes a terminated actor; returns its device if it was the device's current
    /// one (not one being stopped or replaced).
    fn forget_actor(&mut self, actor_id: ActorId) -> Option<String> {
        let device_id = self.by_actor.remove(&actor_id)?;
        self.ctx
            .running
            .remove_device_if(&device_id, actor_id)
            .then_some(device_id)
    }

    /// Counts the crash, then in a task records it and, unless the device was given up,
    /// schedules its restart after the backoff.
    fn crashed(&mut self, myself: &ActorRef<SupervisorMsg>, device_id: String, error: String) {
        let crashes = self.crashes.entry(device_id.clone()).or_insert(0);
        *crashes += 1;
        let crashes = *crashes;
        crate::metrics::device_crashed();
        let config = &self.ctx.config;
        let fence = self.fences.remove(&device_id);
        let (status, reason, restart_in) = if crashes >= config.max_crashes {
            warn!(device_id = %device_id, crashes, %error, "device keeps crashing, giving up");
            self.given_up.insert(device_id.clone());
            (
                DeviceStatus::Failed,
                format!("crashed {crashes} times in a row, last: {error}"),
                None,
            )
        } else {
            let delay = backoff(config.crash_backoff, config.reconnect_max, crashes - 1);
            info!(device_id = %device_id, crashes, %error, delay_ms = delay.as_millis() as u64, "device crashed, restarting");
            self.restarts.insert(device_id.clone(), fence);
            (
                DeviceStatus::Disconnected,
                format!("crashed ({error}), restarting"),
                Some(delay),
            )
        };
        let (ctx, supervisor) = (self.ctx.clone(), myself.clone());
        tokio::spawn(async move {
            let recorded = ctx
                .record_status(
                    &device_id,
                    None,
                    status,
                    Some(reason),
                    DevicePatch::default(),
                    fence.as_ref(),
                )
                .await;
            match recorded {
                Ok(_) => {}
                Err(StoreError::Fenced { .. }) => {
                    info!(device_id = %device_id, ?fence, "crashed device is owned elsewhere now, not restarting");
                    let _ = supervisor.cast(SupervisorMsg::Forget(device_id));
                    return;
                }
                Err(error) => warn!(device_id = %device_id, %error, "cannot record crash"),
            }
            let Some(delay) = restart_in else {
                return;
            };
            tokio::time::sleep(delay).await;
            let wanted = matches!(
                ctx.store.get_device(&device_id).await,
                Ok(Some(record)) if record.desired_running && record.status != DeviceStatus::Failed
            );
            let _ = supervisor.cast(if wanted {
                SupervisorMsg::Restart(device_id)
            } else {
                SupervisorMsg::Forget(device_id)
            });
        });
    }
}

/// Stops the actor, letting it finish its current message for up to [`STOP_TIMEOUT`];
/// then kills it (its current message is dropped, its link with it).
async fn stop_or_kill(actor: &ActorRef<DeviceMsg>, device_id: &str) {
    if actor
        .stop_and_wait(Some("stopped".into()), Some(STOP_TIMEOUT))
        .await
        .is_ok()
    {
        return;
    }
    warn!(device_id = %device_id, timeout_ms = STOP_TIMEOUT.as_millis() as u64, "device did not stop in time, killing it");
    if actor.kill_and_wait(Some(KILL_TIMEOUT)).await.is_err() {
        warn!(device_id = %device_id, "killed device did not end in time");
    }
}
