//! Rows as ScyllaDB returns them, decoded into records; anything unexpected is
//! [`StoreError::Corrupt`].
//!
//! Decoders take the untyped columns (`Vec<Option<CqlValue>>`) in the order of their
//! statement's SELECT list, so they are tested here without a server.

use scylla::value::CqlValue;

use super::super::{
    AccessKind, AccessRecord, AuditEntry, DeliveryRecord, DeliveryStatus, DeviceRecord,
    DeviceStatus, Direction, LeaseSlot, MessageRecord, MessageStatus, SealedBlob, StoreError,
    TrustLevel,
};

/// The columns of one row.
pub(crate) type Columns = [Option<CqlValue>];

fn corrupt(message: String) -> StoreError {
    StoreError::Corrupt(message)
}

fn at<'a>(row: &'a Columns, index: usize, what: &str) -> Result<&'a Option<CqlValue>, StoreError> {
    row.get(index)
        .ok_or_else(|| corrupt(format!("row has no column {index} ({what})")))
}

pub(crate) fn opt_text(
    row: &Columns,
    index: usize,
    what: &str,
) -> Result<Option<String>, StoreError> {
    match at(row, index, what)? {
        None => Ok(None),
        Some(CqlValue::Text(s) | CqlValue::Ascii(s)) => Ok(Some(s.clone())),
        Some(other) => Err(corrupt(format!("{what} is not text: {other:?}"))),
    }
}

pub(crate) fn text(row: &Columns, index: usize, what: &str) -> Result<String, StoreError> {
    opt_text(row, index, what)?.ok_or_else(|| corrupt(format!("{what} is null")))
}

pub(crate) fn opt_big(row: &Columns, index: usize, what: &str) -> Result<Option<i64>, StoreError> {
    match at(row, index, what)? {
        None => Ok(None),
        Some(CqlValue::BigInt(v)) => Ok(Some(*v)),
        Some(other) => Err(corrupt(format!("{what} is not a bigint: {other:?}"))),
    }
}

pub(crate) fn big(row: &Columns, index: usize, what: &str) -> Result<i64, StoreError> {
    opt_big(row, index, what)?.ok_or_else(|| corrupt(format!("{what} is null")))
}

pub(crate) fn opt_boolean(
    row: &Columns,
    index: usize,
    what: &str,
) -> Result<Option<bool>, StoreError> {
    match at(row, index, what)? {
        None => Ok(None),
        Some(CqlValue::Boolean(v)) => Ok(Some(*v)),
        Some(other) => Err(corrupt(format!("{what} is not a boolean: {other:?}"))),
    }
}

fn boolean(row: &Columns, index: usize, what: &str) -> Result<bool, StoreError> {
    opt_boolean(row, index, what)?.ok_or_else(|| corrupt(format!("{what} is null")))
}

fn bytes(row: &Columns, index: usize, what: &str) -> Result<Vec<u8>, StoreError> {
    match at(row, index, what)? {
        Some(CqlValue::Blob(v)) => Ok(v.clone()),
        // An empty blob may come back as null.
        None => Ok(Vec::new()),
        Some(other) => Err(corrupt(format!("{what} is not a blob: {other:?}"))),
    }
}

fn parsed<T>(
    row: &Columns,
    index: usize,
    what: &str,
    parse: fn(&str) -> Option<T>,
) -> Result<T, StoreError> {
    let raw = text(row, index, what)?;
    parse(&raw).ok_or_else(|| corrupt(format!("unknown {what} {raw:?}")))
}

/// A `u64` stored in a bigint (epochs, versions).
pub(crate) fn unsigned(row: &Columns, index: usize, what: &str) -> Result<u64, StoreError> {
    let value = big(row, index, what)?;
    u64::try_from(value).map_err(|_| corrupt(format!("negative {what} {value}")))
}

/// A device row and its partition's write counter and fence, as [`super::statements::SELECT_DEVICE`]
/// returns them; `None` for a partition without a device (no `created_at_ms`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DeviceState {
    pub(crate) device: DeviceRecord,
    /// How many writes the partition has had; every write is a compare-and-set on it.
    pub(crate) version: i64,
    /// The highest lease epoch a fenced write of this device has carried.
    pub(crate) fence_epoch: u64,
}

