//! The webhook delivery log over the CQL wire, against [`FakeNode`] with a handler that
//! plays the tables the log's statements touch (`devices` as far as creating and
//! deleting goes, `devices_by_shard`, `deliveries`, `delivered_by_day`) the way CQL
//! defines them: rows in clustering order, static columns per partition, a conditional
//! batch applied whole when its `IF version = ?` holds (null for a partition never
//! written), not at all otherwise.
//!
//! So the store's own logic (the compare-and-sets, the tally, the due copies and
//! markers, pruning) runs the conformance checks end to end, and every bound value is
//! checked against the types the schema declares. What this cannot prove is that a real
//! ScyllaDB evaluates the same CQL the same way: the conformance suite with `SCYLLA_URI`
//! does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::join_all;

use super::delivery_partition::{AGE, CLAIM, DELIVERY, DUE};
use super::fake_node::{Answer, FakeNode, Value};
use super::proxy_tests::{KEYSPACE, connect, device_row};
use super::statements as st;
use crate::store::{DeliveryStatus, NewDelivery, Store, StoreError, conformance};

/// A clustering key of `deliveries`: (row_kind, seq, event_id).
type Key = (String, i64, String);

#[derive(Default)]
struct Partition {
    /// version, pending, failed, dead, due_floor, oldest_due_ms.
    statics: Option<Vec<Value>>,
    /// A delivery's columns (as `delivery_columns!`) or a mark's `event_seq`.
    rows: BTreeMap<Key, Vec<Value>>,
}

#[derive(Default)]
struct Tables {
    /// Device id → desired_running.
    devices: BTreeMap<String, bool>,
    /// Shard → device ids.
    shard_entries: BTreeMap<i64, BTreeSet<String>>,
    deliveries: BTreeMap<String, Partition>,
    /// (day, bucket, created_at_ms, device_id, seq, event_id).
    delivered: BTreeSet<(i64, i64, i64, String, i64, String)>,
    /// Conditional batches of `deliveries` refused (another writer came between).
    refused: usize,
}

fn big(v: &Value) -> i64 {
    v.as_big().unwrap_or_else(|| panic!("not a bigint: {v:?}"))
}

fn text(v: &Value) -> String {
    v.as_text()
        .unwrap_or_else(|| panic!("not text: {v:?}"))
        .to_owned()
}

fn limit(v: &Value) -> usize {
    match v {
        Value::Int(n) => usize::try_from(*n).expect("a positive limit"),
        other => panic!("LIMIT bound as {other:?}"),
    }
}

fn rows(rows: Vec<Vec<Value>>) -> Option<Answer> {
    Some(Answer::Rows(rows))
}

impl Tables {
    fn partition(&mut self, device_id: &Value) -> &mut Partition {
        self.deliveries.entry(text(device_id)).or_default()
    }

    /// The rows of `kind` of a partition, in clustering order.
    fn of_kind(&self, device_id: &Value, kind: &str) -> Vec<(Key, Vec<Value>)> {
        self.deliveries
            .get(&text(device_id))
            .map(|p| {
                p.rows
                    .iter()
                    .filter(|((k, _, _), _)| k == kind)
                    .map(|(key, row)| (key.clone(), row.clone()))
                    .collect()
            })
            .unwrap_or_default()
    }

