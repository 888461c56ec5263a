//! TLS under every protocol: the server's certificate and key, loaded once at start into a
//! rustls configuration that each TLS connection shares. The per-connection work (the
//! rustls `ServerConnection` between the socket and the plaintext buffers) lives in
//! `conn.rs`, so no protocol session knows whether it runs over TLS. A handshake must be
//! done within `--login-timeout` (10 s by default) of connecting.

use crate::config::TlsSettings;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::ServerConfig;
use std::path::Path;
use std::sync::Arc;

/// Builds the shared server configuration from the certificate chain and key files.
///
/// # Errors
/// One line naming the file or the flag at fault: unreadable or empty PEM files, a key
/// that does not match the certificate, or TLS ports without a certificate and key.
pub fn server_config(tls: &TlsSettings) -> Result<Arc<ServerConfig>, String> {
    let (Some(cert), Some(key)) = (&tls.cert, &tls.key) else {
        return Err("TLS needs both --tls-cert and --tls-key".to_owned());
    };
    if tls.port.is_none() && tls.wss_port.is_none() {
        return Err("--tls-cert and --tls-key need --tls-port or --wss-port".to_owned());
    }
    let chain = load_chain(cert)?;
    let key = PrivateKeyDer::from_pem_file(key)
        .map_err(|e| format!("cannot read the TLS key {}: {e}", key.display()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| format!("TLS setup failed: {e}"))?
        .with_no_client_auth()
        .with_single_cert(chain, key)
        .map_err(|e| format!("the TLS certificate and key do not fit together: {e}"))?;
    Ok(Arc::new(config))
}

fn load_chain(path: &Path) -> Result<Vec<CertificateDer<'static>>, String> {
    let shown = path.display();
    let chain: Vec<CertificateDer<'static>> = CertificateDer::pem_file_iter(path)
        .map_err(|e| format!("cannot read the TLS certificate {shown}: {e}"))?
        .collect::<Result<_, _>>()
        .map_err(|e| format!("cannot read the TLS certificate {shown}: {e}"))?;
    if chain.is_empty() {
        return Err(format!("no certificate in {shown}"));
    }
    Ok(chain)
}
