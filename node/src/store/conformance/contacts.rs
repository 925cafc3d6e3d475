//! Conformance of the contact books: upserts, tags, listings by tag, tag counts,
//! deletes, tenants kept apart.

use super::{fresh_prefix, ok};
use crate::store::{ContactQuery, ContactRecord, ContactUpsert, Store, TagCount};

fn upsert(phone: &str, name: &str, tags: Option<&[&str]>) -> ContactUpsert {
    ContactUpsert {
        phone: phone.to_owned(),
        name: name.to_owned(),
        tags: tags.map(|tags| tags.iter().map(|t| t.to_string()).collect()),
    }
}

fn strings(list: &[&str]) -> Vec<String> {
    list.iter().map(|s| s.to_string()).collect()
}

fn phones(contacts: &[ContactRecord]) -> Vec<&str> {
    contacts.iter().map(|c| c.phone.as_str()).collect()
}

fn counts(list: &[(&str, u64)]) -> Vec<TagCount> {
    list.iter()
        .map(|(tag, count)| TagCount {
            tag: tag.to_string(),
            count: *count,
        })
        .collect()
}

async fn list(
    store: &dyn Store,
    tenant: &str,
    tag: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> Vec<ContactRecord> {
    search(store, tenant, tag, None, after, limit).await
}

async fn search(
    store: &dyn Store,
    tenant: &str,
    tag: Option<&str>,
    q: Option<&str>,
    after: Option<&str>,
    limit: u32,
) -> Vec<ContactRecord> {
    let query = ContactQuery {
        tenant: tenant.to_owned(),
        tag: tag.map(str::to_owned),
        search: q.map(str::to_owned),
        after: after.map(str::to_owned),
        limit,
    };
    ok(store.list_contacts(&query).await, "list contacts")
}

/// Every page of a listing, `page` contacts at a time, following the last phone.
async fn all_pages(store: &dyn Store, tenant: &str, tag: Option<&str>, page: u32) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    loop {
        let after = out.last().cloned();
        let got = list(store, tenant, tag, after.as_deref(), page).await;
        let full = got.len() == page as usize;
        out.extend(got.into_iter().map(|c| c.phone));
        if !full {
            return out;
        }
    }
}

async fn tags(store: &dyn Store, tenant: &str) -> Vec<TagCount> {
    ok(
        store.list_contact_tags(tenant, None, 100).await,
        "list tags",
    )
}