    fn handle(&mut self, name: &str, v: &[Value]) -> Option<Answer> {
        match name {
            "insert_device" => {
                let id = text(&v[0]);
                if self.devices.contains_key(&id) {
                    return Some(Answer::Applied(false));
                }
                let Value::Boolean(running) = v[8] else {
                    panic!("desired_running: {:?}", v[8]);
                };
                self.devices.insert(id, running);
                Some(Answer::Applied(true))
            }
            "select_device" | "select_device_serial" => {
                let id = text(&v[0]);
                rows(
                    self.devices
                        .get(&id)
                        .map(|running| device_row(&id, *running))
                        .into_iter()
                        .collect(),
                )
            }
            "delete_device" => Some(Answer::Applied(self.devices.remove(&text(&v[0])).is_some())),
            "put_shard_entry" => {
                self.shard_entries
                    .entry(big(&v[0]))
                    .or_default()
                    .insert(text(&v[1]));
                Some(Answer::Void)
            }
            "delete_shard_entry" => {
                if let Some(ids) = self.shard_entries.get_mut(&big(&v[0])) {
                    ids.remove(&text(&v[1]));
                }
                Some(Answer::Void)
            }
            "shard_entries" => rows(
                self.shard_entries
                    .get(&big(&v[0]))
                    .into_iter()
                    .flatten()
                    .map(|id| vec![Value::text(id), Value::Boolean(true)])
                    .collect(),
            ),
            "delete_deliveries" => {
                self.deliveries.remove(&text(&v[0]));
                Some(Answer::Void)
            }
            "select_delivery_tally" | "select_delivery_tally_serial" => rows(
                self.deliveries
                    .get(&text(&v[0]))
                    .map(|p| p.statics.clone().unwrap_or_else(|| vec![Value::Null; 6]))
                    .into_iter()
                    .collect(),
            ),
            "select_delivery_claim_serial" => {
                let key = (CLAIM.to_owned(), 0, text(&v[1]));
                let p = self.deliveries.get(&text(&v[0]));
                rows(
                    p.and_then(|p| p.rows.get(&key))
                        .cloned()
                        .into_iter()
                        .collect(),
                )
            }
            "select_delivery_serial" => {
                let key = (DELIVERY.to_owned(), big(&v[1]), text(&v[2]));
                let p = self.deliveries.get(&text(&v[0]));
                let found = p.and_then(|p| {
                    let row = p.rows.get(&key)?;
                    let statics = p.statics.clone().unwrap_or_else(|| vec![Value::Null; 6]);
                    Some([row.clone(), statics].concat())
                });
                rows(found.into_iter().collect())
            }
            "delivery_marks_serial" => {
                let from = big(&v[2]);
                rows(
                    self.of_kind(&v[0], &text(&v[1]))
                        .into_iter()
                        .filter(|((_, seq, _), _)| *seq >= from)
                        .take(limit(&v[3]))
                        .map(|((_, seq, event_id), _)| {
                            vec![Value::BigInt(seq), Value::text(&event_id)]
                        })
                        .collect(),
                )
            }
            "due_deliveries" => {
                let from = big(&v[1]);
                rows(
                    self.of_kind(&v[0], DUE)
                        .into_iter()
                        .filter(|((_, seq, _), _)| *seq >= from)
                        .take(limit(&v[2]))
                        .map(|(_, row)| row)
                        .collect(),
                )
            }
            "list_deliveries" | "list_deliveries_by_status" => {
                let before = big(&v[1]);
                let (status, n) = if name == "list_deliveries" {
                    (None, limit(&v[2]))
                } else {
                    (Some(v[2].clone()), limit(&v[3]))
                };
                rows(
                    self.of_kind(&v[0], DELIVERY)
                        .into_iter()
                        .rev()
                        .filter(|((_, seq, _), row)| {
                            *seq < before && status.as_ref().is_none_or(|s| row[7] == *s)
                        })
                        .take(n)
                        .map(|(_, row)| row)
                        .collect(),
                )
            }
            "delivery_tallies" => rows(
                self.deliveries
                    .iter()
                    .filter_map(|(id, p)| {
                        let s = p.statics.as_ref()?;
                        Some(vec![
                            Value::text(id),
                            s[1].clone(),
                            s[2].clone(),
                            s[3].clone(),
                            s[5].clone(),
                        ])
                    })
                    .collect(),
            ),
            "set_delivery_tally" => {
                let p = self.partition(&v[6]);
                let current = p.statics.as_ref().map_or(Value::Null, |s| s[0].clone());
                if current != v[7] {
                    self.refused += 1;
                    return Some(Answer::Applied(false));
                }
                p.statics = Some(v[..6].to_vec());
                Some(Answer::Applied(true))
            }
            "put_delivery" => {
                let key = (text(&v[1]), big(&v[2]), text(&v[3]));
                let row = [vec![v[0].clone()], v[2..].to_vec()].concat();
                self.partition(&v[0]).rows.insert(key, row);
                Some(Answer::Void)
            }
            "put_delivery_mark" => {
                let key = (text(&v[1]), big(&v[2]), text(&v[3]));
                self.partition(&v[0]).rows.insert(key, vec![v[4].clone()]);
                Some(Answer::Void)
            }
            "delete_delivery_row" => {
                let key = (text(&v[1]), big(&v[2]), text(&v[3]));
                self.partition(&v[0]).rows.remove(&key);
                Some(Answer::Void)
            }
            "put_delivered_entry" | "delete_delivered_entry" => {
                let entry = (
                    big(&v[0]),
                    big(&v[1]),
                    big(&v[2]),
                    text(&v[3]),
                    big(&v[4]),
                    text(&v[5]),
                );
                if name == "put_delivered_entry" {
                    self.delivered.insert(entry);
                } else {
                    self.delivered.remove(&entry);
                }
                Some(Answer::Void)
            }
            "delivered_days" => {
                let partitions: BTreeSet<(i64, i64)> =
                    self.delivered.iter().map(|e| (e.0, e.1)).collect();
                rows(
                    partitions
                        .into_iter()
                        .map(|(day, bucket)| vec![Value::BigInt(day), Value::BigInt(bucket)])
                        .collect(),
                )
            }
            "delivered_entries" => {
                let (day, bucket, before) = (big(&v[0]), big(&v[1]), big(&v[2]));
                rows(
                    self.delivered
                        .iter()
                        .filter(|e| e.0 == day && e.1 == bucket && e.2 < before)
                        .take(limit(&v[3]))
                        .map(|e| {
                            vec![
                                Value::BigInt(e.2),
                                Value::text(&e.3),
                                Value::BigInt(e.4),
                                Value::text(&e.5),
                            ]
                        })
                        .collect(),
                )
            }
            _ => None,
        }
    }

