use scylla::value::{CqlValue, MaybeUnset};

use super::devices::apply_patch;
use super::fencing::{device_admits, lease_admits};
use super::leases::lease_write;
use super::messages::{advance_statement, advanced};
use super::session::applied_flag;
use super::statements::Bound;
use crate::store::{
    DevicePatch, DeviceRecord, DeviceStatus, Direction, Fence, LeaseSlot, MessageRecord,
    MessageStatus, StoreError,
};

fn slot(holder: Option<&str>, epoch: u64) -> LeaseSlot {
    LeaseSlot {
        shard: 9,
        holder: holder.map(str::to_owned),
        epoch,
        expires_at_ms: 1_000,
    }
}

#[test]
fn the_lease_check_refuses_other_epochs_and_free_shards() {
    let fence = Fence { shard: 9, epoch: 2 };
    assert!(lease_admits(&slot(Some("a"), 2), &fence).is_ok());
    for (held, current) in [(slot(Some("a"), 3), Some(3)), (slot(None, 2), None)] {
        match lease_admits(&held, &fence) {
            Err(StoreError::Fenced {
                shard: 9,
                epoch: 2,
                current: got,
            }) => assert_eq!(got, current),
            other => panic!("expected Fenced, got {other:?}"),
        }
    }
}

#[test]
fn the_device_fence_only_rises() {
    let fence = Fence { shard: 9, epoch: 2 };
    assert_eq!(device_admits(&fence, 0).ok(), Some(2));
    assert_eq!(device_admits(&fence, 2).ok(), Some(2));
    assert!(matches!(
        device_admits(&fence, 3),
        Err(StoreError::Fenced {
            current: Some(3),
            ..
        })
    ));
}

#[test]
fn lease_writes_create_a_missing_row_and_compare_the_whole_slot_otherwise() {
    let vacant = LeaseSlot::vacant(9);
    let mut granted = vacant.clone();
    granted.acquire("a", 0, 10);
    let (statement, values) = lease_write(&vacant, false, &granted).expect("write");
    assert_eq!(statement.name, "insert_lease");
    assert_eq!(values.len(), 4);

    let mut released = granted.clone();
    assert!(released.release("a", 1));
    let (statement, values) = lease_write(&granted, true, &released).expect("write");
    assert_eq!(statement.name, "update_lease");
    let text = |v: &Bound| match v {
        MaybeUnset::Set(Some(CqlValue::Text(s))) => s.clone(),
        other => panic!("not text: {other:?}"),
    };
    assert_eq!(text(&values[0]), "", "a released slot stores holder ''");
    assert_eq!(text(&values[4]), "a", "the condition is the slot as read");
    assert!(matches!(
        values[5],
        MaybeUnset::Set(Some(CqlValue::BigInt(1)))
    ));
}

#[test]
fn applied_is_read_by_name() {
    let names = vec!["[applied]".to_owned(), "version".to_owned()];
    let yes = [Some(CqlValue::Boolean(true)), None];
    let no = [Some(CqlValue::Boolean(false)), Some(CqlValue::BigInt(4))];
    assert!(applied_flag("s", &names, Some(&yes)).expect("flag"));
    assert!(!applied_flag("s", &names, Some(&no)).expect("flag"));
    for (names, row) in [
        (vec!["version".to_owned()], Some(&no[..])),
        (names.clone(), None),
        (names.clone(), Some(&[None][..])),
    ] {
        assert!(matches!(
            applied_flag("s", &names, row),
            Err(StoreError::Corrupt(_))
        ));
    }
}

#[test]
fn an_advance_sets_the_status_its_time_and_only_a_given_error() {
    let m = MessageRecord {
        id: "m".into(),
        device_id: "d".into(),
        direction: Direction::Outbound,
        peer_phone: "+1".into(),
        text: "t".into(),
        status: MessageStatus::Failed,
        error: Some("boom".into()),
        idempotency_key: None,
        created_at_ms: 1,
        not_before_ms: None,
        sent_at_ms: None,
        delivered_at_ms: None,
        read_at_ms: None,
        failed_at_ms: Some(5),
    };
    let after = advanced(m.clone(), MessageStatus::Delivered, 9, None);
    assert_eq!(
        (after.status, after.delivered_at_ms, after.error.as_deref()),
        (MessageStatus::Delivered, Some(9), Some("boom"))
    );
    let after = advanced(m, MessageStatus::Read, 10, Some("late"));
    assert_eq!(after.error.as_deref(), Some("late"));
    assert_eq!(
        advance_statement(MessageStatus::Queued).map(|s| s.name),
        None
    );
}

#[test]
fn a_patch_writes_only_its_fields() {
    let mut d = DeviceRecord {
        id: "d".into(),
        name: "n".into(),
        tenant: "t".into(),
        status: DeviceStatus::Ready,
        status_reason: Some("r".into()),
        trust_level: crate::store::TrustLevel::Newcomer,
        phone: Some("+1".into()),
        webhook: None,
        desired_running: true,
        created_at_ms: 1,
        updated_at_ms: 1,
        last_connected_at_ms: Some(3),
    };
    let before = d.clone();
    apply_patch(
        &mut d,
        &DevicePatch {
            phone: Some(None),
            ..DevicePatch::default()
        },
        7,
    );
    assert_eq!(
        d,
        DeviceRecord {
            phone: None,
            updated_at_ms: 7,
            ..before
        }
    );
}
