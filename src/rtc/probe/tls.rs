//! TLS for `turns:` probes: rustls with the host's trust store, so a certificate that a
//! browser would reject (wrong name, unknown issuer, expired) fails the probe too.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use tokio_rustls::rustls::pki_types::pem::PemObject;
use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
use tokio_rustls::rustls::{self, CertificateError, ClientConfig, RootCertStore};

use super::{ProbeError, TlsFailure};

/// The CAs TLS probes trust, and where they came from.
#[derive(Clone)]
pub struct TlsRoots {
    store: Arc<RootCertStore>,
    pub source: PathBuf,
    pub count: usize,
}

/// Where Debian (and most Linux distributions) keep the system's CA bundle.
const SYSTEM_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

/// The trust store: the PEM bundle named by `SSL_CERT_FILE` (as OpenSSL and curl read
/// it), else the system bundle. Unreadable or empty gives an empty store (TLS probes then
/// fail with "unknown issuer", which names the problem).
pub fn load_roots(ssl_cert_file: Option<PathBuf>) -> TlsRoots {
    let source = ssl_cert_file.unwrap_or_else(|| PathBuf::from(SYSTEM_BUNDLE));
    let mut store = RootCertStore::empty();
    for cert in read_pem(&source) {
        let _ = store.add(cert);
    }
    let count = store.len();
    TlsRoots {
        store: Arc::new(store),
        source,
        count,
    }
}

fn read_pem(path: &Path) -> Vec<CertificateDer<'static>> {
    match CertificateDer::pem_file_iter(path) {
        Ok(certs) => certs.filter_map(Result::ok).collect(),
        Err(_) => Vec::new(),
    }
}

pub(super) async fn connect(
    tcp: tokio::net::TcpStream,
    name: &str,
    roots: &TlsRoots,
) -> Result<tokio_rustls::client::TlsStream<tokio::net::TcpStream>, ProbeError> {
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| ProbeError::Tls(TlsFailure::Other(e.to_string())))?
        .with_root_certificates(Arc::clone(&roots.store))
        .with_no_client_auth();
    let server_name = ServerName::try_from(name.to_string())
        .map_err(|_| ProbeError::Tls(TlsFailure::Other(format!("{name:?} is not a host name"))))?;
    tokio_rustls::TlsConnector::from(Arc::new(config))
        .connect(server_name, tcp)
        .await
        .map_err(|e| ProbeError::Tls(classify(&e, name)))
}

/// rustls's verdict in a person's words.
fn classify(e: &std::io::Error, name: &str) -> TlsFailure {
    let rustls_error = e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(cert)) => match cert {
            CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => {
                TlsFailure::WrongName(format!("{name} is not among the names it lists"))
            }
            CertificateError::UnknownIssuer => TlsFailure::UnknownIssuer,
            CertificateError::Expired
            | CertificateError::ExpiredContext { .. }
            | CertificateError::NotValidYet
            | CertificateError::NotValidYetContext { .. } => TlsFailure::Expired,
            other => TlsFailure::Other(format!("{other:?}")),
        },
        Some(other) => TlsFailure::Other(other.to_string()),
        None => TlsFailure::Other(e.to_string()),
    }
}
