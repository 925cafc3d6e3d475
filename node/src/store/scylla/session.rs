//! The session and the statements: opening a session, creating or migrating the
//! keyspace, preparing each statement with its consistency, and running statements
//! (reads, pages of rows, LWTs and conditional batches).

use std::sync::Arc;

use futures_util::StreamExt;
use scylla::client::execution_profile::ExecutionProfile;
use scylla::client::session::Session;
use scylla::client::session_builder::SessionBuilder;
use scylla::policies::load_balancing::DefaultPolicy;
use scylla::policies::retry::DefaultRetryPolicy;
use scylla::response::query_result::QueryResult;
use scylla::statement::batch::{Batch, BatchType};
use scylla::statement::prepared::PreparedStatement;
use scylla::statement::{Consistency, SerialConsistency};
use scylla::value::{CqlValue, Row};

use super::schema::{self, KeyspaceOptions, SCHEMA_VERSION};
use super::statements::{self as st, Bound, Kind, Statement};
use super::{Applied, ScyllaConfig, ScyllaStore, errors};
use crate::clock::now_ms;
use crate::store::StoreError;

impl ScyllaStore {
    fn statement(&self, statement: &Statement) -> &PreparedStatement {
        // Every statement of `ALL` was prepared in `connect`; a test checks the
        // store only uses statements of `ALL`.
        &self.prepared[statement.name]
    }

    pub(super) async fn execute(
        &self,
        statement: &Statement,
        values: Vec<Bound>,
    ) -> Result<QueryResult, StoreError> {
        self.session
            .execute_unpaged(self.statement(statement), values)
            .await
            .map_err(|e| errors::execution(statement.name, e))
    }

    /// Runs a statement that returns a page of rows (reads bounded by key or LIMIT).
    pub(super) async fn rows(
        &self,
        statement: &Statement,
        values: Vec<Bound>,
    ) -> Result<Vec<Vec<Option<CqlValue>>>, StoreError> {
        let result = self.execute(statement, values).await?;
        result_rows(statement.name, result)
    }

    pub(super) async fn first(
        &self,
        statement: &Statement,
        values: Vec<Bound>,
    ) -> Result<Option<Vec<Option<CqlValue>>>, StoreError> {
        Ok(self.rows(statement, values).await?.into_iter().next())
    }

    /// Every row of a statement, page by page, stopping early when `keep` says so.
    pub(super) async fn each_row(
        &self,
        statement: &Statement,
        values: Vec<Bound>,
        mut keep: impl FnMut(Vec<Option<CqlValue>>) -> Result<bool, StoreError>,
    ) -> Result<(), StoreError> {
        let pager = self
            .session
            .execute_iter(self.statement(statement).clone(), values)
            .await
            .map_err(|e| errors::pager(statement.name, e))?;
        let mut stream = pager
            .rows_stream::<Row>()
            .map_err(|e| StoreError::Corrupt(format!("{}: {e}", statement.name)))?;
        while let Some(row) = stream.next().await {
            let row = row.map_err(|e| errors::next_row(statement.name, e))?;
            if !keep(row.columns)? {
                break;
            }
        }
        Ok(())
    }

    pub(super) async fn lwt(
        &self,
        statement: &Statement,
        values: Vec<Bound>,
    ) -> Result<Applied, StoreError> {
        let result = self.execute(statement, values).await?;
        applied(statement.name, result)
    }

    /// A conditional batch (one partition) of `(statement, values)`.
    pub(super) async fn lwt_batch(
        &self,
        parts: Vec<(&Statement, Vec<Bound>)>,
    ) -> Result<Applied, StoreError> {
        let mut batch = Batch::new(BatchType::Logged);
        batch.set_serial_consistency(Some(SerialConsistency::LocalSerial));
        batch.set_is_idempotent(false);
        let mut values = Vec::with_capacity(parts.len());
        let name = parts.first().map_or("batch", |(s, _)| s.name);
        for (statement, bound) in parts {
            batch.append_statement(self.statement(statement).clone());
            values.push(bound);
        }
        let result = self
            .session
            .batch(&batch, values)
            .await
            .map_err(|e| errors::execution(name, e))?;
        applied(name, result)
    }

