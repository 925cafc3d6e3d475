//! The layered source of a configuration: a TOML file with `WAFLEET__SECTION__KEY`
//! environment variables laid over it, read into typed settings.
//!
//! Values from the file keep their TOML types. Values from the environment are strings
//! that take the type the setting asks for: `true`/`false` for a flag, digits for a
//! number, comma-separated items for a list (`a:1,b:2`; an empty value is an empty
//! list), and, for an optional key, an empty value means "unset".

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use serde::de::value::{MapDeserializer, SeqDeserializer, StringDeserializer};
use serde::de::{self, DeserializeOwned, IntoDeserializer, Unexpected, Visitor};

use super::error::{ConfigError, Origin};

/// Environment variables that start with this are config keys.
pub(crate) const ENV_PREFIX: &str = "WAFLEET__";
/// Separates the section from the key (and nested sections) in a variable's name.
const ENV_SEPARATOR: &str = "__";

/// The process's `WAFLEET__*` environment variables.
pub(crate) fn process_env() -> Result<Vec<(String, String)>, ConfigError> {
    let mut vars = Vec::new();
    for (key, value) in std::env::vars_os() {
        let Some(key) = key.to_str().filter(|k| k.starts_with(ENV_PREFIX)) else {
            continue;
        };
        let value = value.into_string().map_err(|_| ConfigError::Environment {
            var: key.to_owned(),
            message: "the value is not valid UTF-8".into(),
        })?;
        vars.push((key.to_owned(), value));
    }
    Ok(vars)
}

/// The environment variable that sets `key` (`cluster.cookie` → `WAFLEET__CLUSTER__COOKIE`).
pub(crate) fn env_var_of(key: &str) -> String {
    format!(
        "{ENV_PREFIX}{}",
        key.split('.')
            .map(str::to_uppercase)
            .collect::<Vec<_>>()
            .join(ENV_SEPARATOR)
    )
}

/// A configuration before it is typed: the file's tables, with values from the
/// environment put in place of (or beside) the file's.
#[derive(Debug)]
pub(crate) struct Source {
    root: BTreeMap<String, Item>,
    origins: Origins,
}

/// Which keys came from where, to say so in error messages.
#[derive(Debug)]
pub(crate) struct Origins {
    file: PathBuf,
    /// Dotted keys present in the file.
    in_file: BTreeSet<String>,
    /// Dotted keys set by the environment, with the variable that set each.
    from_env: BTreeMap<String, String>,
}

/// One node of the configuration tree.
#[derive(Debug)]
enum Item {
    Table(BTreeMap<String, Item>),
    File(toml::Value),
    Env(EnvValue),
}

/// A value from an environment variable: a string, read as whatever type is asked for.
/// (Which variable it came from is in [`Origins`], for the error message.)
#[derive(Debug)]
struct EnvValue {
    value: String,
}

impl Source {
    /// Reads the file at `path` and lays the `WAFLEET__*` variables of `env` over it.
    pub(crate) fn read<I, K, V>(path: &Path, env: I) -> Result<Source, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Source::parse(path, &text, env)
    }

    /// Like [`Source::read`], with the file's text given (`path` only names it).
    pub(crate) fn parse<I, K, V>(path: &Path, text: &str, env: I) -> Result<Source, ConfigError>
    where
        I: IntoIterator<Item = (K, V)>,
        K: Into<String>,
        V: Into<String>,
    {
        let table: toml::Table =
            text.parse()
                .map_err(|e: toml::de::Error| ConfigError::Syntax {
                    path: path.to_owned(),
                    message: e.to_string().trim_end().to_owned(),
                })?;
        let mut origins = Origins {
            file: path.to_owned(),
            in_file: BTreeSet::new(),
            from_env: BTreeMap::new(),
        };
        let mut root = from_toml(table, "", &mut origins.in_file);

        let mut vars: Vec<(String, String)> = env
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .filter(|(k, _)| k.starts_with(ENV_PREFIX))
            .collect();
        vars.sort();
        for (var, value) in vars {
            let path: Vec<String> = var[ENV_PREFIX.len()..]
                .split(ENV_SEPARATOR)
                .map(str::to_lowercase)
                .collect();
            if path.iter().any(String::is_empty) {
                return Err(ConfigError::Environment {
                    var,
                    message: "expected WAFLEET__SECTION__KEY, with no empty part".into(),
                });
            }
            set(&mut root, &path, Item::Env(EnvValue { value })).map_err(|message| {
                ConfigError::Environment {
                    var: var.clone(),
                    message,
                }
            })?;
            origins.from_env.insert(path.join("."), var);
        }
        Ok(Source { root, origins })
    }

    /// Types the configuration as `T`; errors name the key and where its value came from.
    pub(crate) fn deserialize<T: DeserializeOwned>(self) -> Result<(T, Origins), ConfigError> {
        let Source { root, origins } = self;
        match serde_path_to_error::deserialize(Item::Table(root)) {
            Ok(value) => Ok((value, origins)),
            Err(error) => {
                let path = error.path().to_string();
                let message = error.into_inner().0;
                Err(origins.explain(&path, message))
            }
        }
    }
}

