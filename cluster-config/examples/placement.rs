//! Measures shard → node placement: the algorithm `Placement` uses and the alternatives it
//! was chosen over, on 1,024 shards and 100,000 random device ids.
//!
//! ```sh
//! cargo run --release -p wafleet-cluster-config --example placement
//! ```
//!
//! For 3 and 10 nodes and each algorithm it reports, over 20 clusters with different
//! random node names (the first named `node-1` … `node-N`):
//! - balance: the busiest node's devices ÷ the mean (goal ≤ 1.10), worst and mean over
//!   the clusters, and the same in shards;
//! - leave: the share of all devices whose owner changes when one node leaves (every node
//!   of every cluster in turn), against the ideal (exactly the leaving node's devices,
//!   about 1/N), and the largest excess over that ideal in any one leave: devices that
//!   moved although their node stayed;
//! - join: the same when a node with a new name joins (5 different joiners per cluster),
//!   against the ideal (exactly the devices the newcomer gets, about 1/(N+1));
//! - the time to compute a full assignment of 1,024 shards over 10 nodes.
//!
//! It prints a table and then one JSON object on the last line.

use std::time::Instant;

use consistent_hash::{DefaultHash, Node, StaticHashRing};
use wafleet_cluster_config::placement::{Placement, shard_of};
use xxhash_rust::xxh3::xxh3_64_with_seed;

const SHARDS: u32 = 1024;
const DEVICES: usize = 100_000;
const CLUSTERS: usize = 20;
const JOINERS: usize = 5;
const TIMING_ROUNDS: u32 = 200;

/// An assignment rule: shard count and sorted member names → owner index per shard.
type Rule = Box<dyn Fn(u32, &[String]) -> Vec<usize>>;

struct Algorithm {
    name: &'static str,
    rule: Rule,
}

fn main() {
    let mut rng = fastrand::Rng::with_seed(0x3a1f_1eed);
    let devices: Vec<String> = (0..DEVICES)
        .map(|_| {
            let len = rng.usize(8..=24);
            (0..len).map(|_| rng.alphanumeric()).collect()
        })
        .collect();
    let mut per_shard = vec![0u64; SHARDS as usize];
    for device in &devices {
        per_shard[shard_of(device, SHARDS) as usize] += 1;
    }
    let shard_spread = (
        per_shard.iter().min().copied().unwrap_or(0),
        per_shard.iter().max().copied().unwrap_or(0),
    );

    let algorithms = algorithms();
    let mut results = Vec::new();
    for &nodes in &[3usize, 10] {
        let clusters: Vec<Vec<String>> = (0..CLUSTERS)
            .map(|c| {
                (0..nodes)
                    .map(|i| {
                        if c == 0 {
                            format!("node-{}", i + 1)
                        } else {
                            format!("node-{:08x}", rng.u32(..))
                        }
                    })
                    .collect()
            })
            .collect();
        let joiners: Vec<Vec<String>> = (0..CLUSTERS)
            .map(|_| {
                (0..JOINERS)
                    .map(|_| format!("node-{:08x}", rng.u32(..)))
                    .collect()
            })
            .collect();
        for algorithm in &algorithms {
            let figures = measure(algorithm, &clusters, &joiners, &per_shard);
            results.push((nodes, algorithm.name, figures));
        }
    }
    let timings: Vec<(&str, f64)> = algorithms
        .iter()
        .map(|a| (a.name, time_assignment(a, 10)))
        .collect();
    let library_us = time_library(10);

    println!(
        "placement: {SHARDS} shards, {DEVICES} random device ids ({}..{} per shard), \
         {CLUSTERS} clusters of random node names per size\n",
        shard_spread.0, shard_spread.1
    );
    println!(
        "{:>5}  {:<24} {:>14} {:>14} {:>26} {:>26} {:>8}",
        "nodes",
        "algorithm",
        "worst/mean dev",
        "worst/mean sh",
        "leave: moved/ideal, extra",
        "join: moved/ideal, extra",
        "µs @10"
    );
    for (nodes, name, f) in &results {
        let us = timings.iter().find(|t| t.0 == *name).map_or(0.0, |t| t.1);
        println!(
            "{:>5}  {:<24} {:>6.3} ({:.3}) {:>6.3} ({:.3}) {:>6.2}%/{:>6.2}% ≤{:>5.2}pp {:>6.2}%/{:>6.2}% ≤{:>5.2}pp {:>8.1}",
            nodes,
            name,
            f.balance_worst,
            f.balance_mean,
            f.shard_balance_worst,
            f.shard_balance_mean,
            100.0 * f.leave_mean,
            100.0 * f.leave_ideal,
            100.0 * f.leave_extra_max,
            100.0 * f.join_mean,
            100.0 * f.join_ideal,
            100.0 * f.join_extra_max,
            us
        );
    }
    println!(
        "\nbalance: worst over the clusters (mean in brackets); moved: mean share of all devices \
         that change owner / ideal mean; extra: the most devices moved beyond the ideal in any \
         one leave or join, in percentage points of all devices"
    );
    println!(
        "chosen: {CHOSEN} (Placement::new); Placement::new for 1,024 shards × 10 nodes: {library_us:.1} µs"
    );

    let mut json = serde_json::Map::new();
    json.insert("shards".into(), SHARDS.into());
    json.insert("devices".into(), DEVICES.into());
    json.insert("clusters".into(), CLUSTERS.into());
    json.insert("chosen".into(), CHOSEN.into());
    json.insert(
        "placement_new_us_1024x10".into(),
        round(library_us, 1).into(),
    );
    let rows: Vec<serde_json::Value> = results
        .iter()
        .map(|(nodes, name, f)| {
            let us = timings.iter().find(|t| t.0 == *name).map_or(0.0, |t| t.1);
            serde_json::json!({
                "algorithm": name,
                "nodes": nodes,
                "worst_over_mean_devices": round(f.balance_worst, 3),
                "worst_over_mean_devices_avg": round(f.balance_mean, 3),
                "worst_over_mean_shards": round(f.shard_balance_worst, 3),
                "leave_moved": round(f.leave_mean, 4),
                "leave_ideal": round(f.leave_ideal, 4),
                "leave_extra_max": round(f.leave_extra_max, 4),
                "join_moved": round(f.join_mean, 4),
                "join_ideal": round(f.join_ideal, 4),
                "join_extra_max": round(f.join_extra_max, 4),
                "assign_us_1024x10": round(us, 1),
            })
        })
        .collect();
    json.insert("results".into(), rows.into());
    println!("{}", serde_json::Value::Object(json));
}

