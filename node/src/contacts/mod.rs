//! The tenants' contact books: [`ContactBook`], the operations any process with the
//! store can run (the gateway's routes, later a campaign drawing its audience by tag),
//! with the rules of [`rules`] applied to what clients give.
//!
//! A contact is saved under its tenant and phone (its id): saving a phone again updates
//! it (its name; its tags when given), see [`crate::store::contact::upserted`]. Tags
//! are a set of short lower-case words; the contacts with a tag are listed in phone
//! order page by page, which the stores serve with one seek and `limit` rows a page,
//! however large the audience (see `store::sqlite::contacts` and
//! `store::scylla::contacts`).
//!
//! # Layout
//! - this file: [`ContactBook`] and [`ContactError`].
//! - [`rules`]: phone, name, tags, import size.

pub mod rules;

use std::sync::Arc;

use crate::store::{ContactQuery, ContactRecord, ContactUpsert, Store, StoreError, TagCount};

/// Why a contact-book call failed.
#[derive(Debug, thiserror::Error)]
pub enum ContactError {
    /// A value breaks a rule of [`rules`]; `code` names which.
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    /// An import of more than [`rules::MAX_IMPORT`] contacts.
    #[error(
        "{given} contacts given; one request imports at most {}",
        rules::MAX_IMPORT
    )]
    TooMany { given: usize },
    #[error("contact {0} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ContactError {
    fn invalid(code: &'static str, message: impl Into<String>) -> ContactError {
        ContactError::Invalid {
            code,
            message: message.into(),
        }
    }
}

/// A contact as a client gives it (checked by [`ContactBook`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewContact {
    pub phone: String,
    pub name: String,
    /// `None` keeps a saved contact's tags.
    pub tags: Option<Vec<String>>,
}

/// What an import did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Imported {
    pub created: u64,
    pub updated: u64,
}

/// One contact saved: the contact after, and whether it was new.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Saved {
    pub contact: ContactRecord,
    pub created: bool,
}

/// The contact-book operations over a store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct ContactBook {
    store: Arc<dyn Store>,
}

impl ContactBook {
    pub fn new(store: Arc<dyn Store>) -> ContactBook {
        ContactBook { store }
    }

    /// `new` checked and as stored.
    fn checked(new: NewContact) -> Result<ContactUpsert, ContactError> {
        rules::name(&new.name)?;
        Ok(ContactUpsert {
            phone: rules::phone(&new.phone)?,
            name: new.name,
            tags: new.tags.as_deref().map(rules::tags).transpose()?,
        })
    }

    /// Saves one contact of `tenant`.
    pub async fn save(
        &self,
        tenant: &str,
        new: NewContact,
        now_ms: i64,
    ) -> Result<Saved, ContactError> {
        let upsert = Self::checked(new)?;
        let mut done = self
            .store
            .upsert_contacts(tenant, &[upsert], now_ms)
            .await?;
        let done = done
            .pop()
            .ok_or_else(|| StoreError::Corrupt("an upsert of one contact returned none".into()))?;
        Ok(Saved {
            contact: done.contact,
            created: done.created,
        })
    }

    /// Saves up to [`rules::MAX_IMPORT`] contacts of `tenant`, in order (a phone given
    /// twice is saved twice, the later winning). Every contact is checked before any is
    /// written: one that breaks a rule is `Invalid` naming its place, and nothing is
    /// saved.
    pub async fn import(
        &self,
        tenant: &str,
        contacts: Vec<NewContact>,
        now_ms: i64,
    ) -> Result<Imported, ContactError> {
        if contacts.len() > rules::MAX_IMPORT {
            return Err(ContactError::TooMany {
                given: contacts.len(),
            });
        }
        let upserts = contacts
            .into_iter()
            .enumerate()
            .map(|(i, new)| {
                Self::checked(new).map_err(|e| match e {
                    ContactError::Invalid { code, message } => ContactError::Invalid {
                        code,
                        message: format!("contacts[{i}]: {message}"),
                    },
                    other => other,
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        let done = self.store.upsert_contacts(tenant, &upserts, now_ms).await?;
        let created = done.iter().filter(|u| u.created).count() as u64;
        Ok(Imported {
            created,
            updated: done.len() as u64 - created,
        })
    }

    /// One contact of `tenant` by its phone.
    pub async fn get(&self, tenant: &str, phone: &str) -> Result<ContactRecord, ContactError> {
        let phone = rules::phone(phone)?;
        self.store
            .get_contact(tenant, &phone)
            .await?
            .ok_or(ContactError::NotFound(phone))
    }

    /// The saved names of those of `peers` (phone numbers as a message log keeps them,
    /// with or without `+`) that are in `tenant`'s book, by peer: what a chat list shows.
    /// Peers that are not phone numbers (groups) or not saved are left out.
    pub async fn names_of(
        &self,
        tenant: &str,
        peers: &[String],
    ) -> Result<std::collections::HashMap<String, String>, ContactError> {
        let mut names = std::collections::HashMap::new();
        for peer in peers {
            let Ok(phone) = rules::phone(peer) else {
                continue;
            };
            if let Some(contact) = self.store.get_contact(tenant, &phone).await? {
                names.insert(peer.clone(), contact.name);
            }
        }
        Ok(names)
    }

    /// A page of `tenant`'s contacts (with `tag`, and matching the search `q`, when
    /// given) in phone order, after the phone `after`.
    pub async fn list(
        &self,
        tenant: &str,
        tag: Option<&str>,
        q: Option<&str>,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<ContactRecord>, ContactError> {
        if let Some(q) = q {
            rules::search(q)?;
        }
        let query = ContactQuery {
            tenant: tenant.to_owned(),
            tag: tag.map(rules::tag).transpose()?,
            search: q.map(str::to_owned),
            after: after.map(cursor_phone).transpose()?,
            limit,
        };
        Ok(self.store.list_contacts(&query).await?)
    }

    /// Replaces a contact's tags.
    pub async fn set_tags(
        &self,
        tenant: &str,
        phone: &str,
        tags: &[String],
        now_ms: i64,
    ) -> Result<ContactRecord, ContactError> {
        let phone = rules::phone(phone)?;
        let tags = rules::tags(tags)?;
        self.store
            .set_contact_tags(tenant, &phone, &tags, now_ms)
            .await?
            .ok_or(ContactError::NotFound(phone))
    }

    /// Deletes a contact.
    pub async fn delete(&self, tenant: &str, phone: &str) -> Result<(), ContactError> {
        let phone = rules::phone(phone)?;
        if self.store.delete_contact(tenant, &phone).await? {
            Ok(())
        } else {
            Err(ContactError::NotFound(phone))
        }
    }

    /// A page of `tenant`'s tags with their counts, in tag order, after the tag `after`.
    pub async fn tags(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<TagCount>, ContactError> {
        let after = after
            .map(|a| rules::tag(a).map_err(|_| invalid_cursor()))
            .transpose()?;
        Ok(self
            .store
            .list_contact_tags(tenant, after.as_deref(), limit)
            .await?)
    }
}

fn invalid_cursor() -> ContactError {
    ContactError::invalid("invalid_cursor", "cursor is not one this API gave")
}

/// The phone of a contacts cursor (the last phone of the page before).
fn cursor_phone(cursor: &str) -> Result<String, ContactError> {
    rules::phone(cursor).map_err(|_| invalid_cursor())
}
