//! The node's job runner: every [`TICK`], for each active job, the job's devices that
//! run on this node take the job's next recipients as their paces allow, and the node
//! that runs a job's first device keeps its status and progress.
//!
//! **Hand-off.** A device takes a recipient only when it is READY, not paused by a ban,
//! has nothing of its own still waiting to be sent, and its limiter would let a send go
//! within a tick: so each device's pace decides how many it takes, and a faster
//! (VERIFIED) device takes more. It claims the recipient in the store (a
//! compare-and-set: no other device gets it) and sends it through the device's ordinary
//! send path with the recipient's [`job_key`], so the limiter spaces it like any send
//! and a repeat of the hand-off is the same message. A send the limiter refuses goes
//! back to the pool, not counted as an attempt.
//!
//! **Mending.** A crash between a claim and its send leaves a recipient `queued` with
//! no message; a crash before a receipt moved its recipient leaves it behind its
//! message. Every [`MEND_EVERY`] (and when a device is first seen here), the runner
//! sends each such recipient of its devices again (the key makes that the same
//! message) and moves it as its message stands.
//!
//! **Handing back.** A device that cannot send for a while (banned, unlinked, stopped,
//! logged out), or whose job is paused or cancelled, gives back what it claimed and has
//! not sent (a claimed message waits for its slot, which the limiter's jitter may put
//! seconds away): each message is cancelled
//! first (exactly: refused once it has left), then its recipient is pending again, for
//! the others. A banned or unlinked device is seen by its own node at once; one that
//! runs nowhere by the lead's node within [`MEND_EVERY`].
//!
//! **Status and progress.** The node running the job's lead device (the first of its
//! pool that is wanted running) starts a scheduled job at its time, completes a running
//! one when no recipient is left to send, and emits `job.progress` (as that device's
//! event: SSE and its webhook) when the counts or the status changed, at most once per
//! tick.

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use serde_json::{Map, Value};
use tracing::{debug, warn};

use super::Fleet;
use crate::api::{FleetError, SendText};
use crate::clock::now_ms;
use crate::events::EventKind;
use crate::jobs::follow::{self, job_key};
use crate::jobs::model::recipient_content;
use crate::jobs::{JobSpec, Progress};
use crate::store::{
    DeviceStatus, JobQuery, JobRecord, JobStatus, MessageStatus, RecipientQuery, RecipientRecord,
    RecipientStatus,
};

/// How often the runner looks at the active jobs.
pub(crate) const TICK: Duration = Duration::from_millis(500);
/// How often each device's `queued` recipients are checked against their messages.
const MEND_EVERY: Duration = Duration::from_secs(30);
/// A refused or failed hand-off is tried again after this.
const HAND_OFF_RETRY_MS: i64 = 2_000;

/// What the runner remembers between ticks.
#[derive(Default)]
pub(super) struct RunnerState {
    /// When each (job, device) was last mended.
    mended: HashMap<(String, String), Instant>,
    /// The last progress and status emitted per job.
    emitted: HashMap<String, (JobStatus, Progress)>,
    /// The jobs that were active at the last tick.
    active: HashSet<String>,
}

impl Fleet {
    /// Runs the job runner until the fleet shuts down.
    pub(super) fn spawn_job_runner(&self) {
        let ctx = std::sync::Arc::downgrade(&self.ctx);
        let (catalog, supervisor, subjects) = (
            self.catalog.clone(),
            self.supervisor.clone(),
            self.subjects.clone(),
        );
        tokio::spawn(async move {
            let mut state = RunnerState::default();
            loop {
                tokio::time::sleep(TICK).await;
                let Some(ctx) = ctx.upgrade() else { return };
                if matches!(
                    supervisor.get_status(),
                    ractor::ActorStatus::Stopped | ractor::ActorStatus::Stopping
                ) {
                    return;
                }
                let fleet = Fleet {
                    ctx,
                    catalog: catalog.clone(),
                    supervisor: supervisor.clone(),
                    subjects: subjects.clone(),
                };
                if let Err(error) = fleet.run_jobs(&mut state).await {
                    warn!(%error, "job runner");
                }
            }
        });
    }