/// The algorithm `Placement` implements, as named in the table.
const CHOSEN: &str = "rendezvous bounded 5%";

fn algorithms() -> Vec<Algorithm> {
    let mut list = vec![
        Algorithm {
            name: "ring 64 vnodes (crate)",
            rule: Box::new(|s, m| ring(s, m, 64)),
        },
        Algorithm {
            name: "ring 160 vnodes (crate)",
            rule: Box::new(|s, m| ring(s, m, 160)),
        },
        Algorithm {
            name: "ring 1000 vnodes (crate)",
            rule: Box::new(|s, m| ring(s, m, 1000)),
        },
        Algorithm {
            name: "rendezvous",
            rule: Box::new(rendezvous),
        },
    ];
    for (name, headroom) in [
        ("rendezvous bounded 0%", 0),
        ("rendezvous bounded 2%", 2),
        ("rendezvous bounded 5%", 5),
        ("rendezvous bounded 8%", 8),
    ] {
        list.push(Algorithm {
            name,
            rule: Box::new(move |s, m| bounded(s, m, headroom)),
        });
    }
    for (name, headroom) in [
        ("bounded 0%, shard order", 0),
        ("bounded 5%, shard order", 5),
    ] {
        list.push(Algorithm {
            name,
            rule: Box::new(move |s, m| bounded_in_shard_order(s, m, headroom)),
        });
    }
    list.push(Algorithm {
        name: "rendezvous draft",
        rule: Box::new(draft),
    });
    list
}

#[derive(Debug, Default)]
struct Figures {
    balance_worst: f64,
    balance_mean: f64,
    shard_balance_worst: f64,
    shard_balance_mean: f64,
    leave_mean: f64,
    leave_ideal: f64,
    leave_extra_max: f64,
    join_mean: f64,
    join_ideal: f64,
    join_extra_max: f64,
}

