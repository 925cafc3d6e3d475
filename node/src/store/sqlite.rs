//! The embedded store: one SQLite file (WAL) in the data folder.

/// The embedded store (to be implemented).
#[derive(Debug)]
pub struct SqliteStore;
