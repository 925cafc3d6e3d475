//! `NodeHost`: the one remotable actor of a node (and, as an observer, of a gateway).
//!
//! Every heartbeat interval a node's host casts a heartbeat to every other host and
//! observer in the cluster (found through ractor's process groups, which ractor_cluster
//! keeps in sync across authenticated sessions) and drops the peers it has not heard from
//! within the failure timeout. The live view is published on a watch channel.
//!
//! Heartbeats also carry the cluster addresses of the members their sender has a session
//! with; a host gathers those of its live peers into `learned`, which the dialing loop
//! ([`super::peers`]) connects to.
//!
//! A host also answers device commands from gateways (`Command`): it runs them against
//! its node's [`Fleet`] in a task of their own, so a slow device never holds up the
//! host's mailbox (heartbeats included), and replies from that task.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ractor::{Actor, ActorCell, ActorProcessingErr, ActorRef, RpcReplyPort, pg};
use ractor_cluster::RactorClusterMessage;
use tokio::sync::watch;
use tracing::info;
use wafleet_protocol::cluster::{Heartbeat, PeerAddress};
use wafleet_protocol::node_api::{NodeCommand, NodeReply};

use super::command;
use super::membership::{Member, Membership};
use super::ownership::OwnershipCheck;
use super::wire::Wire;
use crate::fleet::Fleet;

/// Process group of the node hosts.
pub const HOSTS_GROUP: &str = "wafleet.hosts";
/// Process group of processes that follow membership without being members (gateways).
pub const OBSERVERS_GROUP: &str = "wafleet.observers";

/// The actor name of node `node`'s host. ractor_cluster tells peers the names of the
/// actors it announces, so a host is found by its node's name ([`find_host`]).
pub fn host_actor_name(node: &str) -> String {
    format!("wafleet.host.{node}")
}

/// The host of node `node` (this process's own, or a peer's through its session), if
/// this process knows it: the lookup a gateway's placement uses to reach an owner.
pub fn find_host(node: &str) -> Option<ActorRef<HostMsg>> {
    let name = host_actor_name(node);
    pg::get_members(&HOSTS_GROUP.to_owned())
        .into_iter()
        .find(|cell| cell.get_name().as_deref() == Some(name.as_str()))
        .map(ActorRef::from)
}

/// Messages of a host. Remote ones carry prost payloads.
#[derive(RactorClusterMessage)]
pub enum HostMsg {
    /// A peer is alive.
    Heartbeat(Wire<Heartbeat>),
    /// Time to send heartbeats and look for silent peers (local timer).
    Tick,
    /// This node is shutting down: from now on its heartbeats say it is leaving, starting
    /// with one to every peer at once (local).
    Leave,
    /// A device command from a gateway; answered with exactly one reply. Boxed: a
    /// command is far larger than the other messages (the same bytes on the wire).
    #[rpc]
    Command(Wire<Box<NodeCommand>>, RpcReplyPort<Wire<NodeReply>>),
}

impl std::fmt::Debug for HostMsg {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            HostMsg::Heartbeat(Wire(heartbeat)) => {
                f.debug_tuple("Heartbeat").field(&heartbeat.node).finish()
            }
            HostMsg::Tick => f.write_str("Tick"),
            HostMsg::Leave => f.write_str("Leave"),
            HostMsg::Command(Wire(command), _) => {
                f.debug_tuple("Command").field(&command.device_id).finish()
            }
        }
    }
}

/// The host actor; its data lives in [`HostState`].
#[derive(Debug)]
pub struct NodeHost;

/// What a host is started with.
#[derive(Debug)]
pub struct HostArgs {
    /// This process's name in the cluster.
    pub name: String,
    /// The heartbeat this process sends; `None` for an observer (a gateway).
    pub heartbeat: Option<Heartbeat>,
    pub interval: Duration,
    pub failure_timeout: Duration,
    /// Where the live view is published.
    pub view: watch::Sender<Vec<String>>,
    /// Where the live view is published with what each member's heartbeat says.
    pub details: watch::Sender<Vec<Member>>,
    /// The devices this node runs commands against; `None` in a gateway.
    pub fleet: Option<Fleet>,
    /// Whether this node may serve a device now (the cluster runtime's hook).
    pub ownership: Arc<dyn OwnershipCheck>,
    /// The members this process has a session with (from the dialing loop), told to
    /// peers in each heartbeat.
    pub direct: watch::Receiver<Vec<PeerAddress>>,
    /// Where the addresses live peers report (but this process's own) are published,
    /// for the dialing loop.
    pub learned: watch::Sender<Vec<String>>,
}