    /// Every partition's static tally, due copies and markers agree with its deliveries.
    fn check_invariants(&self) {
        for (device_id, p) in &self.deliveries {
            let status = |row: &[Value]| {
                DeliveryStatus::parse(row[7].as_text().expect("status")).expect("a status")
            };
            let deliveries: Vec<(&Key, &Vec<Value>)> = p
                .rows
                .iter()
                .filter(|((k, _, _), _)| k == DELIVERY)
                .collect();
            let due: Vec<(&Key, &Vec<Value>)> = deliveries
                .iter()
                .copied()
                .filter(|(_, row)| status(row).is_due())
                .collect();
            let copies: Vec<(Key, Vec<Value>)> = p
                .rows
                .iter()
                .filter(|((k, _, _), _)| k == DUE)
                .map(|((_, seq, e), row)| ((DELIVERY.to_owned(), *seq, e.clone()), row.clone()))
                .collect();
            let expected: Vec<(Key, Vec<Value>)> = due
                .iter()
                .map(|(key, row)| ((*key).clone(), (*row).clone()))
                .collect();
            assert_eq!(
                copies, expected,
                "{device_id}: the due copies are the due rows"
            );
            let ages: BTreeSet<(i64, String)> = p
                .rows
                .keys()
                .filter(|(k, _, _)| k == AGE)
                .map(|(_, at, e)| (*at, e.clone()))
                .collect();
            let due_ages: BTreeSet<(i64, String)> = due
                .iter()
                .map(|((_, _, e), row)| (big(&row[6]), e.clone()))
                .collect();
            assert_eq!(
                ages, due_ages,
                "{device_id}: one age marker per due delivery"
            );
            let claims: BTreeSet<String> = p
                .rows
                .keys()
                .filter(|(k, _, _)| k == CLAIM)
                .map(|(_, _, e)| e.clone())
                .collect();
            let recorded: BTreeSet<String> =
                deliveries.iter().map(|((_, _, e), _)| e.clone()).collect();
            assert_eq!(claims, recorded, "{device_id}: one claim per delivery");
            let count = |s: DeliveryStatus| {
                Value::BigInt(
                    deliveries
                        .iter()
                        .filter(|(_, row)| status(row) == s)
                        .count() as i64,
                )
            };
            let statics = p.statics.as_ref().expect("a written partition has a tally");
            assert_eq!(
                statics[1..4],
                [
                    count(DeliveryStatus::Pending),
                    count(DeliveryStatus::Failed),
                    count(DeliveryStatus::Dead)
                ],
                "{device_id}: counts"
            );
            let floor = due.iter().map(|((_, seq, _), _)| *seq).min();
            let oldest = due.iter().map(|(_, row)| big(&row[6])).min();
            let opt = |v: Option<i64>| v.map_or(Value::Null, Value::BigInt);
            assert_eq!(
                statics[4..6],
                [opt(floor), opt(oldest)],
                "{device_id}: lowest due seq and oldest due time"
            );
        }
    }
}

