//! Making a job ([`JobBook::create`](super::JobBook::create)): every rule checked
//! before the job exists, the recipients stored a batch at a time (each written while
//! the next is made), the job last.
//!
//! The recipients are never all in memory at once when they come from the contact book
//! (a page of contacts at a time); given inline they are the request's, already in
//! memory, and are checked for repeats there. Texts from a template are filled per
//! recipient here, so a variable a recipient lacks is a 422 now, not a broken message
//! later; a filled text is sealed like any message text. If a rule breaks half way (a
//! recipient lacking a variable), the recipients stored so far are deleted: nothing of
//! the job remains. A crash half way leaves recipients of a job that never existed;
//! nothing reads them.

use std::collections::{BTreeMap, HashSet};

use super::placeholders::TemplateText;
use super::window::Window;
use super::{JobBook, JobError, JobSpec, model};
use crate::clock::now_ms;
use crate::content::{Content, MAX_TEXT_CHARS, MediaPart};
use crate::seal::text::Place;
use crate::store::{
    ContactQuery, JobRecord, JobStatus, RecipientRecord, RecipientStatus, StoreError,
};

/// Most devices in a job's pool.
pub const MAX_DEVICES: usize = 50;
/// Most recipients of one job.
pub const MAX_RECIPIENTS: usize = 100_000;
/// Longest job name, in characters.
pub const MAX_NAME_CHARS: usize = 100;
/// Most variables of one recipient.
pub const MAX_VARS: usize = 50;
/// Recipients stored per store call.
const BATCH: usize = 1_000;

/// A job as a client asks for it (the gateway has checked the shapes; the rules are
/// checked here).
#[derive(Debug, Clone)]
pub struct NewJob {
    pub tenant: String,
    pub name: String,
    pub devices: Vec<String>,
    pub audience: Audience,
    /// The text (with media: the caption); with a template, ignored.
    pub text: Option<String>,
    pub template_id: Option<String>,
    /// A file of the media library, checked for the tenant already.
    pub media: Option<MediaPart>,
    /// Not started before this (Unix ms).
    pub start_at_ms: Option<i64>,
    pub window: Option<Window>,
}

/// Who a job goes to.
#[derive(Debug, Clone)]
pub enum Audience {
    /// These recipients, in this order (a number or group given twice gets one message).
    Given(Vec<NewRecipient>),
    /// Every contact of the tenant's book with this tag, in phone order.
    Tag(String),
}

/// One recipient as given.
#[derive(Debug, Clone)]
pub struct NewRecipient {
    /// A phone number or a group id (checked by the caller).
    pub to: String,
    /// Values of the template's variables.
    pub vars: BTreeMap<String, String>,
}

/// How a recipient's text is made.
enum Text {
    /// The job's text for everyone.
    Same,
    /// Filled per recipient.
    Template(TemplateText),
}

