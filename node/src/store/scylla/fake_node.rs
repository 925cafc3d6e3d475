//! A fake ScyllaDB node for tests, so the store can be driven over the real CQL wire
//! protocol without a server: `scylla-proxy` in dry mode, with one catch-all rule that
//! answers what the driver and the store send.
//!
//! - The driver's handshake (OPTIONS, STARTUP, REGISTER) and its topology and schema
//!   queries (`system.local` is one node owning token 0; `system.peers` and
//!   `system_schema.*` are empty).
//! - The store's DDL (answered Void) and every PREPARE of [`statements::ALL`]: bind
//!   markers are typed from the columns the schema's DDL declares, so the driver's
//!   type checks run as against a real node.
//! - Every EXECUTE of a prepared statement: its bound values are decoded and handed,
//!   with the statement's name, to the test's [`Handler`], whose [`Answer`] is encoded
//!   as a real RESULT (rows, `[applied]`, void) or ERROR frame.
//! - Every BATCH: answered as its statement with a condition (`IF`; the store's
//!   conditional batches have one); when that answer is `[applied]` true, the handler is then
//!   handed the batch's other statements too (under the same lock, so no execution sees
//!   the batch half applied), so that it can apply them. A batch of
//!   plain writes only (an unlogged batch) is each statement executed in order.
//!
//! Faults (a dropped connection, a late answer, a server error) are further rules the
//! test puts before the catch-all one, matched on the prepared id, which is the
//! statement's name: `<insert_lease>` (see [`FakeNode::executing`]).
//!
//! What it is not: a database. It checks nothing a real ScyllaDB would (no LWT, no
//! consistency, no paging); the handler decides every answer (a handler may run the
//! statements' CQL on [`super::fake_tables::FakeTables`]). The store's CQL on a real
//! server is proved only by the conformance suite with `SCYLLA_URI`.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::sync::{Arc, Mutex};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use scylla::errors::DbError;
use scylla_proxy::{
    Condition, Node, Proxy, Reaction, RequestFrame, RequestOpcode, RequestReaction, RequestRule,
    ResponseFrame, ResponseOpcode, RunningProxy, get_exclusive_local_address,
};

use super::schema::{self, MIGRATIONS, SCHEMA_VERSION, SCHEMA_VERSION_TABLE};
use super::statements::{self, Kind, Statement};
use crate::store::SHARDS_SETTING;

/// A CQL type the fake can announce and encode.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ColType {
    Text,
    BigInt,
    Int,
    Boolean,
    Blob,
    Uuid,
    Inet,
    SetOfText,
    ListOfText,
    MapOfText,
}

impl ColType {
    pub(crate) fn from_cql(name: &str) -> Option<ColType> {
        Some(match name {
            "text" | "varchar" => ColType::Text,
            "bigint" => ColType::BigInt,
            "int" => ColType::Int,
            "boolean" => ColType::Boolean,
            "blob" => ColType::Blob,
            "uuid" => ColType::Uuid,
            _ => return None,
        })
    }

    /// The type as a CQL `[option]`.
    fn write(self, buf: &mut BytesMut) {
        const TEXT: u16 = 0x000D;
        match self {
            ColType::Text => buf.put_u16(TEXT),
            ColType::BigInt => buf.put_u16(0x0002),
            ColType::Int => buf.put_u16(0x0009),
            ColType::Boolean => buf.put_u16(0x0004),
            ColType::Blob => buf.put_u16(0x0003),
            ColType::Uuid => buf.put_u16(0x000C),
            ColType::Inet => buf.put_u16(0x0010),
            ColType::ListOfText => {
                buf.put_u16(0x0020);
                buf.put_u16(TEXT);
            }
            ColType::MapOfText => {
                buf.put_u16(0x0021);
                buf.put_u16(TEXT);
                buf.put_u16(TEXT);
            }
            ColType::SetOfText => {
                buf.put_u16(0x0022);
                buf.put_u16(TEXT);
            }
        }
    }
}

/// A value bound by the store or answered by a handler.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Null,
    /// Bound as "leave the column alone".
    Unset,
    Text(String),
    BigInt(i64),
    Int(i32),
    Boolean(bool),
    Blob(Vec<u8>),
    Uuid([u8; 16]),
    Inet(IpAddr),
    SetOfText(Vec<String>),
}

