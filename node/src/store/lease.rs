//! Shard leases with fencing epochs: which node serves a shard, and the token that
//! proves it on every write of a device's link state.
//!
//! The rules live here, once, as plain functions on [`LeaseSlot`] (what a backend keeps
//! per shard); a backend reads the slot, applies a rule and writes the result back in
//! one atomic step (a SQLite transaction, a ScyllaDB lightweight transaction).
//!
//! The store keeps no clock: callers pass `now_ms` (their wall clock) and `ttl_ms`.
//! A lease is expired when `expires_at_ms <= now_ms`.

/// A shard's lease: who serves the shard, under which epoch, until when.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Lease {
    pub shard: u32,
    /// The node (by name) that serves the shard.
    pub holder: String,
    /// Increases by one each time the shard is granted to a node that did not hold it
    /// live, so an older holder's writes can be told apart and refused.
    pub epoch: u64,
    /// The lease is void from this instant on (Unix ms, the holder's clock).
    pub expires_at_ms: i64,
}

impl Lease {
    /// A lease of `shard` held by `holder` until `expires_at_ms`, at epoch 1 (tests).
    #[cfg(test)]
    pub(crate) fn held(shard: u32, holder: &str, expires_at_ms: i64) -> Lease {
        Lease {
            shard,
            holder: holder.into(),
            epoch: 1,
            expires_at_ms,
        }
    }

    /// The token that the holder's writes carry.
    pub fn fence(&self) -> Fence {
        Fence {
            shard: self.shard,
            epoch: self.epoch,
        }
    }

    /// Whether the lease has run out at `now_ms`.
    pub fn is_expired(&self, now_ms: i64) -> bool {
        self.expires_at_ms <= now_ms
    }
}

/// Proof of ownership carried by a write: it is accepted only while `epoch` is the
/// epoch of the shard's held lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Fence {
    pub shard: u32,
    pub epoch: u64,
}

impl std::fmt::Display for Fence {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "shard {} epoch {}", self.shard, self.epoch)
    }
}

/// What [`super::Store::acquire_leases`] did for one shard.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Acquired {
    /// The caller holds the shard: this is its lease (possibly a new epoch).
    Granted(Lease),
    /// Another node holds a live lease: this is that lease.
    Refused(Lease),
}

impl Acquired {
    /// The caller's lease, if it was granted.
    pub fn granted(&self) -> Option<&Lease> {
        match self {
            Acquired::Granted(lease) => Some(lease),
            Acquired::Refused(_) => None,
        }
    }

    /// The shard's lease after the call, whoever holds it.
    pub fn lease(&self) -> &Lease {
        match self {
            Acquired::Granted(lease) | Acquired::Refused(lease) => lease,
        }
    }
}

/// What a backend keeps per shard. A shard never leased has no slot; a released lease
/// keeps its slot (without a holder) so that the next grant gets a higher epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LeaseSlot {
    pub shard: u32,
    /// `None` once released.
    pub holder: Option<String>,
    /// The last epoch granted (0 for a slot that was never granted).
    pub epoch: u64,
    pub expires_at_ms: i64,
}

impl LeaseSlot {
    /// A shard that was never leased.
    pub fn vacant(shard: u32) -> LeaseSlot {
        LeaseSlot {
            shard,
            holder: None,
            epoch: 0,
            expires_at_ms: i64::MIN,
        }
    }

    /// The held lease, expired or not; `None` if nobody holds the shard.
    pub fn lease(&self) -> Option<Lease> {
        self.holder.as_ref().map(|holder| Lease {
            shard: self.shard,
            holder: holder.clone(),
            epoch: self.epoch,
            expires_at_ms: self.expires_at_ms,
        })
    }

    /// Grants the shard to `holder` when it is free, expired or already `holder`'s.
    ///
    /// The epoch stays only when `holder` extends its own live lease; every other grant
    /// (first grant, after a release, after an expiry, even to the same holder) takes
    /// the next epoch, so whatever ran under a lapsed lease is fenced off.
    pub fn acquire(&mut self, holder: &str, now_ms: i64, ttl_ms: u64) -> Acquired {
        let live = self.expires_at_ms > now_ms;
        if let Some(other) = self.lease().filter(|lease| live && lease.holder != holder) {
            return Acquired::Refused(other);
        }
        let extends_own = live && self.holder.as_deref() == Some(holder);
        if !extends_own {
            self.holder = Some(holder.to_owned());
            self.epoch += 1;
        }
        self.expires_at_ms = now_ms.saturating_add_unsigned(ttl_ms);
        Acquired::Granted(Lease {
            shard: self.shard,
            holder: holder.to_owned(),
            epoch: self.epoch,
            expires_at_ms: self.expires_at_ms,
        })
    }

    /// Extends the lease of `holder` at `epoch` to `now_ms + ttl_ms`; `false` (and no
    /// change) unless that lease is held and not expired.
    pub fn renew(&mut self, holder: &str, epoch: u64, now_ms: i64, ttl_ms: u64) -> bool {
        let renewable = self.holder.as_deref() == Some(holder)
            && self.epoch == epoch
            && self.expires_at_ms > now_ms;
        if renewable {
            self.expires_at_ms = now_ms.saturating_add_unsigned(ttl_ms);
        }
        renewable
    }

