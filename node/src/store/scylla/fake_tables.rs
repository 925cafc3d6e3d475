//! Tables for [`FakeNode`](super::fake_node::FakeNode) that run the store's CQL text
//! itself: each execution's statement is parsed and applied to in-memory tables shaped
//! by the schema's DDL (partition key, clustering columns in order, static columns), with
//! CQL's meaning:
//!
//! - `INSERT ... VALUES (...)` writes a row (or, with no clustering values, the
//!   partition's static columns); `UPDATE ... SET ... WHERE ...` writes the cells given;
//!   `DELETE ... WHERE ...` removes a row, or the partition when only its key is given.
//!   A null value removes its cell; an unset one leaves it alone.
//! - `IF NOT EXISTS`, `IF EXISTS` and `IF column = ? AND ...` decide whether the write
//!   applies (an absent cell equals null), answered as `[applied]`.
//! - `SELECT [DISTINCT] columns FROM t [WHERE ...] [LIMIT ?]`: rows in clustering order
//!   (partitions in key order), `=`, `<`, `<=`, `>`, `>=` on any column (a regular
//!   column only with `ALLOW FILTERING`), a partition with static columns and no rows
//!   read as one row, `DISTINCT` as one row per partition.
//!
//! A statement it does not understand (`ORDER BY`, a function, a condition on a column
//! that does not exist) is answered with an error, so a test fails instead of passing on
//! a guess. Text compares as CQL compares it (bytewise UTF-8), integers as numbers.
//! It is a model of CQL's semantics for the statements the store sends, not of a
//! cluster: no consistency levels, no timestamps, no paging state.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use scylla::errors::DbError;

use super::fake_node::{Answer, ColType, Value};
use super::schema::{MIGRATIONS, SCHEMA_VERSION_TABLE};
use super::statements::{ALL, Statement};

/// A key column's value, ordered as CQL orders it.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
enum Key {
    Int(i64),
    Text(String),
}

impl Key {
    fn of(value: &Value) -> Result<Key, String> {
        match value {
            Value::BigInt(v) => Ok(Key::Int(*v)),
            Value::Int(v) => Ok(Key::Int(i64::from(*v))),
            Value::Text(v) => Ok(Key::Text(v.clone())),
            other => Err(format!("{other:?} as a key or in a comparison")),
        }
    }
}

type Cells = BTreeMap<String, Value>;

#[derive(Debug, Default)]
struct Partition {
    statics: Cells,
    rows: BTreeMap<Vec<Key>, Cells>,
}

#[derive(Debug, Default)]
struct Table {
    partition_key: Vec<String>,
    clustering: Vec<String>,
    statics: BTreeSet<String>,
    types: HashMap<String, ColType>,
    partitions: BTreeMap<Vec<Key>, Partition>,
}

/// The keyspace's tables (see the module docs).
#[derive(Debug)]
pub(crate) struct FakeTables {
    tables: HashMap<String, Table>,
}

/// `column op operand` of a WHERE or IF clause, the operand resolved to a value.
#[derive(Debug)]
struct Condition {
    column: String,
    op: String,
    value: Value,
}

impl Default for FakeTables {
    fn default() -> Self {
        Self::new()
    }
}

impl FakeTables {
    /// Empty tables of every CREATE TABLE of the schema.
    pub(crate) fn new() -> FakeTables {
        let mut tables = HashMap::new();
        for ddl in MIGRATIONS
            .iter()
            .flat_map(|step| step.iter())
            .chain([&SCHEMA_VERSION_TABLE])
        {
            if let Some((name, column, typ)) = added_column(ddl) {
                let table: &mut Table = tables.get_mut(&name).expect("ALTER of a created table");
                table.types.insert(column, typ);
                continue;
            }
            let (name, table) = table_of(ddl);
            tables.insert(name, table);
        }
        FakeTables { tables }
    }

    /// Runs the statement named `name` with `values`: a [`super::fake_node::Handler`]'s
    /// answer, never `None` (statements outside these tables are errors).
    pub(crate) fn handle(&mut self, name: &str, values: &[Value]) -> Option<Answer> {
        let statement = ALL.iter().find(|s| s.name == name)?;
        Some(self.run(statement, values).unwrap_or_else(|message| {
            Answer::Error(
                DbError::Invalid,
                format!("fake tables: {}: {message}", statement.name),
            )
        }))
    }

    /// How many rows (static-only partitions count one) `table` holds.
    pub(crate) fn rows(&self, table: &str) -> usize {
        self.tables[table]
            .partitions
            .values()
            .map(|p| p.rows.len().max(usize::from(!p.statics.is_empty())))
            .sum()
    }