impl Value {
    pub(crate) fn text(value: &str) -> Value {
        Value::Text(value.to_owned())
    }

    pub(crate) fn as_big(&self) -> Option<i64> {
        match self {
            Value::BigInt(v) => Some(*v),
            _ => None,
        }
    }

    pub(crate) fn as_text(&self) -> Option<&str> {
        match self {
            Value::Text(v) => Some(v),
            _ => None,
        }
    }

    /// The value as a cell, `[bytes]`.
    fn write(&self, buf: &mut BytesMut) {
        let mut cell = BytesMut::new();
        match self {
            Value::Null | Value::Unset => {
                buf.put_i32(-1);
                return;
            }
            Value::Text(v) => cell.put_slice(v.as_bytes()),
            Value::BigInt(v) => cell.put_i64(*v),
            Value::Int(v) => cell.put_i32(*v),
            Value::Boolean(v) => cell.put_u8(u8::from(*v)),
            Value::Blob(v) => cell.put_slice(v),
            Value::Uuid(v) => cell.put_slice(v),
            Value::Inet(IpAddr::V4(ip)) => cell.put_slice(&ip.octets()),
            Value::Inet(IpAddr::V6(ip)) => cell.put_slice(&ip.octets()),
            Value::SetOfText(items) => {
                cell.put_i32(items.len() as i32);
                for item in items {
                    cell.put_i32(item.len() as i32);
                    cell.put_slice(item.as_bytes());
                }
            }
        }
        buf.put_i32(cell.len() as i32);
        buf.put_slice(&cell);
    }

    /// A bound value of type `typ` as the driver serialized it.
    fn read(typ: ColType, raw: Option<&[u8]>) -> Result<Value, String> {
        let Some(raw) = raw else {
            return Ok(Value::Null);
        };
        let wrong = || format!("{} bytes are no {typ:?}", raw.len());
        Ok(match typ {
            ColType::Text => {
                Value::Text(String::from_utf8(raw.to_vec()).map_err(|e| e.to_string())?)
            }
            ColType::BigInt => {
                Value::BigInt(i64::from_be_bytes(raw.try_into().map_err(|_| wrong())?))
            }
            ColType::Int => Value::Int(i32::from_be_bytes(raw.try_into().map_err(|_| wrong())?)),
            ColType::Boolean => match raw {
                [b] => Value::Boolean(*b != 0),
                _ => return Err(wrong()),
            },
            ColType::Blob => Value::Blob(raw.to_vec()),
            ColType::Uuid => Value::Uuid(raw.try_into().map_err(|_| wrong())?),
            other => return Err(format!("the store binds no {other:?}")),
        })
    }
}

/// What a statement's execution answers.
#[derive(Debug, Clone)]
pub(crate) enum Answer {
    /// Rows in the statement's SELECT column order.
    Rows(Vec<Vec<Value>>),
    /// A lightweight transaction's `[applied]`.
    Applied(bool),
    /// A write's empty answer.
    Void,
    /// An ERROR frame.
    Error(DbError, String),
}

/// Answers one execution: the statement's name and its bound values (in marker
/// order); `None` for the default answer (see [`default_answer`]).
pub(crate) type Handler = Box<dyn FnMut(&str, &[Value]) -> Option<Answer> + Send>;

/// The shard count the default answers say the keyspace records.
pub(crate) const RECORDED_SHARDS: u32 = 1024;

/// The default answer: the schema is at this build's version with its shard count
/// recorded ([`RECORDED_SHARDS`]), other reads find nothing, conditional writes apply,
/// other writes succeed.
fn default_answer(statement: &Statement, values: &[Value]) -> Answer {
    if statement.name == statements::GET_SCHEMA_VERSION.name {
        return Answer::Rows(vec![vec![Value::Int(SCHEMA_VERSION)]]);
    }
    let setting = [
        statements::GET_SETTING.name,
        statements::GET_SETTING_SERIAL.name,
    ];
    if setting.contains(&statement.name) && values.first() == Some(&Value::text(SHARDS_SETTING)) {
        return Answer::Rows(vec![vec![
            Value::text(&RECORDED_SHARDS.to_string()),
            Value::BigInt(0),
        ]]);
    }
    match statement.kind {
        Kind::Read | Kind::SerialRead => Answer::Rows(Vec::new()),
        Kind::Lwt => Answer::Applied(true),
        Kind::Write => Answer::Void,
    }
}