    /// One tick over every active job.
    async fn run_jobs(&self, state: &mut RunnerState) -> Result<(), FleetError> {
        let mut after = None;
        let mut seen = HashSet::new();
        loop {
            let jobs = self
                .ctx
                .store
                .list_jobs(&JobQuery {
                    tenant: None,
                    active_only: true,
                    after: after.take(),
                    limit: 500,
                })
                .await?;
            let Some(last) = jobs.last() else { break };
            after = Some(last.id.clone());
            let full = jobs.len() == 500;
            for job in jobs {
                seen.insert(job.id.clone());
                if let Err(error) = self.run_job(state, job).await {
                    warn!(%error, "job runner: a job");
                }
            }
            if !full {
                break;
            }
        }
        // Jobs cancelled since the last tick: what this node's devices still hold is
        // cancelled, so nothing more leaves.
        let gone: Vec<String> = state.active.difference(&seen).cloned().collect();
        for id in gone {
            if let Some(job) = self.ctx.store.get_job(&id).await?
                && job.status == JobStatus::Cancelled
            {
                for device in job.devices.iter().filter(|d| self.is_running(d)) {
                    self.hand_back(&job, device).await?;
                }
                self.ctx
                    .store
                    .move_job_recipients(
                        &job.id,
                        RecipientStatus::Pending,
                        RecipientStatus::Cancelled,
                        now_ms(),
                    )
                    .await?;
            }
        }
        state.active = seen.clone();
        // Jobs that ended: one last progress from their lead, then forget them.
        let ended: Vec<String> = state
            .emitted
            .keys()
            .filter(|id| !seen.contains(*id))
            .cloned()
            .collect();
        for id in ended {
            if let Some(job) = self.ctx.store.get_job(&id).await? {
                self.report(state, &job).await?;
            }
            state.emitted.remove(&id);
            state.mended.retain(|(job, _), _| *job != id);
        }
        Ok(())
    }

    async fn run_job(&self, state: &mut RunnerState, job: JobRecord) -> Result<(), FleetError> {
        let now = now_ms();
        let lead = self.lead_of(&job).await?;
        let lead = lead.is_some_and(|d| self.is_running(&d));
        let mut job = job;
        if job.status == JobStatus::Scheduled && lead && job.start_at_ms.is_none_or(|at| at <= now)
        {
            let mut started = job.clone();
            started.status = JobStatus::Running;
            started.started_at_ms = Some(now);
            started.updated_at_ms = now;
            if self
                .ctx
                .store
                .update_job(&started, JobStatus::Scheduled)
                .await?
            {
                job = started;
            }
        }
        let spec = JobSpec::of(&job)?;
        for device in job.devices.iter().filter(|d| self.is_running(d)) {
            if job.status == JobStatus::Paused {
                // What a device holds would leave at its slot, maybe seconds away (the
                // limiter's jitter): cancelled, back in the pool until the resume.
                self.hand_back(&job, device).await?;
                continue;
            }
            let key = (job.id.clone(), device.clone());
            if state
                .mended
                .get(&key)
                .is_none_or(|at| at.elapsed() >= MEND_EVERY)
            {
                state.mended.insert(key, Instant::now());
                self.mend(&job, &spec, device).await?;
            }
            if job.status == JobStatus::Running
                && spec.window.as_ref().is_none_or(|w| w.is_open(now))
            {
                self.hand_job_recipient(&job, &spec, device).await?;
            }
        }
        if lead {
            for device in job.devices.iter().filter(|d| !self.is_running(d)) {
                let key = (job.id.clone(), device.clone());
                if state
                    .mended
                    .get(&key)
                    .is_some_and(|at| at.elapsed() < MEND_EVERY)
                {
                    continue;
                }
                state.mended.insert(key, Instant::now());
                let stopped = self.ctx.store.get_device(device).await?.is_none_or(|d| {
                    matches!(
                        d.status,
                        DeviceStatus::Stopped | DeviceStatus::LoggedOut | DeviceStatus::Failed
                    )
                });
                if stopped {
                    self.hand_back(&job, device).await?;
                }
            }
            self.report(state, &job).await?;
        }
        Ok(())
    }

