//! Development certificates for cluster TLS: a fresh CA and one certificate signed by it,
//! written as PEM files for `[cluster.tls]`.
//!
//! Local clusters (scenarios with `--cluster-tls`, and tests) make their own at start,
//! so no key is ever checked in. The certificate names `wafleet-cluster`, the default
//! `cluster.tls.server_name`, and allows both server and client authentication: one
//! certificate serves every process of a local cluster, as the docs allow.

use std::path::{Path, PathBuf};

use anyhow::Context;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};

/// The DNS name the certificates carry (wafleet's default `cluster.tls.server_name`).
pub const SERVER_NAME: &str = "wafleet-cluster";

/// The PEM files of one cluster's TLS (or of a stranger's, made the same way).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterCerts {
    /// The process certificate (signed by `ca`).
    pub cert: PathBuf,
    /// Its private key.
    pub key: PathBuf,
    /// The CA that signed `cert`: what peers must chain to.
    pub ca: PathBuf,
}

impl ClusterCerts {
    /// A new CA and a certificate for `SERVER_NAME`, written into `dir` as
    /// `{label}-ca.pem`, `{label}-cert.pem` and `{label}-key.pem`.
    pub fn generate(dir: &Path, label: &str) -> anyhow::Result<ClusterCerts> {
        let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, format!("wafleet {label} dev CA"));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate()?)?;

        let mut params = CertificateParams::new(vec![SERVER_NAME.to_owned()])?;
        params
            .distinguished_name
            .push(DnType::CommonName, SERVER_NAME);
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![
            ExtendedKeyUsagePurpose::ServerAuth,
            ExtendedKeyUsagePurpose::ClientAuth,
        ];
        let key = KeyPair::generate()?;
        let cert = params.signed_by(&key, &ca)?;

        let certs = ClusterCerts {
            cert: dir.join(format!("{label}-cert.pem")),
            key: dir.join(format!("{label}-key.pem")),
            ca: dir.join(format!("{label}-ca.pem")),
        };
        write(&certs.ca, &ca.pem())?;
        write(&certs.cert, &cert.pem())?;
        write(&certs.key, &key.serialize_pem())?;
        Ok(certs)
    }

    /// The `[cluster.tls]` section of a process's config file that uses these files.
    pub fn toml(&self) -> String {
        format!(
            "[cluster.tls]\ncert = {:?}\nkey = {:?}\nca = {:?}\nrequired = true\n",
            self.cert.display().to_string(),
            self.key.display().to_string(),
            self.ca.display().to_string(),
        )
    }
}

fn write(path: &Path, pem: &str) -> anyhow::Result<()> {
    std::fs::write(path, pem).with_context(|| format!("cannot write {}", path.display()))
}