/// A statement as the fake prepared it.
#[derive(Clone)]
struct Prepared {
    statement: &'static Statement,
    table: String,
    binds: Vec<(String, ColType)>,
    /// The columns a SELECT returns.
    columns: Vec<(String, ColType)>,
}

impl Prepared {
    /// A read and its LOCAL_SERIAL twin have the same text, so the same prepared id: the
    /// consistency of the execution tells which one ran.
    fn as_twin(&self, serial: bool) -> Prepared {
        let twin = statements::ALL
            .iter()
            .find(|s| s.cql == self.statement.cql && (s.kind == Kind::SerialRead) == serial);
        Prepared {
            statement: twin.unwrap_or(self.statement),
            ..self.clone()
        }
    }
}

struct Shared {
    keyspace: String,
    addr: SocketAddr,
    /// Column types by table, from the schema's DDL.
    tables: HashMap<String, HashMap<String, ColType>>,
    prepared: Mutex<HashMap<Vec<u8>, Arc<Prepared>>>,
    handler: Mutex<Handler>,
    /// Statement names of the executions answered, in order.
    log: Mutex<Vec<String>>,
    /// Schema statements (CREATE, ALTER, DROP) received, in order.
    ddl: Mutex<Vec<String>>,
}

/// A running fake node (see the module docs).
pub(crate) struct FakeNode {
    /// What the driver dials: the [`relay`] in front of the proxy.
    pub(crate) addr: SocketAddr,
    shared: Arc<Shared>,
    proxy: Option<RunningProxy>,
    relay: tokio::task::JoinHandle<()>,
}

impl Drop for FakeNode {
    fn drop(&mut self) {
        self.relay.abort();
    }
}

impl FakeNode {
    /// A fake node whose statements `handle` answers from `tables` (a model of the
    /// store's tables), and the tables, for a test to look into.
    pub(crate) async fn over<T: Send + 'static>(
        keyspace: &str,
        tables: T,
        handle: fn(&mut T, &str, &[Value]) -> Option<Answer>,
    ) -> (FakeNode, Arc<Mutex<T>>) {
        let tables = Arc::new(Mutex::new(tables));
        let shared = tables.clone();
        let node = FakeNode::start(
            keyspace,
            Box::new(move |name, values| handle(&mut shared.lock().expect("tables"), name, values)),
        )
        .await;
        (node, tables)
    }

    /// Starts a fake node on a loopback address of its own, answering everything.
    pub(crate) async fn start(keyspace: &str, handler: Handler) -> FakeNode {
        let ip = get_exclusive_local_address();
        let (addr, proxied) = (SocketAddr::new(ip, 9042), SocketAddr::new(ip, 9043));
        let shared = Arc::new(Shared {
            keyspace: keyspace.to_owned(),
            addr,
            tables: tables(),
            prepared: Mutex::default(),
            handler: Mutex::new(handler),
            log: Mutex::default(),
            ddl: Mutex::default(),
        });
        let node = Node::builder()
            .proxy_address(proxied)
            .request_rules(vec![RequestRule(Condition::True, Self::answering(&shared))])
            .build_dry_mode();
        let proxy = Proxy::builder()
            .with_node(node)
            .build()
            .run()
            .await
            .expect("the fake node listens");
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .expect("the fake node's relay listens");
        FakeNode {
            addr,
            shared,
            proxy: Some(proxy),
            relay: tokio::spawn(relay(listener, proxied)),
        }
    }

    fn answering(shared: &Arc<Shared>) -> RequestReaction {
        let shared = shared.clone();
        RequestReaction::forge_response(Arc::new(move |frame| shared.answer(frame)))
    }

    /// The condition "an EXECUTE of `statement`" (or a batch starting with it).
    pub(crate) fn executing(statement: &Statement) -> Condition {
        Condition::RequestOpcode(RequestOpcode::Execute)
            .or(Condition::RequestOpcode(RequestOpcode::Batch))
            .and(Condition::BodyContainsCaseSensitive(
                prepared_id(statement).into_boxed_slice(),
            ))
    }

    /// A reaction that answers like the catch-all rule, but `delay` late.
    pub(crate) fn answering_late(&self, delay: std::time::Duration) -> RequestReaction {
        let shared = self.shared.clone();
        RequestReaction::forge_response_with_delay(
            delay,
            Arc::new(move |frame| shared.answer(frame)),
        )
    }

    /// Adds `faults`, tried before the rules already there (so before the catch-all).
    pub(crate) fn prepend(&mut self, faults: Vec<RequestRule>) {
        if let Some(proxy) = self.proxy.as_mut() {
            proxy.running_nodes[0].prepend_request_rules(faults);
        }
    }

    /// Names of the statements executed so far (answered by the catch-all rule).
    pub(crate) fn executed(&self) -> Vec<String> {
        self.shared.log.lock().expect("log").clone()
    }

    /// The schema statements received so far, whitespace collapsed.
    pub(crate) fn ddl(&self) -> Vec<String> {
        self.shared.ddl.lock().expect("ddl").clone()
    }

    /// How many times `statement` was executed (answered by the catch-all rule).
    pub(crate) fn count(&self, statement: &Statement) -> usize {
        self.executed()
            .iter()
            .filter(|name| *name == statement.name)
            .count()
    }

    pub(crate) async fn stop(mut self) {
        self.relay.abort();
        if let Some(proxy) = self.proxy.take() {
            let _ = proxy.finish().await;
        }
    }
}