impl JobBook {
    /// Checks `new`, stores its recipients and then the job (`scheduled` if it starts
    /// later, else `running`). Returns the job.
    pub async fn create(&self, new: NewJob) -> Result<JobRecord, JobError> {
        let name_chars = new.name.chars().count();
        if new.name.trim().is_empty() || name_chars > MAX_NAME_CHARS {
            return Err(JobError::invalid(
                "invalid_name",
                format!("a job name is 1 to {MAX_NAME_CHARS} characters, not only spaces"),
            ));
        }
        self.check_devices(&new.tenant, &new.devices).await?;
        let (text, template_id, template) =
            match &new.template_id {
                Some(id) => {
                    let template = self.templates().get(&new.tenant, id).await.map_err(
                        |error| match error {
                            super::templates::TemplateError::NotFound(id) => JobError::NotFound {
                                code: "template_not_found",
                                what: format!("template {id}"),
                            },
                            super::templates::TemplateError::Store(e) => JobError::Store(e),
                            other => JobError::refused("invalid_template", other.to_string()),
                        },
                    )?;
                    let parsed = template
                        .parsed()
                        .map_err(|e| JobError::refused("invalid_template", e.to_string()))?;
                    (String::new(), Some(id.clone()), Text::Template(parsed))
                }
                None => {
                    let text = new.text.clone().unwrap_or_default();
                    if text.trim().is_empty() && new.media.is_none() {
                        return Err(JobError::refused(
                            "no_content",
                            "a job needs a text, a template_id or media",
                        ));
                    }
                    if text.chars().count() > MAX_TEXT_CHARS {
                        return Err(JobError::invalid(
                            "invalid_text",
                            format!("the text has more than {MAX_TEXT_CHARS} characters"),
                        ));
                    }
                    (text, None, Text::Same)
                }
            };
        let now = now_ms();
        let id = format!("job_{}", uuid::Uuid::new_v4().simple());
        let content = Content {
            text,
            media: new.media.clone(),
            mentions: Vec::new(),
            author: None,
            quote: None,
        };
        let sealed = self
            .keys
            .seal(&new.tenant, &Place::job(&id), &content.to_stored())
            .await?;
        let spec = JobSpec {
            content: sealed.into_string(),
            window: new.window.clone(),
            template_id,
        };
        let total = match self.store_recipients(&id, &new, &template, now).await {
            Ok(0) => {
                return Err(JobError::refused(
                    "no_recipients",
                    "the job has no recipients (an empty list, or no contact has the tag)",
                ));
            }
            Ok(total) => total,
            Err(error) => {
                // Nothing of a refused job remains.
                let _ = self.store.delete_job(&id).await;
                return Err(error);
            }
        };
        let later = new.start_at_ms.filter(|at| *at > now);
        let job = JobRecord {
            id,
            tenant: new.tenant,
            name: new.name,
            status: if later.is_some() {
                JobStatus::Scheduled
            } else {
                JobStatus::Running
            },
            devices: new.devices,
            // Serializing strings and a window cannot fail.
            spec: serde_json::to_string(&spec).unwrap_or_default(),
            total,
            start_at_ms: later,
            created_at_ms: now,
            started_at_ms: later.is_none().then_some(now),
            finished_at_ms: None,
            updated_at_ms: now,
        };
        if let Err(error) = self.store.create_job(&job).await {
            let _ = self.store.delete_job(&job.id).await;
            return Err(error.into());
        }
        Ok(job)
    }

    /// Every device is the tenant's (another tenant's is not found), each once, 1 to
    /// [`MAX_DEVICES`] of them.
    async fn check_devices(&self, tenant: &str, devices: &[String]) -> Result<(), JobError> {
        if devices.is_empty() || devices.len() > MAX_DEVICES {
            return Err(JobError::invalid(
                "invalid_devices",
                format!("a job has 1 to {MAX_DEVICES} devices"),
            ));
        }
        let mut seen = HashSet::new();
        for id in devices {
            if !seen.insert(id) {
                return Err(JobError::refused(
                    "invalid_devices",
                    format!("device {id} is named twice"),
                ));
            }
            match self.store.get_device(id).await? {
                Some(device) if device.tenant == tenant => {}
                _ => {
                    return Err(JobError::NotFound {
                        code: "device_not_found",
                        what: format!("device {id}"),
                    });
                }
            }
        }
        Ok(())
    }

    /// Stores the recipients, a batch at a time, numbered from 0; returns how many.
    ///
    /// Each batch is written while the next is made (the store's writer works on its
    /// own thread meanwhile), and every write has ended when this returns, also on an
    /// error: nothing of a refused job is written after the caller deletes it.
    async fn store_recipients(
        &self,
        job_id: &str,
        new: &NewJob,
        text: &Text,
        now: i64,
    ) -> Result<u64, JobError> {
        let mut seq = 0u64;
        let mut made = Vec::new();
        match &new.audience {
            Audience::Given(recipients) => {
                if recipients.len() > MAX_RECIPIENTS {
                    return Err(JobError::TooMany {
                        message: format!(
                            "{} recipients given; a job takes at most {MAX_RECIPIENTS}",
                            recipients.len()
                        ),
                    });
                }
                let mut seen = HashSet::with_capacity(recipients.len());
                for chunk in recipients.chunks(BATCH) {
                    let making = async {
                        let names = self.contact_names(&new.tenant, chunk, text).await?;
                        let mut batch = Vec::with_capacity(chunk.len());
                        for r in chunk {
                            if r.vars.len() > MAX_VARS {
                                return Err(JobError::refused(
                                    "invalid_vars",
                                    format!("recipient {} has more than {MAX_VARS} vars", r.to),
                                ));
                            }
                            if !seen.insert(r.to.as_str()) {
                                continue;
                            }
                            let name = names.get(&r.to).map(String::as_str);
                            batch.push(
                                self.recipient(
                                    job_id,
                                    seq,
                                    &new.tenant,
                                    &r.to,
                                    &r.vars,
                                    name,
                                    text,
                                    now,
                                )
                                .await?,
                            );
                            seq += 1;
                        }
                        Ok(batch)
                    };
                    made = self.alongside(&made, making).await?;
                }
            }
            Audience::Tag(tag) => {
                let mut after = None;
                let empty = BTreeMap::new();
                loop {
                    let making = async {
                        let page = self
                            .store
                            .list_contacts(&ContactQuery {
                                tenant: new.tenant.clone(),
                                tag: Some(tag.clone()),
                                search: None,
                                after: after.clone(),
                                limit: BATCH as u32,
                            })
                            .await?;
                        let mut batch = Vec::with_capacity(page.len());
                        for contact in &page {
                            if seq as usize >= MAX_RECIPIENTS {
                                return Err(JobError::TooMany {
                                    message: format!(
                                        "more than {MAX_RECIPIENTS} contacts have the tag; a job takes at most \
                                         {MAX_RECIPIENTS}"
                                    ),
                                });
                            }
                            batch.push(
                                self.recipient(
                                    job_id,
                                    seq,
                                    &new.tenant,
                                    &contact.phone,
                                    &empty,
                                    Some(&contact.name),
                                    text,
                                    now,
                                )
                                .await?,
                            );
                            seq += 1;
                        }
                        after = page.last().map(|last| last.phone.clone());
                        Ok((batch, page.len() == BATCH))
                    };
                    let (batch, more) = self.alongside(&made, making).await?;
                    made = batch;
                    if !more {
                        break;
                    }
                }
            }
        }
        if !made.is_empty() {
            self.store.put_job_recipients(&made).await?;
        }
        Ok(seq)
    }

