//! Placement: which shard a device belongs to, and which live node owns each shard.
//!
//! The gateway and every node call the same two functions on the same inputs (the device
//! id, the configured number of shards, the live member list) and so agree on where a
//! device lives without asking anyone:
//!
//! - [`shard_of`]: device → shard, `xxh3_64(device_id) mod shards`. XXH3 is a specified
//!   hash with a frozen output (unlike `std`'s `DefaultHasher`, which may change between
//!   Rust releases), so the value is the same in every process, on every machine, after
//!   every upgrade. A test pins known values.
//! - [`Placement`]: shard → node, by **rendezvous hashing with bounded load**. Every
//!   (node, shard) pair gets a score `xxh3_64_with_seed(node_name, shard)`; the pairs are
//!   taken from the highest score down, and a shard goes to the first node of its pair
//!   that still has room, where room is [`Placement::capacity`]:
//!   `ceil(shards / members × 1.05)`. Without the cap (plain rendezvous, or a ring of
//!   virtual nodes) each node's share of 1,024 shards is a random draw, and the busiest
//!   of 10 nodes holds 1.15 × the mean devices on average, up to 1.28 ×. With it, at most
//!   1.055 × the mean shards (1.08 × the devices, measured), and a node that leaves or
//!   joins moves its own shards plus about 6 % more. BENCHMARKS.md (`## Placement`) has
//!   the measurements, with the alternatives and why they lost.
//!
//! The result depends only on the set of member names, never on their order or on
//! anything else, and nothing here is configurable on purpose: two processes with
//! different placement rules would route to different owners. Leases, not placement,
//! decide who may serve a shard (see the architecture notes); placement decides who
//! should.

use xxhash_rust::xxh3::{xxh3_64, xxh3_64_with_seed};

/// How far above the mean a node's shard count may go, in percent. Part of the placement
/// rule: changing it moves shards in every cluster, which is why it is not a setting.
const HEADROOM_PERCENT: u64 = 5;

/// The shard a device belongs to: `xxh3_64(device_id) mod shards`.
///
/// Stable across processes, machines and Rust versions (`shard_of_is_pinned` guards it).
///
/// # Panics
///
/// If `shards` is 0 (the configuration refuses that value).
pub fn shard_of(device_id: &str, shards: u32) -> u32 {
    assert!(shards > 0, "shard_of needs at least one shard");
    (xxh3_64(device_id.as_bytes()) % u64::from(shards)) as u32
}

/// Why a [`Placement`] could not be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlacementError {
    /// Zero shards: every device needs a shard.
    #[error("placement needs at least one shard")]
    NoShards,
    /// No live member: nobody can own a shard. The caller decides what that means (the
    /// gateway answers 503, a node serves nothing).
    #[error("placement needs at least one live member")]
    NoMembers,
    /// A member name that is empty: every name must identify a node.
    #[error("a member name is empty")]
    EmptyMember,
}

/// The owner of every shard, for one live member list.
///
/// Build one whenever the member list changes (it takes well under a millisecond for
/// 1,024 shards on 10 nodes) and look owners up in O(1).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Placement {
    /// The member names, sorted and without duplicates: the order the input came in must
    /// not matter.
    members: Vec<String>,
    /// `owners[shard]` is an index into `members`.
    owners: Vec<u32>,
}

impl Placement {
    /// Assigns `shards` shards to `members` (node names; order and duplicates do not
    /// matter).
    pub fn new<I>(shards: u32, members: I) -> Result<Placement, PlacementError>
    where
        I: IntoIterator,
        I::Item: AsRef<str>,
    {
        let mut members: Vec<String> = members.into_iter().map(|m| m.as_ref().to_owned()).collect();
        members.sort_unstable();
        members.dedup();
        if shards == 0 {
            return Err(PlacementError::NoShards);
        }
        if members.is_empty() {
            return Err(PlacementError::NoMembers);
        }
        if members.iter().any(String::is_empty) {
            return Err(PlacementError::EmptyMember);
        }
        let owners = assign(shards, &members);
        Ok(Placement { members, owners })
    }

    /// The number of shards.
    pub fn shards(&self) -> u32 {
        self.owners.len() as u32
    }