/// Relays every connection made to `listener` to the proxy at `proxied`, acknowledging
/// what the proxy sends at once.
///
/// `scylla-proxy` writes a frame's header and its body in two writes, with Nagle's
/// algorithm on: the body waited for the header's acknowledgement, which a receiver
/// delays (up to 40 ms), so every request took about 35 ms (the prepares of one store
/// alone 4.8 s). The proxy's sockets cannot be reached from here, so the relay asks for
/// an immediate acknowledgement (`TCP_QUICKACK`) after each read from the proxy. A
/// connection the proxy drops (a fault a test injects) is dropped towards the driver
/// too; aborting the relay closes its listener and every connection.
async fn relay(listener: tokio::net::TcpListener, proxied: SocketAddr) {
    let mut connections = tokio::task::JoinSet::new();
    while let Ok((driver, _)) = listener.accept().await {
        connections.spawn(pump(driver, proxied));
        while connections.try_join_next().is_some() {}
    }
}

async fn pump(driver: tokio::net::TcpStream, proxied: SocketAddr) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    let Ok(proxy) = tokio::net::TcpStream::connect(proxied).await else {
        return;
    };
    let _ = driver.set_nodelay(true);
    let _ = proxy.set_nodelay(true);
    let (mut from_driver, mut to_driver) = driver.into_split();
    let (mut from_proxy, mut to_proxy) = proxy.into_split();
    let up = tokio::io::copy(&mut from_driver, &mut to_proxy);
    let down = async {
        let mut buf = vec![0; 64 * 1024];
        loop {
            let n = match from_proxy.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => n,
            };
            let _ = socket2::SockRef::from(from_proxy.as_ref()).set_tcp_quickack(true);
            if to_driver.write_all(&buf[..n]).await.is_err() {
                return;
            }
        }
    };
    // Either side gone: both halves are dropped, which closes the other side too.
    tokio::select! {
        _ = up => {}
        () = down => {}
    }
}

/// A statement's prepared id: its name in angle brackets, so a rule can match it in an
/// EXECUTE body without matching a longer name.
fn prepared_id(statement: &Statement) -> Vec<u8> {
    format!("<{}>", statement.name).into_bytes()
}

