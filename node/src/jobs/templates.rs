//! [`TemplateBook`]: a tenant's message templates (`/v1/templates`), kept as records of
//! the store's directory (kind `template`, no schema of their own), their text sealed
//! with the tenant's data key like a message's.
//!
//! A template is a name and a text with `{{var}}` placeholders ([`super::placeholders`]),
//! checked when it is saved. A job fills it per recipient when the job is made, so a
//! template changed or deleted later does not change a job already made.

use std::sync::Arc;

use serde::{Deserialize, Serialize};

use super::placeholders::{PlaceholderError, TemplateText};
use crate::clock::now_ms;
use crate::content::MAX_TEXT_CHARS;
use crate::seal::data_keys::DataKeys;
use crate::seal::text::Place;
use crate::store::{AccessKind, AccessQuery, AccessRecord, Store, StoreError};

/// Longest template name, in characters.
pub const MAX_NAME_CHARS: usize = 100;

/// A template as stored and shown: its text in clear.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    /// `tpl_` and 32 hex digits.
    pub id: String,
    pub tenant: String,
    pub name: String,
    pub text: String,
    pub created_at_ms: i64,
    pub updated_at_ms: i64,
}

impl Template {
    /// The text, checked (it was when it was saved).
    pub fn parsed(&self) -> Result<TemplateText, PlaceholderError> {
        TemplateText::parse(&self.text)
    }
}

/// The record's JSON body: the text sealed.
#[derive(Debug, Serialize, Deserialize)]
struct Body {
    name: String,
    text: String,
    created_at_ms: i64,
}

/// Why a template call failed.
#[derive(Debug, thiserror::Error)]
pub enum TemplateError {
    /// A name or text breaks a rule; `code` names which (`invalid_name`,
    /// `invalid_text`, `invalid_template`).
    #[error("{message}")]
    Invalid { code: &'static str, message: String },
    #[error("template {0} not found")]
    NotFound(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The templates of every tenant, over the store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct TemplateBook {
    store: Arc<dyn Store>,
    keys: Arc<DataKeys>,
}

impl TemplateBook {
    pub fn new(store: Arc<dyn Store>, keys: Arc<DataKeys>) -> TemplateBook {
        TemplateBook { store, keys }
    }

    /// Checks and stores a new template of `tenant`.
    pub async fn create(
        &self,
        tenant: &str,
        name: &str,
        text: &str,
    ) -> Result<Template, TemplateError> {
        check(name, text)?;
        let now = now_ms();
        let template = Template {
            id: format!("tpl_{}", uuid::Uuid::new_v4().simple()),
            tenant: tenant.to_owned(),
            name: name.to_owned(),
            text: text.to_owned(),
            created_at_ms: now,
            updated_at_ms: now,
        };
        let record = self.record(&template).await?;
        self.store.create_access(&record).await?;
        Ok(template)
    }

    /// The template `id` of `tenant` (another tenant's is not found).
    pub async fn get(&self, tenant: &str, id: &str) -> Result<Template, TemplateError> {
        let record = self
            .store
            .get_access(AccessKind::Template, id)
            .await?
            .filter(|record| record.tenant.as_deref() == Some(tenant))
            .ok_or_else(|| TemplateError::NotFound(id.to_owned()))?;
        self.open(record).await
    }

    /// The tenant's templates in id order, after `after`, at most `limit`.
    pub async fn list(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<Template>, TemplateError> {
        let records = self
            .store
            .list_access(&AccessQuery {
                kind: AccessKind::Template,
                tenant: Some(tenant.to_owned()),
                after: after.map(str::to_owned),
                limit,
            })
            .await?;
        let mut templates = Vec::with_capacity(records.len());
        for record in records {
            templates.push(self.open(record).await?);
        }
        Ok(templates)
    }

    /// Replaces the name and text of the tenant's template `id`.
    pub async fn update(
        &self,
        tenant: &str,
        id: &str,
        name: &str,
        text: &str,
    ) -> Result<Template, TemplateError> {
        check(name, text)?;
        let old = self.get(tenant, id).await?;
        let template = Template {
            name: name.to_owned(),
            text: text.to_owned(),
            updated_at_ms: now_ms().max(old.updated_at_ms),
            ..old
        };
        let record = self.record(&template).await?;
        self.store.update_access(&record).await?;
        Ok(template)
    }

    /// Deletes the tenant's template `id`; `false` if it has none of that id.
    pub async fn delete(&self, tenant: &str, id: &str) -> Result<bool, TemplateError> {
        match self.get(tenant, id).await {
            Ok(_) => Ok(self.store.delete_access(AccessKind::Template, id).await?),
            Err(TemplateError::NotFound(_)) => Ok(false),
            Err(error) => Err(error),
        }
    }

    async fn record(&self, template: &Template) -> Result<AccessRecord, TemplateError> {
        let sealed = self
            .keys
            .seal(
                &template.tenant,
                &Place::template(&template.id),
                &template.text,
            )
            .await?;
        let body = Body {
            name: template.name.clone(),
            text: sealed.into_string(),
            created_at_ms: template.created_at_ms,
        };
        Ok(AccessRecord {
            kind: AccessKind::Template,
            id: template.id.clone(),
            tenant: Some(template.tenant.clone()),
            // Serializing strings and numbers cannot fail.
            body: serde_json::to_string(&body).unwrap_or_default(),
            updated_at_ms: template.updated_at_ms,
        })
    }

    async fn open(&self, record: AccessRecord) -> Result<Template, TemplateError> {
        let body: Body = serde_json::from_str(&record.body).map_err(|e| {
            StoreError::Corrupt(format!("template {} does not read: {e}", record.id))
        })?;
        let text = self
            .keys
            .open(&Place::template(&record.id), &body.text)
            .await?;
        Ok(Template {
            tenant: record.tenant.unwrap_or_default(),
            id: record.id,
            name: body.name,
            text,
            created_at_ms: body.created_at_ms,
            updated_at_ms: record.updated_at_ms,
        })
    }
}

/// The rules of a template's name and text.
fn check(name: &str, text: &str) -> Result<(), TemplateError> {
    let invalid = |code, message: String| Err(TemplateError::Invalid { code, message });
    let name_chars = name.chars().count();
    if name.trim().is_empty() || name_chars > MAX_NAME_CHARS {
        return invalid(
            "invalid_name",
            format!("a template name is 1 to {MAX_NAME_CHARS} characters, not only spaces"),
        );
    }
    let text_chars = text.chars().count();
    if text.trim().is_empty() || text_chars > MAX_TEXT_CHARS {
        return invalid(
            "invalid_text",
            format!("a template text is 1 to {MAX_TEXT_CHARS} characters, not only spaces"),
        );
    }
    TemplateText::parse(text)
        .map(|_| ())
        .map_err(|error| TemplateError::Invalid {
            code: "invalid_template",
            message: error.to_string(),
        })
}

#[cfg(test)]
mod tests;
