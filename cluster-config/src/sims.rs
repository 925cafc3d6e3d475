//! Which simulator serves a device when the simulated network runs as several
//! `wafleet sim` processes.
//!
//! One simulator process holds one socket per connected device, and a process may
//! hold only so many open files; past a few thousand devices the network runs as
//! several processes, listed in `[link] sim_urls` (and `--link sim=URL,URL`). A device's
//! link and whoever acts as its phone (the load driver scanning its QR code, reading
//! inboxes) must pick the same process without asking anyone, so both call
//! [`sim_of`] with the same list. The simulators themselves know nothing of it: each is
//! a whole network for the devices that reach it.
//!
//! # The rule
//!
//! `sim_of(id, n) = jump(xxh3_64_with_seed(id, SIM_SEED), n)`: the device id is hashed
//! with XXH3 (specified and frozen, like [`shard_of`](crate::shard_of)), with a seed of
//! its own so that the choice of simulator is independent of the device's shard and
//! therefore of its node: every node's devices spread evenly over every simulator. The
//! hash is then mapped to one of `n` indexes by Lamping and Veach's jump consistent
//! hash ("A Fast, Minimal Memory, Consistent Hash Algorithm", 2014) rather than taken
//! modulo `n`: appending a simulator to a list of `n` moves only `1/(n+1)` of the
//! devices (modulo would move `n/(n+1)`). A device that moves meets a simulator that
//! has never seen its link and pairs again, so:
//!
//! - every process must be given **the same list in the same order** (the index, not
//!   the URL, is what the rule picks);
//! - grow a list only by **appending**; removing or reordering entries re-homes most
//!   devices.
//!
//! `sim_of_is_pinned` guards the values: a change would send every device of a running
//! simulated fleet to the wrong simulator.

use xxhash_rust::xxh3::xxh3_64_with_seed;

/// The XXH3 seed of the simulator choice: any value other than the shard hash's (0)
/// makes the simulator of a device independent of its shard. Part of the rule.
const SIM_SEED: u64 = 0x5157_5f53_494d_5331; // "QW_SIMS1"

/// The index, in a list of `sims` simulators, of the one that serves `device_id`.
///
/// Stable across processes, machines and Rust versions.
///
/// # Panics
///
/// If `sims` is 0 (the configuration refuses an empty list).
pub fn sim_of(device_id: &str, sims: usize) -> usize {
    assert!(sims > 0, "sim_of needs at least one simulator");
    let buckets = i64::try_from(sims).unwrap_or(i64::MAX);
    jump(xxh3_64_with_seed(device_id.as_bytes(), SIM_SEED), buckets) as usize
}

/// Jump consistent hash: the bucket in `0..buckets` of `key`, such that going from `n`
/// to `n + 1` buckets moves a key only into the new bucket, and each key with
/// probability `1/(n+1)`. The published algorithm, verbatim; its floating-point steps
/// are exact IEEE 754 operations, so the result is the same on every machine.
fn jump(mut key: u64, buckets: i64) -> i64 {
    let (mut b, mut j) = (-1i64, 0i64);
    while j < buckets {
        b = j;
        key = key.wrapping_mul(2_862_933_555_777_941_757).wrapping_add(1);
        j = ((b + 1) as f64 * ((1u64 << 31) as f64 / ((key >> 33) + 1) as f64)) as i64;
    }
    b
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Placement, shard_of};

    #[test]
    fn jump_matches_the_published_algorithm() {
        // The test vectors every port of the algorithm checks against (the Go ports'
        // `jumpTestVectors`): this is the real jump hash, not a look-alike.
        assert_eq!(jump(1, 1), 0);
        assert_eq!(jump(42, 57), 43);
        assert_eq!(jump(0xDEAD_10CC, 1), 0);
        assert_eq!(jump(0xDEAD_10CC, 666), 361);
        assert_eq!(jump(256, 1024), 520);
    }

    #[test]
    fn sim_of_is_pinned() {
        // If any of these change, every device of a running simulated fleet would dial
        // a simulator that does not know its link: never update them, fix the code.
        let of_4: Vec<usize> = ["", "shop-1", "device-42", "fo-000000", "fo-000001"]
            .iter()
            .map(|id| sim_of(id, 4))
            .collect();
        assert_eq!(of_4, [3, 2, 1, 1, 1]);
        assert_eq!(sim_of("shop-1", 2), 0);
        assert_eq!(sim_of("anything", 1), 0);
    }

    #[test]
    fn devices_spread_evenly_over_the_simulators() {
        for sims in [2usize, 3, 4, 7] {
            let mut count = vec![0usize; sims];
            for i in 0..20_000 {
                count[sim_of(&format!("fo-{i:06}"), sims)] += 1;
            }
            let mean = 20_000 / sims;
            for (sim, n) in count.iter().enumerate() {
                let off = n.abs_diff(mean) as f64 / mean as f64;
                assert!(off < 0.05, "sim {sim} of {sims} has {n}, mean {mean}");
            }
        }
    }

    #[test]
    fn appending_a_simulator_moves_only_its_share_and_only_to_it() {
        let ids: Vec<String> = (0..20_000).map(|i| format!("dev-{i}")).collect();
        for n in 1..6usize {
            let moved: Vec<&String> = ids
                .iter()
                .filter(|id| sim_of(id, n) != sim_of(id, n + 1))
                .collect();
            assert!(
                moved.iter().all(|id| sim_of(id, n + 1) == n),
                "a device moved between old simulators"
            );
            let share = moved.len() as f64 / ids.len() as f64;
            let expected = 1.0 / (n + 1) as f64;
            assert!(
                (share - expected).abs() < 0.02,
                "{n} → {}: {share} moved, {expected} expected",
                n + 1
            );
        }
    }

    #[test]
    fn every_node_spreads_its_devices_over_every_simulator() {
        // Independent of the shard: a node's devices do not all land on one simulator,
        // so a failover's reconnects spread over all of them too.
        let placement = Placement::new(1024, ["node-1", "node-2", "node-3"]).unwrap();
        for node in ["node-1", "node-2", "node-3"] {
            let mut count = [0usize; 2];
            let mut total = 0;
            for i in 0..30_000 {
                let id = format!("fo-{i:06}");
                if placement.owner(shard_of(&id, 1024)) == node {
                    count[sim_of(&id, 2)] += 1;
                    total += 1;
                }
            }
            for n in count {
                let share = n as f64 / total as f64;
                assert!((share - 0.5).abs() < 0.03, "{node}: {count:?}");
            }
        }
    }

    #[test]
    #[should_panic(expected = "at least one simulator")]
    fn no_simulator_is_a_bug() {
        sim_of("x", 0);
    }
}
