//! [`FakeTables`] runs the store's CQL with CQL's meaning, and refuses what it does not
//! model.

use super::*;
use crate::store::scylla::statements as st;

fn t(v: &str) -> Value {
    Value::text(v)
}

fn run(tables: &mut FakeTables, s: &Statement, values: &[Value]) -> Answer {
    tables
        .handle(s.name, values)
        .expect("a statement of the store")
}

fn applied(answer: Answer) -> bool {
    match answer {
        Answer::Applied(applied) => applied,
        other => panic!("expected [applied], got {other:?}"),
    }
}

fn rows(answer: Answer) -> Vec<Vec<Value>> {
    match answer {
        Answer::Rows(rows) => rows,
        other => panic!("expected rows, got {other:?}"),
    }
}

#[test]
fn conditions_decide_whether_a_write_applies() {
    let mut tables = FakeTables::new();
    let record = [t("key"), t("k1"), Value::Null, t("{}"), Value::BigInt(1)];
    assert!(applied(run(&mut tables, &st::CREATE_ACCESS, &record)));
    assert!(!applied(run(&mut tables, &st::CREATE_ACCESS, &record)));
    let update = [t("t1"), t("{\"a\":1}"), Value::BigInt(2), t("key"), t("k2")];
    assert!(!applied(run(&mut tables, &st::UPDATE_ACCESS, &update)));
    assert_eq!(tables.rows("access"), 1, "a failed update creates nothing");
    let update = [t("t1"), t("{\"a\":1}"), Value::BigInt(2), t("key"), t("k1")];
    assert!(applied(run(&mut tables, &st::UPDATE_ACCESS, &update)));
    let got = rows(run(&mut tables, &st::GET_ACCESS, &[t("key"), t("k1")]));
    assert_eq!(got, [vec![t("t1"), t("{\"a\":1}"), Value::BigInt(2)]]);
    assert!(rows(run(&mut tables, &st::GET_ACCESS, &[t("user"), t("k1")])).is_empty());
    assert!(applied(run(
        &mut tables,
        &st::DELETE_ACCESS,
        &[t("key"), t("k1")]
    )));
    assert!(!applied(run(
        &mut tables,
        &st::DELETE_ACCESS,
        &[t("key"), t("k1")]
    )));
    assert_eq!(tables.rows("access"), 0);
}

#[test]
fn reads_follow_clustering_order_bounds_and_limit() {
    let mut tables = FakeTables::new();
    for id in ["b", "d", "a", "c"] {
        let record = [t("key"), t(id), Value::Null, t("{}"), Value::BigInt(1)];
        run(&mut tables, &st::CREATE_ACCESS, &record);
    }
    let page = rows(run(
        &mut tables,
        &st::LIST_ACCESS,
        &[t("key"), t("a"), Value::Int(2)],
    ));
    let ids: Vec<&Value> = page.iter().map(|row| &row[0]).collect();
    assert_eq!(ids, [&t("b"), &t("c")], "after a, two, in order");
    for hour in [7, 3, 5] {
        run(&mut tables, &st::PUT_AUDIT_HOUR, &[Value::BigInt(hour)]);
    }
    let hours = rows(run(
        &mut tables,
        &st::AUDIT_HOURS,
        &[Value::BigInt(4), Value::BigInt(7), Value::Int(10)],
    ));
    assert_eq!(hours, [vec![Value::BigInt(5)], vec![Value::BigInt(7)]]);
}

#[test]
fn a_partition_of_static_columns_reads_as_one_row_and_is_compared_and_set() {
    let mut tables = FakeTables::new();
    let mut device = vec![t("d1"), t("name"), t("default"), t("STOPPED"), Value::Null];
    device.extend([
        t("newcomer"),
        Value::Null,
        Value::Null,
        Value::Boolean(false),
    ]);
    device.extend([Value::BigInt(1), Value::BigInt(1), Value::Null]);
    assert!(applied(run(&mut tables, &st::INSERT_DEVICE, &device)));
    assert!(!applied(run(&mut tables, &st::INSERT_DEVICE, &device)));
    let read = rows(run(&mut tables, &st::SELECT_DEVICE, &[t("d1")]));
    assert_eq!(read.len(), 1);
    assert_eq!(read[0][3], t("STOPPED"));
    assert_eq!(
        read[0][12..],
        [Value::BigInt(0), Value::BigInt(0)],
        "literals"
    );
    let mut patch = vec![Value::Unset, t("READY")];
    patch.extend(std::iter::repeat_n(Value::Unset, 6));
    patch.extend([
        Value::BigInt(5),
        Value::BigInt(1),
        Value::BigInt(0),
        t("d1"),
    ]);
    let stale = [patch.clone(), vec![Value::BigInt(9)]].concat();
    assert!(!applied(run(&mut tables, &st::PATCH_DEVICE, &stale)));
    let current = [patch, vec![Value::BigInt(0)]].concat();
    assert!(applied(run(&mut tables, &st::PATCH_DEVICE, &current)));
    let read = rows(run(&mut tables, &st::SELECT_DEVICE, &[t("d1")]));
    assert_eq!((&read[0][1], &read[0][3]), (&t("name"), &t("READY")));
    assert_eq!(read[0][12], Value::BigInt(1));
}

#[test]
fn what_it_cannot_run_is_an_error() {
    let mut tables = FakeTables::new();
    // ORDER BY is not modelled: refused, not guessed.
    let answer = run(
        &mut tables,
        &st::LIST_DELIVERIES,
        &[t("d1"), Value::BigInt(1), Value::Int(1)],
    );
    assert!(matches!(answer, Answer::Error(..)), "{answer:?}");
    let answer = run(&mut tables, &st::GET_ACCESS, &[t("key")]);
    assert!(
        matches!(answer, Answer::Error(..)),
        "too few values: {answer:?}"
    );
}
