//! What a stored job holds beyond its row ([`JobSpec`]: the content, sealed, and the
//! window) and what its recipients' counts say ([`Progress`]), and how a recipient's
//! message is made of both ([`recipient_content`]).

use serde::{Deserialize, Serialize};

use super::window::Window;
use crate::content::Content;
use crate::seal::data_keys::DataKeys;
use crate::seal::text::Place;
use crate::store::{JobRecord, RecipientRecord, RecipientStatus, StoreError};

/// A job's `spec` field (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSpec {
    /// The content every recipient gets (its text, or its caption, replaced by the
    /// recipient's own text when it has one): [`Content::to_stored`], sealed for
    /// [`Place::job`].
    pub content: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub window: Option<Window>,
    /// The template the texts were filled from, if any (for the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub template_id: Option<String>,
}

impl JobSpec {
    /// The spec of a stored job.
    pub fn of(job: &JobRecord) -> Result<JobSpec, StoreError> {
        serde_json::from_str(&job.spec)
            .map_err(|e| StoreError::Corrupt(format!("job {} spec: {e}", job.id)))
    }
}

/// Where a job's recipients stand. Counts are cumulative along the way a message goes:
/// `sent` counts every message that left (sent, delivered or read), `delivered` those
/// delivered or read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Progress {
    pub total: u64,
    /// Not left yet: waiting for a device, or in a device's outbox.
    pub pending: u64,
    pub sent: u64,
    pub delivered: u64,
    pub read: u64,
    /// Failed for good (after its retries).
    pub failed: u64,
    /// Never left: the job was cancelled first.
    pub cancelled: u64,
}

impl Progress {
    /// The progress of counts by status ([`crate::store::Store::count_job_recipients`]).
    pub fn of(total: u64, counts: &[(RecipientStatus, u64)]) -> Progress {
        let mut p = Progress {
            total,
            ..Progress::default()
        };
        for &(status, n) in counts {
            match status {
                RecipientStatus::Pending | RecipientStatus::Queued => p.pending += n,
                RecipientStatus::Sent => p.sent += n,
                RecipientStatus::Delivered => {
                    p.sent += n;
                    p.delivered += n;
                }
                RecipientStatus::Read => {
                    p.sent += n;
                    p.delivered += n;
                    p.read += n;
                }
                RecipientStatus::Failed => p.failed += n,
                RecipientStatus::Cancelled => p.cancelled += n,
            }
        }
        p
    }

    /// Whether every recipient has an outcome (nothing pending).
    pub fn is_done(&self) -> bool {
        self.pending == 0
    }
}

/// The content a recipient's message carries: the job's, with the recipient's own text
/// when it has one.
pub async fn recipient_content(
    keys: &DataKeys,
    job: &JobRecord,
    spec: &JobSpec,
    recipient: &RecipientRecord,
) -> Result<Content, StoreError> {
    let stored = keys.open(&Place::job(&job.id), &spec.content).await?;
    let mut content = Content::from_stored(&stored);
    if !recipient.text.is_empty() {
        let id = recipient_place_id(recipient);
        content.text = keys
            .open(&Place::job_recipient(&id), &recipient.text)
            .await?;
    }
    Ok(content)
}

/// The id a recipient's own text is sealed under: `<job id>/<seq>`.
pub fn recipient_place_id(recipient: &RecipientRecord) -> String {
    format!("{}/{}", recipient.job_id, recipient.seq)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn progress_counts_along_the_way_a_message_goes() {
        let p = Progress::of(
            10,
            &[
                (RecipientStatus::Pending, 2),
                (RecipientStatus::Queued, 1),
                (RecipientStatus::Sent, 1),
                (RecipientStatus::Delivered, 2),
                (RecipientStatus::Read, 1),
                (RecipientStatus::Failed, 2),
                (RecipientStatus::Cancelled, 1),
            ],
        );
        assert_eq!(
            p,
            Progress {
                total: 10,
                pending: 3,
                sent: 4,
                delivered: 3,
                read: 1,
                failed: 2,
                cancelled: 1,
            }
        );
        assert!(!p.is_done());
        assert!(Progress::of(1, &[(RecipientStatus::Failed, 1)]).is_done());
    }
}