impl Origins {
    /// Where the value of `key` (dotted, possibly with a `[index]`) came from.
    pub(crate) fn of(&self, key: &str) -> Origin {
        let key = key.split('[').next().unwrap_or(key);
        let mut prefix = key;
        loop {
            if let Some(var) = self.from_env.get(prefix) {
                return Origin::Environment(var.clone());
            }
            match prefix.rfind('.') {
                Some(dot) => prefix = &prefix[..dot],
                None => break,
            }
        }
        if self.in_file.contains(key) {
            Origin::File(self.file.clone())
        } else {
            Origin::Default
        }
    }

    /// A validation failure of `key`, as a [`ConfigError`].
    pub(crate) fn invalid(&self, key: &str, message: String) -> ConfigError {
        ConfigError::InvalidValue {
            key: key.to_owned(),
            origin: self.of(key),
            message,
        }
    }

    /// Turns a deserialization failure at `path` into the error that says what to fix.
    fn explain(&self, path: &str, message: String) -> ConfigError {
        let parent = if path == "." { "" } else { path };
        let child = |name: &str| {
            if parent.is_empty() {
                name.to_owned()
            } else {
                format!("{parent}.{name}")
            }
        };
        if let Some(rest) = message.strip_prefix("unknown field `") {
            // The path already ends with the unknown key (it is where the error arose).
            let (_, expected) = rest.split_once('`').unwrap_or((rest, ""));
            let key = parent.to_owned();
            let expected = expected.trim_start_matches(", ");
            let expected = if expected.starts_with("there are no fields") {
                "this section has no keys".to_owned()
            } else {
                expected.to_owned()
            };
            return ConfigError::UnknownKey {
                origin: self.of(&key),
                key,
                expected,
            };
        }
        if let Some(rest) = message.strip_prefix("missing field `") {
            let name = rest.split('`').next().unwrap_or(rest);
            let key = child(name);
            return ConfigError::MissingKey {
                var: env_var_of(&key),
                file: self.file.clone(),
                key,
            };
        }
        self.invalid(parent, message)
    }
}

/// The file's table as a tree, recording every dotted key in `keys`.
fn from_toml(
    table: toml::Table,
    prefix: &str,
    keys: &mut BTreeSet<String>,
) -> BTreeMap<String, Item> {
    table
        .into_iter()
        .map(|(name, value)| {
            let key = if prefix.is_empty() {
                name.clone()
            } else {
                format!("{prefix}.{name}")
            };
            keys.insert(key.clone());
            let item = match value {
                toml::Value::Table(table) => Item::Table(from_toml(table, &key, keys)),
                other => Item::File(other),
            };
            (name, item)
        })
        .collect()
}

/// Puts `item` at `path`, making the tables on the way. A variable may set a key, not a
/// whole section, and not below a key that is not a section.
fn set(table: &mut BTreeMap<String, Item>, path: &[String], item: Item) -> Result<(), String> {
    let (last, parents) = path.split_last().expect("a non-empty path");
    let mut table = table;
    for (depth, name) in parents.iter().enumerate() {
        let entry = table
            .entry(name.clone())
            .or_insert_with(|| Item::Table(BTreeMap::new()));
        let Item::Table(inner) = entry else {
            return Err(format!(
                "`{}` is a key, not a section, so it has no key `{}`",
                path[..=depth].join("."),
                path[depth + 1..].join(".")
            ));
        };
        table = inner;
    }
    if let Some(Item::Table(_)) = table.get(last) {
        return Err(format!(
            "`{}` is a section: set its keys one by one (WAFLEET__SECTION__KEY)",
            path.join(".")
        ));
    }
    table.insert(last.clone(), item);
    Ok(())
}

/// A deserialization failure: only its message is kept, the path is tracked outside.
#[derive(Debug)]
pub(crate) struct DeError(String);

impl fmt::Display for DeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for DeError {}

impl de::Error for DeError {
    fn custom<T: fmt::Display>(msg: T) -> Self {
        DeError(msg.to_string())
    }
}