pub(crate) fn device_state(row: &Columns) -> Result<Option<DeviceState>, StoreError> {
    if at(row, 9, "created_at_ms")?.is_none() {
        return Ok(None);
    }
    let device = DeviceRecord {
        id: text(row, 0, "device id")?,
        name: text(row, 1, "device name")?,
        tenant: text(row, 2, "tenant")?,
        status: parsed(row, 3, "device status", DeviceStatus::parse)?,
        status_reason: opt_text(row, 4, "status reason")?,
        trust_level: parsed(row, 5, "trust level", TrustLevel::parse)?,
        phone: opt_text(row, 6, "phone")?,
        webhook: opt_text(row, 7, "webhook")?,
        desired_running: boolean(row, 8, "desired_running")?,
        created_at_ms: big(row, 9, "created_at_ms")?,
        updated_at_ms: big(row, 10, "updated_at_ms")?,
        last_connected_at_ms: opt_big(row, 11, "last_connected_at_ms")?,
    };
    Ok(Some(DeviceState {
        device,
        version: big(row, 12, "device version")?,
        fence_epoch: unsigned(row, 13, "device fence epoch")?,
    }))
}

pub(crate) fn message(row: &Columns) -> Result<MessageRecord, StoreError> {
    Ok(MessageRecord {
        device_id: text(row, 0, "message device id")?,
        id: text(row, 1, "message id")?,
        direction: parsed(row, 2, "message direction", Direction::parse)?,
        peer_phone: text(row, 3, "peer phone")?,
        text: text(row, 4, "message text")?,
        status: parsed(row, 5, "message status", MessageStatus::parse)?,
        error: opt_text(row, 6, "message error")?,
        idempotency_key: opt_text(row, 7, "idempotency key")?,
        created_at_ms: big(row, 8, "created_at_ms")?,
        not_before_ms: opt_big(row, 9, "not_before_ms")?,
        sent_at_ms: opt_big(row, 10, "sent_at_ms")?,
        delivered_at_ms: opt_big(row, 11, "delivered_at_ms")?,
        read_at_ms: opt_big(row, 12, "read_at_ms")?,
        failed_at_ms: opt_big(row, 13, "failed_at_ms")?,
        send_at_ms: opt_big(row, 14, "send_at_ms")?,
        queued_at_ms: opt_big(row, 15, "queued_at_ms")?,
    })
}

/// A sealed blob from (key_version, value) at `first`; `None` if the row has no value
/// (a static-only row).
pub(crate) fn blob(row: &Columns, first: usize) -> Result<Option<SealedBlob>, StoreError> {
    let Some(version) = opt_big(row, first, "key version")? else {
        return Ok(None);
    };
    let key_version = u32::try_from(version)
        .map_err(|_| corrupt(format!("key version {version} out of range")))?;
    Ok(Some(SealedBlob {
        key_version,
        bytes: bytes(row, first + 1, "sealed value")?,
    }))
}

/// A lease slot from (holder, epoch, expires_at_ms); holder `''` is a released lease.
pub(crate) fn lease_slot(shard: u32, row: &Columns) -> Result<LeaseSlot, StoreError> {
    let holder = text(row, 0, "lease holder")?;
    Ok(LeaseSlot {
        shard,
        holder: Some(holder).filter(|h| !h.is_empty()),
        epoch: unsigned(row, 1, "lease epoch")?,
        expires_at_ms: big(row, 2, "lease expiry")?,
    })
}

fn opt_int(row: &Columns, index: usize, what: &str) -> Result<Option<i32>, StoreError> {
    match at(row, index, what)? {
        None => Ok(None),
        Some(CqlValue::Int(v)) => Ok(Some(*v)),
        Some(other) => Err(corrupt(format!("{what} is not an int: {other:?}"))),
    }
}

/// How many columns [`delivery`] reads (the statements' `delivery_columns!`).
pub(crate) const DELIVERY_COLUMNS: usize = 13;

