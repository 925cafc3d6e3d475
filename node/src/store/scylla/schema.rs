//! The keyspace and tables, created (or brought up to date) by the node on start.
//!
//! Every statement is `IF NOT EXISTS`, so nodes that start together may all run them.
//! `schema_version` records how many [`MIGRATIONS`] a keyspace has had; a keyspace whose
//! version is newer than this build is refused. To change the schema, append a step;
//! never edit one that has shipped. A step that needs data written (not only tables
//! created) has a Rust part, run by [`super::ScyllaStore::connect`] before the version is
//! recorded, so that a start that dies half way runs it again.

/// The schema version this build creates and understands.
pub const SCHEMA_VERSION: i32 = MIGRATIONS.len() as i32;

/// The version from which `devices_by_shard` exists: a keyspace migrated from an earlier
/// one has its devices indexed by shard (backfill) before it records this version.
pub(crate) const DEVICES_BY_SHARD_VERSION: i32 = 2;

/// The row of `schema_version` that holds wafleet's version.
pub(crate) const COMPONENT: &str = "wafleet";

/// How the keyspace is created (an existing keyspace is left as it is).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyspaceOptions {
    /// Letters, digits and `_` (checked by the configuration).
    pub name: String,
    pub replication_factor: u32,
    /// `false` adds `AND tablets = {'enabled': false}` (see the module docs of
    /// [`super`]: lightweight transactions and tablets).
    pub tablets: bool,
}

/// `CREATE KEYSPACE IF NOT EXISTS ...` for these options.
pub(crate) fn create_keyspace(options: &KeyspaceOptions) -> String {
    let mut cql = format!(
        "CREATE KEYSPACE IF NOT EXISTS {} WITH replication = \
         {{'class': 'NetworkTopologyStrategy', 'replication_factor': {}}}",
        options.name, options.replication_factor
    );
    if !options.tablets {
        cql.push_str(" AND tablets = {'enabled': false}");
    }
    cql
}

/// The table that records the schema version; created before anything else.
pub(crate) const SCHEMA_VERSION_TABLE: &str = "CREATE TABLE IF NOT EXISTS {ks}.schema_version (
    component     text PRIMARY KEY,
    version       int,
    updated_at_ms bigint)";