    /// Gives the recipients `device` claimed and has not sent back to the pool: each
    /// one's message is cancelled first (refused if it left already: then it stays, and
    /// its receipts move it), so none is sent twice. Not an attempt.
    async fn hand_back(&self, job: &JobRecord, device: &str) -> Result<(), FleetError> {
        let held = self
            .ctx
            .store
            .list_job_recipients(&RecipientQuery::claimed_by(&job.id, device, None, 500))
            .await?;
        for recipient in held {
            if let Some(message_id) = &recipient.message_id {
                match self.cancel_message(device, message_id).await {
                    Ok(message) if message.status == MessageStatus::Cancelled => {}
                    Ok(_) | Err(_) => continue,
                }
            }
            debug!(job = %job.id, seq = recipient.seq, %device, "handed back");
            self.release(&recipient, 0).await?;
        }
        Ok(())
    }

    /// Puts a claimed recipient back in the pool, due in `retry_in_ms`, its claim not
    /// counted as an attempt (if it is still as claimed).
    async fn release(
        &self,
        recipient: &RecipientRecord,
        retry_in_ms: i64,
    ) -> Result<(), FleetError> {
        let now = now_ms();
        let mut back = recipient.clone();
        back.status = RecipientStatus::Pending;
        back.device_id = None;
        back.message_id = None;
        back.attempts = back.attempts.saturating_sub(1);
        back.next_at_ms = now + retry_in_ms.max(0);
        back.updated_at_ms = now;
        self.ctx
            .store
            .update_job_recipient(&back, RecipientStatus::Queued)
            .await?;
        Ok(())
    }

    /// The device whose node keeps the job's status and progress: the first of its
    /// pool that is wanted running (so running somewhere, or being recovered), else
    /// the first. Every node reads the same answer from the store.
    async fn lead_of(&self, job: &JobRecord) -> Result<Option<String>, FleetError> {
        for device in &job.devices {
            if let Some(record) = self.ctx.store.get_device(device).await?
                && record.desired_running
            {
                return Ok(Some(device.clone()));
            }
        }
        Ok(job.devices.first().cloned())
    }

    /// Gives `device` the job's next recipient if its pace allows one now.
    async fn hand_job_recipient(
        &self,
        job: &JobRecord,
        spec: &JobSpec,
        device: &str,
    ) -> Result<(), FleetError> {
        let status = self.catalog.device(device).await?.status;
        if status == DeviceStatus::ScanQr {
            // Unlinked: it will not send what it holds until a new pairing.
            return self.hand_back(job, device).await;
        }
        if status != DeviceStatus::Ready {
            return Ok(());
        }
        let limits = self.limits(device).await?;
        let now = now_ms();
        if limits.paused_until_ms.is_some_and(|until| until > now) {
            // Banned for a while: what it holds goes to the others.
            return self.hand_back(job, device).await;
        }
        if limits.in_flight > 0
            || limits.next_send_ms > now + TICK.as_millis() as i64
            || limits.day.remaining == 0
        {
            return Ok(());
        }
        let Some(recipient) = self
            .ctx
            .store
            .claim_job_recipient(&job.id, device, now)
            .await?
        else {
            return Ok(());
        };
        self.send_recipient(job, spec, device, recipient).await
    }