/// Column types by table, from every CREATE TABLE of the schema.
fn tables() -> HashMap<String, HashMap<String, ColType>> {
    let mut tables = HashMap::new();
    for ddl in MIGRATIONS
        .iter()
        .flat_map(|step| step.iter())
        .chain([&SCHEMA_VERSION_TABLE])
    {
        if let Some((name, column, typ)) = super::fake_tables::added_column(ddl) {
            tables
                .entry(name)
                .or_insert_with(HashMap::new)
                .insert(column, typ);
            continue;
        }
        let flat = ddl.split_whitespace().collect::<Vec<_>>().join(" ");
        let Some(rest) = flat.strip_prefix("CREATE TABLE IF NOT EXISTS {ks}.") else {
            continue;
        };
        let open = rest.find('(').expect("column list");
        let name = rest[..open].trim().to_owned();
        let body = &rest[open + 1..];
        let mut depth = 0;
        let mut defs = vec![String::new()];
        for ch in body.chars() {
            match ch {
                '(' => depth += 1,
                ')' if depth == 0 => break,
                ')' => depth -= 1,
                ',' if depth == 0 => {
                    defs.push(String::new());
                    continue;
                }
                _ => {}
            }
            defs.last_mut().expect("a definition").push(ch);
        }
        let columns: &mut HashMap<String, ColType> = tables.entry(name).or_default();
        for def in defs {
            let mut words = def.split_whitespace();
            let (Some(column), Some(typ)) = (words.next(), words.next()) else {
                continue;
            };
            if column == "PRIMARY" {
                continue;
            }
            let typ = ColType::from_cql(typ)
                .unwrap_or_else(|| panic!("the fake node does not know CQL type {typ}"));
            columns.insert(column.to_owned(), typ);
        }
    }
    tables
}

/// Column types of the driver's system queries, by column name.
fn system_column(name: &str) -> Option<ColType> {
    Some(match name {
        "host_id" | "schema_version" => ColType::Uuid,
        "rpc_address" => ColType::Inet,
        "tokens" => ColType::SetOfText,
        "replication" => ColType::MapOfText,
        "durable_writes" => ColType::Boolean,
        "initial_tablets" | "position" => ColType::Int,
        "field_names" | "field_types" => ColType::ListOfText,
        "data_center" | "rack" | "cluster_name" | "keyspace_name" | "table_name" | "view_name"
        | "base_table_name" | "partitioner" | "consistency" | "type_name" | "column_name"
        | "kind" | "type" | "supported_features" => ColType::Text,
        _ => return None,
    })
}

/// The columns between `SELECT` and `FROM`.
fn select_list(cql: &str) -> Option<Vec<String>> {
    let flat = cql.split_whitespace().collect::<Vec<_>>().join(" ");
    let rest = flat.strip_prefix("SELECT ")?;
    let rest = rest.strip_prefix("DISTINCT ").unwrap_or(rest);
    let end = rest.find(" FROM ")?;
    Some(
        rest[..end]
            .split(',')
            .map(|c| c.trim().to_owned())
            .collect(),
    )
}

const HOST_ID: [u8; 16] = *b"wafleet-fake-hst";
const SCHEMA_ID: [u8; 16] = *b"wafleet-fake-sch";

impl Shared {
    fn answer(&self, frame: RequestFrame) -> ResponseFrame {
        let params = frame.params;
        let result = match frame.opcode {
            RequestOpcode::Options => {
                let options = HashMap::from([
                    ("CQL_VERSION".to_owned(), vec!["3.0.0".to_owned()]),
                    ("COMPRESSION".to_owned(), Vec::new()),
                ]);
                return ResponseFrame::forged_supported(params, &options).expect("options");
            }
            RequestOpcode::Startup | RequestOpcode::Register => {
                return ResponseFrame::forged_ready(params);
            }
            RequestOpcode::Query => self.query(&frame.body),
            RequestOpcode::Prepare => self.prepare(&frame.body),
            RequestOpcode::Execute => self.execute(&frame.body),
            RequestOpcode::Batch => self.batch(&frame.body),
            other => Err(format!("the fake node does not answer {other:?}")),
        };
        match result {
            Ok(Ok(body)) => ResponseFrame::new(params.for_response(), ResponseOpcode::Result, body),
            Ok(Err((error, message))) => {
                ResponseFrame::forged_error(params, error, Some(&message)).expect("error frame")
            }
            Err(message) => ResponseFrame::forged_error(
                params,
                DbError::Invalid,
                Some(&format!("fake node: {message}")),
            )
            .expect("error frame"),
        }
    }