/// Schema steps in order; step `n` takes a keyspace from version `n` to `n + 1`. Each
/// step is a list of statements, `{ks}` standing for the keyspace.
pub(crate) const MIGRATIONS: &[&[&str]] = &[
    // 1: everything.
    &[
        // A device's partition: its row (static columns) and its sealed link state
        // (one clustering row per namespace and key), so that one lightweight
        // transaction covers the device's existence, its fence and the write.
        // `version` counts the partition's writes (every write is a compare-and-set on
        // it); `fence_epoch` is the highest lease epoch a fenced write has carried.
        "CREATE TABLE IF NOT EXISTS {ks}.devices (
            device_id            text,
            namespace            text,
            key                  text,
            name                 text STATIC,
            tenant               text STATIC,
            status               text STATIC,
            status_reason        text STATIC,
            trust_level          text STATIC,
            phone                text STATIC,
            webhook              text STATIC,
            desired_running      boolean STATIC,
            created_at_ms        bigint STATIC,
            updated_at_ms        bigint STATIC,
            last_connected_at_ms bigint STATIC,
            version              bigint STATIC,
            fence_epoch          bigint STATIC,
            key_version          bigint,
            value                blob,
            PRIMARY KEY ((device_id), namespace, key))",
        // Device ids in id order, for keyset paging (partitions come in token order).
        // One partition: fine for the tens of thousands of devices a fleet has.
        "CREATE TABLE IF NOT EXISTS {ks}.device_ids (
            bucket    int,
            device_id text,
            PRIMARY KEY ((bucket), device_id))",
        // A device's messages (`row_kind = 'm'`, `row_id` = message id) and its
        // idempotency keys (`row_kind = 'k'`, `row_id` = the key, `message_id` = the
        // message holding it), in one partition so that one conditional batch claims
        // the key and inserts the message.
        "CREATE TABLE IF NOT EXISTS {ks}.messages (
            device_id       text,
            row_kind        text,
            row_id          text,
            message_id      text,
            direction       text,
            peer_phone      text,
            text            text,
            status          text,
            error           text,
            idempotency_key text,
            created_at_ms   bigint,
            not_before_ms   bigint,
            sent_at_ms      bigint,
            delivered_at_ms bigint,
            read_at_ms      bigint,
            failed_at_ms    bigint,
            PRIMARY KEY ((device_id), row_kind, row_id))",
        // Outbound messages still queued, oldest first. Entries may outlive their
        // message's queued state (a crash between two writes): readers check each
        // entry against the message row.
        "CREATE TABLE IF NOT EXISTS {ks}.outbox (
            device_id     text,
            created_at_ms bigint,
            message_id    text,
            PRIMARY KEY ((device_id), created_at_ms, message_id))",
        // Every outbound message's send slot, by creation time: the rate limiter's
        // memory. Kept 8 days (the longest quota window is a day), which also bounds the
        // partition.
        "CREATE TABLE IF NOT EXISTS {ks}.outbound_slots (
            device_id     text,
            created_at_ms bigint,
            message_id    text,
            slot_ms       bigint,
            PRIMARY KEY ((device_id), created_at_ms, message_id))
            WITH default_time_to_live = 691200",
        // Shard leases. A released lease keeps its row with holder '' so that the next
        // grant's epoch is higher.
        "CREATE TABLE IF NOT EXISTS {ks}.leases (
            shard         bigint PRIMARY KEY,
            holder        text,
            epoch         bigint,
            expires_at_ms bigint)",
        "CREATE TABLE IF NOT EXISTS {ks}.settings (
            key           text PRIMARY KEY,
            value         text,
            updated_at_ms bigint)",
    ],
    // 2: devices by shard, so that a node taking shards over reads only their devices.
    &[
        // One partition per shard (`shard_of(device_id, S)`), one row per device.
        // `desired_running` follows the device row, except that it may say true while
        // the row says false, never the reverse: readers check the rows (see "Devices by
        // shard" in the module docs of [`super`]).
        "CREATE TABLE IF NOT EXISTS {ks}.devices_by_shard (
            shard           bigint,
            device_id       text,
            desired_running boolean,
            PRIMARY KEY ((shard), device_id))",
    ],
    // 3: the webhook delivery log (see "Webhook deliveries" in the module docs of
    // [`super`]).
    &[
        // A device's deliveries, in one partition so that one conditional batch records
        // an event, claims its id and counts it. Rows by `row_kind`:
        // - 'd': a delivery, at (`seq`, `event_id`);
        // - 'q': a copy of a delivery while it is due (pending or failed), same key, so
        //   the due ones are read in `seq` order without the settled ones;
        // - 'e': the claim of an event id, at (0, `event_id`), with `event_seq`;
        // - 'o': a due delivery by age, at (`created_at_ms` in `seq`, `event_id`).
        // The static columns are the partition's tally: `version` counts its writes
        // (every write is a compare-and-set on it, and an append takes its new value as
        // the event's `seq`), the counts by status still to settle, the lowest `seq` due
        // (`due_floor`) and the oldest `created_at_ms` due.
        "CREATE TABLE IF NOT EXISTS {ks}.deliveries (
            device_id        text,
            row_kind         text,
            seq              bigint,
            event_id         text,
            tenant           text,
            event            text,
            data             text,
            created_at_ms    bigint,
            status           text,
            attempts         bigint,
            next_attempt_ms  bigint,
            last_status_code int,
            last_error       text,
            delivered_at_ms  bigint,
            event_seq        bigint,
            version          bigint STATIC,
            pending          bigint STATIC,
            failed           bigint STATIC,
            dead             bigint STATIC,
            due_floor        bigint STATIC,
            oldest_due_ms    bigint STATIC,
            PRIMARY KEY ((device_id), row_kind, seq, event_id))",
        // Delivered deliveries by the day they were recorded (and a bucket of the
        // device, so that one day is not one hot partition): what pruning reads. An
        // entry is written before its delivery is recorded delivered, so it may point
        // at a delivery that is not (or no longer) delivered; pruning checks each one
        // against its delivery.
        "CREATE TABLE IF NOT EXISTS {ks}.delivered_by_day (
            day           bigint,
            bucket        bigint,
            created_at_ms bigint,
            device_id     text,
            seq           bigint,
            event_id      text,
            PRIMARY KEY ((day, bucket), created_at_ms, device_id, seq, event_id))",
    ],
    // 4: the access directory and the audit log (see the module docs of
    // `super::access`).
    &[
        // Directory records (tenants, API keys, users) as JSON documents, one partition
        // per kind: the directory is small (thousands of records at most), a kind is
        // listed in id order by reading its one partition, and create, update and
        // delete are single-row LWTs on it. A tenant's records are picked out while
        // paging (no index to keep in step with an LWT-written row).
        "CREATE TABLE IF NOT EXISTS {ks}.access (
            kind          text,
            id            text,
            tenant        text,
            body          text,
            updated_at_ms bigint,
            PRIMARY KEY ((kind), id))",
        // The audit log, one partition per hour of `at_ms` (`hour = at_ms / 3_600_000`),
        // entries in id order (ids begin with the zero-padded `at_ms`, so id order is
        // time order). An hour, not a day, so that a busy API's partition stays small
        // (a day of one write a second is 86,400 rows; an hour 3,600).
        "CREATE TABLE IF NOT EXISTS {ks}.audit (
            hour    bigint,
            id      text,
            at_ms   bigint,
            actor   text,
            tenant  text,
            action  text,
            target  text,
            source  text,
            status  int,
            outcome text,
            PRIMARY KEY ((hour), id))",
        // The hours that have audit entries, in order, in one small partition (a row per
        // hour: 8,760 a year): where a listing without `since_ms` starts, and which empty
        // hours it skips. Written before the entries of its hour.
        "CREATE TABLE IF NOT EXISTS {ks}.audit_hours (
            bucket int,
            hour   bigint,
            PRIMARY KEY ((bucket), hour))",
    ],
    // 5: the tenants' contact books (see the module docs of `super::contacts`).
    &[
        // A tenant's contact book, in one partition so that one conditional batch
        // changes a contact, its tag entries and the tag counts together. Rows by
        // `row_kind`:
        // - 'c': a contact, at ('', `phone`);
        // - 't': a copy of a contact under each of its tags, at (`tag`, `phone`), so
        //   that the contacts with a tag are one slice in phone order;
        // - 'n': how many contacts have a tag (`tagged`), at (`tag`, '').
        // `version` counts the partition's writes: every write is a compare-and-set
        // on it.
        "CREATE TABLE IF NOT EXISTS {ks}.contacts (
            tenant        text,
            row_kind      text,
            tag           text,
            phone         text,
            name          text,
            tags          text,
            created_at_ms bigint,
            updated_at_ms bigint,
            tagged        bigint,
            version       bigint STATIC,
            PRIMARY KEY ((tenant), row_kind, tag, phone))",
    ],
    // 6: scheduled messages, and the queue's order (see "Messages" in the module docs
    // of [`super`]). `ALTER TABLE ... ADD` has no `IF NOT EXISTS`: a column that exists
    // already (a start that died half way, or nodes starting together) is taken as
    // added ([`is_existing_column`]).
    &[
        // The time the client asked a scheduled message to be sent at.
        "ALTER TABLE {ks}.messages ADD send_at_ms bigint",
        // When a scheduled message entered the queue (its `outbox` entry's place).
        "ALTER TABLE {ks}.messages ADD queued_at_ms bigint",
        // Outbound messages still scheduled, the earliest first. Entries may outlive
        // their message's scheduled state (a crash between two writes): readers check
        // each entry against the message row.
        "CREATE TABLE IF NOT EXISTS {ks}.schedule (
            device_id  text,
            send_at_ms bigint,
            message_id text,
            PRIMARY KEY ((device_id), send_at_ms, message_id))",
    ],
    // 7: campaigns.
    JOBS,
];

