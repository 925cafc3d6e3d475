//! A job message's receipts move its recipient along: `sent`, `delivered`, `read`; a
//! failure is retried (back to `pending` after `base × fib(n)`, for whichever device
//! claims it next) until the attempts run out or the failure is one no retry mends.
//!
//! A job's message is known by its Idempotency-Key, [`job_key`]: the job, the
//! recipient's `seq` and the attempt. A receipt for an attempt the recipient has moved
//! past, or from a device that is not the one that claimed it, changes nothing. Clients
//! cannot send keys with this prefix (the gateway refuses them), and the device check
//! keeps a key naming another tenant's job from touching it.

use super::retries::RetrySettings;
use crate::clock::now_ms;
use crate::settings;
use crate::store::{
    MessageRecord, MessageStatus, RecipientQuery, RecipientRecord, RecipientStatus, Store,
    StoreError,
};

/// What every job message's Idempotency-Key starts with.
pub const JOB_KEY_PREFIX: &str = "job:";

/// Failures no retry mends: the number or group is not there to write to.
const PERMANENT: &[&str] = &[
    "invalid_phone",
    "not_on_whatsapp",
    "group_not_found",
    "not_participant",
];

/// The Idempotency-Key of a job recipient's `attempt`-th send.
pub fn job_key(job_id: &str, seq: u64, attempt: u32) -> String {
    format!("{JOB_KEY_PREFIX}{job_id}:{seq}:{attempt}")
}

/// The job, `seq` and attempt a [`job_key`] names.
pub fn parse_job_key(key: &str) -> Option<(&str, u64, u32)> {
    let rest = key.strip_prefix(JOB_KEY_PREFIX)?;
    let mut parts = rest.rsplitn(3, ':');
    let attempt = parts.next()?.parse().ok()?;
    let seq = parts.next()?.parse().ok()?;
    let job_id = parts.next()?;
    Some((job_id, seq, attempt))
}

/// Whether a send that failed with `error` may be tried again.
pub fn is_retryable(error: Option<&str>) -> bool {
    error.is_none_or(|e| !PERMANENT.contains(&e))
}

/// One recipient of a job.
pub(crate) async fn recipient(
    store: &dyn Store,
    job_id: &str,
    seq: u64,
) -> Result<Option<RecipientRecord>, StoreError> {
    let page = store
        .list_job_recipients(&RecipientQuery {
            job_id: job_id.to_owned(),
            status: None,
            device_id: None,
            after: seq.checked_sub(1),
            limit: 1,
        })
        .await?;
    Ok(page.into_iter().next().filter(|r| r.seq == seq))
}

/// Moves the recipient of `message` (a job's, by its key) as the message moved. A
/// message that is not a job's changes nothing.
pub(crate) async fn follow(store: &dyn Store, message: &MessageRecord) -> Result<(), StoreError> {
    let Some((job_id, seq, attempt)) = message.idempotency_key.as_deref().and_then(parse_job_key)
    else {
        return Ok(());
    };
    // A compare-and-set over the status read: read again if a runner moved it between.
    for _ in 0..5 {
        let Some(current) = recipient(store, job_id, seq).await? else {
            return Ok(());
        };
        if current.attempts != attempt
            || current.device_id.as_deref() != Some(message.device_id.as_str())
        {
            return Ok(());
        }
        let Some(next) = moved(store, &current, message).await? else {
            return Ok(());
        };
        if store.update_job_recipient(&next, current.status).await? {
            return Ok(());
        }
    }
    Ok(())
}

/// The recipient after its message's move, or `None` if the move changes nothing (an
/// older receipt after a newer one).
async fn moved(
    store: &dyn Store,
    current: &RecipientRecord,
    message: &MessageRecord,
) -> Result<Option<RecipientRecord>, StoreError> {
    fn rank(status: RecipientStatus) -> u8 {
        match status {
            RecipientStatus::Pending | RecipientStatus::Queued => 0,
            RecipientStatus::Sent => 1,
            RecipientStatus::Delivered => 2,
            RecipientStatus::Read => 3,
            RecipientStatus::Failed | RecipientStatus::Cancelled => 4,
        }
    }
    let now = now_ms();
    let mut next = current.clone();
    next.message_id = Some(message.id.clone());
    next.updated_at_ms = now;
    let status = match message.status {
        MessageStatus::Queued | MessageStatus::Scheduled => return Ok(None),
        // Cancelled (by a client, through its id): the recipient will not get it.
        MessageStatus::Cancelled => {
            if rank(current.status) != 0 {
                return Ok(None);
            }
            RecipientStatus::Cancelled
        }
        MessageStatus::Sent => RecipientStatus::Sent,
        MessageStatus::Delivered => RecipientStatus::Delivered,
        MessageStatus::Read => RecipientStatus::Read,
        MessageStatus::Failed => {
            if rank(current.status) != 0 {
                return Ok(None);
            }
            let settings: RetrySettings = settings::load(store)
                .await
                .unwrap_or_else(|_| RetrySettings::default());
            next.error = message.error.clone();
            match settings
                .retry_after(current.attempts)
                .filter(|_| is_retryable(message.error.as_deref()))
            {
                Some(wait) => {
                    next.status = RecipientStatus::Pending;
                    next.device_id = None;
                    next.message_id = None;
                    next.next_at_ms = now + wait.as_millis() as i64;
                }
                None => next.status = RecipientStatus::Failed,
            }
            return Ok(Some(next));
        }
    };
    if rank(status) <= rank(current.status) {
        return Ok(None);
    }
    next.status = status;
    Ok(Some(next))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_job_key_names_its_job_recipient_and_attempt() {
        let key = job_key("job_0123abcd", 41, 3);
        assert_eq!(key, "job:job_0123abcd:41:3");
        assert_eq!(parse_job_key(&key), Some(("job_0123abcd", 41, 3)));
        assert_eq!(parse_job_key("order-17"), None);
        assert_eq!(parse_job_key("job:x:1"), None);
        assert_eq!(parse_job_key("job:x:y:1"), None);
    }

    #[test]
    fn only_failures_a_retry_may_mend_are_retried() {
        assert!(is_retryable(None));
        assert!(is_retryable(Some("banned")));
        assert!(is_retryable(Some("network down")));
        assert!(!is_retryable(Some("not_on_whatsapp")));
        assert!(!is_retryable(Some("invalid_phone")));
    }
}