    /// An unprepared statement: the driver's system queries and the store's DDL.
    fn query(&self, body: &[u8]) -> Result<Result<Bytes, (DbError, String)>, String> {
        let mut body = body;
        let text = long_string(&mut body)?;
        let flat = text.split_whitespace().collect::<Vec<_>>().join(" ");
        if ["CREATE ", "ALTER ", "DROP "]
            .iter()
            .any(|verb| flat.starts_with(verb))
        {
            self.ddl.lock().expect("ddl").push(flat);
            return Ok(Ok(void()));
        }
        let columns = select_list(&flat).ok_or_else(|| format!("cannot answer {flat:?}"))?;
        let typed = columns
            .iter()
            .map(|c| {
                system_column(c)
                    .map(|t| (c.clone(), t))
                    .ok_or_else(|| format!("unknown column {c} in {flat:?}"))
            })
            .collect::<Result<Vec<_>, _>>()?;
        let rows = if flat.contains("FROM system.local") {
            vec![
                columns
                    .iter()
                    .map(|c| match c.as_str() {
                        "host_id" => Value::Uuid(HOST_ID),
                        "schema_version" => Value::Uuid(SCHEMA_ID),
                        "rpc_address" => Value::Inet(self.addr.ip()),
                        "data_center" => Value::text("dc1"),
                        "rack" => Value::text("rack1"),
                        "tokens" => Value::SetOfText(vec!["0".to_owned()]),
                        "cluster_name" => Value::text("wafleet-fake"),
                        _ => Value::Null,
                    })
                    .collect(),
            ]
        } else if flat.contains("FROM system.peers") || flat.contains("FROM system_schema.") {
            Vec::new()
        } else {
            return Err(format!("cannot answer {flat:?}"));
        };
        Ok(Ok(rows_result("system", "local", &typed, &rows)))
    }

    fn prepare(&self, body: &[u8]) -> Result<Result<Bytes, (DbError, String)>, String> {
        let mut body = body;
        let text = long_string(&mut body)?;
        let statement = statements::ALL
            .iter()
            .find(|s| schema::in_keyspace(s.cql, &self.keyspace) == text)
            .ok_or_else(|| format!("not a statement of the store: {text:?}"))?;
        let prepared = self.prepared_of(statement)?;
        let id = prepared_id(statement);
        let mut out = BytesMut::new();
        out.put_i32(0x0004);
        out.put_u16(id.len() as u16);
        out.put_slice(&id);
        // Bind metadata: flags (global table spec), count, no partition key indexes.
        out.put_i32(0x0001);
        out.put_i32(prepared.binds.len() as i32);
        out.put_i32(0);
        string(&mut out, &self.keyspace);
        string(&mut out, &prepared.table);
        for (name, typ) in &prepared.binds {
            string(&mut out, name);
            typ.write(&mut out);
        }
        // Result metadata: none (each answer carries its own).
        out.put_i32(0x0004);
        out.put_i32(0);
        self.prepared
            .lock()
            .expect("prepared")
            .insert(id, Arc::new(prepared));
        Ok(Ok(out.freeze()))
    }

    fn prepared_of(&self, statement: &'static Statement) -> Result<Prepared, String> {
        let table = statement
            .cql
            .split("{ks}.")
            .nth(1)
            .and_then(|rest| rest.split([' ', '(']).next())
            .ok_or_else(|| format!("{}: no table", statement.name))?
            .to_owned();
        let columns_of = self
            .tables
            .get(&table)
            .ok_or_else(|| format!("{}: unknown table {table}", statement.name))?;
        let type_of = |column: &str| {
            columns_of
                .get(column)
                .copied()
                .ok_or_else(|| format!("{}: unknown column {table}.{column}", statement.name))
        };
        let binds = statement
            .binds
            .iter()
            .map(|name| {
                let typ = match *name {
                    "limit" => ColType::Int,
                    other => type_of(other.strip_prefix("if_").unwrap_or(other))?,
                };
                Ok((name.to_string(), typ))
            })
            .collect::<Result<Vec<_>, String>>()?;
        let columns = match select_list(statement.cql) {
            Some(list) => list
                .into_iter()
                .map(|c| type_of(&c).map(|t| (c, t)))
                .collect::<Result<Vec<_>, String>>()?,
            None => Vec::new(),
        };
        Ok(Prepared {
            statement,
            table,
            binds,
            columns,
        })
    }

    fn lookup(&self, id: &[u8]) -> Result<Arc<Prepared>, String> {
        if let Some(found) = self.prepared.lock().expect("prepared").get(id) {
            return Ok(found.clone());
        }
        Err(format!(
            "unknown prepared id {:?}",
            String::from_utf8_lossy(id)
        ))
    }

