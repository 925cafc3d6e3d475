//! `NodeHost`: the one remotable actor of a node (and, as an observer, of a gateway).
//!
//! Every heartbeat interval a node's host casts a heartbeat to every other host and
//! observer in the cluster (found through ractor's process groups, which ractor_cluster
//! keeps in sync across authenticated sessions) and drops the peers it has not heard from
//! within the failure timeout. The live view is published on a watch channel.

use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, pg};
use ractor_cluster::RactorClusterMessage;
use tokio::sync::watch;
use tracing::info;
use wafleet_protocol::cluster::Heartbeat;

use super::membership::Membership;
use super::wire::Wire;

/// Process group of the node hosts.
pub const HOSTS_GROUP: &str = "wafleet.hosts";
/// Process group of processes that follow membership without being members (gateways).
pub const OBSERVERS_GROUP: &str = "wafleet.observers";

/// Messages of a host. Remote ones carry prost payloads.
#[derive(RactorClusterMessage)]
pub enum HostMsg {
    /// A peer is alive.
    Heartbeat(Wire<Heartbeat>),
    /// Time to send heartbeats and look for silent peers (local timer).
    Tick,
}

impl std::fmt::Debug for HostMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostMsg::Heartbeat(Wire(heartbeat)) => {
                f.debug_tuple("Heartbeat").field(&heartbeat.node).finish()
            }
            HostMsg::Tick => f.write_str("Tick"),
        }
    }
}

/// The host actor; its data lives in [`HostState`].
#[derive(Debug)]
pub struct NodeHost;

/// What a host is started with.
#[derive(Debug)]
pub struct HostArgs {
    /// The heartbeat this process sends; `None` for an observer (a gateway).
    pub heartbeat: Option<Heartbeat>,
    pub interval: Duration,
    pub failure_timeout: Duration,
    /// Where the live view is published.
    pub view: watch::Sender<Vec<String>>,
}

/// A host's data.
#[derive(Debug)]
pub struct HostState {
    heartbeat: Option<Heartbeat>,
    membership: Membership,
    view: watch::Sender<Vec<String>>,
}

impl Actor for NodeHost {
    type Msg = HostMsg;
    type State = HostState;
    type Arguments = HostArgs;

    async fn pre_start(
        &self,
        myself: ActorRef<HostMsg>,
        args: HostArgs,
    ) -> Result<HostState, ActorProcessingErr> {
        let group = if args.heartbeat.is_some() {
            HOSTS_GROUP
        } else {
            OBSERVERS_GROUP
        };
        pg::join(group.to_owned(), vec![myself.get_cell()]);
        myself.send_interval(args.interval, || HostMsg::Tick);
        let me = args.heartbeat.as_ref().map(|h| h.node.clone());
        let membership = Membership::new(me, args.failure_timeout);
        args.view.send_replace(membership.live());
        Ok(HostState {
            heartbeat: args.heartbeat,
            membership,
            view: args.view,
        })
    }

    async fn handle(
        &self,
        myself: ActorRef<HostMsg>,
        msg: HostMsg,
        state: &mut HostState,
    ) -> Result<(), ActorProcessingErr> {
        match msg {
            HostMsg::Heartbeat(Wire(heartbeat)) => {
                if state.membership.heard(&heartbeat, Instant::now()) {
                    info!(node = %heartbeat.node, "member alive");
                    state.publish();
                }
            }
            HostMsg::Tick => {
                if let Some(heartbeat) = &state.heartbeat {
                    for peer in peers(&myself) {
                        let _ = ActorRef::<HostMsg>::from(peer)
                            .cast(HostMsg::Heartbeat(Wire(heartbeat.clone())));
                    }
                }
                let dead = state.membership.expire(Instant::now());
                if !dead.is_empty() {
                    info!(nodes = ?dead, "members silent past the failure timeout");
                    state.publish();
                }
            }
        }
        Ok(())
    }
}

impl HostState {
    fn publish(&self) {
        self.view.send_replace(self.membership.live());
    }
}

/// Every host and observer in the cluster but this one.
fn peers(myself: &ActorRef<HostMsg>) -> Vec<ActorCell> {
    let me = myself.get_id();
    [HOSTS_GROUP, OBSERVERS_GROUP]
        .into_iter()
        .flat_map(|group| pg::get_members(&group.to_owned()))
        .filter(|cell| cell.get_id() != me)
        .collect()
}
