//! Mutual TLS for cluster connections: what a process presents and what it accepts.
//!
//! ractor_cluster encrypts a session when its listener is given a
//! [`IncomingEncryptionMode::Tls`] acceptor and the connecting side uses
//! [`client_connect_enc`]; this module builds both from `[cluster.tls]`. Both sides
//! authenticate: the listener asks for a client certificate and accepts only one that
//! chains to the cluster CA, and the connecting side accepts only a listener whose
//! certificate chains to that CA and names `server_name` (see
//! [`wafleet_cluster_config::TlsSettings`] for why one name serves every process).
//!
//! The crypto provider is aws-lc-rs, passed explicitly to every builder: the dependency
//! tree also carries ring, and rustls' process-wide default provider panics when it
//! cannot tell which of two compiled-in providers to use. Only TLS 1.3 is offered: every
//! peer is a wafleet process, so there is no older client to accommodate.

use std::path::Path;
use std::sync::Arc;

use ractor::ActorRef;
use ractor_cluster::node::NodeServerMessage;
use ractor_cluster::{ClientConnectErr, IncomingEncryptionMode, client_connect_enc};
use tokio_rustls::rustls::client::WebPkiServerVerifier;
use tokio_rustls::rustls::client::danger::ServerCertVerifier;
use tokio_rustls::rustls::crypto::aws_lc_rs;
use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use tokio_rustls::rustls::server::WebPkiClientVerifier;
use tokio_rustls::rustls::server::danger::ClientCertVerifier;
use tokio_rustls::rustls::{ClientConfig, RootCertStore, ServerConfig, version};
use tokio_rustls::{TlsAcceptor, TlsConnector};
use wafleet_cluster_config::{TlsFiles, TlsSettings};

/// A certificate set that cannot be used; says which file and why (never the key).
#[derive(Debug, thiserror::Error)]
#[error("cluster TLS: {0}")]
pub struct TlsError(String);

/// The TLS side of this process's cluster connections, ready for ractor_cluster.
#[derive(Clone)]
pub struct ClusterTls {
    acceptor: TlsAcceptor,
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

impl std::fmt::Debug for ClusterTls {
    // Configs hold the private key: show only what is public.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClusterTls")
            .field("server_name", &self.server_name)
            .finish_non_exhaustive()
    }
}

impl ClusterTls {
    /// `Some` when `[cluster.tls]` names the three files, `None` when TLS is off (the
    /// configuration has already refused a partial set, or none with `required`).
    pub fn from_settings(settings: &TlsSettings) -> Result<Option<ClusterTls>, TlsError> {
        settings
            .files()
            .map(|files| ClusterTls::load(&files))
            .transpose()
    }

    /// Reads the PEM files and builds both sides. Refuses a certificate that its own
    /// peers would refuse (another CA, expired, without `server_name`, not usable for
    /// both server and client authentication), so a bad file stops the process at start
    /// instead of leaving it alone on the network.
    pub fn load(files: &TlsFiles<'_>) -> Result<ClusterTls, TlsError> {
        let provider = Arc::new(aws_lc_rs::default_provider());
        let chain = read_certs(files.cert, "cert")?;
        let key = read_key(files.key)?;
        let roots = Arc::new(read_roots(files.ca)?);
        let server_name = ServerName::try_from(files.server_name.to_owned()).map_err(|_| {
            TlsError(format!(
                "cluster.tls.server_name `{}` is not a DNS name",
                files.server_name
            ))
        })?;

        let client_verifier =
            WebPkiClientVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| TlsError(format!("cannot verify peers with cluster.tls.ca: {e}")))?;
        let server_verifier =
            WebPkiServerVerifier::builder_with_provider(roots.clone(), provider.clone())
                .build()
                .map_err(|e| TlsError(format!("cannot verify peers with cluster.tls.ca: {e}")))?;
        check_own_certificate(
            &chain,
            &server_name,
            &*client_verifier,
            &*server_verifier,
            files,
        )?;

        let server = ServerConfig::builder_with_provider(provider.clone())
            .with_protocol_versions(&[&version::TLS13])
            .map_err(|e| TlsError(e.to_string()))?
            .with_client_cert_verifier(client_verifier)
            .with_single_cert(chain.clone(), key.clone_key())
            .map_err(|e| TlsError(format!("cluster.tls.cert and cluster.tls.key: {e}")))?;
        let client = ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&version::TLS13])
            .map_err(|e| TlsError(e.to_string()))?
            .with_webpki_verifier(server_verifier)
            .with_client_auth_cert(chain, key)
            .map_err(|e| TlsError(format!("cluster.tls.cert and cluster.tls.key: {e}")))?;
        Ok(ClusterTls {
            acceptor: TlsAcceptor::from(Arc::new(server)),
            connector: TlsConnector::from(Arc::new(client)),
            server_name,
        })
    }

    /// What ractor_cluster's listener does with an accepted socket: the TLS handshake.
    pub(crate) fn incoming(&self) -> IncomingEncryptionMode {
        IncomingEncryptionMode::Tls(self.acceptor.clone())
    }

    /// Opens an encrypted session to `address`, verified against `server_name`.
    pub(crate) async fn connect(
        &self,
        server: &ActorRef<NodeServerMessage>,
        address: &str,
    ) -> Result<(), ClientConnectErr> {
        client_connect_enc(
            server,
            address,
            self.connector.clone(),
            self.server_name.clone(),
        )
        .await
    }
}