    fn run(&mut self, statement: &Statement, values: &[Value]) -> Result<Answer, String> {
        let flat = statement
            .cql
            .split_whitespace()
            .collect::<Vec<_>>()
            .join(" ");
        let mut values = values.iter().cloned();
        let mut next = move || values.next().ok_or_else(|| "too few values".to_owned());
        if let Some(rest) = flat.strip_prefix("INSERT INTO {ks}.") {
            self.insert(rest, &mut next)
        } else if let Some(rest) = flat.strip_prefix("UPDATE {ks}.") {
            self.update(rest, &mut next)
        } else if let Some(rest) = flat.strip_prefix("DELETE FROM {ks}.") {
            self.delete(rest, &mut next)
        } else if let Some(rest) = flat.strip_prefix("SELECT ") {
            self.select(rest, &mut next)
        } else {
            Err(format!("cannot run {flat:?}"))
        }
    }

    fn table(&mut self, name: &str) -> Result<&mut Table, String> {
        self.tables
            .get_mut(name)
            .ok_or_else(|| format!("no table {name}"))
    }

    fn insert(
        &mut self,
        rest: &str,
        next: &mut impl FnMut() -> Result<Value, String>,
    ) -> Result<Answer, String> {
        let (name, rest) = rest.split_once(" (").ok_or("no column list")?;
        let (columns, rest) = rest.split_once(") VALUES (").ok_or("no VALUES")?;
        let (operands, tail) = rest.split_once(')').ok_or("no end of VALUES")?;
        let table = self.table(name)?;
        let mut cells = Cells::new();
        for (column, operand) in columns.split(", ").zip(operands.split(", ")) {
            let value = table.operand(column, operand, next)?;
            cells.insert(column.to_owned(), value);
        }
        let key = |columns: &[String], cells: &Cells| -> Result<Option<Vec<Key>>, String> {
            let found: Vec<&Value> = columns.iter().filter_map(|c| cells.get(c)).collect();
            if found.is_empty() {
                return Ok(None);
            }
            if found.len() < columns.len() {
                return Err("a key given in part".into());
            }
            found
                .into_iter()
                .map(Key::of)
                .collect::<Result<_, _>>()
                .map(Some)
        };
        let partition = key(&table.partition_key, &cells)?.ok_or("no partition key")?;
        let row = key(&table.clustering, &cells)?;
        let conditional = match tail.trim() {
            "" => false,
            "IF NOT EXISTS" => true,
            other => return Err(format!("cannot run {other:?}")),
        };
        if conditional && table.exists(&partition, row.as_ref()) {
            return Ok(Answer::Applied(false));
        }
        table.write(partition, row, cells, true)?;
        Ok(if conditional {
            Answer::Applied(true)
        } else {
            Answer::Void
        })
    }

    fn update(
        &mut self,
        rest: &str,
        next: &mut impl FnMut() -> Result<Value, String>,
    ) -> Result<Answer, String> {
        let (name, rest) = rest.split_once(" SET ").ok_or("no SET")?;
        let (sets, rest) = rest.split_once(" WHERE ").ok_or("no WHERE")?;
        let table = self.table(name)?;
        let mut cells = Cells::new();
        for set in sets.split(", ") {
            let (column, operand) = set.split_once(" = ").ok_or("a SET without =")?;
            let value = table.operand(column, operand, next)?;
            cells.insert(column.to_owned(), value);
        }
        let (conditions, guard) = split_if(rest);
        let (partition, row) = table.addressed(&table.conditions(conditions, next)?)?;
        if let Some(guard) = guard
            && !table.guard(guard, &partition, row.as_ref(), next)?
        {
            return Ok(Answer::Applied(false));
        }
        table.write(partition, row, cells, false)?;
        Ok(if guard.is_some() {
            Answer::Applied(true)
        } else {
            Answer::Void
        })
    }

    fn delete(
        &mut self,
        rest: &str,
        next: &mut impl FnMut() -> Result<Value, String>,
    ) -> Result<Answer, String> {
        let (name, rest) = rest.split_once(" WHERE ").ok_or("no WHERE")?;
        let table = self.table(name)?;
        let (conditions, guard) = split_if(rest);
        let (partition, row) = table.addressed(&table.conditions(conditions, next)?)?;
        if let Some(guard) = guard
            && !table.guard(guard, &partition, row.as_ref(), next)?
        {
            return Ok(Answer::Applied(false));
        }
        match row {
            Some(row) => {
                if let Some(p) = table.partitions.get_mut(&partition) {
                    p.rows.remove(&row);
                    if p.rows.is_empty() && p.statics.is_empty() {
                        table.partitions.remove(&partition);
                    }
                }
            }
            None => {
                table.partitions.remove(&partition);
            }
        }
        Ok(if guard.is_some() {
            Answer::Applied(true)
        } else {
            Answer::Void
        })
    }