impl From<toml::de::Error> for DeError {
    fn from(error: toml::de::Error) -> Self {
        DeError(error.message().to_owned())
    }
}

impl<'de> IntoDeserializer<'de, DeError> for Item {
    type Deserializer = Item;
    fn into_deserializer(self) -> Item {
        self
    }
}

impl<'de> IntoDeserializer<'de, DeError> for EnvValue {
    type Deserializer = EnvValue;
    fn into_deserializer(self) -> EnvValue {
        self
    }
}

/// `Item`'s deserialize methods: a table is a map, a file value is TOML's business, an
/// environment value is [`EnvValue`]'s.
macro_rules! dispatch {
    ($($method:ident($($arg:ident: $ty:ty),*);)*) => {$(
        fn $method<V: Visitor<'de>>(self, $($arg: $ty,)* visitor: V) -> Result<V::Value, DeError> {
            match self {
                Item::Table(table) => MapDeserializer::new(table.into_iter()).$method($($arg,)* visitor),
                Item::File(value) => Ok(value.$method($($arg,)* visitor)?),
                Item::Env(value) => value.$method($($arg,)* visitor),
            }
        }
    )*};
}

impl<'de> de::Deserializer<'de> for Item {
    type Error = DeError;

    dispatch! {
        deserialize_any();
        deserialize_bool();
        deserialize_i8();
        deserialize_i16();
        deserialize_i32();
        deserialize_i64();
        deserialize_u8();
        deserialize_u16();
        deserialize_u32();
        deserialize_u64();
        deserialize_f32();
        deserialize_f64();
        deserialize_char();
        deserialize_str();
        deserialize_string();
        deserialize_bytes();
        deserialize_byte_buf();
        deserialize_unit();
        deserialize_unit_struct(name: &'static str);
        deserialize_seq();
        deserialize_tuple(len: usize);
        deserialize_tuple_struct(name: &'static str, len: usize);
        deserialize_map();
        deserialize_struct(name: &'static str, fields: &'static [&'static str]);
        deserialize_enum(name: &'static str, variants: &'static [&'static str]);
        deserialize_identifier();
        deserialize_ignored_any();
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        match self {
            Item::Table(_) => visitor.visit_some(self),
            Item::File(value) => Ok(value.deserialize_option(visitor)?),
            Item::Env(value) => value.deserialize_option(visitor),
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        match self {
            Item::Table(_) => visitor.visit_newtype_struct(self),
            Item::File(value) => Ok(value.deserialize_newtype_struct(name, visitor)?),
            Item::Env(value) => value.deserialize_newtype_struct(name, visitor),
        }
    }
}

impl EnvValue {
    /// The value parsed as `T`, or an error that quotes the variable.
    fn parse<T: std::str::FromStr>(&self, what: &str) -> Result<T, DeError> {
        self.value
            .trim()
            .parse()
            .map_err(|_| DeError(format!("expected {what}, found `{}`", self.value)))
    }
}

impl<'de> de::Deserializer<'de> for EnvValue {
    type Error = DeError;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_string(self.value)
    }

    fn deserialize_bool<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_bool(self.parse("true or false")?)
    }

    fn deserialize_i64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_i64(self.parse("an integer")?)
    }

    fn deserialize_i8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_i32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_i64(visitor)
    }

    fn deserialize_u64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_u64(self.parse("a non-negative integer")?)
    }

    fn deserialize_u8<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u16<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_u32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_u64(visitor)
    }

    fn deserialize_f64<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_f64(self.parse("a number")?)
    }