/// Verifies this process's own certificate the way its peers will, both as a listener
/// and as a connecting side.
fn check_own_certificate(
    chain: &[CertificateDer<'static>],
    server_name: &ServerName<'static>,
    as_client: &dyn ClientCertVerifier,
    as_server: &dyn ServerCertVerifier,
    files: &TlsFiles<'_>,
) -> Result<(), TlsError> {
    let (leaf, intermediates) = chain
        .split_first()
        .ok_or_else(|| TlsError(format!("no certificate in {}", files.cert.display())))?;
    let now = UnixTime::now();
    as_server
        .verify_server_cert(leaf, intermediates, server_name, &[], now)
        .map_err(|e| {
            TlsError(format!(
                "peers would refuse {} as a listener's certificate ({e}): it must chain to {} \
                 and name `{}` as a DNS subject alternative name",
                files.cert.display(),
                files.ca.display(),
                files.server_name
            ))
        })?;
    as_client
        .verify_client_cert(leaf, intermediates, now)
        .map_err(|e| {
            TlsError(format!(
                "peers would refuse {} as a connecting side's certificate ({e}): it must \
                 allow client authentication (extended key usage clientAuth)",
                files.cert.display()
            ))
        })?;
    Ok(())
}

fn read_certs(path: &Path, key: &str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let certs = CertificateDer::pem_file_iter(path)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| TlsError(format!("cluster.tls.{key} {}: {e}", path.display())))?;
    if certs.is_empty() {
        return Err(TlsError(format!(
            "cluster.tls.{key} {}: no CERTIFICATE in the file",
            path.display()
        )));
    }
    Ok(certs)
}

fn read_roots(path: &Path) -> Result<RootCertStore, TlsError> {
    let mut roots = RootCertStore::empty();
    for cert in read_certs(path, "ca")? {
        roots
            .add(cert)
            .map_err(|e| TlsError(format!("cluster.tls.ca {}: {e}", path.display())))?;
    }
    Ok(roots)
}

/// The private key. Its parse errors are summed up, not shown: a message about a
/// malformed PEM could quote part of the file.
fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    use tokio_rustls::rustls::pki_types::pem::Error;
    PrivateKeyDer::from_pem_file(path).map_err(|error| {
        let why = match error {
            Error::Io(io) => io.to_string(),
            Error::NoItemsFound => "no PRIVATE KEY in the file".to_owned(),
            _ => "not a PEM private key (PKCS#8, PKCS#1 or SEC1)".to_owned(),
        };
        TlsError(format!("cluster.tls.key {}: {why}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use std::path::PathBuf;

    use wafleet_load::scenario::certs::ClusterCerts;

    use super::*;

    fn files<'a>(cert: &'a PathBuf, key: &'a PathBuf, ca: &'a PathBuf) -> TlsFiles<'a> {
        TlsFiles {
            cert,
            key,
            ca,
            server_name: "wafleet-cluster",
        }
    }

    fn error(files: &TlsFiles<'_>) -> String {
        ClusterTls::load(files).unwrap_err().to_string()
    }

    #[test]
    fn a_certificate_of_the_cluster_ca_loads_and_its_debug_shows_no_key() {
        let dir = tempfile::tempdir().unwrap();
        let certs = ClusterCerts::generate(dir.path(), "cluster").unwrap();
        let tls = ClusterTls::load(&files(&certs.cert, &certs.key, &certs.ca)).unwrap();
        let shown = format!("{tls:?}");
        let key = std::fs::read_to_string(&certs.key).unwrap();
        let body = key.lines().nth(1).unwrap();
        assert!(!shown.contains(body), "{shown}");
        assert!(shown.contains("wafleet-cluster"), "{shown}");
    }

    #[test]
    fn a_certificate_of_another_ca_or_for_another_name_is_refused_at_start() {
        let dir = tempfile::tempdir().unwrap();
        let ours = ClusterCerts::generate(dir.path(), "ours").unwrap();
        let theirs = ClusterCerts::generate(dir.path(), "theirs").unwrap();
        let message = error(&files(&theirs.cert, &theirs.key, &ours.ca));
        assert!(message.contains("peers would refuse"), "{message}");
        let message = error(&TlsFiles {
            server_name: "another-cluster",
            ..files(&ours.cert, &ours.key, &ours.ca)
        });
        assert!(message.contains("another-cluster"), "{message}");
        // A key that is not the certificate's.
        let message = error(&files(&ours.cert, &theirs.key, &ours.ca));
        assert!(message.contains("cluster.tls.key"), "{message}");
    }

    #[test]
    fn missing_or_malformed_files_are_named_and_the_key_s_content_is_never_shown() {
        let dir = tempfile::tempdir().unwrap();
        let certs = ClusterCerts::generate(dir.path(), "cluster").unwrap();
        let missing = dir.path().join("nowhere.pem");
        let message = error(&files(&missing, &certs.key, &certs.ca));
        assert!(message.contains("cluster.tls.cert"), "{message}");
        assert!(message.contains("nowhere.pem"), "{message}");

        let secret = "c2VjcmV0LWtleS1tYXRlcmlhbC1kby1ub3Qtc2hvdw!!";
        let bad_key = dir.path().join("bad.key");
        std::fs::write(
            &bad_key,
            format!("-----BEGIN PRIVATE KEY-----\n{secret}\n-----END PRIVATE KEY-----\n"),
        )
        .unwrap();
        let message = error(&files(&certs.cert, &bad_key, &certs.ca));
        assert!(message.contains("cluster.tls.key"), "{message}");
        assert!(!message.contains(secret), "{message}");

        let empty = dir.path().join("empty.pem");
        std::fs::write(&empty, "").unwrap();
        let message = error(&files(&certs.cert, &certs.key, &empty));
        assert!(message.contains("cluster.tls.ca"), "{message}");
    }
}