    fn execute(&self, body: &[u8]) -> Result<Result<Bytes, (DbError, String)>, String> {
        let mut body = body;
        let id = short_bytes(&mut body)?;
        let prepared = self.lookup(&id)?;
        let serial = is_serial(body)?;
        let raw = query_values(&mut body)?;
        let values = decode(&prepared, &raw)?;
        Ok(self.run(&prepared.as_twin(serial), &values))
    }

    /// A conditional batch is answered as its statement with an `IF` (the first one;
    /// else its first statement): the store's conditional batches are of one partition,
    /// whose answer is one `[applied]`. When that answer
    /// is `Applied(true)`, the handler is then handed each other statement of the batch,
    /// in order, to apply (its answers are ignored; they are not in
    /// [`FakeNode::executed`]). A batch of plain writes is each of them executed, in
    /// order (all in [`FakeNode::executed`]), answered void or by the first error.
    fn batch(&self, body: &[u8]) -> Result<Result<Bytes, (DbError, String)>, String> {
        let mut body = body;
        take(&mut body, 1)?; // batch type
        let count = u16::from_be_bytes(take(&mut body, 2)?.try_into().expect("2 bytes"));
        let mut parts = Vec::with_capacity(usize::from(count));
        for _ in 0..count {
            let kind = take(&mut body, 1)?[0];
            if kind != 1 {
                return Err("the store batches prepared statements only".into());
            }
            let id = short_bytes(&mut body)?;
            let n = u16::from_be_bytes(take(&mut body, 2)?.try_into().expect("2 bytes"));
            let mut raw = Vec::with_capacity(usize::from(n));
            for _ in 0..n {
                raw.push(value_bytes(&mut body)?);
            }
            let prepared = self.lookup(&id)?;
            let values = decode(&prepared, &raw)?;
            parts.push((prepared, values));
        }
        if !parts.is_empty() && parts.iter().all(|(p, _)| p.statement.kind == Kind::Write) {
            for (prepared, values) in &parts {
                if let Answer::Error(error, message) = self.decide(prepared, values) {
                    return Ok(Err((error, message)));
                }
            }
            return Ok(Ok(void()));
        }
        // The statement with the condition answers (ScyllaDB answers a conditional
        // batch as a whole, wherever its condition stands); the others follow in order.
        let condition = parts
            .iter()
            .position(|(p, _)| p.statement.cql.contains(" IF "))
            .unwrap_or(0);
        let (prepared, values) = parts.get(condition).ok_or("an empty batch")?;
        let statement = prepared.statement;
        self.log
            .lock()
            .expect("log")
            .push(statement.name.to_owned());
        // One lock for the condition and the writes: no other execution sees the batch
        // half applied (ScyllaDB applies a batch of one partition whole).
        let mut handler = self.handler.lock().expect("handler");
        let answer =
            handler(statement.name, values).unwrap_or_else(|| default_answer(statement, values));
        if matches!(answer, Answer::Applied(true)) {
            for (_, (rest, values)) in parts.iter().enumerate().filter(|(i, _)| *i != condition) {
                handler(rest.statement.name, values);
            }
        }
        drop(handler);
        Ok(self.encode(prepared, answer))
    }

    fn run(&self, prepared: &Prepared, values: &[Value]) -> Result<Bytes, (DbError, String)> {
        let answer = self.decide(prepared, values);
        self.encode(prepared, answer)
    }

    /// Logs the execution and asks the handler (or the default) for its answer.
    fn decide(&self, prepared: &Prepared, values: &[Value]) -> Answer {
        let statement = prepared.statement;
        self.log
            .lock()
            .expect("log")
            .push(statement.name.to_owned());
        (self.handler.lock().expect("handler"))(statement.name, values)
            .unwrap_or_else(|| default_answer(statement, values))
    }

    fn encode(&self, prepared: &Prepared, answer: Answer) -> Result<Bytes, (DbError, String)> {
        match answer {
            Answer::Rows(rows) => Ok(rows_result(
                &self.keyspace,
                &prepared.table,
                &prepared.columns,
                &rows,
            )),
            Answer::Applied(applied) => Ok(rows_result(
                &self.keyspace,
                &prepared.table,
                &[("[applied]".to_owned(), ColType::Boolean)],
                &[vec![Value::Boolean(applied)]],
            )),
            Answer::Void => Ok(void()),
            Answer::Error(error, message) => Err((error, message)),
        }
    }
}