/// The tables of campaigns: jobs, their listings and their recipients (see the module
/// docs of `super::jobs`). One step of [`MIGRATIONS`], kept whole here so that it can be
/// renumbered by moving its one line there.
pub(crate) const JOBS: &[&str] = &[
    // A job, by id: create, read and compare-and-set (`IF status = ?`) are single-row
    // operations. `devices` is the pool as JSON; `spec` is opaque to the store.
    "CREATE TABLE IF NOT EXISTS {ks}.jobs (
        id             text PRIMARY KEY,
        tenant         text,
        name           text,
        status         text,
        devices        text,
        spec           text,
        total          bigint,
        start_at_ms    bigint,
        created_at_ms  bigint,
        started_at_ms  bigint,
        finished_at_ms bigint,
        updated_at_ms  bigint)",
    // Job ids in id order by listing scope, for keyset paging: 'all' (every job),
    // 'active' (the jobs that may still send, every tenant's: the scheduler's listing,
    // small), 't:' and the tenant (a tenant's), 'a:' and the tenant (its active ones).
    // Entries are hints: one may point at a job that is gone or no longer in its scope
    // (readers check each against the job), never the reverse.
    "CREATE TABLE IF NOT EXISTS {ks}.job_index (
        scope text,
        id    text,
        PRIMARY KEY ((scope), id))",
    // A job's recipients, in one partition so that one conditional batch moves a
    // recipient, its pending mark and the tally together. Rows by `row_kind`:
    // - 'r': a recipient, at its `seq`;
    // - 'p': a pending mark at the same `seq`, with `next_at_ms`, while the recipient is
    //   pending: what a claim reads, without the settled recipients.
    // The static columns are the tally: `version` counts the partition's writes (every
    // write is a compare-and-set on it), the counts by status (`n_` and the status), and
    // `pending_floor`, at or below the lowest pending mark (where a claim starts).
    "CREATE TABLE IF NOT EXISTS {ks}.job_recipients (
        job_id        text,
        row_kind      text,
        seq           bigint,
        recipient     text,
        text          text,
        status        text,
        device_id     text,
        message_id    text,
        attempts      bigint,
        error         text,
        next_at_ms    bigint,
        updated_at_ms bigint,
        version       bigint STATIC,
        pending_floor bigint STATIC,
        n_pending     bigint STATIC,
        n_queued      bigint STATIC,
        n_sent        bigint STATIC,
        n_delivered   bigint STATIC,
        n_read        bigint STATIC,
        n_failed      bigint STATIC,
        n_cancelled   bigint STATIC,
        PRIMARY KEY ((job_id), row_kind, seq))",
];

