//! The tenants' contact books: schema step 5, statements in `statements/contacts.rs`.
//!
//! # One partition per tenant
//!
//! `contacts` keeps a tenant's whole book in one partition: each contact ('c' rows, in
//! phone order), a copy of it under each of its tags ('t' rows, by tag then phone), and
//! the number of contacts of each tag ('n' rows, in tag order). So:
//! - the contacts with a tag are one clustering slice: a page of a campaign's audience
//!   is one read of `limit` rows from the last phone of the page before, however large
//!   the tag or the book (no index to join, no row read twice);
//! - the tag counts are exact and read as a slice too (a few rows per page), never
//!   counted over the contacts;
//! - a search (`ContactQuery::search`, a phone or name prefix) reads the slice from the
//!   cursor until it has a page of matches: a rare name in a large book reads much of
//!   it (narrow it with a tag);
//! - every change of a contact (its row, its copies, the counts) is one conditional
//!   batch of that partition, which ScyllaDB applies whole and isolated: a reader never
//!   sees a copy that disagrees with its contact.
//!
//! # Writes
//!
//! Each write is a compare-and-set on the partition's static `version`, as the device
//! and delivery partitions are (see the docs of [`super`]): read `version` at
//! LOCAL_SERIAL, read the contacts concerned and the counts of their tags (plain
//! LOCAL_QUORUM reads, which see every batch applied before that serial read), decide
//! with [`crate::store::contact`]'s rules, and write one batch `IF version = ?` that
//! also sets the next version; if another writer came between, read again (at most
//! [`CAS_ATTEMPTS`] times). A bulk upsert writes [`CONTACT_BATCH`] contacts per batch,
//! each batch on its own (a failure part way leaves the earlier batches written).
//!
//! # What it costs, and the limits
//!
//! Writes of one tenant's book are serialized by its partition (Paxos): a few hundred
//! batches a second at most, so an import of 100,000 contacts is some 6,000 batches
//! (tens of seconds). A contact with `k` tags is `1 + k` rows, so a book of 100,000
//! contacts with 2 tags each is 300,000 rows in one partition (some tens of MB): fine
//! for ScyllaDB, which warns from 100,000 rows a partition in its logs. Books of
//! millions of contacts would need the partition split by a bucket of the phone (and
//! listings merging the buckets): not done, said here so nobody is surprised.

use std::collections::{BTreeMap, BTreeSet};

use futures_util::future::try_join_all;

use super::statements::{self as st, Bound, Statement};
use super::{CAS_ATTEMPTS, ScyllaStore, contention, rows};
use crate::store::contact::{self, tags_of_text, tags_text};
use crate::store::{ContactQuery, ContactRecord, ContactUpsert, StoreError, TagCount, Upserted};

/// Row kinds of the partition (see the module docs).
const CONTACT: &str = "c";
const COPY: &str = "t";
const COUNT: &str = "n";

/// Most contacts one conditional batch writes (a contact with 20 tags is 21 rows).
pub(super) const CONTACT_BATCH: usize = 16;
/// Rows read at once by a listing that searches (and so drops rows).
pub(super) const SEARCH_PAGE: u32 = 500;