fn measure(
    algorithm: &Algorithm,
    clusters: &[Vec<String>],
    joiners: &[Vec<String>],
    per_shard: &[u64],
) -> Figures {
    let total: u64 = per_shard.iter().sum();
    let mut f = Figures::default();
    let (mut leaves, mut joins) = (0usize, 0usize);
    let (mut leave_ideal, mut join_ideal) = (0.0, 0.0);
    for (members, joiners) in clusters.iter().zip(joiners) {
        let members = sorted(members);
        let before = owners_by_name(algorithm, &members);
        if algorithm.name == CHOSEN {
            let library = Placement::new(SHARDS, &members).expect("valid members");
            let library: Vec<&str> = (0..SHARDS).map(|s| library.owner(s)).collect();
            assert_eq!(
                library, before,
                "the example's copy of the chosen rule drifted"
            );
        }

        let (dev, sh) = balance(&before, &members, per_shard);
        f.balance_worst = f.balance_worst.max(dev);
        f.shard_balance_worst = f.shard_balance_worst.max(sh);
        f.balance_mean += dev / clusters.len() as f64;
        f.shard_balance_mean += sh / clusters.len() as f64;

        for leaving in &members {
            let rest: Vec<String> = members.iter().filter(|m| *m != leaving).cloned().collect();
            let after = owners_by_name(algorithm, &rest);
            let moved = moved_share(&before, &after, per_shard, total);
            let own: u64 = shards_owned(&before, leaving).map(|s| per_shard[s]).sum();
            let ideal = own as f64 / total as f64;
            leave_ideal += ideal;
            f.leave_mean += moved;
            f.leave_extra_max = f.leave_extra_max.max(moved - ideal);
            leaves += 1;
        }
        for joiner in joiners {
            let mut more = members.clone();
            more.push(joiner.clone());
            let more = sorted(&more);
            let after = owners_by_name(algorithm, &more);
            let moved = moved_share(&before, &after, per_shard, total);
            let gained: u64 = shards_owned(&after, joiner).map(|s| per_shard[s]).sum();
            let ideal = gained as f64 / total as f64;
            join_ideal += ideal;
            f.join_mean += moved;
            f.join_extra_max = f.join_extra_max.max(moved - ideal);
            joins += 1;
        }
    }
    f.leave_mean /= leaves as f64;
    f.leave_ideal = leave_ideal / leaves as f64;
    f.join_mean /= joins as f64;
    f.join_ideal = join_ideal / joins as f64;
    f
}

fn sorted(members: &[String]) -> Vec<String> {
    let mut members = members.to_vec();
    members.sort();
    members
}

fn owners_by_name<'a>(algorithm: &Algorithm, members: &'a [String]) -> Vec<&'a str> {
    (algorithm.rule)(SHARDS, members)
        .into_iter()
        .map(|i| members[i].as_str())
        .collect()
}

fn shards_owned<'a>(owners: &'a [&str], member: &'a str) -> impl Iterator<Item = usize> + 'a {
    owners
        .iter()
        .enumerate()
        .filter(move |(_, o)| **o == member)
        .map(|(s, _)| s)
}

/// (busiest node's devices ÷ mean, busiest node's shards ÷ mean).
fn balance(owners: &[&str], members: &[String], per_shard: &[u64]) -> (f64, f64) {
    let mut devices = vec![0u64; members.len()];
    let mut shards = vec![0u64; members.len()];
    for (shard, owner) in owners.iter().enumerate() {
        let i = members.iter().position(|m| m == owner).expect("a member");
        devices[i] += per_shard[shard];
        shards[i] += 1;
    }
    let worst = |v: &[u64]| {
        let mean = v.iter().sum::<u64>() as f64 / v.len() as f64;
        *v.iter().max().expect("members") as f64 / mean
    };
    (worst(&devices), worst(&shards))
}

fn moved_share(before: &[&str], after: &[&str], per_shard: &[u64], total: u64) -> f64 {
    let moved: u64 = before
        .iter()
        .zip(after)
        .enumerate()
        .filter(|(_, (b, a))| b != a)
        .map(|(s, _)| per_shard[s])
        .sum();
    moved as f64 / total as f64
}

