//! The contact book: `contacts` (one row per contact, its tags as JSON) and
//! `contact_tags` (one row per tag of a contact, for listing by tag and counting), schema
//! step 8. A write of a contact rewrites its tag rows in the same transaction.

use rusqlite::{Connection, Row, params};

use super::sql::{column, db_error, execute, query_all, query_first};
use crate::store::contact::{self, tags_of_text, tags_text};
use crate::store::{ContactQuery, ContactRecord, ContactUpsert, StoreError, TagCount, Upserted};

/// The columns [`contact_from_row`] reads, in order.
macro_rules! contact_columns {
    ($prefix:literal) => {
        concat!(
            $prefix,
            "tenant, ",
            $prefix,
            "phone, ",
            $prefix,
            "name, ",
            $prefix,
            "tags, ",
            $prefix,
            "created_at_ms, ",
            $prefix,
            "updated_at_ms"
        )
    };
}

const SELECT_CONTACT: &str = concat!(
    "SELECT ",
    contact_columns!(""),
    " FROM contacts WHERE tenant = ?1 AND phone = ?2"
);
const PUT_CONTACT: &str = "INSERT INTO contacts
     (tenant, phone, name, tags, created_at_ms, updated_at_ms) VALUES (?1, ?2, ?3, ?4, ?5, ?6)
     ON CONFLICT (tenant, phone) DO UPDATE SET name = excluded.name, tags = excluded.tags,
     updated_at_ms = excluded.updated_at_ms";
const DELETE_CONTACT: &str = "DELETE FROM contacts WHERE tenant = ?1 AND phone = ?2";
const DELETE_TAGS: &str = "DELETE FROM contact_tags WHERE tenant = ?1 AND phone = ?2";
const INSERT_TAG: &str = "INSERT INTO contact_tags (tenant, tag, phone) VALUES (?1, ?2, ?3)";
pub(super) const LIST_CONTACTS: &str = concat!(
    "SELECT ",
    contact_columns!(""),
    " FROM contacts WHERE tenant = ?1 AND phone > ?2 ORDER BY phone LIMIT ?3"
);
/// A seek in `contact_tags`' primary key, then each contact by its own.
pub(super) const LIST_CONTACTS_WITH_TAG: &str = concat!(
    "SELECT ",
    contact_columns!("c."),
    " FROM contact_tags t JOIN contacts c ON c.tenant = t.tenant AND c.phone = t.phone
     WHERE t.tenant = ?1 AND t.tag = ?2 AND t.phone > ?3 ORDER BY t.phone LIMIT ?4"
);
pub(super) const TAG_COUNTS: &str = "SELECT tag, COUNT(*) FROM contact_tags
     WHERE tenant = ?1 AND tag > ?2 GROUP BY tag ORDER BY tag LIMIT ?3";

fn contact_from_row(row: &Row<'_>) -> Result<ContactRecord, StoreError> {
    let tags: String = column(row, 3)?;
    Ok(ContactRecord {
        tenant: column(row, 0)?,
        phone: column(row, 1)?,
        name: column(row, 2)?,
        tags: tags_of_text(&tags)?,
        created_at_ms: column(row, 4)?,
        updated_at_ms: column(row, 5)?,
    })
}

pub(super) fn get(
    conn: &Connection,
    tenant: &str,
    phone: &str,
) -> Result<Option<ContactRecord>, StoreError> {
    query_first(
        conn,
        SELECT_CONTACT,
        params![tenant, phone],
        contact_from_row,
    )
}

/// Writes `contact` whole: its row and its tag rows.
fn put(conn: &Connection, c: &ContactRecord) -> Result<(), StoreError> {
    execute(
        conn,
        PUT_CONTACT,
        params![
            c.tenant,
            c.phone,
            c.name,
            tags_text(&c.tags),
            c.created_at_ms,
            c.updated_at_ms
        ],
    )
    .map_err(db_error)?;
    execute(conn, DELETE_TAGS, params![c.tenant, c.phone]).map_err(db_error)?;
    for tag in &c.tags {
        execute(conn, INSERT_TAG, params![c.tenant, tag, c.phone]).map_err(db_error)?;
    }
    Ok(())
}

pub(super) fn upsert(
    conn: &Connection,
    tenant: &str,
    contacts: &[ContactUpsert],
    now_ms: i64,
) -> Result<Vec<Upserted>, StoreError> {
    let mut out = Vec::with_capacity(contacts.len());
    for upsert in contacts {
        let existing = get(conn, tenant, &upsert.phone)?;
        let done = contact::upserted(tenant, existing.as_ref(), upsert, now_ms);
        put(conn, &done.contact)?;
        out.push(done);
    }
    Ok(out)
}

pub(super) fn set_tags(
    conn: &Connection,
    tenant: &str,
    phone: &str,
    tags: &[String],
    now_ms: i64,
) -> Result<Option<ContactRecord>, StoreError> {
    let Some(existing) = get(conn, tenant, phone)? else {
        return Ok(None);
    };
    let contact = contact::retagged(&existing, tags, now_ms);
    put(conn, &contact)?;
    Ok(Some(contact))
}

pub(super) fn delete(conn: &Connection, tenant: &str, phone: &str) -> Result<bool, StoreError> {
    execute(conn, DELETE_CONTACT, params![tenant, phone])
        .map(|deleted| deleted > 0)
        .map_err(db_error)
}

/// A page of [`ContactQuery`]: a seek and `limit` rows; with a search, the rows from
/// the seek on are read until `limit` of them match (the search is
/// [`contact::matches`], the same rule as every store's).
pub(super) fn list(
    conn: &Connection,
    query: &ContactQuery,
) -> Result<Vec<ContactRecord>, StoreError> {
    let after = query.after.as_deref().unwrap_or("");
    // SQLite reads a negative LIMIT as none.
    let limit = match query.search {
        None => i64::from(query.limit),
        Some(_) => -1,
    };
    let mut stmt = match &query.tag {
        None => conn.prepare_cached(LIST_CONTACTS),
        Some(_) => conn.prepare_cached(LIST_CONTACTS_WITH_TAG),
    }
    .map_err(db_error)?;
    let mut rows = match &query.tag {
        None => stmt.query(params![query.tenant, after, limit]),
        Some(tag) => stmt.query(params![query.tenant, tag, after, limit]),
    }
    .map_err(db_error)?;
    let mut out = Vec::new();
    while out.len() < query.limit as usize {
        let Some(row) = rows.next().map_err(db_error)? else {
            break;
        };
        let contact = contact_from_row(row)?;
        if query
            .search
            .as_deref()
            .is_none_or(|q| contact::matches(q, &contact))
        {
            out.push(contact);
        }
    }
    Ok(out)
}

pub(super) fn tag_counts(
    conn: &Connection,
    tenant: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<TagCount>, StoreError> {
    query_all(
        conn,
        TAG_COUNTS,
        params![tenant, after.unwrap_or(""), i64::from(limit)],
        |row| {
            let count: i64 = column(row, 1)?;
            Ok(TagCount {
                tag: column(row, 0)?,
                count: u64::try_from(count)
                    .map_err(|_| StoreError::Corrupt(format!("tag count {count}")))?,
            })
        },
    )
}