/// A delivery row ('d', or its due copy 'q') in the order of the statements'
/// `delivery_columns!`.
pub(crate) fn delivery(row: &Columns) -> Result<DeliveryRecord, StoreError> {
    let attempts = unsigned(row, 8, "delivery attempts")?;
    let last_status_code = opt_int(row, 10, "delivery last status code")?
        .map(|code| {
            u16::try_from(code).map_err(|_| corrupt(format!("HTTP status {code} out of range")))
        })
        .transpose()?;
    Ok(DeliveryRecord {
        device_id: text(row, 0, "delivery device id")?,
        seq: big(row, 1, "delivery seq")?,
        event_id: text(row, 2, "delivery event id")?,
        tenant: text(row, 3, "delivery tenant")?,
        event: text(row, 4, "delivery event")?,
        data: text(row, 5, "delivery data")?,
        created_at_ms: big(row, 6, "delivery created_at_ms")?,
        status: parsed(row, 7, "delivery status", DeliveryStatus::parse)?,
        attempts: u32::try_from(attempts)
            .map_err(|_| corrupt(format!("delivery attempts {attempts} out of range")))?,
        next_attempt_ms: opt_big(row, 9, "delivery next_attempt_ms")?,
        last_status_code,
        last_error: opt_text(row, 11, "delivery last error")?,
        delivered_at_ms: opt_big(row, 12, "delivery delivered_at_ms")?,
    })
}

/// A deliveries partition's tally: its static columns (see the `deliveries` table in
/// [`super::schema`]). A partition never written has none: `version` is `None` and the
/// counts are 0.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Tally {
    /// How many writes the partition has had; every write is a compare-and-set on it.
    pub(crate) version: Option<i64>,
    pub(crate) pending: i64,
    pub(crate) failed: i64,
    pub(crate) dead: i64,
    /// The lowest `seq` still due, if any is.
    pub(crate) due_floor: Option<i64>,
    /// The oldest `created_at_ms` still due, if any is.
    pub(crate) oldest_due_ms: Option<i64>,
}

impl Tally {
    /// Whether anything of the partition is still to be attempted.
    pub(crate) fn has_due(&self) -> bool {
        self.pending + self.failed > 0
    }
}

/// A tally from the statements' `tally_columns!` at `first`.
pub(crate) fn tally(row: &Columns, first: usize) -> Result<Tally, StoreError> {
    let count = |offset: usize, what: &str| -> Result<i64, StoreError> {
        let value = opt_big(row, first + offset, what)?.unwrap_or(0);
        if value < 0 {
            return Err(corrupt(format!("negative {what} {value}")));
        }
        Ok(value)
    };
    Ok(Tally {
        version: opt_big(row, first, "deliveries version")?,
        pending: count(1, "pending count")?,
        failed: count(2, "failed count")?,
        dead: count(3, "dead count")?,
        due_floor: opt_big(row, first + 4, "due floor")?,
        oldest_due_ms: opt_big(row, first + 5, "oldest due time")?,
    })
}

/// A shard number stored in a bigint.
pub(crate) fn shard(row: &Columns, index: usize) -> Result<u32, StoreError> {
    let value = big(row, index, "shard")?;
    u32::try_from(value).map_err(|_| corrupt(format!("shard {value} out of range")))
}

/// A directory record of `kind` from (tenant, body, updated_at_ms) at `first`, as
/// [`super::statements::GET_ACCESS`] returns them (and `LIST_ACCESS` after the id).
pub(crate) fn access_record(
    kind: AccessKind,
    id: String,
    row: &Columns,
    first: usize,
) -> Result<AccessRecord, StoreError> {
    Ok(AccessRecord {
        kind,
        tenant: opt_text(row, first, "access tenant")?,
        body: text(row, first + 1, "access body")?,
        updated_at_ms: big(row, first + 2, "access updated_at_ms")?,
        id,
    })
}