/// Whether a schema statement's error says that the column it adds exists already:
/// what ScyllaDB (and Cassandra) answer to an `ALTER TABLE ... ADD` run a second time.
pub(crate) fn is_existing_column(statement: &str, error: &str) -> bool {
    statement.starts_with("ALTER TABLE ")
        && statement.contains(" ADD ")
        && error.contains("conflicts with an existing column")
}

/// A statement with `{ks}` replaced by the keyspace.
pub(crate) fn in_keyspace(cql: &str, keyspace: &str) -> String {
    cql.replace("{ks}", keyspace)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// (table, partition key, clustering columns) as the DDL declares them.
    fn keys_of(ddl: &str) -> (String, Vec<String>, Vec<String>) {
        let flat = ddl.split_whitespace().collect::<Vec<_>>().join(" ");
        let table = flat
            .split("{ks}.")
            .nth(1)
            .and_then(|rest| rest.split([' ', '(']).next())
            .expect("table name")
            .to_owned();
        let columns = |list: &str| -> Vec<String> {
            list.split(',')
                .map(|c| {
                    c.trim()
                        .trim_matches(|ch| ch == '(' || ch == ')')
                        .to_owned()
                })
                .filter(|c| !c.is_empty())
                .collect()
        };
        if let Some(at) = flat.find("PRIMARY KEY ((") {
            let rest = &flat[at + "PRIMARY KEY ((".len()..];
            let end = rest.find("))").expect("end of primary key");
            let (partition, clustering) = rest[..end].split_once(')').expect("partition");
            (table, columns(partition), columns(clustering))
        } else {
            let column = flat
                .split(" PRIMARY KEY")
                .next()
                .and_then(|before| before.rsplit([',', '(']).next())
                .and_then(|def| def.split_whitespace().next())
                .expect("single-column key");
            (table, vec![column.to_owned()], Vec::new())
        }
    }

    #[test]
    fn tables_have_the_keys_of_their_access_paths() {
        let mut found: Vec<(String, Vec<String>, Vec<String>)> = MIGRATIONS
            .iter()
            .flat_map(|step| step.iter())
            .chain([&SCHEMA_VERSION_TABLE])
            .filter(|ddl| ddl.starts_with("CREATE TABLE"))
            .map(|ddl| keys_of(ddl))
            .collect();
        found.sort();
        let s = |v: &[&str]| v.iter().map(|c| c.to_string()).collect::<Vec<_>>();
        let expected = vec![
            ("access".into(), s(&["kind"]), s(&["id"])),
            ("audit".into(), s(&["hour"]), s(&["id"])),
            ("audit_hours".into(), s(&["bucket"]), s(&["hour"])),
            (
                "contacts".into(),
                s(&["tenant"]),
                s(&["row_kind", "tag", "phone"]),
            ),
            (
                "delivered_by_day".into(),
                s(&["day", "bucket"]),
                s(&["created_at_ms", "device_id", "seq", "event_id"]),
            ),
            (
                "deliveries".into(),
                s(&["device_id"]),
                s(&["row_kind", "seq", "event_id"]),
            ),
            ("device_ids".into(), s(&["bucket"]), s(&["device_id"])),
            (
                "devices".into(),
                s(&["device_id"]),
                s(&["namespace", "key"]),
            ),
            ("devices_by_shard".into(), s(&["shard"]), s(&["device_id"])),
            ("job_index".into(), s(&["scope"]), s(&["id"])),
            (
                "job_recipients".into(),
                s(&["job_id"]),
                s(&["row_kind", "seq"]),
            ),
            ("jobs".into(), s(&["id"]), s(&[])),
            ("leases".into(), s(&["shard"]), s(&[])),
            (
                "messages".into(),
                s(&["device_id"]),
                s(&["row_kind", "row_id"]),
            ),
            (
                "outbound_slots".into(),
                s(&["device_id"]),
                s(&["created_at_ms", "message_id"]),
            ),
            (
                "outbox".into(),
                s(&["device_id"]),
                s(&["created_at_ms", "message_id"]),
            ),
            (
                "schedule".into(),
                s(&["device_id"]),
                s(&["send_at_ms", "message_id"]),
            ),
            ("schema_version".into(), s(&["component"]), s(&[])),
            ("settings".into(), s(&["key"]), s(&[])),
        ];
        assert_eq!(found, expected);
    }

    #[test]
    fn every_statement_is_idempotent_ddl_in_the_keyspace() {
        for ddl in MIGRATIONS.iter().flat_map(|step| step.iter()) {
            if ddl.starts_with("ALTER TABLE {ks}.") {
                // Made idempotent by the runner: see `is_existing_column`.
                assert!(ddl.contains(" ADD "), "{ddl}");
                assert!(is_existing_column(
                    ddl,
                    "Invalid column name send_at_ms because it conflicts with an existing column"
                ));
                continue;
            }
            assert!(ddl.starts_with("CREATE TABLE IF NOT EXISTS {ks}."), "{ddl}");
            let opened = ddl.matches('(').count();
            assert_eq!(opened, ddl.matches(')').count(), "unbalanced: {ddl}");
        }
        assert_eq!(SCHEMA_VERSION, 7);
        assert!(
            MIGRATIONS.contains(&JOBS),
            "the campaigns' tables are a step"
        );
        assert_eq!(
            // Step 3 creates tables only: no data to write before it is recorded.
            MIGRATIONS[2]
                .iter()
                .filter(
                    |ddl| ddl.contains("{ks}.deliveries") || ddl.contains("{ks}.delivered_by_day")
                )
                .count(),
            2,
            "the delivery log comes with its version"
        );
        assert_eq!(
            // Step 4 creates tables only as well: the directory and the log start empty.
            MIGRATIONS[3]
                .iter()
                .filter(|ddl| ["access", "audit", "audit_hours"]
                    .iter()
                    .any(|table| ddl.contains(&format!("{{ks}}.{table} ("))))
                .count(),
            3,
            "the access directory and the audit log come with their version"
        );
        assert_eq!(
            MIGRATIONS[DEVICES_BY_SHARD_VERSION as usize - 1]
                .iter()
                .filter(|ddl| ddl.contains("{ks}.devices_by_shard"))
                .count(),
            1,
            "devices_by_shard comes with its version"
        );
    }

    #[test]
    fn device_state_is_static_and_link_state_is_per_row() {
        let ddl = MIGRATIONS[0][0];
        for column in [
            "name",
            "status",
            "desired_running",
            "version",
            "fence_epoch",
            "last_connected_at_ms",
        ] {
            let line = ddl
                .lines()
                .find(|l| l.split_whitespace().next() == Some(column))
                .unwrap_or_else(|| panic!("no column {column}"));
            assert!(line.contains("STATIC"), "{column} is not static");
        }
        for column in ["key_version", "value"] {
            let line = ddl
                .lines()
                .find(|l| l.split_whitespace().next() == Some(column))
                .expect("column");
            assert!(!line.contains("STATIC"), "{column} must be per row");
        }
    }

    #[test]
    fn keyspace_turns_tablets_off_unless_asked() {
        let mut options = KeyspaceOptions {
            name: "wafleet".into(),
            replication_factor: 3,
            tablets: false,
        };
        assert_eq!(
            create_keyspace(&options),
            "CREATE KEYSPACE IF NOT EXISTS wafleet WITH replication = \
             {'class': 'NetworkTopologyStrategy', 'replication_factor': 3} \
             AND tablets = {'enabled': false}"
        );
        options.tablets = true;
        assert!(!create_keyspace(&options).contains("tablets"));
        assert_eq!(
            in_keyspace(SCHEMA_VERSION_TABLE, "fleet").lines().next(),
            Some("CREATE TABLE IF NOT EXISTS fleet.schema_version (")
        );
    }
}
