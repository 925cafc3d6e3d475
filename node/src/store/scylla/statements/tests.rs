use std::path::{Path, PathBuf};

use super::*;

/// The name of each `?` as the text says it: an INSERT's column list paired with its
/// VALUES, `column = ?` / `column >= ?` elsewhere (`if_column` after `IF`), `limit`.
fn marker_names(cql: &str) -> Vec<String> {
    let flat = cql.split_whitespace().collect::<Vec<_>>().join(" ");
    if let Some(rest) = flat.strip_prefix("INSERT INTO ") {
        let open = rest.find('(').expect("column list");
        let close = rest.find(')').expect("column list end");
        let columns: Vec<&str> = rest[open + 1..close].split(',').map(str::trim).collect();
        let values_at = rest.find("VALUES (").expect("values");
        let values_end = rest[values_at..].find(')').expect("values end") + values_at;
        let values: Vec<&str> = rest[values_at + "VALUES (".len()..values_end]
            .split(',')
            .map(str::trim)
            .collect();
        assert_eq!(columns.len(), values.len(), "columns vs values: {cql}");
        return columns
            .iter()
            .zip(values)
            .filter(|(_, value)| *value == "?")
            .map(|(column, _)| column.to_string())
            .collect();
    }
    let tokens: Vec<&str> = flat.split(' ').collect();
    let mut after_if = false;
    let mut names = Vec::new();
    for (i, token) in tokens.iter().enumerate() {
        if *token == "IF" {
            after_if = true;
        }
        if token.trim_end_matches(',') != "?" {
            continue;
        }
        let before = tokens[i - 1];
        let name = if before == "LIMIT" {
            "limit".to_owned()
        } else {
            assert!(
                ["=", ">", ">=", "<", "<="].contains(&before),
                "marker after {before:?} in {cql}"
            );
            tokens[i - 2].to_owned()
        };
        names.push(if after_if { format!("if_{name}") } else { name });
    }
    names
}

#[test]
fn every_marker_is_named_in_order() {
    for statement in ALL {
        assert_eq!(
            marker_names(statement.cql),
            statement.binds,
            "{}: {}",
            statement.name,
            statement.cql
        );
        assert_eq!(
            statement.cql.matches('?').count(),
            statement.binds.len(),
            "{}",
            statement.name
        );
    }
}

#[test]
fn names_are_unique_and_every_statement_is_in_the_keyspace() {
    let mut names: Vec<&str> = ALL.iter().map(|s| s.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), ALL.len(), "duplicate statement names");
    for statement in ALL {
        assert!(statement.cql.contains("{ks}."), "{}", statement.name);
    }
}

#[test]
fn conditional_statements_are_exactly_the_lwts() {
    for statement in ALL {
        let conditional = statement.cql.contains(" IF ");
        let batched = [
            DELETE_LINK_STATE.name,
            SET_LINK_STATE.name,
            PUT_DELIVERY.name,
            PUT_DELIVERY_MARK.name,
            DELETE_DELIVERY_ROW.name,
            PUT_CONTACT_ROW.name,
            PUT_TAG_COUNT.name,
            DELETE_CONTACT_ROW.name,
            PUT_JOB_RECIPIENT.name,
            SET_JOB_RECIPIENT.name,
            PUT_JOB_MARK.name,
            DELETE_JOB_MARK.name,
        ]
        .contains(&statement.name);
        assert_eq!(
            conditional || batched,
            statement.kind == Kind::Lwt,
            "{}: kind {:?}",
            statement.name,
            statement.kind
        );
    }
}

/// The text of every source file of the ScyllaDB store (all of `store/scylla/`), where
/// the store names each statement it runs (`st::` and its constant).
fn store_source() -> String {
    fn read(dir: &Path, source: &mut String) {
        let mut paths: Vec<PathBuf> = std::fs::read_dir(dir)
            .expect("the store's folder")
            .map(|entry| entry.expect("a folder entry").path())
            .collect();
        paths.sort();
        for path in paths {
            if path.is_dir() {
                read(&path, source);
            } else if path.extension().is_some_and(|ext| ext == "rs") {
                source.push_str(&std::fs::read_to_string(&path).expect("a source file"));
                source.push('\n');
            }
        }
    }
    let mut source = String::new();
    read(
        &Path::new(env!("CARGO_MANIFEST_DIR")).join("src/store/scylla"),
        &mut source,
    );
    source
}

#[test]
fn the_store_prepares_every_statement_it_uses() {
    // `connect` prepares `ALL`; a statement used but not listed would panic at its
    // first call. Names follow the constants (`SELECT_DEVICE` is `select_device`).
    let source = store_source();
    let listed: Vec<String> = ALL.iter().map(|s| s.name.to_uppercase()).collect();
    let mut used: Vec<&str> = source
        .match_indices("st::")
        .filter(|(at, _)| !source[..*at].ends_with(|c: char| c.is_alphanumeric() || c == '_'))
        .map(|(at, _)| {
            let rest = &source[at + "st::".len()..];
            let end = rest
                .find(|c: char| !(c.is_ascii_uppercase() || c == '_'))
                .unwrap_or(rest.len());
            &rest[..end]
        })
        .filter(|name| !name.is_empty() && *name != "ALL")
        .collect();
    used.sort_unstable();
    used.dedup();
    assert!(used.contains(&"SHARD_ENTRIES"), "{used:?}");
    for name in used {
        assert!(listed.iter().any(|l| l == name), "st::{name} is not in ALL");
    }
}

#[test]
fn bind_checks_names() {
    let values = INDEX_DEVICE.bind(vec![("device_id", text("d1"))]);
    assert_eq!(values.len(), 1);
    let wrong = std::panic::catch_unwind(|| INDEX_DEVICE.bind(vec![("id", text("d1"))]));
    assert!(wrong.is_err(), "a wrong name must not bind");
}

#[test]
fn each_advance_sets_its_own_timestamp() {
    for (statement, column) in [
        (ADVANCE_SENT, "sent_at_ms"),
        (ADVANCE_DELIVERED, "delivered_at_ms"),
        (ADVANCE_READ, "read_at_ms"),
        (ADVANCE_FAILED, "failed_at_ms"),
    ] {
        assert!(
            statement.cql.contains(&format!("{column} = ?")),
            "{}",
            statement.cql
        );
        assert_eq!(statement.binds[1], column);
    }
}
