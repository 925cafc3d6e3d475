//! Campaigns (issue 16): bulk jobs over a pool of devices, with templates, a sending
//! window, retries on the Fibonacci schedule, and control (pause, resume, cancel, retry).
//!
//! A job's recipients are rows of the store. Each node runs a job runner
//! (`fleet/job_runner.rs`) that, for the job devices it runs, claims the next recipient whenever a
//! device has room in its pace, and sends it through the device's ordinary send path
//! (so every job send passes the device's rate limiter, and a repeat of a hand-off is
//! the same message: its Idempotency-Key names the job, recipient and attempt). A
//! message's receipts move its recipient along ([`follow`]); a failure is retried after
//! `base × fib(n)` ([`retries`]) by whichever device claims it next.
//!
//! # Layout
//! - [`book`]: [`JobBook`], reads and control; [`create`]: making a job.
//! - [`model`]: the job's spec and [`Progress`].
//! - [`placeholders`], [`templates`]: templates and their `{{var}}` placeholders.
//! - [`retries`]: [`retries::RetrySettings`], how failed sends are tried again.
//! - [`window`]: [`window::Window`], the hours of the day a job may send.
//! - [`error`]: [`JobError`], why a call failed.

pub mod book;
pub mod create;
pub mod error;
pub mod follow;
pub mod model;
pub mod placeholders;
pub mod retries;
pub mod templates;
pub mod window;

pub use book::{JobBook, JobView};
pub use create::{Audience, NewJob, NewRecipient};
pub use error::JobError;
pub use model::{JobSpec, Progress};