    /// Writes `batch` (the one made last) while `making` makes the next; both have ended
    /// when this returns.
    async fn alongside<T>(
        &self,
        batch: &[RecipientRecord],
        making: impl Future<Output = Result<T, JobError>>,
    ) -> Result<T, JobError> {
        let writing = async {
            if batch.is_empty() {
                return Ok(());
            }
            self.store.put_job_recipients(batch).await
        };
        let (written, made) = tokio::join!(writing, making);
        written?;
        made
    }

    /// The saved names of the recipients of `chunk` that a template needs a `name` for
    /// and do not give one.
    async fn contact_names(
        &self,
        tenant: &str,
        chunk: &[NewRecipient],
        text: &Text,
    ) -> Result<std::collections::HashMap<String, String>, JobError> {
        let Text::Template(template) = text else {
            return Ok(Default::default());
        };
        if !template.variables().contains("name") {
            return Ok(Default::default());
        }
        let wanted: Vec<String> = chunk
            .iter()
            .filter(|r| !r.vars.contains_key("name"))
            .map(|r| r.to.clone())
            .collect();
        self.contacts()
            .names_of(tenant, &wanted)
            .await
            .map_err(|error| match error {
                crate::contacts::ContactError::Store(e) => JobError::Store(e),
                other => JobError::Store(StoreError::Corrupt(other.to_string())),
            })
    }

    /// One recipient row, its text filled and sealed when the job has a template.
    #[allow(clippy::too_many_arguments)]
    async fn recipient(
        &self,
        job_id: &str,
        seq: u64,
        tenant: &str,
        to: &str,
        vars: &BTreeMap<String, String>,
        contact_name: Option<&str>,
        text: &Text,
        now: i64,
    ) -> Result<RecipientRecord, JobError> {
        let mut record = RecipientRecord {
            job_id: job_id.to_owned(),
            seq,
            to: to.to_owned(),
            text: String::new(),
            status: RecipientStatus::Pending,
            device_id: None,
            message_id: None,
            attempts: 0,
            error: None,
            next_at_ms: 0,
            updated_at_ms: now,
        };
        if let Text::Template(template) = text {
            let filled = template
                .render(|name| match name {
                    "phone" => vars.get("phone").map(String::as_str).or(Some(to)),
                    "name" => vars.get("name").map(String::as_str).or(contact_name),
                    other => vars.get(other).map(String::as_str),
                })
                .map_err(|missing| {
                    JobError::refused(
                        "missing_variables",
                        format!("recipient {to} (number {}): {missing}", seq + 1),
                    )
                })?;
            if filled.trim().is_empty() || filled.chars().count() > MAX_TEXT_CHARS {
                return Err(JobError::refused(
                    "invalid_text",
                    format!(
                        "the text filled for recipient {to} is empty or longer than {MAX_TEXT_CHARS} characters"
                    ),
                ));
            }
            let place_id = model::recipient_place_id(&record);
            record.text = self
                .keys
                .seal(tenant, &Place::job_recipient(&place_id), &filled)
                .await?
                .into_string();
        }
        Ok(record)
    }
}
