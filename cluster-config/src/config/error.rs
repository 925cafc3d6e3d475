//! What can go wrong loading a configuration, and where the offending value came from.

use std::fmt;
use std::path::PathBuf;

/// Why a configuration could not be loaded. Every variant names the file, the key or the
/// environment variable at fault, so the message alone tells an operator what to fix.
/// Keys are dotted paths: `cluster.cookie`, `store.scylla.uris`, `node.seeds[1]`.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {}: {source}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// What the operating system said.
        #[source]
        source: std::io::Error,
    },
    /// The file is not valid TOML.
    #[error("config file {} is not valid TOML: {message}", path.display())]
    Syntax {
        /// The file.
        path: PathBuf,
        /// The parser's message, with the line and column.
        message: String,
    },
    /// A key this process does not know: a typo, or a key meant for the other process.
    #[error("unknown config key `{key}` ({origin}); {expected}")]
    UnknownKey {
        /// The unknown key.
        key: String,
        /// Where it was written.
        origin: Origin,
        /// The keys that are known at that place.
        expected: String,
    },
    /// A required key (one with no safe default) is missing.
    #[error("config key `{key}` is required: set it in {} or in the environment variable {var}", file.display())]
    MissingKey {
        /// The missing key.
        key: String,
        /// The file that lacks it.
        file: PathBuf,
        /// The environment variable that could set it instead.
        var: String,
    },
    /// A value of the wrong type or out of range, or values that contradict each other.
    #[error("config key `{key}` ({origin}): {message}")]
    InvalidValue {
        /// The key whose value is refused.
        key: String,
        /// Where the value came from.
        origin: Origin,
        /// What is wrong and what is expected.
        message: String,
    },
    /// A `WAFLEET__…` environment variable that cannot be read as a config key.
    #[error("environment variable {var}: {message}")]
    Environment {
        /// The variable.
        var: String,
        /// What is wrong with it.
        message: String,
    },
}

/// Where a configuration value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The config file.
    File(PathBuf),
    /// An environment variable (named), which overrides the file.
    Environment(String),
    /// Neither: the built-in default.
    Default,
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Origin::File(path) => write!(f, "in config file {}", path.display()),
            Origin::Environment(var) => write!(f, "from environment variable {var}"),
            Origin::Default => f.write_str("default value"),
        }
    }
}