    /// The live members this placement was built for, sorted by name.
    pub fn members(&self) -> &[String] {
        &self.members
    }

    /// The node that owns `shard`.
    ///
    /// # Panics
    ///
    /// If `shard >= self.shards()`: shards come from [`shard_of`] with the same count.
    pub fn owner(&self, shard: u32) -> &str {
        &self.members[self.owners[shard as usize] as usize]
    }

    /// The node that owns the shard of `device_id`.
    pub fn owner_of(&self, device_id: &str) -> &str {
        self.owner(shard_of(device_id, self.shards()))
    }

    /// The shards `member` owns, in increasing order (empty for a name that is not a
    /// member).
    pub fn shards_of<'a>(&'a self, member: &str) -> impl Iterator<Item = u32> + 'a {
        let index = self.members.iter().position(|m| m == member);
        self.owners
            .iter()
            .enumerate()
            .filter(move |(_, owner)| Some(**owner as usize) == index)
            .map(|(shard, _)| shard as u32)
    }

    /// The most shards any one member may own: `ceil(shards / members × 1.05)`.
    pub fn capacity(&self) -> u32 {
        capacity(self.shards(), self.members.len())
    }

    /// The shards whose owner differs in `next` (which must have the same shard count),
    /// as `(shard, owner here, owner in next)`: what must be handed off when the member
    /// list changes from this one to `next`.
    ///
    /// # Panics
    ///
    /// If the shard counts differ.
    pub fn moves<'a>(
        &'a self,
        next: &'a Placement,
    ) -> impl Iterator<Item = (u32, &'a str, &'a str)> + 'a {
        assert_eq!(
            self.shards(),
            next.shards(),
            "placements of different shard counts"
        );
        (0..self.shards()).filter_map(move |shard| {
            let (from, to) = (self.owner(shard), next.owner(shard));
            (from != to).then_some((shard, from, to))
        })
    }
}

/// The most shards one of `members` nodes may own.
fn capacity(shards: u32, members: usize) -> u32 {
    let numerator = u64::from(shards) * (100 + HEADROOM_PERCENT);
    let denominator = 100 * members as u64;
    numerator.div_ceil(denominator) as u32
}

/// The rendezvous score of `member` for `shard`: the higher, the more `member` wants it.
fn score(member: &str, shard: u32) -> u64 {
    xxh3_64_with_seed(member.as_bytes(), u64::from(shard))
}

