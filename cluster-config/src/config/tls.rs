//! `[cluster.tls]`: the certificates that encrypt and authenticate cluster connections.
//!
//! Without them, everything nodes and gateways say to each other (message texts, phone
//! numbers, QR and pairing codes) crosses the network in clear after ractor_cluster's
//! cookie handshake, which proves knowledge of the cookie but encrypts nothing.

use std::path::PathBuf;

use serde::Deserialize;

use super::check::Invalid;

/// Mutual TLS between every pair of cluster processes (nodes and gateways alike).
///
/// Each process presents `cert` (with its private key `key`) and accepts a peer only if
/// the peer's certificate chains to `ca`, in both directions: the side that connects
/// checks the listener's certificate, the listener checks the connecting side's. A peer
/// without a certificate, or with one from another CA, never gets as far as the cookie.
///
/// The name checked in a listener's certificate is `server_name`, the same for every
/// process, not the host a peer was reached at: processes are reached at pod IPs,
/// service names or `127.0.0.1`, which no single certificate can list, and the
/// certificate's job here is to prove membership of the cluster (which node is which is
/// the ractor handshake's business, under the cookie). So every certificate carries
/// `server_name` as a DNS subject alternative name, and one certificate may be shared
/// by all processes.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsSettings {
    /// PEM file with this process's certificate (then any intermediates), signed by `ca`.
    #[serde(default)]
    pub cert: Option<PathBuf>,
    /// PEM file with the private key of `cert` (PKCS#8, PKCS#1 or SEC1). Read at start,
    /// never logged.
    #[serde(default)]
    pub key: Option<PathBuf>,
    /// PEM file with the cluster CA certificate(s) that peers' certificates must chain to.
    #[serde(default)]
    pub ca: Option<PathBuf>,
    /// The DNS name every process's certificate carries and every peer checks
    /// (default `wafleet-cluster`).
    #[serde(default = "default_server_name")]
    pub server_name: String,
    /// Refuse to start without `cert`, `key` and `ca` (default `false`, so a development
    /// cluster runs without certificates, with a warning at start). Production sets it.
    #[serde(default)]
    pub required: bool,
}

impl Default for TlsSettings {
    fn default() -> TlsSettings {
        TlsSettings {
            cert: None,
            key: None,
            ca: None,
            server_name: default_server_name(),
            required: false,
        }
    }
}

/// The three PEM files of a process whose cluster traffic is encrypted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles<'a> {
    /// This process's certificate chain (PEM).
    pub cert: &'a PathBuf,
    /// Its private key (PEM).
    pub key: &'a PathBuf,
    /// The cluster CA (PEM).
    pub ca: &'a PathBuf,
    /// The name checked in listeners' certificates.
    pub server_name: &'a str,
}

impl TlsSettings {
    /// The files to load, or `None` when TLS is off (none of the three is set).
    pub fn files(&self) -> Option<TlsFiles<'_>> {
        match (&self.cert, &self.key, &self.ca) {
            (Some(cert), Some(key), Some(ca)) => Some(TlsFiles {
                cert,
                key,
                ca,
                server_name: &self.server_name,
            }),
            _ => None,
        }
    }

    pub(crate) fn check(&self) -> Result<(), Invalid> {
        let set = [
            ("cluster.tls.cert", self.cert.is_some()),
            ("cluster.tls.key", self.key.is_some()),
            ("cluster.tls.ca", self.ca.is_some()),
        ];
        let missing: Vec<&'static str> = set.iter().filter(|(_, s)| !s).map(|(k, _)| *k).collect();
        if let Some(&first) = missing.first()
            && (self.required || missing.len() < set.len())
        {
            let why = if self.required {
                "cluster.tls.required is true"
            } else {
                "the other cluster.tls files are set (give all three, or none for clear traffic)"
            };
            return Err(Invalid::new(
                first,
                format!("{} must be set: {why}", missing.join(", ")),
            ));
        }
        let name = self.server_name.trim();
        if name.is_empty()
            || name != self.server_name
            || !self
                .server_name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.')
        {
            return Err(Invalid::new(
                "cluster.tls.server_name",
                format!(
                    "`{}` is not a DNS name (letters, digits, `-` and `.`)",
                    self.server_name
                ),
            ));
        }
        Ok(())
    }
}

fn default_server_name() -> String {
    "wafleet-cluster".to_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all() -> TlsSettings {
        TlsSettings {
            cert: Some("c.pem".into()),
            key: Some("k.pem".into()),
            ca: Some("ca.pem".into()),
            ..TlsSettings::default()
        }
    }

    #[test]
    fn tls_is_off_by_default_and_on_with_all_three_files() {
        assert_eq!(TlsSettings::default().check(), Ok(()));
        assert!(TlsSettings::default().files().is_none());
        assert_eq!(all().check(), Ok(()));
        assert_eq!(all().files().unwrap().server_name, "wafleet-cluster");
    }

    #[test]
    fn some_files_without_the_others_are_refused() {
        let mut settings = all();
        settings.key = None;
        assert_eq!(settings.check().unwrap_err().key, "cluster.tls.key");
        let mut settings = all();
        settings.cert = None;
        settings.ca = None;
        assert_eq!(settings.check().unwrap_err().key, "cluster.tls.cert");
    }

    #[test]
    fn required_tls_without_files_is_refused() {
        let settings = TlsSettings {
            required: true,
            ..TlsSettings::default()
        };
        let err = settings.check().unwrap_err();
        assert_eq!(err.key, "cluster.tls.cert");
        assert!(err.message.contains("required"), "{}", err.message);
        let settings = TlsSettings {
            required: true,
            ..all()
        };
        assert_eq!(settings.check(), Ok(()));
    }

    #[test]
    fn a_server_name_that_is_not_a_dns_name_is_refused() {
        for bad in ["", " wafleet", "wafleet cluster", "*.wafleet"] {
            let settings = TlsSettings {
                server_name: bad.into(),
                ..all()
            };
            assert_eq!(
                settings.check().unwrap_err().key,
                "cluster.tls.server_name",
                "{bad:?}"
            );
        }
    }
}