    fn select(
        &mut self,
        rest: &str,
        next: &mut impl FnMut() -> Result<Value, String>,
    ) -> Result<Answer, String> {
        let (distinct, rest) = match rest.strip_prefix("DISTINCT ") {
            Some(rest) => (true, rest),
            None => (false, rest),
        };
        let (columns, rest) = rest.split_once(" FROM {ks}.").ok_or("no FROM")?;
        let columns: Vec<&str> = columns.split(", ").collect();
        let (name, mut rest) = rest.split_once(' ').unwrap_or((rest, ""));
        let table = self.table(name)?;
        let filtering = rest.ends_with("ALLOW FILTERING");
        rest = rest.trim_end_matches("ALLOW FILTERING").trim();
        let (rest, limit) = match rest.split_once("LIMIT ") {
            Some((before, limit)) => (before.trim(), Some(limit)),
            None => (rest, None),
        };
        // Markers in text order: the WHERE's, then the LIMIT's.
        let conditions = match rest.strip_prefix("WHERE ") {
            Some(conditions) => table.conditions(conditions, next)?,
            None if rest.is_empty() => Vec::new(),
            None => return Err(format!("cannot run {rest:?}")),
        };
        let limit = match limit {
            Some("?") => Some(next()?),
            Some(literal) => Some(Value::Int(
                literal.parse().map_err(|_| format!("LIMIT {literal}"))?,
            )),
            None => None,
        };
        for column in &columns {
            if !table.types.contains_key(*column) {
                return Err(format!("cannot select {column:?}"));
            }
        }
        for c in &conditions {
            let key =
                table.partition_key.contains(&c.column) || table.clustering.contains(&c.column);
            if !key && !filtering {
                return Err(format!("{} is not a key: needs ALLOW FILTERING", c.column));
            }
        }
        let limit = match limit {
            Some(Value::Int(n)) => usize::try_from(n).map_err(|_| "a negative LIMIT")?,
            Some(other) => return Err(format!("LIMIT {other:?}")),
            None => usize::MAX,
        };
        let restricts_rows = conditions
            .iter()
            .any(|c| !table.partition_key.contains(&c.column));
        let mut out = Vec::new();
        for (pk, p) in &table.partitions {
            let mut base = p.statics.clone();
            for (column, key) in table.partition_key.iter().zip(pk) {
                base.insert(column.clone(), key_value(key, table.types[column]));
            }
            let static_only = p.rows.is_empty() && !restricts_rows && !p.statics.is_empty();
            let rows: Vec<Cells> = if distinct || static_only {
                vec![base]
            } else {
                p.rows
                    .iter()
                    .map(|(ck, cells)| {
                        let mut row = base.clone();
                        for (column, key) in table.clustering.iter().zip(ck) {
                            row.insert(column.clone(), key_value(key, table.types[column]));
                        }
                        row.extend(cells.iter().map(|(c, v)| (c.clone(), v.clone())));
                        row
                    })
                    .collect()
            };
            for row in rows {
                if out.len() < limit && conditions.iter().all(|c| holds(c, &row)) {
                    out.push(
                        columns
                            .iter()
                            .map(|c| row.get(*c).cloned().unwrap_or(Value::Null))
                            .collect(),
                    );
                }
            }
        }
        Ok(Answer::Rows(out))
    }
}

impl Table {
    /// A bound value (`?`), an integer literal or a text literal (`'m'`), for `column`.
    fn operand(
        &self,
        column: &str,
        operand: &str,
        next: &mut impl FnMut() -> Result<Value, String>,
    ) -> Result<Value, String> {
        let typ = *self
            .types
            .get(column)
            .ok_or_else(|| format!("no column {column}"))?;
        if operand == "?" {
            return next();
        }
        if let Some(text) = operand
            .strip_prefix('\'')
            .and_then(|rest| rest.strip_suffix('\''))
        {
            return match typ {
                ColType::Text => Ok(Value::Text(text.to_owned())),
                other => Err(format!("a text literal for a {other:?} column")),
            };
        }
        let literal: i64 = operand
            .parse()
            .map_err(|_| format!("cannot read {operand:?}"))?;
        match typ {
            ColType::BigInt => Ok(Value::BigInt(literal)),
            ColType::Int => Ok(Value::Int(
                i32::try_from(literal).map_err(|_| "int literal out of range")?,
            )),
            other => Err(format!("an integer literal for a {other:?} column")),
        }
    }

