//! Whether this node may serve a device now: the hook through which the cluster runtime
//! (placement and shard leases) tells the host to answer "not owner, try X".
//!
//! The host asks before it runs any device command. Until the runtime fills the hook,
//! [`AlwaysOwned`] serves every device.

use crate::store::Fence;

/// This node's answer for one device.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Ownership {
    /// This node holds the device's shard: it runs the command, and starts the device
    /// under the lease's `fence` (`None` where nothing is leased: a single node).
    Owned { fence: Option<Fence> },
    /// Another node does (or will): the caller should send the command there.
    Elsewhere {
        /// The node this one believes owns the shard; `None` when it does not know
        /// (e.g. the shard is between owners).
        owner_hint: Option<String>,
    },
}

/// Decides [`Ownership`]; called on the host's command path, so it must answer from
/// memory (no I/O).
pub trait OwnershipCheck: Send + Sync + std::fmt::Debug + 'static {
    fn owns(&self, device_id: &str) -> Ownership;
}

/// Serves every device: a single node, or a cluster whose runtime has not taken over
/// the hook.
#[derive(Debug, Clone, Copy, Default)]
pub struct AlwaysOwned;

impl OwnershipCheck for AlwaysOwned {
    fn owns(&self, _device_id: &str) -> Ownership {
        Ownership::Owned { fence: None }
    }
}
