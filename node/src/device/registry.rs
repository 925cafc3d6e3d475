//! What runs on this node: the actor of each running device and, once it has spawned
//! one, its rate limiter. The fleet finds them here; the node context holds the one
//! [`Running`] of the node.
//!
//! # Who writes it
//!
//! An entry is written only by the actor that spawned the one it names, and only from
//! this module's parent (the write methods are not visible outside `device`):
//!
//! - the [supervisor](super::supervisor) inserts a device when it spawns its actor, and
//!   removes it when it stops that actor or sees it terminate;
//! - a device actor inserts its limiter when it spawns it, and removes it when the
//!   device stops; when the device's own entry goes (stopped, or seen terminated, a
//!   crash included), its limiter's goes with it.
//!
//! A removal after a termination names the actor it removes, so that a late removal
//! for an old run never drops the entry of a newer run of the same device.

use std::collections::HashMap;
use std::sync::RwLock;

use ractor::{ActorId, ActorRef};

use super::DeviceMsg;
use crate::limits::actor::LimiterMsg;

/// The running devices of a node and their limiters, by device id.
#[derive(Debug, Default)]
pub(crate) struct Running {
    devices: Handles<DeviceMsg>,
    limiters: Handles<LimiterMsg>,
}

impl Running {
    /// The actor of a running device.
    pub(crate) fn device(&self, device_id: &str) -> Option<ActorRef<DeviceMsg>> {
        self.devices.get(device_id)
    }

    /// The rate limiter of a running device, if it has spawned one.
    pub(crate) fn limiter(&self, device_id: &str) -> Option<ActorRef<LimiterMsg>> {
        self.limiters.get(device_id)
    }

    /// The ids of all running devices.
    pub(crate) fn device_ids(&self) -> Vec<String> {
        self.devices.read().keys().cloned().collect()
    }

    /// How many devices run.
    pub(crate) fn count(&self) -> usize {
        self.devices.read().len()
    }

    /// The actors of all running devices.
    pub(crate) fn devices(&self) -> Vec<ActorRef<DeviceMsg>> {
        self.devices.read().values().cloned().collect()
    }

    /// The supervisor spawned `actor` for the device.
    pub(super) fn insert_device(&self, device_id: String, actor: ActorRef<DeviceMsg>) {
        self.devices.write().insert(device_id, actor);
    }

    /// The supervisor stops the device: whatever actor runs it leaves the registry,
    /// with its limiter (a child that ends with it).
    pub(super) fn remove_device(&self, device_id: &str) -> Option<ActorRef<DeviceMsg>> {
        let removed = self.devices.write().remove(device_id);
        if removed.is_some() {
            self.limiters.write().remove(device_id);
        }
        removed
    }

    /// The device's actor `actor` terminated: it leaves the registry if it is still the
    /// device's current one, and so does its limiter. A crashed actor runs no
    /// `post_stop`, and ractor stops its children with it: without this the fleet
    /// would keep asking a dead limiter (answered `device_stopping`) after a restart.
    /// Says whether it was the current one.
    pub(super) fn remove_device_if(&self, device_id: &str, actor: ActorId) -> bool {
        let current = self.devices.remove_if(device_id, actor);
        if current {
            self.limiters.write().remove(device_id);
        }
        current
    }

    /// A device actor spawned `limiter` as its rate limiter.
    pub(super) fn insert_limiter(&self, device_id: String, limiter: ActorRef<LimiterMsg>) {
        self.limiters.write().insert(device_id, limiter);
    }

    /// The device actor that spawned `limiter` stops: the limiter leaves the registry
    /// if it is still the device's current one.
    pub(super) fn remove_limiter_if(&self, device_id: &str, limiter: ActorId) {
        self.limiters.remove_if(device_id, limiter);
    }
}

/// Actors of one kind by device id.
#[derive(Debug)]
struct Handles<M>(RwLock<HashMap<String, ActorRef<M>>>);

impl<M> Default for Handles<M> {
    fn default() -> Self {
        Handles(RwLock::default())
    }
}

impl<M> Handles<M> {
    fn get(&self, device_id: &str) -> Option<ActorRef<M>> {
        self.read().get(device_id).cloned()
    }

    /// Removes the device's entry if it names `actor`; says whether it did.
    fn remove_if(&self, device_id: &str, actor: ActorId) -> bool {
        let mut handles = self.write();
        let current = handles.get(device_id).map(|current| current.get_id()) == Some(actor);
        if current {
            handles.remove(device_id);
        }
        current
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, HashMap<String, ActorRef<M>>> {
        self.0.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<String, ActorRef<M>>> {
        self.0.write().unwrap_or_else(|e| e.into_inner())
    }
}