    /// An unlogged batch of plain idempotent writes, for rows of one partition (a
    /// batch of one partition is applied whole by its replica set, and costs one
    /// request instead of one per row). Retried like any idempotent write.
    pub(super) async fn write_batch(
        &self,
        parts: Vec<(&Statement, Vec<Bound>)>,
    ) -> Result<(), StoreError> {
        let mut batch = Batch::new(BatchType::Unlogged);
        batch.set_consistency(Consistency::LocalQuorum);
        batch.set_is_idempotent(true);
        let mut values = Vec::with_capacity(parts.len());
        let name = parts.first().map_or("batch", |(s, _)| s.name);
        for (statement, bound) in parts {
            debug_assert_eq!(statement.kind, Kind::Write, "{}", statement.name);
            batch.append_statement(self.statement(statement).clone());
            values.push(bound);
        }
        self.session
            .batch(&batch, values)
            .await
            .map(drop)
            .map_err(|e| errors::execution(name, e))
    }
}

/// The rows of a result.
fn result_rows(
    statement: &str,
    result: QueryResult,
) -> Result<Vec<Vec<Option<CqlValue>>>, StoreError> {
    let rows = result
        .into_rows_result()
        .map_err(|e| StoreError::Corrupt(format!("{statement} returned no rows: {e}")))?;
    let iter = rows
        .rows::<Row>()
        .map_err(|e| StoreError::Corrupt(format!("{statement}: {e}")))?;
    iter.map(|row| {
        row.map(|r| r.columns)
            .map_err(|e| StoreError::Corrupt(format!("{statement}: {e}")))
    })
    .collect()
}

/// Whether an LWT applied: its `[applied]` column (first row; a batch's rows agree).
fn applied(statement: &str, result: QueryResult) -> Result<Applied, StoreError> {
    let rows = result
        .into_rows_result()
        .map_err(|e| StoreError::Corrupt(format!("{statement} returned no [applied]: {e}")))?;
    let names: Vec<String> = rows
        .column_specs()
        .iter()
        .map(|spec| spec.name().to_owned())
        .collect();
    let first = rows
        .maybe_first_row::<Row>()
        .map_err(|e| StoreError::Corrupt(format!("{statement}: {e}")))?;
    applied_flag(
        statement,
        &names,
        first.as_ref().map(|r| r.columns.as_slice()),
    )
}

/// The `[applied]` flag among a result's columns.
pub(super) fn applied_flag(
    statement: &str,
    names: &[String],
    row: Option<&[Option<CqlValue>]>,
) -> Result<Applied, StoreError> {
    let index = names
        .iter()
        .position(|n| n == "[applied]")
        .ok_or_else(|| StoreError::Corrupt(format!("{statement}: no [applied] column")))?;
    match row.and_then(|r| r.get(index)) {
        Some(Some(CqlValue::Boolean(applied))) => Ok(*applied),
        other => Err(StoreError::Corrupt(format!(
            "{statement}: [applied] is {other:?}"
        ))),
    }
}

pub(super) async fn open_session(config: &ScyllaConfig) -> Result<Session, StoreError> {
    let mut policy = DefaultPolicy::builder().token_aware(true);
    if let Some(dc) = &config.local_dc {
        policy = policy.prefer_datacenter(dc.clone());
    }
    let profile = ExecutionProfile::builder()
        .consistency(Consistency::LocalQuorum)
        .serial_consistency(Some(SerialConsistency::LocalSerial))
        .request_timeout(Some(config.request_timeout))
        // Retries idempotent statements only (and never a serial one), on another node.
        .retry_policy(Arc::new(DefaultRetryPolicy::new()))
        .load_balancing_policy(policy.build())
        .build();
    let builder = SessionBuilder::new()
        .known_nodes(&config.uris)
        .connection_timeout(config.connect_timeout)
        .default_execution_profile_handle(profile.into_handle());
    let bound = config.connect_timeout * 2;
    match tokio::time::timeout(bound, builder.build()).await {
        Ok(Ok(session)) => Ok(session),
        Ok(Err(e)) => Err(errors::session(&config.uris, e)),
        Err(_) => Err(StoreError::Unavailable(format!(
            "cannot connect to scylla at {}: no session within {} ms",
            config.uris.join(", "),
            bound.as_millis()
        ))),
    }
}