    /// Sends a claimed recipient through the device's send path; a refusal puts it back
    /// in the pool.
    async fn send_recipient(
        &self,
        job: &JobRecord,
        spec: &JobSpec,
        device: &str,
        recipient: RecipientRecord,
    ) -> Result<(), FleetError> {
        let content = recipient_content(&self.ctx.keys, job, spec, &recipient).await?;
        let send = SendText {
            to_phone: recipient.to.clone(),
            text: content.text,
            idempotency_key: Some(job_key(&job.id, recipient.seq, recipient.attempts)),
            media: content.media.map(Into::into),
            mentions: Vec::new(),
            send_at_ms: None,
            reply_to: None,
        };
        match self.send_text(device, send).await {
            Ok(sent) => {
                // The message may have moved already; the receipts keep the recipient.
                let mut queued = recipient.clone();
                queued.message_id = Some(sent.message.id.clone());
                if !self
                    .ctx
                    .store
                    .update_job_recipient(&queued, RecipientStatus::Queued)
                    .await?
                {
                    follow::follow(self.ctx.store.as_ref(), &sent.message).await?;
                }
                Ok(())
            }
            Err(error) => {
                debug!(job = %job.id, seq = recipient.seq, %device, %error, "hand-off refused");
                let retry_in = match &error {
                    FleetError::RateLimited { retry_after_ms, .. } => *retry_after_ms,
                    _ => HAND_OFF_RETRY_MS,
                };
                self.release(&recipient, retry_in).await
            }
        }
    }

    /// Sends again each `queued` recipient of `device` that has no message (the key
    /// makes it the same message if it had one), and moves each as its message stands.
    async fn mend(&self, job: &JobRecord, spec: &JobSpec, device: &str) -> Result<(), FleetError> {
        let mut after = None;
        loop {
            let page = self
                .ctx
                .store
                .list_job_recipients(&RecipientQuery::claimed_by(&job.id, device, after, 200))
                .await?;
            let Some(last) = page.last() else { break };
            after = Some(last.seq);
            let full = page.len() == 200;
            for recipient in page {
                match &recipient.message_id {
                    None if job.status.is_active() => {
                        self.send_recipient(job, spec, device, recipient).await?;
                    }
                    None => {}
                    Some(message_id) => {
                        if let Some(message) =
                            self.ctx.store.get_message(device, message_id).await?
                        {
                            follow::follow(self.ctx.store.as_ref(), &message).await?;
                        }
                    }
                }
            }
            if !full {
                break;
            }
        }
        Ok(())
    }

    /// Completes the job when nothing is left to send, and emits `job.progress` when
    /// its status or counts changed since the last one.
    async fn report(&self, state: &mut RunnerState, job: &JobRecord) -> Result<(), FleetError> {
        let counts = self.ctx.store.count_job_recipients(&job.id).await?;
        let progress = Progress::of(job.total, &counts);
        let mut job = job.clone();
        if job.status == JobStatus::Running && progress.is_done() {
            let mut done = job.clone();
            let now = now_ms();
            done.status = JobStatus::Completed;
            done.finished_at_ms = Some(now);
            done.updated_at_ms = now;
            if self.ctx.store.update_job(&done, JobStatus::Running).await? {
                job = done;
            }
        }
        if state.emitted.get(&job.id) == Some(&(job.status, progress)) {
            return Ok(());
        }
        state.emitted.insert(job.id.clone(), (job.status, progress));
        let Some(lead) = self.lead_of(&job).await? else {
            return Ok(());
        };
        let mut data = match serde_json::to_value(progress) {
            Ok(Value::Object(map)) => map,
            _ => Map::new(),
        };
        data.insert("device_id".into(), Value::from(lead.as_str()));
        data.insert("job_id".into(), Value::from(job.id.as_str()));
        data.insert("tenant".into(), Value::from(job.tenant.as_str()));
        data.insert("name".into(), Value::from(job.name.as_str()));
        data.insert("status".into(), Value::from(job.status.as_str()));
        self.ctx.emit(&lead, EventKind::JobProgress, data).await;
        Ok(())
    }
}