    /// `a = ? AND b > 0 ...`, operands resolved in order.
    fn conditions(
        &self,
        text: &str,
        next: &mut impl FnMut() -> Result<Value, String>,
    ) -> Result<Vec<Condition>, String> {
        text.split(" AND ")
            .map(|part| {
                let words: Vec<&str> = part.split(' ').collect();
                let [column, op, operand] = words[..] else {
                    return Err(format!("cannot read condition {part:?}"));
                };
                if !["=", "<", "<=", ">", ">="].contains(&op) {
                    return Err(format!("operator {op}"));
                }
                Ok(Condition {
                    column: column.to_owned(),
                    op: op.to_owned(),
                    value: self.operand(column, operand, next)?,
                })
            })
            .collect()
    }

    /// The partition and (when all clustering columns are given) the row a write's WHERE
    /// names; only equalities on key columns are allowed.
    fn addressed(&self, conditions: &[Condition]) -> Result<(Vec<Key>, Option<Vec<Key>>), String> {
        let eq = |column: &String| {
            conditions
                .iter()
                .find(|c| &c.column == column && c.op == "=")
                .map(|c| Key::of(&c.value))
                .transpose()
        };
        for c in conditions {
            if c.op != "="
                || !(self.partition_key.contains(&c.column) || self.clustering.contains(&c.column))
            {
                return Err(format!("a write WHERE {} {}", c.column, c.op));
            }
        }
        let partition = self
            .partition_key
            .iter()
            .map(|c| eq(c)?.ok_or_else(|| format!("no {c} in WHERE")))
            .collect::<Result<Vec<_>, _>>()?;
        let row: Vec<Key> = self
            .clustering
            .iter()
            .map(eq)
            .collect::<Result<Vec<_>, _>>()?
            .into_iter()
            .flatten()
            .collect();
        match row.len() {
            0 => Ok((partition, None)),
            n if n == self.clustering.len() => Ok((partition, Some(row))),
            _ => Err("a range of rows".into()),
        }
    }

    fn exists(&self, partition: &[Key], row: Option<&Vec<Key>>) -> bool {
        let Some(p) = self.partitions.get(partition) else {
            return false;
        };
        match row {
            Some(row) => p.rows.contains_key(row),
            None if self.clustering.is_empty() => p.rows.contains_key(&Vec::new()),
            None => !p.statics.is_empty(),
        }
    }

    /// Whether `IF EXISTS` or `IF a = ? AND ...` holds.
    fn guard(
        &self,
        guard: &str,
        partition: &[Key],
        row: Option<&Vec<Key>>,
        next: &mut impl FnMut() -> Result<Value, String>,
    ) -> Result<bool, String> {
        if guard == "EXISTS" {
            return Ok(self.exists(partition, row));
        }
        let p = self.partitions.get(partition);
        let row_key = row
            .cloned()
            .or_else(|| self.clustering.is_empty().then(Vec::new));
        let mut holds = true;
        for c in self.conditions(guard, next)? {
            if c.op != "=" {
                return Err(format!("IF {} {}", c.column, c.op));
            }
            let current = p.and_then(|p| {
                if self.statics.contains(&c.column) {
                    p.statics.get(&c.column)
                } else {
                    p.rows.get(row_key.as_ref()?)?.get(&c.column)
                }
            });
            holds &= current.unwrap_or(&Value::Null) == &c.value;
        }
        Ok(holds)
    }

