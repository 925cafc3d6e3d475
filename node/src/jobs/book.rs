//! [`JobBook`]: what any process with the store can do with a tenant's jobs — make one
//! ([`super::create`]), read it with its progress, list its recipients, and pause,
//! resume, cancel or retry it. Sending is the job runners' (`fleet/job_runner.rs`), on
//! the nodes that run the job's devices.
//!
//! Control is a compare-and-set on the job's status, so two clients (or a client and a
//! runner completing the job) cannot both win. Runners read the active jobs every half
//! second, so a pause stops new hand-offs within that.

use std::sync::Arc;

use super::{JobError, Progress};
use crate::clock::now_ms;
use crate::contacts::ContactBook;
use crate::seal::data_keys::DataKeys;
use crate::store::{
    JobQuery, JobRecord, JobStatus, RecipientQuery, RecipientRecord, RecipientStatus, Store,
};

use super::templates::TemplateBook;

/// The jobs of every tenant, over the store. Cheap to clone.
#[derive(Debug, Clone)]
pub struct JobBook {
    pub(super) store: Arc<dyn Store>,
    pub(super) keys: Arc<DataKeys>,
}

/// A job and where its recipients stand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JobView {
    pub job: JobRecord,
    pub progress: Progress,
}

impl JobBook {
    pub fn new(store: Arc<dyn Store>, keys: Arc<DataKeys>) -> JobBook {
        JobBook { store, keys }
    }

    pub(super) fn templates(&self) -> TemplateBook {
        TemplateBook::new(self.store.clone(), self.keys.clone())
    }

    pub(super) fn contacts(&self) -> ContactBook {
        ContactBook::new(self.store.clone())
    }

    /// The tenant's job `id` (another tenant's is not found).
    pub async fn job(&self, tenant: &str, id: &str) -> Result<JobRecord, JobError> {
        self.store
            .get_job(id)
            .await?
            .filter(|job| job.tenant == tenant)
            .ok_or_else(|| JobError::job_not_found(id))
    }

    /// The tenant's job `id` with its progress.
    pub async fn get(&self, tenant: &str, id: &str) -> Result<JobView, JobError> {
        let job = self.job(tenant, id).await?;
        self.view(job).await
    }

    /// A job with its progress.
    pub async fn view(&self, job: JobRecord) -> Result<JobView, JobError> {
        let counts = self.store.count_job_recipients(&job.id).await?;
        Ok(JobView {
            progress: Progress::of(job.total, &counts),
            job,
        })
    }

    /// The tenant's jobs in id order (ids are random: an order, not the creation
    /// order), after `after`, at most `limit`, with their progress.
    pub async fn list(
        &self,
        tenant: &str,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<JobView>, JobError> {
        let jobs = self
            .store
            .list_jobs(&JobQuery {
                tenant: Some(tenant.to_owned()),
                active_only: false,
                after: after.map(str::to_owned),
                limit,
            })
            .await?;
        let mut views = Vec::with_capacity(jobs.len());
        for job in jobs {
            views.push(self.view(job).await?);
        }
        Ok(views)
    }

    /// The job's recipients in order, with `status` when given, after `after`.
    pub async fn recipients(
        &self,
        tenant: &str,
        id: &str,
        status: Option<RecipientStatus>,
        after: Option<u64>,
        limit: u32,
    ) -> Result<Vec<RecipientRecord>, JobError> {
        self.job(tenant, id).await?;
        Ok(self
            .store
            .list_job_recipients(&RecipientQuery {
                job_id: id.to_owned(),
                status,
                device_id: None,
                after,
                limit,
            })
            .await?)
    }

    /// Stops new hand-offs (within a runner's tick); what devices already queued goes
    /// on at their pace. A scheduled or running job; 409 `job_not_running` otherwise.
    pub async fn pause(&self, tenant: &str, id: &str) -> Result<JobView, JobError> {
        self.change(
            tenant,
            id,
            &[JobStatus::Running, JobStatus::Scheduled],
            |job, _| {
                job.status = JobStatus::Paused;
            },
        )
        .await
    }

    /// Hands off again: `running` (or `scheduled` if its start is still ahead). A paused
    /// job; 409 `job_not_paused` otherwise.
    pub async fn resume(&self, tenant: &str, id: &str) -> Result<JobView, JobError> {
        self.change(tenant, id, &[JobStatus::Paused], |job, now| {
            if job.start_at_ms.is_some_and(|at| at > now) {
                job.status = JobStatus::Scheduled;
            } else {
                job.status = JobStatus::Running;
                job.started_at_ms.get_or_insert(now);
            }
        })
        .await
    }

    /// Stops the job for good: recipients not handed to a device are `cancelled`. An
    /// active job; 409 `job_finished` otherwise.
    pub async fn cancel(&self, tenant: &str, id: &str) -> Result<JobView, JobError> {
        let view = self
            .change(
                tenant,
                id,
                &[JobStatus::Running, JobStatus::Scheduled, JobStatus::Paused],
                |job, now| {
                    job.status = JobStatus::Cancelled;
                    job.finished_at_ms = Some(now);
                },
            )
            .await?;
        self.store
            .move_job_recipients(
                id,
                RecipientStatus::Pending,
                RecipientStatus::Cancelled,
                now_ms(),
            )
            .await?;
        self.view(view.job).await
    }

    /// Queues the failed recipients again (each with its attempts afresh); a completed
    /// job runs again. Returns how many, and the job. 409 `job_finished` for a cancelled
    /// job.
    pub async fn retry(&self, tenant: &str, id: &str) -> Result<(u64, JobView), JobError> {
        let job = self.job(tenant, id).await?;
        if job.status == JobStatus::Cancelled {
            return Err(JobError::Conflict {
                code: "job_finished",
                message: format!("job {id} was cancelled"),
            });
        }
        let now = now_ms();
        let moved = self
            .store
            .move_job_recipients(id, RecipientStatus::Failed, RecipientStatus::Pending, now)
            .await?;
        if moved > 0 && job.status == JobStatus::Completed {
            let mut again = job.clone();
            again.status = JobStatus::Running;
            again.finished_at_ms = None;
            again.updated_at_ms = now;
            self.store.update_job(&again, JobStatus::Completed).await?;
        }
        Ok((moved, self.get(tenant, id).await?))
    }

    /// Applies `change` to the job if its status is one of `from`, as a compare-and-set
    /// (tried again if another writer changed the job between the read and the write).
    async fn change(
        &self,
        tenant: &str,
        id: &str,
        from: &[JobStatus],
        change: impl Fn(&mut JobRecord, i64),
    ) -> Result<JobView, JobError> {
        for _ in 0..5 {
            let job = self.job(tenant, id).await?;
            if !from.contains(&job.status) {
                let code = match job.status {
                    JobStatus::Completed | JobStatus::Cancelled => "job_finished",
                    JobStatus::Paused => "job_paused",
                    JobStatus::Scheduled | JobStatus::Running => "job_not_paused",
                };
                return Err(JobError::Conflict {
                    code,
                    message: format!("job {id} is {}", job.status.as_str()),
                });
            }
            let mut changed = job.clone();
            let now = now_ms();
            change(&mut changed, now);
            changed.updated_at_ms = now;
            if self.store.update_job(&changed, job.status).await? {
                return self.view(changed).await;
            }
        }
        Err(JobError::Conflict {
            code: "job_busy",
            message: format!("job {id} kept changing; try again"),
        })
    }
}