async fn ddl(session: &Session, cql: String) -> Result<(), StoreError> {
    session
        .query_unpaged(cql.clone(), ())
        .await
        .map(drop)
        .map_err(|e| errors::execution(&cql, e))
}

/// Creates the keyspace and the tables of every missing schema step; returns the version
/// found (0 for a new keyspace). The caller records [`SCHEMA_VERSION`] once the steps'
/// data is written too ([`record_schema_version`]).
pub(super) async fn create_schema(
    session: &Session,
    keyspace: &KeyspaceOptions,
) -> Result<i32, StoreError> {
    let ks = &keyspace.name;
    ddl(session, schema::create_keyspace(keyspace)).await?;
    ddl(
        session,
        schema::in_keyspace(schema::SCHEMA_VERSION_TABLE, ks),
    )
    .await?;
    let version_stmt = prepare(session, ks, &st::GET_SCHEMA_VERSION).await?;
    let result = session
        .execute_unpaged(
            &version_stmt,
            st::GET_SCHEMA_VERSION.bind(vec![("component", st::text(schema::COMPONENT))]),
        )
        .await
        .map_err(|e| errors::execution(st::GET_SCHEMA_VERSION.name, e))?;
    let current = match result_rows(st::GET_SCHEMA_VERSION.name, result)?.first() {
        Some(row) => match row.first() {
            Some(Some(CqlValue::Int(v))) => *v,
            other => {
                return Err(StoreError::Corrupt(format!(
                    "{ks}.schema_version holds {other:?}"
                )));
            }
        },
        None => 0,
    };
    if current > SCHEMA_VERSION {
        return Err(StoreError::Corrupt(format!(
            "keyspace {ks} has schema version {current}, newer than this build's {SCHEMA_VERSION}"
        )));
    }
    for (done, step) in schema::MIGRATIONS.iter().enumerate().skip(current as usize) {
        for statement in step.iter() {
            match ddl(session, schema::in_keyspace(statement, ks)).await {
                Err(StoreError::Corrupt(error))
                    if schema::is_existing_column(statement, &error) =>
                {
                    tracing::info!(keyspace = %ks, statement, "column exists already");
                }
                other => other?,
            }
        }
        tracing::info!(keyspace = %ks, version = done + 1, "applied schema step");
    }
    Ok(current)
}

pub(super) async fn record_schema_version(session: &Session, ks: &str) -> Result<(), StoreError> {
    let put = prepare(session, ks, &st::PUT_SCHEMA_VERSION).await?;
    session
        .execute_unpaged(
            &put,
            st::PUT_SCHEMA_VERSION.bind(vec![
                ("component", st::text(schema::COMPONENT)),
                ("version", st::int(SCHEMA_VERSION)),
                ("updated_at_ms", st::big(now_ms())),
            ]),
        )
        .await
        .map_err(|e| errors::execution(st::PUT_SCHEMA_VERSION.name, e))?;
    Ok(())
}

pub(super) async fn prepare(
    session: &Session,
    keyspace: &str,
    statement: &Statement,
) -> Result<PreparedStatement, StoreError> {
    let cql = schema::in_keyspace(statement.cql, keyspace);
    let mut prepared = session
        .prepare(cql)
        .await
        .map_err(|e| errors::prepare(statement.name, e))?;
    match statement.kind {
        Kind::Read | Kind::Write => {
            prepared.set_consistency(Consistency::LocalQuorum);
            prepared.set_is_idempotent(true);
        }
        Kind::SerialRead => {
            prepared.set_consistency(Consistency::LocalSerial);
            prepared.set_is_idempotent(true);
        }
        Kind::Lwt => {
            prepared.set_consistency(Consistency::LocalQuorum);
            prepared.set_serial_consistency(Some(SerialConsistency::LocalSerial));
            prepared.set_is_idempotent(false);
        }
    }
    Ok(prepared)
}