type Part = (&'static Statement, Vec<Bound>);

/// What a write does to one contact.
#[derive(Debug, Clone, Copy)]
enum Change<'a> {
    Upsert(&'a ContactUpsert),
    Tags(&'a [String]),
    Delete,
}

/// One change's contact before and after (`None`: none).
type BeforeAfter = (Option<ContactRecord>, Option<ContactRecord>);

impl ScyllaStore {
    /// The partition's version (LOCAL_SERIAL); `None` if it was never written.
    async fn contacts_version(&self, tenant: &str) -> Result<Option<i64>, StoreError> {
        let s = &st::CONTACTS_VERSION_SERIAL;
        let row = self
            .first(s, s.bind(vec![("tenant", st::text(tenant))]))
            .await?;
        match row {
            Some(row) => rows::opt_big(&row, 0, "contacts version"),
            None => Ok(None),
        }
    }

    /// A contact's 'c' row.
    async fn contact_row(
        &self,
        tenant: &str,
        phone: &str,
    ) -> Result<Option<ContactRecord>, StoreError> {
        let s = &st::SELECT_CONTACT_ROW;
        let row = self
            .first(s, s.bind(row_key(tenant, CONTACT, "", phone)))
            .await?;
        row.map(|row| contact_of(tenant, phone.to_owned(), &row, 0))
            .transpose()
    }

    /// How many contacts have `tag` (0 without an 'n' row).
    async fn tag_count(&self, tenant: &str, tag: &str) -> Result<i64, StoreError> {
        let s = &st::SELECT_CONTACT_ROW;
        let row = self
            .first(s, s.bind(row_key(tenant, COUNT, tag, "")))
            .await?;
        match row {
            Some(row) => Ok(rows::opt_big(&row, 4, "tag count")?.unwrap_or(0)),
            None => Ok(0),
        }
    }

    /// Applies `changes`, in order, as one compare-and-set of the tenant's partition;
    /// returns each change's contact before and after it.
    async fn change_contacts(
        &self,
        tenant: &str,
        changes: &[(&str, Change<'_>)],
        now_ms: i64,
    ) -> Result<Vec<BeforeAfter>, StoreError> {
        let phones: BTreeSet<&str> = changes.iter().map(|(phone, _)| *phone).collect();
        for _ in 0..CAS_ATTEMPTS {
            let version = self.contacts_version(tenant).await?;
            let read = try_join_all(phones.iter().map(|phone| self.contact_row(tenant, phone)));
            let before: BTreeMap<&str, Option<ContactRecord>> =
                phones.iter().copied().zip(read.await?).collect();
            let mut state = before.clone();
            let mut results = Vec::with_capacity(changes.len());
            for (phone, change) in changes {
                let existing = state[phone].clone();
                let after = match change {
                    Change::Upsert(upsert) => {
                        Some(contact::upserted(tenant, existing.as_ref(), upsert, now_ms).contact)
                    }
                    Change::Tags(tags) => existing
                        .as_ref()
                        .map(|e| contact::retagged(e, tags, now_ms)),
                    Change::Delete => None,
                };
                state.insert(phone, after.clone());
                results.push((existing, after));
            }
            let mut parts: Vec<Part> = Vec::new();
            let mut deltas: BTreeMap<&str, i64> = BTreeMap::new();
            for phone in &phones {
                let (old, new) = (&before[phone], &state[phone]);
                if old != new {
                    parts.extend(contact_parts(
                        tenant,
                        phone,
                        old.as_ref(),
                        new.as_ref(),
                        &mut deltas,
                    ));
                }
            }
            if parts.is_empty() {
                // Nothing to write (a missing contact retagged or deleted): the reads
                // after the serial one are the answer.
                return Ok(results);
            }
            deltas.retain(|_, delta| *delta != 0);
            let counts = try_join_all(deltas.keys().map(|tag| self.tag_count(tenant, tag))).await?;
            for ((tag, delta), count) in deltas.iter().zip(counts) {
                parts.push(count_part(tenant, tag, count + delta));
            }
            let s = &st::SET_CONTACTS_VERSION;
            let condition = s.bind(vec![
                ("version", st::big(version.unwrap_or(0) + 1)),
                ("tenant", st::text(tenant)),
                // Null for a partition never written: `IF version = null` holds there.
                ("if_version", st::opt_big(version)),
            ]);
            parts.insert(0, (s, condition));
            if self.lwt_batch(parts).await? {
                return Ok(results);
            }
        }
        Err(contention(&format!("contacts of tenant {tenant}")))
    }
}

/// The key of one row, as bound by the statements that name one.
fn row_key(tenant: &str, kind: &str, tag: &str, phone: &str) -> Vec<(&'static str, Bound)> {
    vec![
        ("tenant", st::text(tenant)),
        ("row_kind", st::text(kind)),
        ("tag", st::text(tag)),
        ("phone", st::text(phone)),
    ]
}

/// A contact from `name, tags, created_at_ms, updated_at_ms` at `first`.
fn contact_of(
    tenant: &str,
    phone: String,
    row: &rows::Columns,
    first: usize,
) -> Result<ContactRecord, StoreError> {
    Ok(ContactRecord {
        tenant: tenant.to_owned(),
        phone,
        name: rows::text(row, first, "contact name")?,
        tags: tags_of_text(&rows::text(row, first + 1, "contact tags")?)?,
        created_at_ms: rows::big(row, first + 2, "contact created_at_ms")?,
        updated_at_ms: rows::big(row, first + 3, "contact updated_at_ms")?,
    })
}

fn put_row(kind: &str, tag: &str, c: &ContactRecord) -> Part {
    let s = &st::PUT_CONTACT_ROW;
    let mut values = row_key(&c.tenant, kind, tag, &c.phone);
    values.extend([
        ("name", st::text(&c.name)),
        ("tags", st::text(&tags_text(&c.tags))),
        ("created_at_ms", st::big(c.created_at_ms)),
        ("updated_at_ms", st::big(c.updated_at_ms)),
    ]);
    (s, s.bind(values))
}

fn delete_row(tenant: &str, kind: &str, tag: &str, phone: &str) -> Part {
    let s = &st::DELETE_CONTACT_ROW;
    (s, s.bind(row_key(tenant, kind, tag, phone)))
}

/// The 'n' row of `tag` set to `count`, or deleted at 0.
fn count_part(tenant: &str, tag: &str, count: i64) -> Part {
    if count <= 0 {
        return delete_row(tenant, COUNT, tag, "");
    }
    let s = &st::PUT_TAG_COUNT;
    let mut values = row_key(tenant, COUNT, tag, "");
    values.push(("tagged", st::big(count)));
    (s, s.bind(values))
}

/// The writes that take one contact from `old` to `new` (its row and its copies), and
/// the change of each tag's count in `deltas`.
fn contact_parts<'a>(
    tenant: &str,
    phone: &str,
    old: Option<&'a ContactRecord>,
    new: Option<&'a ContactRecord>,
    deltas: &mut BTreeMap<&'a str, i64>,
) -> Vec<Part> {
    let tags_of = |c: Option<&'a ContactRecord>| -> BTreeSet<&'a str> {
        c.map(|c| c.tags.iter().map(String::as_str).collect())
            .unwrap_or_default()
    };
    let (old_tags, new_tags) = (tags_of(old), tags_of(new));
    let mut parts = Vec::new();
    for tag in old_tags.difference(&new_tags) {
        parts.push(delete_row(tenant, COPY, tag, phone));
        *deltas.entry(tag).or_default() -= 1;
    }
    for tag in new_tags.difference(&old_tags) {
        *deltas.entry(tag).or_default() += 1;
    }
    match new {
        Some(c) => {
            parts.push(put_row(CONTACT, "", c));
            parts.extend(c.tags.iter().map(|tag| put_row(COPY, tag, c)));
        }
        None => parts.push(delete_row(tenant, CONTACT, "", phone)),
    }
    parts
}

pub(super) async fn upsert(
    store: &ScyllaStore,
    tenant: &str,
    contacts: &[ContactUpsert],
    now_ms: i64,
) -> Result<Vec<Upserted>, StoreError> {
    let mut out = Vec::with_capacity(contacts.len());
    for chunk in contacts.chunks(CONTACT_BATCH) {
        let changes: Vec<(&str, Change<'_>)> = chunk
            .iter()
            .map(|u| (u.phone.as_str(), Change::Upsert(u)))
            .collect();
        for (before, after) in store.change_contacts(tenant, &changes, now_ms).await? {
            let contact =
                after.ok_or_else(|| StoreError::Corrupt("an upsert left no contact".to_owned()))?;
            out.push(Upserted {
                contact,
                created: before.is_none(),
            });
        }
    }
    Ok(out)
}

pub(super) async fn get(
    store: &ScyllaStore,
    tenant: &str,
    phone: &str,
) -> Result<Option<ContactRecord>, StoreError> {
    store.contact_row(tenant, phone).await
}

pub(super) async fn set_tags(
    store: &ScyllaStore,
    tenant: &str,
    phone: &str,
    tags: &[String],
    now_ms: i64,
) -> Result<Option<ContactRecord>, StoreError> {
    let mut done = store
        .change_contacts(tenant, &[(phone, Change::Tags(tags))], now_ms)
        .await?;
    Ok(done.pop().and_then(|(_, after)| after))
}

pub(super) async fn delete(
    store: &ScyllaStore,
    tenant: &str,
    phone: &str,
) -> Result<bool, StoreError> {
    let mut done = store
        .change_contacts(tenant, &[(phone, Change::Delete)], 0)
        .await?;
    Ok(done.pop().is_some_and(|(before, _)| before.is_some()))
}

/// A page of [`ContactQuery`]: one read of `limit` rows from the cursor; with a search,
/// reads of [`SEARCH_PAGE`] rows from the cursor until `limit` of them match
/// ([`contact::matches`]) or the slice ends.
pub(super) async fn list(
    store: &ScyllaStore,
    query: &ContactQuery,
) -> Result<Vec<ContactRecord>, StoreError> {
    let limit = query.limit as usize;
    let (kind, tag) = match &query.tag {
        Some(tag) => (COPY, tag.as_str()),
        None => (CONTACT, ""),
    };
    let page = match query.search {
        None => query.limit,
        Some(_) => SEARCH_PAGE,
    };
    let mut after = query.after.clone().unwrap_or_default();
    let mut out = Vec::new();
    while out.len() < limit {
        let s = &st::LIST_CONTACT_ROWS;
        let mut values = row_key(&query.tenant, kind, tag, &after);
        values.push(("limit", st::int(limit_of(page))));
        let found = store.rows(s, s.bind(values)).await?;
        let read = found.len();
        for row in &found {
            let phone = rows::text(row, 0, "contact phone")?;
            after.clone_from(&phone);
            let contact = contact_of(&query.tenant, phone, row, 1)?;
            if query
                .search
                .as_deref()
                .is_none_or(|q| contact::matches(q, &contact))
            {
                out.push(contact);
                if out.len() == limit {
                    break;
                }
            }
        }
        if read < page as usize {
            break;
        }
    }
    Ok(out)
}

pub(super) async fn tag_counts(
    store: &ScyllaStore,
    tenant: &str,
    after: Option<&str>,
    limit: u32,
) -> Result<Vec<TagCount>, StoreError> {
    if limit == 0 {
        return Ok(Vec::new());
    }
    let s = &st::LIST_TAG_COUNTS;
    let values = s.bind(vec![
        ("tenant", st::text(tenant)),
        ("row_kind", st::text(COUNT)),
        ("tag", st::text(after.unwrap_or(""))),
        ("limit", st::int(limit_of(limit))),
    ]);
    store
        .rows(s, values)
        .await?
        .iter()
        .map(|row| {
            Ok(TagCount {
                tag: rows::text(row, 0, "tag")?,
                count: rows::unsigned(row, 1, "tag count")?,
            })
        })
        .collect()
}

/// A page size as CQL's `LIMIT` takes it.
fn limit_of(limit: u32) -> i32 {
    i32::try_from(limit).unwrap_or(i32::MAX)
}