fn time_assignment(algorithm: &Algorithm, nodes: usize) -> f64 {
    let members: Vec<String> = (1..=nodes).map(|i| format!("node-{i}")).collect();
    let start = Instant::now();
    for _ in 0..TIMING_ROUNDS {
        std::hint::black_box((algorithm.rule)(SHARDS, std::hint::black_box(&members)));
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(TIMING_ROUNDS)
}

fn time_library(nodes: usize) -> f64 {
    let members: Vec<String> = (1..=nodes).map(|i| format!("node-{i}")).collect();
    let start = Instant::now();
    for _ in 0..TIMING_ROUNDS {
        std::hint::black_box(Placement::new(SHARDS, std::hint::black_box(&members)).ok());
    }
    start.elapsed().as_secs_f64() * 1e6 / f64::from(TIMING_ROUNDS)
}

fn round(x: f64, digits: i32) -> f64 {
    let p = 10f64.powi(digits);
    (x * p).round() / p
}

// ---- the rules -------------------------------------------------------------------------

fn score(member: &str, shard: u32) -> u64 {
    xxh3_64_with_seed(member.as_bytes(), u64::from(shard))
}

/// A virtual-node ring from the `consistent_hash` crate (SipHash-1-3 over `std::hash`):
/// each node gets `vnodes` points; a shard goes to the first point after its hash.
fn ring(shards: u32, members: &[String], vnodes: usize) -> Vec<usize> {
    let ring = StaticHashRing::new(
        DefaultHash,
        members
            .iter()
            .enumerate()
            .map(|(i, m)| Node::new(m.clone()).value(i).quantity(vnodes)),
    );
    (0..shards)
        .map(|s| ring.calc_candidates(&s).next().expect("a node").value)
        .collect()
}

/// Plain rendezvous (highest random weight): each shard to its highest-scoring node.
fn rendezvous(shards: u32, members: &[String]) -> Vec<usize> {
    (0..shards)
        .map(|s| {
            (0..members.len())
                .max_by_key(|&i| (score(&members[i], s), std::cmp::Reverse(i)))
                .expect("a member")
        })
        .collect()
}

fn capacity(shards: u32, members: usize, headroom: u64) -> usize {
    (u64::from(shards) * (100 + headroom)).div_ceil(100 * members as u64) as usize
}

/// Bounded-load rendezvous, pairs in global score order (what `Placement` does).
fn bounded(shards: u32, members: &[String], headroom: u64) -> Vec<usize> {
    let cap = capacity(shards, members.len(), headroom);
    // Score, then shard, then member, packed so that the sort compares integers.
    let mut pairs: Vec<u128> = (0..members.len())
        .flat_map(|i| (0..shards).map(move |s| (s, i)))
        .map(|(s, i)| {
            u128::from(score(&members[i], s)) << 64 | u128::from(!s) << 32 | u128::from(!(i as u32))
        })
        .collect();
    pairs.sort_unstable();
    let mut owners = vec![usize::MAX; shards as usize];
    let mut load = vec![0usize; members.len()];
    for key in pairs.into_iter().rev() {
        let (s, i) = (!(key >> 32) as u32, !key as u32 as usize);
        if owners[s as usize] == usize::MAX && load[i] < cap {
            owners[s as usize] = i;
            load[i] += 1;
        }
    }
    owners
}

/// Bounded-load rendezvous, shards in index order: shard 0 takes its best node with room,
/// then shard 1, and so on.
fn bounded_in_shard_order(shards: u32, members: &[String], headroom: u64) -> Vec<usize> {
    let cap = capacity(shards, members.len(), headroom);
    let mut load = vec![0usize; members.len()];
    (0..shards)
        .map(|s| {
            let mut ranked: Vec<usize> = (0..members.len()).collect();
            ranked.sort_unstable_by_key(|&i| (std::cmp::Reverse(score(&members[i], s)), i));
            let i = ranked
                .into_iter()
                .find(|&i| load[i] < cap)
                .expect("room somewhere");
            load[i] += 1;
            i
        })
        .collect()
}

/// A draft in the manner of Maglev: the nodes take turns, each taking its highest-scoring
/// shard not yet taken. Counts differ by at most one.
fn draft(shards: u32, members: &[String]) -> Vec<usize> {
    let prefs: Vec<Vec<u32>> = members
        .iter()
        .map(|m| {
            let mut p: Vec<u32> = (0..shards).collect();
            p.sort_unstable_by_key(|&s| (std::cmp::Reverse(score(m, s)), s));
            p
        })
        .collect();
    let mut next = vec![0usize; members.len()];
    let mut owners = vec![usize::MAX; shards as usize];
    let mut left = shards as usize;
    'outer: loop {
        for i in 0..members.len() {
            while owners[prefs[i][next[i]] as usize] != usize::MAX {
                next[i] += 1;
            }
            owners[prefs[i][next[i]] as usize] = i;
            left -= 1;
            if left == 0 {
                break 'outer;
            }
        }
    }
    owners
}