fn decode(prepared: &Prepared, raw: &[RawValue]) -> Result<Vec<Value>, String> {
    if raw.len() != prepared.binds.len() {
        return Err(format!(
            "{}: {} values for {} markers",
            prepared.statement.name,
            raw.len(),
            prepared.binds.len()
        ));
    }
    raw.iter()
        .zip(&prepared.binds)
        .map(|(raw, (name, typ))| match raw {
            RawValue::Unset => Ok(Value::Unset),
            RawValue::Bytes(bytes) => Value::read(*typ, bytes.as_deref())
                .map_err(|e| format!("{}.{name}: {e}", prepared.statement.name)),
        })
        .collect()
}

/// A RESULT of kind Rows.
fn rows_result(
    keyspace: &str,
    table: &str,
    columns: &[(String, ColType)],
    rows: &[Vec<Value>],
) -> Bytes {
    let mut out = BytesMut::new();
    out.put_i32(0x0002);
    out.put_i32(0x0001); // global table spec
    out.put_i32(columns.len() as i32);
    string(&mut out, keyspace);
    string(&mut out, table);
    for (name, typ) in columns {
        string(&mut out, name);
        typ.write(&mut out);
    }
    out.put_i32(rows.len() as i32);
    for row in rows {
        assert_eq!(
            row.len(),
            columns.len(),
            "a row of {table} with the wrong width"
        );
        for value in row {
            value.write(&mut out);
        }
    }
    out.freeze()
}

fn void() -> Bytes {
    let mut out = BytesMut::new();
    out.put_i32(0x0001);
    out.freeze()
}

fn string(out: &mut BytesMut, value: &str) {
    out.put_u16(value.len() as u16);
    out.put_slice(value.as_bytes());
}

fn take<'a>(body: &mut &'a [u8], n: usize) -> Result<&'a [u8], String> {
    if body.len() < n {
        return Err("a truncated frame".into());
    }
    let (head, rest) = body.split_at(n);
    *body = rest;
    Ok(head)
}

fn long_string(body: &mut &[u8]) -> Result<String, String> {
    let len = body.get_i32_checked()?;
    let bytes = take(body, usize::try_from(len).map_err(|_| "a negative length")?)?;
    String::from_utf8(bytes.to_vec()).map_err(|e| e.to_string())
}

fn short_bytes(body: &mut &[u8]) -> Result<Vec<u8>, String> {
    let len = u16::from_be_bytes(take(body, 2)?.try_into().expect("2 bytes"));
    Ok(take(body, usize::from(len))?.to_vec())
}

/// A bound value on the wire: bytes (`None` is null) or unset.
enum RawValue {
    Bytes(Option<Vec<u8>>),
    Unset,
}

fn value_bytes(body: &mut &[u8]) -> Result<RawValue, String> {
    let len = body.get_i32_checked()?;
    Ok(match len {
        -1 => RawValue::Bytes(None),
        -2 => RawValue::Unset,
        n if n >= 0 => RawValue::Bytes(Some(take(body, n as usize)?.to_vec())),
        n => return Err(format!("a value of length {n}")),
    })
}

/// Whether `<query_parameters>` ask for SERIAL or LOCAL_SERIAL consistency.
fn is_serial(body: &[u8]) -> Result<bool, String> {
    let consistency = body.get(..2).ok_or("a truncated frame")?;
    Ok(matches!(
        u16::from_be_bytes([consistency[0], consistency[1]]),
        0x0008 | 0x0009
    ))
}

/// The values of protocol v4 `<query_parameters>`: consistency, flags, values.
fn query_values(body: &mut &[u8]) -> Result<Vec<RawValue>, String> {
    take(body, 2)?; // consistency
    let flags = take(body, 1)?[0];
    if flags & 0x40 != 0 {
        return Err("named values are not used by the store".into());
    }
    if flags & 0x01 == 0 {
        return Ok(Vec::new());
    }
    let n = u16::from_be_bytes(take(body, 2)?.try_into().expect("2 bytes"));
    (0..n).map(|_| value_bytes(body)).collect()
}

trait GetI32Checked {
    fn get_i32_checked(&mut self) -> Result<i32, String>;
}

impl GetI32Checked for &[u8] {
    fn get_i32_checked(&mut self) -> Result<i32, String> {
        if self.remaining() < 4 {
            return Err("a truncated frame".into());
        }
        Ok(self.get_i32())
    }
}
