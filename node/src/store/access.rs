//! The rows of access control: tenants, API keys and users (the access directory, which
//! also keeps the tenants' wrapped data keys), and the audit log.
//!
//! A store keeps directory records as opaque JSON documents under `(kind, id)`, with
//! the tenant they belong to beside them so that a tenant's records can be listed; the
//! rules about what they mean live in [`crate::access`]. Secrets never reach a store in
//! clear: keys arrive hashed, passwords as argon2id hashes.

/// What a directory record is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum AccessKind {
    Tenant,
    Key,
    User,
    /// A tenant's data key, wrapped by the master key ([`crate::seal::data_keys`]).
    DataKey,
    /// A tenant's message template ([`crate::jobs::templates`]).
    Template,
}

impl AccessKind {
    /// Every kind, in a stable order.
    pub const ALL: [AccessKind; 5] = [
        AccessKind::Tenant,
        AccessKind::Key,
        AccessKind::User,
        AccessKind::DataKey,
        AccessKind::Template,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            AccessKind::Tenant => "tenant",
            AccessKind::Key => "key",
            AccessKind::User => "user",
            AccessKind::DataKey => "data_key",
            AccessKind::Template => "template",
        }
    }

    /// Parses a stored name.
    pub fn parse(s: &str) -> Option<AccessKind> {
        AccessKind::ALL.into_iter().find(|kind| kind.as_str() == s)
    }
}

/// One directory record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessRecord {
    pub kind: AccessKind,
    /// Unique per kind.
    pub id: String,
    /// The tenant it belongs to; `None` for what belongs to no tenant (tenants
    /// themselves, operator keys and users).
    pub tenant: Option<String>,
    /// The record, a JSON document (its shape is [`crate::access`]'s business).
    pub body: String,
    /// When it was last written, Unix milliseconds.
    pub updated_at_ms: i64,
}

/// A page request for [`super::Store::list_access`]: records of one kind ordered by id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessQuery {
    pub kind: AccessKind,
    /// Only records of this tenant, when given.
    pub tenant: Option<String>,
    /// Exclusive lower bound on the id (the previous page's last id).
    pub after: Option<String>,
    pub limit: u32,
}

/// One entry of the audit log: a change someone asked for through the API, and what
/// came of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditEntry {
    /// Unique, and ordered as the entries were made: the first 13 characters are the
    /// zero-padded Unix milliseconds of `at_ms`.
    pub id: String,
    pub at_ms: i64,
    /// Who: `key:<id>`, `user:<name>` or `bootstrap` (the `WAFLEET_ADMIN_KEY`).
    pub actor: String,
    /// The actor's tenant; `None` for an operator (all tenants).
    pub tenant: Option<String>,
    /// What: the API operation (`create_device`, `revoke_key`, ...).
    pub action: String,
    /// On what: the request's path, e.g. `/v1/devices/shop-1/start`.
    pub target: String,
    /// From where: the client's address.
    pub source: String,
    /// The HTTP status answered.
    pub status: u16,
    /// `ok`, or the error code answered (`device_not_found`, ...).
    pub outcome: String,
}

/// A page request for [`super::Store::list_audit`]: entries in id order (oldest first),
/// every given filter matching exactly.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditQuery {
    pub actor: Option<String>,
    pub action: Option<String>,
    pub target: Option<String>,
    /// Only the entries of this tenant, when given.
    pub tenant: Option<String>,
    /// `at_ms >= since_ms`.
    pub since_ms: Option<i64>,
    /// `at_ms < until_ms`.
    pub until_ms: Option<i64>,
    /// Exclusive lower bound on the id (the previous page's last id).
    pub after: Option<String>,
    pub limit: u32,
}

impl AuditQuery {
    /// Whether `entry` passes every filter but the page bounds (`after`, `limit`).
    pub fn matches(&self, entry: &AuditEntry) -> bool {
        fn same(filter: &Option<String>, value: &str) -> bool {
            filter.as_deref().is_none_or(|f| f == value)
        }
        same(&self.actor, &entry.actor)
            && same(&self.action, &entry.action)
            && same(&self.target, &entry.target)
            && self
                .tenant
                .as_deref()
                .is_none_or(|t| entry.tenant.as_deref() == Some(t))
            && self.since_ms.is_none_or(|s| entry.at_ms >= s)
            && self.until_ms.is_none_or(|u| entry.at_ms < u)
    }
}