    /// Writes `cells` (key columns among them are skipped) into the row, or into the
    /// partition's statics when no row is named (a table without clustering columns has
    /// its one row under the empty key). `marker`: an INSERT, which makes the row exist
    /// even without cells.
    fn write(
        &mut self,
        partition: Vec<Key>,
        row: Option<Vec<Key>>,
        cells: Cells,
        marker: bool,
    ) -> Result<(), String> {
        let row = row.or_else(|| self.clustering.is_empty().then(Vec::new));
        let p = self.partitions.entry(partition).or_default();
        let keys: Vec<&String> = self.partition_key.iter().chain(&self.clustering).collect();
        if row.is_some() && marker {
            p.rows.entry(row.clone().expect("a row")).or_default();
        }
        for (column, value) in cells {
            if keys.contains(&&column) || value == Value::Unset {
                continue;
            }
            let target = if self.statics.contains(&column) {
                Some(&mut p.statics)
            } else {
                let row = row
                    .as_ref()
                    .ok_or_else(|| format!("{column} needs a row"))?;
                if value == Value::Null {
                    p.rows.get_mut(row)
                } else {
                    Some(p.rows.entry(row.clone()).or_default())
                }
            };
            match (target, value) {
                (Some(target), Value::Null) => {
                    target.remove(&column);
                }
                (Some(target), value) => {
                    target.insert(column, value);
                }
                (None, _) => {}
            }
        }
        Ok(())
    }
}

/// (the WHERE conditions, the text after ` IF `).
fn split_if(text: &str) -> (&str, Option<&str>) {
    match text.split_once(" IF ") {
        Some((conditions, guard)) => (conditions, Some(guard)),
        None => (text, None),
    }
}

fn holds(c: &Condition, row: &Cells) -> bool {
    let Some(value) = row.get(&c.column) else {
        return false;
    };
    let (Ok(left), Ok(right)) = (Key::of(value), Key::of(&c.value)) else {
        return c.op == "=" && value == &c.value;
    };
    match c.op.as_str() {
        "=" => left == right,
        "<" => left < right,
        "<=" => left <= right,
        ">" => left > right,
        ">=" => left >= right,
        _ => false,
    }
}

fn key_value(key: &Key, typ: ColType) -> Value {
    match (key, typ) {
        (Key::Int(v), ColType::Int) => Value::Int(i32::try_from(*v).expect("an int key")),
        (Key::Int(v), _) => Value::BigInt(*v),
        (Key::Text(v), _) => Value::Text(v.clone()),
    }
}

/// A table's name and shape from its CREATE TABLE.
/// `(table, column, type)` of an `ALTER TABLE {ks}.table ADD column type`; `None` for
/// any other statement.
pub(crate) fn added_column(ddl: &str) -> Option<(String, String, ColType)> {
    let flat = ddl.split_whitespace().collect::<Vec<_>>().join(" ");
    let rest = flat.strip_prefix("ALTER TABLE {ks}.")?;
    let words: Vec<&str> = rest.split(' ').collect();
    let [name, "ADD", column, typ] = words[..] else {
        panic!("the fake tables do not know {ddl:?}");
    };
    let typ = ColType::from_cql(typ).unwrap_or_else(|| panic!("type {typ} of {name}"));
    Some((name.to_owned(), column.to_owned(), typ))
}

fn table_of(ddl: &str) -> (String, Table) {
    let flat = ddl.split_whitespace().collect::<Vec<_>>().join(" ");
    let rest = flat
        .strip_prefix("CREATE TABLE IF NOT EXISTS {ks}.")
        .expect("a CREATE TABLE");
    let (name, body) = rest.split_once(" (").expect("a column list");
    let mut table = Table::default();
    // `PRIMARY KEY ((partition), clustering...)` after the columns, or `column type
    // PRIMARY KEY` among them; the list ends at its last `)` (options may follow).
    let (columns, key) = match body.split_once("PRIMARY KEY ((") {
        Some((columns, key)) => (columns, Some(key)),
        None => (&body[..body.rfind(')').expect("end of the columns")], None),
    };
    for def in columns.split(", ") {
        let words: Vec<&str> = def.split(' ').filter(|w| !w.is_empty()).collect();
        let [column, typ, ref more @ ..] = words[..] else {
            continue;
        };
        let typ = ColType::from_cql(typ).unwrap_or_else(|| panic!("type {typ} of {name}"));
        table.types.insert(column.to_owned(), typ);
        if more.contains(&"STATIC") {
            table.statics.insert(column.to_owned());
        }
        if more.contains(&"PRIMARY") {
            table.partition_key.push(column.to_owned());
        }
    }
    if let Some(key) = key {
        let (partition, clustering) = key.split_once(')').expect("a partition key");
        let list = |s: &str| -> Vec<String> {
            s.split(',')
                .map(|c| c.trim_matches(|ch: char| ch == ')' || ch == ' ').to_owned())
                .filter(|c| !c.is_empty() && !c.starts_with("WITH"))
                .collect()
        };
        table.partition_key = list(partition);
        let clustering = clustering.split(')').next().unwrap_or("");
        table.clustering = list(clustering);
    }
    (name.to_owned(), table)
}

#[cfg(test)]
mod tests;
