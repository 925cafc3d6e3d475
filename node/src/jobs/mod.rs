//! Campaigns (issue 16): what a bulk job is made of. So far its parts that stand alone:
//! message templates with `{{var}}` placeholders and the send retry settings.
//!
//! # Layout
//! - [`placeholders`]: the template text rule (check, variables, fill).
//! - [`templates`]: [`templates::TemplateBook`], a tenant's stored templates.
//! - [`retries`]: [`retries::RetrySettings`], how failed sends are tried again.

pub mod placeholders;
pub mod retries;
pub mod templates;