async fn start() -> (FakeNode, Arc<Mutex<Tables>>) {
    FakeNode::over(KEYSPACE, Tables::default(), Tables::handle).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_delivery_log_passes_the_conformance_checks_over_the_wire() {
    let (node, tables) = start().await;
    let store = connect(&node, Duration::from_secs(5)).await;
    conformance::check_delivery_append_and_order(&store).await;
    tables.lock().expect("tables").check_invariants();
    conformance::check_delivery_attempts_and_replay(&store).await;
    tables.lock().expect("tables").check_invariants();
    conformance::check_delivery_devices_backlog_prune(&store).await;
    {
        let tables = tables.lock().expect("tables");
        tables.check_invariants();
        // Pruning dropped the entries it pruned and those of nothing to prune; what stays
        // points at a delivery replayed after it was delivered (due again).
        for (_, _, _, device_id, seq, event_id) in &tables.delivered {
            let row =
                &tables.deliveries[device_id].rows[&(DELIVERY.to_owned(), *seq, event_id.clone())];
            let status = DeliveryStatus::parse(row[7].as_text().expect("status")).expect("status");
            assert!(status.is_due(), "{event_id}: {status:?}");
        }
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_of_one_device_each_get_a_seq_once() {
    let (node, tables) = start().await;
    let store = connect(&node, Duration::from_secs(5)).await;
    tables
        .lock()
        .expect("tables")
        .devices
        .insert("d1".into(), true);
    let event = |i: usize| NewDelivery {
        event_id: format!("ev-{}", i % 12),
        device_id: "d1".into(),
        tenant: "default".into(),
        event: "message.inbound".into(),
        data: "{}".into(),
        created_at_ms: 1_000 - i as i64,
    };
    // 24 appends of 12 events (each twice), 8 at a time.
    for round in 0..3 {
        let appends = (round * 8..round * 8 + 8).map(|i| {
            let store = &store;
            async move { store.append_delivery(&event(i)).await }
        });
        for result in join_all(appends).await {
            result.expect("append");
        }
    }
    let due = store.due_deliveries("d1", 100).await.expect("due");
    let mut ids: Vec<&str> = due.iter().map(|d| d.event_id.as_str()).collect();
    assert!(due.windows(2).all(|w| w[0].seq < w[1].seq), "seq increases");
    ids.sort_unstable();
    ids.dedup();
    assert_eq!(ids.len(), 12, "each event once: {due:?}");
    let backlog = store.delivery_backlog().await.expect("backlog");
    assert_eq!(backlog.pending, 12);
    assert_eq!(backlog.oldest_due_created_ms, Some(1_000 - 11));
    {
        let tables = tables.lock().expect("tables");
        tables.check_invariants();
        println!(
            "{} appends refused by the compare-and-set and tried again",
            tables.refused
        );
    }
    node.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_event_for_a_device_that_does_not_exist_writes_nothing() {
    let (node, tables) = start().await;
    let store = connect(&node, Duration::from_secs(5)).await;
    let result = store
        .append_delivery(&NewDelivery {
            event_id: "ev".into(),
            device_id: "ghost".into(),
            tenant: "default".into(),
            event: "message.inbound".into(),
            data: "{}".into(),
            created_at_ms: 1,
        })
        .await;
    assert!(
        matches!(result, Err(StoreError::NotFound { .. })),
        "{result:?}"
    );
    assert_eq!(node.count(&st::SET_DELIVERY_TALLY), 0);
    assert!(tables.lock().expect("tables").deliveries.is_empty());
    node.stop().await;
}