    /// Frees the shard now if `holder` holds it at `epoch` (expired or not); keeps the
    /// epoch. `false` (and no change) otherwise.
    pub fn release(&mut self, holder: &str, epoch: u64) -> bool {
        let held = self.holder.as_deref() == Some(holder) && self.epoch == epoch;
        if held {
            self.holder = None;
        }
        held
    }

    /// Whether a write fenced by `fence` may go ahead: the shard is held under exactly
    /// that epoch. Expiry alone does not fence (the store has no clock); a new grant does.
    /// On refusal, the current epoch (`None` when nobody holds the shard).
    pub fn admits(&self, fence: &Fence) -> Result<(), Option<u64>> {
        debug_assert_eq!(self.shard, fence.shard);
        let current = self.holder.as_ref().map(|_| self.epoch);
        if current == Some(fence.epoch) {
            Ok(())
        } else {
            Err(current)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: u64 = 1_000;

    fn granted(outcome: Acquired) -> Lease {
        match outcome {
            Acquired::Granted(lease) => lease,
            Acquired::Refused(lease) => panic!("refused, held by {lease:?}"),
        }
    }

    #[test]
    fn first_grant_is_epoch_one_and_a_live_holder_keeps_its_epoch() {
        let mut slot = LeaseSlot::vacant(7);
        let lease = granted(slot.acquire("a", 100, TTL));
        assert_eq!(
            lease,
            Lease {
                shard: 7,
                holder: "a".into(),
                epoch: 1,
                expires_at_ms: 1_100
            }
        );
        let again = granted(slot.acquire("a", 500, TTL));
        assert_eq!((again.epoch, again.expires_at_ms), (1, 1_500));
    }

    #[test]
    fn a_live_lease_refuses_others_and_an_expired_one_moves_with_a_new_epoch() {
        let mut slot = LeaseSlot::vacant(1);
        granted(slot.acquire("a", 0, TTL));
        assert_eq!(
            slot.acquire("b", 999, TTL),
            Acquired::Refused(slot.lease().unwrap())
        );
        let taken = granted(slot.acquire("b", 1_000, TTL));
        assert_eq!((taken.holder.as_str(), taken.epoch), ("b", 2));
    }

    #[test]
    fn the_same_holder_after_expiry_or_release_gets_a_new_epoch() {
        let mut slot = LeaseSlot::vacant(1);
        granted(slot.acquire("a", 0, TTL));
        assert_eq!(granted(slot.acquire("a", 1_000, TTL)).epoch, 2);
        assert!(slot.release("a", 2));
        assert_eq!(granted(slot.acquire("a", 1_001, TTL)).epoch, 3);
    }

    #[test]
    fn renew_needs_holder_epoch_and_time_left() {
        let mut slot = LeaseSlot::vacant(1);
        granted(slot.acquire("a", 0, TTL));
        assert!(!slot.renew("b", 1, 10, TTL), "another holder");
        assert!(!slot.renew("a", 2, 10, TTL), "another epoch");
        assert!(slot.renew("a", 1, 999, TTL));
        assert_eq!(slot.expires_at_ms, 1_999);
        assert!(!slot.renew("a", 1, 1_999, TTL), "at the expiry instant");
        assert_eq!(slot.expires_at_ms, 1_999, "a refused renew changes nothing");
    }

    #[test]
    fn release_frees_but_keeps_the_epoch_and_fences() {
        let mut slot = LeaseSlot::vacant(1);
        let lease = granted(slot.acquire("a", 0, TTL));
        assert_eq!(slot.admits(&lease.fence()), Ok(()));
        assert!(!slot.release("a", 2));
        assert!(!slot.release("b", 1));
        assert!(slot.release("a", 1));
        assert!(!slot.release("a", 1), "second release");
        assert_eq!(slot.lease(), None);
        assert_eq!(slot.epoch, 1);
        assert_eq!(slot.admits(&lease.fence()), Err(None));
    }

    #[test]
    fn admits_only_the_held_epoch() {
        let mut slot = LeaseSlot::vacant(3);
        assert_eq!(slot.admits(&Fence { shard: 3, epoch: 0 }), Err(None));
        granted(slot.acquire("a", 0, TTL));
        granted(slot.acquire("b", 5_000, TTL));
        assert_eq!(slot.admits(&Fence { shard: 3, epoch: 1 }), Err(Some(2)));
        assert_eq!(slot.admits(&Fence { shard: 3, epoch: 2 }), Ok(()));
    }

    #[test]
    fn times_saturate_instead_of_overflowing() {
        let mut slot = LeaseSlot::vacant(1);
        let lease = granted(slot.acquire("a", i64::MAX - 1, u64::MAX));
        assert_eq!(lease.expires_at_ms, i64::MAX);
    }
}