/// Bounded-load rendezvous: every (shard, member) pair from the highest score down; a
/// shard goes to the member of its first pair that still has room. Ties (practically
/// impossible with 64-bit scores) fall back to the shard, then the member's index in the
/// sorted list, so the order is total and the result deterministic.
fn assign(shards: u32, members: &[String]) -> Vec<u32> {
    let cap = capacity(shards, members.len());
    // One u128 per pair, so the sort compares plain integers: the score on top, then the
    // complements of shard and member so that, read from the largest key down, ties go
    // to the smaller shard, then the smaller member index.
    let mut pairs: Vec<u128> = Vec::with_capacity(shards as usize * members.len());
    for (index, member) in members.iter().enumerate() {
        for shard in 0..shards {
            let key = u128::from(score(member, shard)) << 64
                | u128::from(!shard) << 32
                | u128::from(!(index as u32));
            pairs.push(key);
        }
    }
    pairs.sort_unstable();
    const UNASSIGNED: u32 = u32::MAX;
    let mut owners = vec![UNASSIGNED; shards as usize];
    let mut load = vec![0u32; members.len()];
    let mut left = shards;
    for key in pairs.into_iter().rev() {
        let shard = !(key >> 32) as u32;
        let member = !key as u32;
        let owner = &mut owners[shard as usize];
        if *owner == UNASSIGNED && load[member as usize] < cap {
            *owner = member;
            load[member as usize] += 1;
            left -= 1;
            if left == 0 {
                break;
            }
        }
    }
    debug_assert_eq!(left, 0, "capacity × members covers every shard");
    owners
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(n: usize) -> Vec<String> {
        (1..=n).map(|i| format!("node-{i}")).collect()
    }

    #[test]
    fn shard_of_is_pinned() {
        // XXH3-64 of the empty input, as published with the specification: this is the
        // real, frozen XXH3 and not some other hash.
        assert_eq!(xxh3_64(b""), 0x2D06_8005_38D3_94C2);
        // If any of these change, every deployed cluster would route devices to the
        // wrong shard: never update them, fix the code instead.
        assert_eq!(shard_of("", 1024), 194);
        assert_eq!(shard_of("shop-1", 1024), 463);
        assert_eq!(shard_of("device-42", 1024), 250);
        assert_eq!(shard_of("6281234567890", 1024), 708);
        assert_eq!(shard_of("0190a3f2-7c1e-7b3a-9d4e-2f6a8b0c1d2e", 1024), 315);
        assert_eq!(shard_of("shop-1", 7), 0);
        assert_eq!(shard_of("device-42", 7), 2);
        assert_eq!(shard_of("anything", 1), 0);
    }

    #[test]
    fn placement_is_pinned() {
        // The shard → node rule is shared by every process of a cluster, including
        // processes of different versions during a rolling upgrade: it must not change.
        let three = Placement::new(1024, ["node-1", "node-2", "node-3"]).unwrap();
        let owners: Vec<&str> = (0..12).map(|s| three.owner(s)).collect();
        assert_eq!(
            owners,
            [
                "node-3", "node-3", "node-1", "node-1", "node-3", "node-1", "node-2", "node-1",
                "node-3", "node-2", "node-1", "node-1"
            ]
        );
        let ten = Placement::new(1024, names(10)).unwrap();
        let owners: Vec<&str> = (0..12).map(|s| ten.owner(s)).collect();
        assert_eq!(
            owners,
            [
                "node-6", "node-3", "node-6", "node-1", "node-3", "node-1", "node-7", "node-4",
                "node-9", "node-7", "node-7", "node-1"
            ]
        );
        assert_eq!(ten.owner_of("shop-1"), ten.owner(463));
    }

    #[test]
    fn the_order_and_repetition_of_members_do_not_matter() {
        let mut rng = fastrand::Rng::with_seed(7);
        for n in [1, 2, 3, 10] {
            let reference = Placement::new(1024, names(n)).unwrap();
            for _ in 0..5 {
                let mut shuffled = names(n);
                shuffled.extend(names(n).into_iter().take(rng.usize(0..=n)));
                rng.shuffle(&mut shuffled);
                assert_eq!(Placement::new(1024, &shuffled).unwrap(), reference);
            }
        }
    }

    #[test]
    fn every_shard_has_one_owner_and_nobody_exceeds_capacity() {
        for shards in [1, 5, 7, 64, 1024, 4096] {
            for n in 1..=16 {
                let placement = Placement::new(shards, names(n)).unwrap();
                let counts: Vec<usize> = placement
                    .members()
                    .iter()
                    .map(|m| placement.shards_of(m).count())
                    .collect();
                assert_eq!(counts.iter().sum::<usize>(), shards as usize);
                let cap = placement.capacity() as usize;
                assert!(
                    counts.iter().all(|&c| c <= cap),
                    "{shards}/{n}: {counts:?} > {cap}"
                );
            }
        }
        let placement = Placement::new(1024, names(10)).unwrap();
        assert_eq!(placement.capacity(), 108, "ceil(1024 / 10 × 1.05)");
    }

    /// The busiest node's devices ÷ the mean, for `devices` ids.
    fn device_balance(placement: &Placement, devices: &[String]) -> f64 {
        let members = placement.members();
        let mut counts = vec![0usize; members.len()];
        for device in devices {
            let owner = placement.owner_of(device);
            counts[members.iter().position(|m| m == owner).unwrap()] += 1;
        }
        let mean = devices.len() as f64 / members.len() as f64;
        *counts.iter().max().unwrap() as f64 / mean
    }

    #[test]
    fn the_busiest_node_holds_at_most_ten_percent_above_the_mean() {
        let devices: Vec<String> = (0..20_000).map(|i| format!("device-{i}")).collect();
        for n in [3, 10] {
            for cluster in 0..5 {
                let members: Vec<String> = (0..n).map(|i| format!("c{cluster}-n{i}")).collect();
                let placement = Placement::new(1024, &members).unwrap();
                let balance = device_balance(&placement, &devices);
                assert!(
                    balance <= 1.10,
                    "{n} nodes, cluster {cluster}: {balance:.3}"
                );
            }
        }
    }

    /// Shards that change owner from `before` to `after`, and how many of them the node
    /// that left or joined (`changed`) gave up or took.
    fn movement(before: &Placement, after: &Placement, changed: &str) -> (usize, usize) {
        let moves: Vec<(u32, &str, &str)> = before.moves(after).collect();
        let necessary = moves
            .iter()
            .filter(|(_, from, to)| *from == changed || *to == changed)
            .count();
        (moves.len(), necessary)
    }

    #[test]
    fn a_leaving_node_moves_its_own_shards_and_few_others() {
        for n in [3, 10] {
            let members = names(n);
            let before = Placement::new(1024, &members).unwrap();
            for leaving in &members {
                let rest = members.iter().filter(|m| *m != leaving);
                let after = Placement::new(1024, rest).unwrap();
                let (moved, necessary) = movement(&before, &after, leaving);
                assert_eq!(necessary, before.shards_of(leaving).count());
                // Measured over 400 leaves: at most 1.5 % of the devices beyond the
                // necessary (BENCHMARKS.md). Allow 3 % of the shards.
                assert!(
                    moved - necessary <= 1024 * 3 / 100,
                    "{n} nodes, {leaving} leaves: {moved} moved, {necessary} necessary"
                );
            }
        }
    }

    #[test]
    fn a_joining_node_takes_its_share_and_few_others_move() {
        for n in [3, 10] {
            let members = names(n);
            let before = Placement::new(1024, &members).unwrap();
            for joiner in ["node-new", "node-x", "zz"] {
                let after =
                    Placement::new(1024, members.iter().map(String::as_str).chain([joiner]))
                        .unwrap();
                let (moved, necessary) = movement(&before, &after, joiner);
                let fair = 1024 / (n + 1);
                // Measured over 200 joins: at most 2.2 % of the devices beyond the
                // newcomer's share (BENCHMARKS.md). Allow 3 % of the shards.
                assert_eq!(necessary, after.shards_of(joiner).count());
                assert!(
                    necessary >= fair * 9 / 10,
                    "{joiner} took only {necessary} of ~{fair}"
                );
                assert!(
                    moved - necessary <= 1024 * 3 / 100,
                    "{n} nodes, {joiner} joins: {moved} moved, {necessary} necessary"
                );
            }
        }
    }

    #[test]
    fn moves_lists_exactly_the_changed_owners() {
        let before = Placement::new(64, ["a", "b", "c"]).unwrap();
        let after = Placement::new(64, ["a", "b", "c", "d"]).unwrap();
        let moves: Vec<_> = before.moves(&after).collect();
        assert!(!moves.is_empty());
        for shard in 0..64 {
            let listed = moves.iter().find(|(s, _, _)| *s == shard);
            match listed {
                Some((_, from, to)) => {
                    assert_eq!((*from, *to), (before.owner(shard), after.owner(shard)));
                    assert_ne!(from, to);
                }
                None => assert_eq!(before.owner(shard), after.owner(shard)),
            }
        }
        assert_eq!(before.moves(&before).count(), 0);
    }

    #[test]
    fn more_members_than_shards_leaves_some_idle() {
        let placement = Placement::new(5, names(8)).unwrap();
        assert_eq!(placement.capacity(), 1);
        let busy = placement
            .members()
            .iter()
            .filter(|m| placement.shards_of(m).count() == 1)
            .count();
        assert_eq!(busy, 5);
        assert_eq!(placement.shards_of("not-a-member").count(), 0);
    }

    #[test]
    fn impossible_placements_are_refused() {
        assert_eq!(Placement::new(0, ["a"]), Err(PlacementError::NoShards));
        assert_eq!(
            Placement::new(1024, Vec::<String>::new()),
            Err(PlacementError::NoMembers)
        );
        assert_eq!(
            Placement::new(1024, ["a", ""]),
            Err(PlacementError::EmptyMember)
        );
    }
}