/// An audit entry in the order of [`super::statements::AUDIT_PAGE`]'s SELECT list.
pub(crate) fn audit_entry(row: &Columns) -> Result<AuditEntry, StoreError> {
    let status =
        opt_int(row, 7, "audit status")?.ok_or_else(|| corrupt("audit status is null".into()))?;
    Ok(AuditEntry {
        id: text(row, 0, "audit id")?,
        at_ms: big(row, 1, "audit at_ms")?,
        actor: text(row, 2, "audit actor")?,
        tenant: opt_text(row, 3, "audit tenant")?,
        action: text(row, 4, "audit action")?,
        target: text(row, 5, "audit target")?,
        source: text(row, 6, "audit source")?,
        status: u16::try_from(status)
            .map_err(|_| corrupt(format!("audit status {status} out of range")))?,
        outcome: text(row, 8, "audit outcome")?,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(s: &str) -> Option<CqlValue> {
        Some(CqlValue::Text(s.to_owned()))
    }

    fn b(v: i64) -> Option<CqlValue> {
        Some(CqlValue::BigInt(v))
    }

    fn device_row() -> Vec<Option<CqlValue>> {
        vec![
            t("d1"),
            t("name"),
            t("default"),
            t("READY"),
            None,
            t("newcomer"),
            t("+49"),
            None,
            Some(CqlValue::Boolean(true)),
            b(1),
            b(2),
            None,
            b(7),
            b(3),
        ]
    }

    #[track_caller]
    fn expect_corrupt<T: std::fmt::Debug>(result: Result<T, StoreError>, needle: &str) {
        match result {
            Err(StoreError::Corrupt(message)) => {
                assert!(message.contains(needle), "{message:?} lacks {needle:?}")
            }
            other => panic!("expected Corrupt({needle}), got {other:?}"),
        }
    }

    #[test]
    fn a_device_row_decodes() {
        let state = device_state(&device_row())
            .expect("decode")
            .expect("device");
        assert_eq!(state.device.status, DeviceStatus::Ready);
        assert_eq!(state.device.phone.as_deref(), Some("+49"));
        assert_eq!((state.version, state.fence_epoch), (7, 3));
    }

    #[test]
    fn a_partition_without_a_device_is_none() {
        let mut row = device_row();
        row[9] = None;
        assert_eq!(device_state(&row).expect("decode"), None);
    }

    #[test]
    fn bad_device_rows_are_corrupt() {
        let cases: [(usize, Option<CqlValue>, &str); 6] = [
            (3, t("EXPLODED"), "EXPLODED"),
            (5, t("boss"), "trust level"),
            (8, None, "desired_running is null"),
            (1, Some(CqlValue::Int(5)), "device name is not text"),
            (13, b(-1), "negative device fence epoch"),
            (10, t("soon"), "updated_at_ms is not a bigint"),
        ];
        for (index, value, needle) in cases {
            let mut row = device_row();
            row[index] = value;
            expect_corrupt(device_state(&row), needle);
        }
        expect_corrupt(device_state(&device_row()[..5]), "no column 9");
    }

    #[test]
    fn bad_message_rows_are_corrupt() {
        let good = vec![
            t("d1"),
            t("m1"),
            t("outbound"),
            t("+49"),
            t("hi"),
            t("queued"),
            None,
            None,
            b(1),
            None,
            None,
            None,
            None,
            None,
            None,
            None,
        ];
        assert_eq!(message(&good).expect("decode").id, "m1");
        for (index, value, needle) in [
            (2, t("sideways"), "message direction"),
            (5, t("lost"), "message status"),
            (8, None, "created_at_ms is null"),
        ] {
            let mut row = good.clone();
            row[index] = value;
            expect_corrupt(message(&row), needle);
        }
    }

    fn delivery_row() -> Vec<Option<CqlValue>> {
        vec![
            t("d1"),
            b(7),
            t("ev-1"),
            t("default"),
            t("message.inbound"),
            t("{\"a\":1}"),
            b(100),
            t("failed"),
            b(2),
            b(200),
            Some(CqlValue::Int(503)),
            t("HTTP 503"),
            None,
        ]
    }

    #[test]
    fn a_delivery_row_decodes() {
        let row = delivery_row();
        assert_eq!(row.len(), DELIVERY_COLUMNS);
        let d = delivery(&row).expect("decode");
        assert_eq!((d.seq, d.event_id.as_str()), (7, "ev-1"));
        assert_eq!((d.status, d.attempts), (DeliveryStatus::Failed, 2));
        assert_eq!(
            (
                d.next_attempt_ms,
                d.last_status_code,
                d.last_error.as_deref()
            ),
            (Some(200), Some(503), Some("HTTP 503"))
        );
        assert_eq!(d.delivered_at_ms, None);
    }

    #[test]
    fn bad_delivery_rows_are_corrupt() {
        let cases: [(usize, Option<CqlValue>, &str); 6] = [
            (7, t("lost"), "unknown delivery status"),
            (8, b(-1), "negative delivery attempts"),
            (
                8,
                b(i64::from(u32::MAX) + 1),
                "attempts 4294967296 out of range",
            ),
            (10, Some(CqlValue::Int(70_000)), "HTTP status 70000"),
            (10, b(200), "last status code is not an int"),
            (1, None, "delivery seq is null"),
        ];
        for (index, value, needle) in cases {
            let mut row = delivery_row();
            row[index] = value;
            expect_corrupt(delivery(&row), needle);
        }
    }

    #[test]
    fn a_partition_without_statics_has_an_empty_tally() {
        let empty = tally(&[None, None, None, None, None, None], 0).expect("decode");
        assert_eq!(empty, Tally::default());
        assert!(!empty.has_due());
        let row = [t("x"), b(9), b(1), b(0), b(2), b(4), None];
        let read = tally(&row, 1).expect("decode");
        assert_eq!(
            read,
            Tally {
                version: Some(9),
                pending: 1,
                failed: 0,
                dead: 2,
                due_floor: Some(4),
                oldest_due_ms: None,
            }
        );
        assert!(read.has_due());
        expect_corrupt(
            tally(&[b(1), b(-1), None, None, None, None], 0),
            "negative pending",
        );
    }

    #[test]
    fn blobs_and_leases_check_their_ranges() {
        let row = vec![b(2), Some(CqlValue::Blob(vec![1, 2]))];
        assert_eq!(
            blob(&row, 0).expect("decode"),
            Some(SealedBlob {
                key_version: 2,
                bytes: vec![1, 2]
            })
        );
        assert_eq!(blob(&[None, None], 0).expect("decode"), None);
        assert_eq!(
            blob(&[b(1), None], 0).expect("decode").map(|b| b.bytes),
            Some(Vec::new())
        );
        expect_corrupt(blob(&[b(-1), None], 0), "key version -1");
        expect_corrupt(blob(&[b(i64::from(u32::MAX) + 1), None], 0), "out of range");

        let slot = lease_slot(4, &[t(""), b(3), b(10)]).expect("decode");
        assert_eq!((slot.holder, slot.epoch), (None, 3));
        let slot = lease_slot(4, &[t("n1"), b(3), b(10)]).expect("decode");
        assert_eq!(slot.lease().map(|l| l.holder), Some("n1".to_owned()));
        expect_corrupt(
            lease_slot(4, &[t("n1"), b(-3), b(10)]),
            "negative lease epoch",
        );
        expect_corrupt(lease_slot(4, &[None, b(3), b(10)]), "lease holder is null");
        expect_corrupt(shard(&[b(-1)], 0), "shard -1");
    }

    #[test]
    fn access_records_and_audit_entries_decode_and_check_their_ranges() {
        let row = vec![t("k1"), None, t("{}"), b(5)];
        let record = access_record(AccessKind::Key, "k1".into(), &row, 1).expect("decode");
        assert_eq!(
            record,
            AccessRecord {
                kind: AccessKind::Key,
                id: "k1".into(),
                tenant: None,
                body: "{}".into(),
                updated_at_ms: 5,
            }
        );
        expect_corrupt(
            access_record(AccessKind::Key, "k1".into(), &[t("t"), None, b(5)], 0),
            "access body is null",
        );

        let int = |v: i32| Some(CqlValue::Int(v));
        let mut row = vec![
            t("0000000000005-a"),
            b(5),
            t("key:k1"),
            t("t1"),
            t("create_device"),
            t("/v1/devices"),
            t("127.0.0.1:1"),
            int(201),
            t("ok"),
        ];
        let entry = audit_entry(&row).expect("decode");
        assert_eq!(
            (entry.id.as_str(), entry.status, entry.tenant.as_deref()),
            ("0000000000005-a", 201, Some("t1"))
        );
        row[7] = int(70_000);
        expect_corrupt(audit_entry(&row), "audit status 70000 out of range");
        row[7] = None;
        expect_corrupt(audit_entry(&row), "audit status is null");
    }
}