/// A host's data.
#[derive(Debug)]
pub struct HostState {
    name: String,
    heartbeat: Option<Heartbeat>,
    membership: Membership,
    view: watch::Sender<Vec<String>>,
    details: watch::Sender<Vec<Member>>,
    fleet: Option<Fleet>,
    ownership: Arc<dyn OwnershipCheck>,
    direct: watch::Receiver<Vec<PeerAddress>>,
    learned: watch::Sender<Vec<String>>,
    /// The peers each member last said it has a session with.
    reported: HashMap<String, Vec<PeerAddress>>,
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
        let mut heartbeat = args.heartbeat;
        if let (Some(heartbeat), Some(fleet)) = (&mut heartbeat, &args.fleet) {
            heartbeat.devices_running = fleet.running_count();
        }
        let state = HostState {
            name: args.name,
            heartbeat,
            membership,
            view: args.view,
            details: args.details,
            fleet: args.fleet,
            ownership: args.ownership,
            direct: args.direct,
            learned: args.learned,
            reported: HashMap::new(),
        };
        state.publish();
        Ok(state)
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
                } else {
                    state.publish_details();
                }
                if heartbeat.leaving {
                    state.reported.remove(&heartbeat.node);
                } else {
                    state.reported.insert(heartbeat.node, heartbeat.peers);
                }
                state.publish_learned();
            }
            HostMsg::Leave => {
                if let Some(heartbeat) = &mut state.heartbeat {
                    heartbeat.leaving = true;
                    info!("leaving the cluster");
                    for peer in peers(&myself) {
                        let _ = ActorRef::<HostMsg>::from(peer)
                            .cast(HostMsg::Heartbeat(Wire(heartbeat.clone())));
                    }
                }
            }
            HostMsg::Tick => {
                if let Some(heartbeat) = &mut state.heartbeat {
                    heartbeat.peers = state.direct.borrow().clone();
                    if let Some(fleet) = &state.fleet {
                        heartbeat.devices_running = fleet.running_count();
                    }
                    for peer in peers(&myself) {
                        let _ = ActorRef::<HostMsg>::from(peer)
                            .cast(HostMsg::Heartbeat(Wire(heartbeat.clone())));
                    }
                }
                let dead = state.membership.expire(Instant::now());
                if !dead.is_empty() {
                    info!(nodes = ?dead, "members silent past the failure timeout");
                    state.publish();
                    state.publish_learned();
                } else {
                    state.publish_details();
                }
            }
            HostMsg::Command(Wire(command), reply) => state.run_command(*command, reply),
        }
        Ok(())
    }
}

impl HostState {
    fn publish(&self) {
        self.view.send_replace(self.membership.live());
        self.publish_details();
    }

    /// Publishes the members with their details (this node's from its own heartbeat),
    /// if they changed.
    fn publish_details(&self) {
        let own = self.heartbeat.as_ref().map(Member::from_heartbeat);
        let members = self.membership.members(own);
        self.details.send_if_modified(|current| {
            let changed = *current != members;
            if changed {
                *current = members;
            }
            changed
        });
    }

    /// Publishes the addresses live members report (a dead member's list goes with it;
    /// this process's own address is left out), if they changed.
    fn publish_learned(&mut self) {
        let live = self.membership.live();
        self.reported.retain(|node, _| live.contains(node));
        let learned: Vec<String> = self
            .reported
            .values()
            .flatten()
            .filter(|peer| peer.node != self.name)
            .map(|peer| peer.address.clone())
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        self.learned.send_if_modified(|current| {
            let changed = *current != learned;
            if changed {
                *current = learned;
            }
            changed
        });
    }

    /// Runs a device command in a task of its own and replies from there.
    fn run_command(&self, command: NodeCommand, reply: RpcReplyPort<Wire<NodeReply>>) {
        let name = self.name.clone();
        let fleet = self.fleet.clone();
        let ownership = self.ownership.clone();
        tokio::spawn(async move {
            let answer = command::execute(&name, fleet.as_ref(), &*ownership, command).await;
            // The caller may have given up (timeout, closed session): nothing to do.
            let _ = reply.send(Wire(answer));
        });
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cluster::ownership::AlwaysOwned;

    fn beat(node: &str, peers: &[(&str, &str)]) -> Heartbeat {
        Heartbeat {
            node: node.into(),
            incarnation: 1,
            http_addr: String::new(),
            leaving: false,
            devices_running: 0,
            peers: peers
                .iter()
                .map(|(node, address)| PeerAddress {
                    node: (*node).into(),
                    address: (*address).into(),
                })
                .collect(),
        }
    }

    #[test]
    fn learned_addresses_are_what_live_members_report_but_this_process() {
        let (view, _) = watch::channel(Vec::new());
        let (details, _) = watch::channel(Vec::new());
        let (_, direct) = watch::channel(Vec::new());
        let (learned, learned_rx) = watch::channel(Vec::new());
        let mut state = HostState {
            name: "a".into(),
            heartbeat: None,
            membership: Membership::new(Some("a".into()), Duration::from_secs(10)),
            view,
            details,
            fleet: None,
            ownership: Arc::new(AlwaysOwned),
            direct,
            learned,
            reported: HashMap::new(),
        };
        let now = Instant::now();
        for heartbeat in [
            beat("b", &[("a", "a:1"), ("c", "c:1")]),
            beat("c", &[("b", "b:1"), ("d", "d:1")]),
        ] {
            state.membership.heard(&heartbeat, now);
            state
                .reported
                .insert(heartbeat.node.clone(), heartbeat.peers);
        }
        state.publish_learned();
        assert_eq!(
            *learned_rx.borrow(),
            ["b:1", "c:1", "d:1"],
            "not a:1, our own"
        );

        // c leaves: what only c reported (d) goes with it.
        let leaving = Heartbeat {
            leaving: true,
            ..beat("c", &[])
        };
        state.membership.heard(&leaving, now);
        state.publish_learned();
        assert_eq!(*learned_rx.borrow(), ["c:1"]);
    }
}
