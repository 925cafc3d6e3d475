//! Passwords: argon2id (the library's defaults, OWASP's minimum: 19 MiB, 2 passes),
//! stored as PHC strings, hashed and checked off the async threads, at most
//! [`CONCURRENT_HASHES`] at a time so that a burst of logins cannot take every core
//! or much memory.

use std::sync::{Arc, LazyLock};

use argon2::Argon2;
use argon2::password_hash::phc::PasswordHash;
use argon2::password_hash::{PasswordHasher, PasswordVerifier};
use tokio::sync::Semaphore;

/// How many argon2 computations run at once in a process.
pub const CONCURRENT_HASHES: usize = 2;
/// Shortest password accepted.
pub const MIN_LENGTH: usize = 10;
/// Longest password accepted (argon2 takes any length; this bounds the work a request
/// can ask for).
pub const MAX_LENGTH: usize = 256;

static PERMITS: LazyLock<Arc<Semaphore>> =
    LazyLock::new(|| Arc::new(Semaphore::new(CONCURRENT_HASHES)));

/// A password the rules refuse, and why.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct WeakPassword(pub String);

/// Checks the length rules.
pub fn check(password: &str) -> Result<(), WeakPassword> {
    let chars = password.chars().count();
    if !(MIN_LENGTH..=MAX_LENGTH).contains(&chars) {
        return Err(WeakPassword(format!(
            "a password has {MIN_LENGTH} to {MAX_LENGTH} characters"
        )));
    }
    Ok(())
}

/// The PHC string of `password` under a fresh salt.
pub async fn hash(password: String) -> String {
    run(move || {
        Argon2::default()
            .hash_password(password.as_bytes())
            .expect("argon2 hashes any password with default parameters")
            .to_string()
    })
    .await
}

/// Whether `password` matches the PHC string `stored` (false if `stored` is not one).
pub async fn verify(password: String, stored: String) -> bool {
    run(move || {
        PasswordHash::new(&stored).is_ok_and(|parsed| {
            Argon2::default()
                .verify_password(password.as_bytes(), &parsed)
                .is_ok()
        })
    })
    .await
}

async fn run<T: Send + 'static>(work: impl FnOnce() -> T + Send + 'static) -> T {
    let _permit = PERMITS
        .clone()
        .acquire_owned()
        .await
        .expect("the semaphore is never closed");
    tokio::task::spawn_blocking(work)
        .await
        .expect("password hashing does not panic")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_hash_verifies_its_password_only() {
        let stored = hash("correct horse".into()).await;
        assert!(stored.starts_with("$argon2id$"), "{stored}");
        assert!(verify("correct horse".into(), stored.clone()).await);
        assert!(!verify("wrong horse!".into(), stored).await);
        assert!(!verify("x".into(), "not a hash".into()).await);
        assert!(check("short").is_err());
        assert!(check("long enough").is_ok());
    }
}