    fn deserialize_f32<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        self.deserialize_f64(visitor)
    }

    fn deserialize_option<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        if self.value.is_empty() {
            visitor.visit_none()
        } else {
            visitor.visit_some(self)
        }
    }

    fn deserialize_newtype_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        visitor.visit_newtype_struct(self)
    }

    fn deserialize_seq<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        let items: Vec<EnvValue> = self
            .value
            .split(',')
            .map(str::trim)
            .filter(|item| !item.is_empty())
            .map(|item| EnvValue {
                value: item.to_owned(),
            })
            .collect();
        let mut seq = SeqDeserializer::new(items.into_iter());
        let value = visitor.visit_seq(&mut seq)?;
        seq.end()?;
        Ok(value)
    }

    fn deserialize_tuple<V: Visitor<'de>>(
        self,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_tuple_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _len: usize,
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_seq(visitor)
    }

    fn deserialize_map<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        Err(de::Error::invalid_type(
            Unexpected::Str(&self.value),
            &visitor,
        ))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        self.deserialize_map(visitor)
    }

    fn deserialize_enum<V: Visitor<'de>>(
        self,
        _name: &'static str,
        _variants: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, DeError> {
        let variant: StringDeserializer<DeError> = self.value.trim().to_owned().into_deserializer();
        visitor.visit_enum(variant)
    }

    fn deserialize_unit<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    fn deserialize_ignored_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, DeError> {
        visitor.visit_unit()
    }

    serde::forward_to_deserialize_any! {
        char str string bytes byte_buf unit_struct identifier
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Root {
        section: Section,
    }

    #[derive(Debug, Deserialize, PartialEq)]
    #[serde(deny_unknown_fields)]
    struct Section {
        number: u32,
        flag: bool,
        list: Vec<String>,
        maybe: Option<String>,
        text: String,
    }

    const FILE: &str = r#"
        [section]
        number = 7
        flag = false
        list = ["a", "b"]
        maybe = "here"
        text = "from the file"
    "#;

    fn load(text: &str, env: &[(&str, &str)]) -> Result<Root, ConfigError> {
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string()));
        Source::parse(Path::new("test.toml"), text, env)?
            .deserialize()
            .map(|(root, _)| root)
    }

    #[test]
    fn the_environment_overrides_the_file_with_typed_values() {
        let root = load(
            FILE,
            &[
                ("WAFLEET__SECTION__NUMBER", "42"),
                ("WAFLEET__SECTION__FLAG", "true"),
                ("WAFLEET__SECTION__LIST", "x:1, y:2,"),
                ("WAFLEET__SECTION__MAYBE", ""),
                ("WAFLEET__SECTION__TEXT", "12345"),
                ("WAFLEET_ADMIN_KEY", "not a config key"),
                ("PATH", "/bin"),
            ],
        )
        .unwrap();
        assert_eq!(
            root.section,
            Section {
                number: 42,
                flag: true,
                list: vec!["x:1".into(), "y:2".into()],
                maybe: None,
                text: "12345".into(),
            }
        );
    }

    #[test]
    fn the_environment_alone_can_fill_a_section() {
        let root = load(
            "",
            &[
                ("WAFLEET__SECTION__NUMBER", "1"),
                ("WAFLEET__SECTION__FLAG", "false"),
                ("WAFLEET__SECTION__LIST", ""),
                ("WAFLEET__SECTION__TEXT", "t"),
            ],
        )
        .unwrap();
        assert_eq!(root.section.list, Vec::<String>::new());
        assert_eq!(root.section.maybe, None);
    }

    #[test]
    fn errors_name_the_key_and_where_the_value_came_from() {
        let err = load(FILE, &[("WAFLEET__SECTION__NUMBER", "many")]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidValue { key, origin: Origin::Environment(var), .. }
                if key == "section.number" && var == "WAFLEET__SECTION__NUMBER"),
            "{err:?}"
        );
        assert!(err.to_string().contains("`many`"), "{err}");

        let err = load(&FILE.replace("number = 7", "number = -1"), &[]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::InvalidValue { key, origin: Origin::File(_), .. } if key == "section.number"),
            "{err:?}"
        );

        let err = load(&FILE.replace("number = 7", "numbr = 7"), &[]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownKey { key, origin: Origin::File(_), .. } if key == "section.numbr"),
            "{err:?}"
        );
        assert!(err.to_string().contains("expected one of"), "{err}");

        let err = load(FILE, &[("WAFLEET__SECTION__EXTRA", "1")]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::UnknownKey { key, origin: Origin::Environment(_), .. } if key == "section.extra"),
            "{err:?}"
        );

        let err = load(&FILE.replace("number = 7", ""), &[]).unwrap_err();
        assert!(
            matches!(&err, ConfigError::MissingKey { key, var, .. }
                if key == "section.number" && var == "WAFLEET__SECTION__NUMBER"),
            "{err:?}"
        );

        for bad in [
            vec![("WAFLEET____NUMBER", "1")],
            vec![("WAFLEET__SECTION", "x")],
            vec![("WAFLEET__SECTION__TEXT__MORE", "x")],
            vec![("WAFLEET__OTHER", "x"), ("WAFLEET__OTHER__KEY", "y")],
        ] {
            let err = load(FILE, &bad).unwrap_err();
            assert!(
                matches!(err, ConfigError::Environment { .. }),
                "{bad:?}: {err:?}"
            );
        }

        let err = load("[section", &[]).unwrap_err();
        assert!(matches!(err, ConfigError::Syntax { .. }), "{err:?}");
        assert!(err.to_string().contains("test.toml"), "{err}");
    }
}