/// Upserts create then update (the creation time and, unless given, the tags kept),
/// in order within one call; lists are by phone, paged, per tenant and per tag; tag
/// counts follow every write; set tags needs the contact; delete says whether there was
/// one and takes its tags with it.
pub async fn check_contact_book(store: &dyn Store) {
    let p = fresh_prefix();
    let (t1, t2) = (format!("{p}-t1"), format!("{p}-t2"));
    let (a, b, c, d) = (
        "6281100000001",
        "6281100000002",
        "6281100000003",
        "6281100000004",
    );

    let done = ok(
        store
            .upsert_contacts(
                &t1,
                &[
                    upsert(c, "Citra", Some(&["vip"])),
                    upsert(a, "Ani 'é' \"x\"", Some(&["vip", "b", "vip"])),
                    upsert(b, "Budi", None),
                    // A phone twice in one call: created, then updated.
                    upsert(d, "Dewi", Some(&["a"])),
                    upsert(d, "Dewi S", Some(&["b"])),
                ],
                1_000,
            )
            .await,
        "upsert",
    );
    let created: Vec<bool> = done.iter().map(|u| u.created).collect();
    assert_eq!(
        created,
        [true, true, true, true, false],
        "created flags in order"
    );
    assert_eq!(
        done[1].contact.tags,
        strings(&["b", "vip"]),
        "a set of tags, sorted"
    );
    assert_eq!(done[4].contact.tags, strings(&["b"]));
    ok(
        store
            .upsert_contacts(
                &t2,
                &[upsert(a, "Other tenant's Ani", Some(&["vip"]))],
                1_000,
            )
            .await,
        "upsert in another tenant",
    );

    let got = ok(store.get_contact(&t1, a).await, "get").expect("contact a");
    assert_eq!(
        got,
        ContactRecord {
            tenant: t1.clone(),
            phone: a.to_owned(),
            name: "Ani 'é' \"x\"".to_owned(),
            tags: strings(&["b", "vip"]),
            created_at_ms: 1_000,
            updated_at_ms: 1_000,
        }
    );
    let renamed = ok(
        store
            .upsert_contacts(&t1, &[upsert(a, "Ani", None)], 2_000)
            .await,
        "update",
    );
    assert!(!renamed[0].created);
    assert_eq!(renamed[0].contact.tags, strings(&["b", "vip"]), "tags kept");
    assert_eq!(
        ok(store.get_contact(&t1, a).await, "get"),
        Some(ContactRecord {
            name: "Ani".to_owned(),
            updated_at_ms: 2_000,
            ..got
        }),
        "renamed, created_at kept"
    );
    assert_eq!(
        ok(store.get_contact(&t2, a).await, "get").map(|c| c.name),
        Some("Other tenant's Ani".to_owned()),
        "tenants are apart"
    );
    assert_eq!(
        ok(store.get_contact(&t1, "6281199999999").await, "get"),
        None
    );

    assert_eq!(
        phones(&list(store, &t1, None, None, 10).await),
        [a, b, c, d]
    );
    assert_eq!(all_pages(store, &t1, None, 3).await, [a, b, c, d]);
    assert_eq!(phones(&list(store, &t1, None, Some(b), 1).await), [c]);
    let vip = list(store, &t1, Some("vip"), None, 10).await;
    assert_eq!(phones(&vip), [a, c], "by tag, in phone order");
    assert_eq!(
        vip[0].name, "Ani",
        "a listing by tag has the contact as it is now"
    );
    assert_eq!(all_pages(store, &t1, Some("b"), 1).await, [a, d]);
    // Searches: a phone prefix (`+` or not) or a name prefix, case aside; with a tag,
    // and paged.
    let t1_ref = t1.as_str();
    let found = |q: &'static str, tag: Option<&'static str>| async move {
        phones(&search(store, t1_ref, tag, Some(q), None, 10).await)
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    assert_eq!(found("62811", None).await, [a, b, c, d]);
    assert_eq!(found("+6281100000003", None).await, [c]);
    assert_eq!(found("bU", None).await, [b]);
    assert_eq!(found("d", None).await, [d], "Dewi S");
    assert_eq!(found("ani", Some("vip")).await, [a]);
    assert!(found("citra", Some("b")).await.is_empty());
    assert!(
        found("ni", None).await.is_empty(),
        "a prefix, not a substring"
    );
    assert_eq!(
        phones(&search(store, &t1, None, Some("6281"), Some(a), 2).await),
        [b, c],
        "a search pages like a listing"
    );
    assert!(
        list(store, &t1, Some("a"), None, 10).await.is_empty(),
        "d left tag a"
    );
    assert_eq!(
        tags(store, &t1).await,
        counts(&[("b", 2), ("vip", 2)]),
        "a tag no contact has is not listed"
    );
    assert_eq!(
        ok(
            store.list_contact_tags(&t1, Some("b"), 1).await,
            "tags after b"
        ),
        counts(&[("vip", 2)])
    );
    assert_eq!(tags(store, &t2).await, counts(&[("vip", 1)]));

    let retagged = ok(
        store
            .set_contact_tags(&t1, c, &strings(&["x", "x"]), 3_000)
            .await,
        "set tags",
    )
    .expect("c exists");
    assert_eq!(retagged.tags, strings(&["x"]));
    assert_eq!(
        (retagged.created_at_ms, retagged.updated_at_ms),
        (1_000, 3_000)
    );
    assert_eq!(ok(store.get_contact(&t1, c).await, "get"), Some(retagged));
    assert_eq!(phones(&list(store, &t1, Some("vip"), None, 10).await), [a]);
    assert_eq!(
        tags(store, &t1).await,
        counts(&[("b", 2), ("vip", 1), ("x", 1)])
    );
    let missing = "6281199999998";
    assert_eq!(
        ok(
            store
                .set_contact_tags(&t1, missing, &strings(&["vip"]), 3_000)
                .await,
            "set tags"
        ),
        None,
        "no such contact"
    );
    assert_eq!(
        ok(store.get_contact(&t1, missing).await, "get"),
        None,
        "nothing created"
    );

    assert!(ok(store.delete_contact(&t1, a).await, "delete"));
    assert!(!ok(store.delete_contact(&t1, a).await, "delete again"));
    assert_eq!(ok(store.get_contact(&t1, a).await, "get"), None);
    assert_eq!(phones(&list(store, &t1, Some("b"), None, 10).await), [d]);
    assert!(list(store, &t1, Some("vip"), None, 10).await.is_empty());
    assert_eq!(tags(store, &t1).await, counts(&[("b", 1), ("x", 1)]));
    assert!(
        ok(store.get_contact(&t2, a).await, "get").is_some(),
        "the other tenant's contact of that phone stays"
    );
    assert_eq!(tags(store, &t2).await, counts(&[("vip", 1)]));
}

/// A bulk upsert larger than a backend's batches: every contact written once, listed
/// by tag in phone order page by page, counted.
pub async fn check_contact_bulk(store: &dyn Store) {
    let tenant = format!("{}-bulk", fresh_prefix());
    let all: Vec<String> = (0..75).map(|n| format!("62812{n:08}")).collect();
    let mut upserts: Vec<ContactUpsert> = all
        .iter()
        .rev()
        .map(|phone| upsert(phone, &format!("contact {phone}"), Some(&["audience"])))
        .collect();
    // Every third one also in "third"; and one given again at the end, renamed.
    for u in upserts.iter_mut().step_by(3) {
        u.tags = Some(strings(&["audience", "third"]));
    }
    upserts.push(upsert(&all[0], "renamed", None));
    let done = ok(
        store.upsert_contacts(&tenant, &upserts, 5_000).await,
        "bulk upsert",
    );
    assert_eq!(done.len(), upserts.len());
    assert_eq!(done.iter().filter(|u| u.created).count(), all.len());
    assert_eq!(all_pages(store, &tenant, Some("audience"), 7).await, all);
    assert_eq!(all_pages(store, &tenant, None, 500).await, all);
    let third = all_pages(store, &tenant, Some("third"), 10).await;
    assert_eq!(third.len(), 25);
    assert_eq!(
        tags(store, &tenant).await,
        counts(&[("audience", 75), ("third", 25)])
    );
    let found = search(
        store,
        &tenant,
        Some("third"),
        Some("CONTACT 62812"),
        None,
        500,
    )
    .await;
    assert_eq!(found.len(), 25, "a name search with a tag");
    let last = search(store, &tenant, None, Some(&all[74]), None, 5).await;
    assert_eq!(
        phones(&last),
        [all[74].as_str()],
        "the last contact, found by phone"
    );
    let first = list(store, &tenant, Some("audience"), None, 1).await;
    assert_eq!(first[0].name, "renamed", "the later upsert of a phone wins");
}
