//! HTTPS: the server's rustls configuration (ring provider, TLS 1.3 and 1.2 only) loaded from
//! PEM files, and a listener that completes TLS handshakes off the accept path for `axum::serve`.

use std::io;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

use crate::config::{TlsFiles, MAX_TLS_HANDSHAKES, TLS_HANDSHAKE_TIMEOUT};
use crate::error::{Error, Result};
use crate::listener::WriteStallGuard;

/// The protocol versions served, newest first. rustls speaks nothing older than TLS 1.2.
pub static PROTOCOL_VERSIONS: &[&rustls::SupportedProtocolVersion] =
    &[&rustls::version::TLS13, &rustls::version::TLS12];

/// The rustls server configuration for `files`; `Err` names the flag and the file at fault.
pub fn server_config(files: &TlsFiles) -> Result<Arc<rustls::ServerConfig>> {
    let certs = load_certs(&files.cert)?;
    let key = load_key(&files.key)?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_protocol_versions(PROTOCOL_VERSIONS)
        .map_err(|e| Error::Config(format!("TLS: {e}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| {
            let (cert, key) = (files.cert.display(), files.key.display());
            Error::Config(match e {
                rustls::Error::InvalidCertificate(e) => {
                    format!("--tls-cert: `{cert}` holds a certificate that cannot be used: {e}")
                }
                rustls::Error::InconsistentKeys(_) => format!(
                    "--tls-key: `{key}` is not the private key of the certificate in \
                     --tls-cert `{cert}`"
                ),
                e => format!("--tls-key: `{key}` cannot be used with --tls-cert `{cert}`: {e}"),
            })
        })?;
    // The router speaks HTTP/1.1 only.
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(Arc::new(config))
}

fn read(flag: &str, path: &Path) -> Result<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| Error::Config(format!("{flag}: cannot read `{}`: {e}", path.display())))
}

fn load_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>> {
    const FLAG: &str = "--tls-cert";
    let pem = read(FLAG, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<std::result::Result<Vec<_>, _>>()
        .map_err(|e| {
            Error::Config(format!(
                "{FLAG}: `{}` is not a PEM certificate chain: {e}",
                path.display()
            ))
        })?;
    if certs.is_empty() {
        return Err(Error::Config(format!(
            "{FLAG}: `{}` holds no PEM certificate (`-----BEGIN CERTIFICATE-----`)",
            path.display()
        )));
    }
    Ok(certs)
}

fn load_key(path: &Path) -> Result<PrivateKeyDer<'static>> {
    const FLAG: &str = "--tls-key";
    let pem = read(FLAG, path)?;
    PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
        let why = match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "holds no PEM private key (PKCS#8, PKCS#1 or SEC1)".to_string()
            }
            e => format!("is not a PEM private key: {e}"),
        };
        Error::Config(format!("{FLAG}: `{}` {why}", path.display()))
    })
}

/// A TCP listener whose connections come out of `accept` with their TLS handshake done. Each
/// handshake runs in its own task under `TLS_HANDSHAKE_TIMEOUT`, so a slow or silent client never
/// holds up the others; a failed handshake is logged at debug and dropped. Handshakes still in
/// progress are aborted when the listener is dropped (`axum::serve` drops it on shutdown).
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    /// Connections whose writes stall this long are closed (`listener::WriteStallGuard`).
    stall_limit: Duration,
    handshakes: JoinSet<Option<(TlsStream<TcpStream>, SocketAddr)>>,
}

impl std::fmt::Debug for TlsListener {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TlsListener")
            .field("tcp", &self.tcp)
            .field("handshakes", &self.handshakes.len())
            .finish_non_exhaustive()
    }
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<rustls::ServerConfig>, stall_limit: Duration) -> Self {
        TlsListener {
            tcp,
            acceptor: TlsAcceptor::from(config),
            stall_limit,
            handshakes: JoinSet::new(),
        }
    }

    fn start_handshake(&mut self, tcp: TcpStream, peer: SocketAddr) {
        let acceptor = self.acceptor.clone();
        self.handshakes.spawn(async move {
            match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                Ok(Ok(tls)) => Some((tls, peer)),
                Ok(Err(e)) => {
                    tracing::debug!("TLS handshake with {peer} failed: {e}");
                    None
                }
                Err(_) => {
                    tracing::debug!(
                        "TLS handshake with {peer} did not finish within {TLS_HANDSHAKE_TIMEOUT:?}"
                    );
                    None
                }
            }
        });
    }
}

impl axum::serve::Listener for TlsListener {
    type Io = WriteStallGuard<TlsStream<TcpStream>>;
    type Addr = SocketAddr;

    async fn accept(&mut self) -> (Self::Io, Self::Addr) {
        loop {
            // Both branches are cancel safe: `axum::serve` drops this future on shutdown.
            tokio::select! {
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some((tls, peer))) = done {
                        return (WriteStallGuard::new(tls, self.stall_limit), peer);
                    }
                }
                accepted = self.tcp.accept(), if self.handshakes.len() < MAX_TLS_HANDSHAKES => {
                    match accepted {
                        Ok((tcp, peer)) => self.start_handshake(tcp, peer),
                        Err(e) => accept_error(e).await,
                    }
                }
            }
        }
    }

    fn local_addr(&self) -> io::Result<Self::Addr> {
        self.tcp.local_addr()
    }
}

/// What `axum::serve` does with an accept error on plain TCP: a connection that went away is
/// ignored; anything else (out of file descriptors) is logged and accepting pauses a second.
async fn accept_error(e: io::Error) {
    use io::ErrorKind::{ConnectionAborted, ConnectionRefused, ConnectionReset};
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionRefused | ConnectionReset
    ) {
        return;
    }
    tracing::error!("accept error: {e}");
    tokio::time::sleep(Duration::from_secs(1)).await;
}

#[cfg(test)]
mod tests {
    use super::*;

    fn files(dir: &Path, cert: &[u8], key: &[u8]) -> TlsFiles {
        let files = TlsFiles {
            cert: dir.join("cert.pem"),
            key: dir.join("key.pem"),
        };
        std::fs::write(&files.cert, cert).expect("write cert");
        std::fs::write(&files.key, key).expect("write key");
        files
    }

    fn message(r: Result<Arc<rustls::ServerConfig>>) -> String {
        match r {
            Err(Error::Config(m)) => m,
            other => panic!("expected a config error, got {other:?}"),
        }
    }

    #[test]
    fn bad_files_are_refused_by_flag_and_path() {
        let dir = std::env::temp_dir().join(format!("agenttally-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let missing = TlsFiles {
            cert: dir.join("nope.pem"),
            key: dir.join("nope.key"),
        };
        let m = message(server_config(&missing));
        assert!(m.starts_with("--tls-cert: cannot read `"), "{m}");
        assert!(m.contains("nope.pem"), "{m}");

        let f = files(&dir, b"not pem at all", b"");
        let m = message(server_config(&f));
        assert!(m.starts_with("--tls-cert: `"), "{m}");
        assert!(m.contains("holds no PEM certificate"), "{m}");

        let garbled = b"-----BEGIN CERTIFICATE-----\n!!!!\n-----END CERTIFICATE-----\n";
        let f = files(&dir, garbled, b"");
        let m = message(server_config(&f));
        assert!(m.contains("is not a PEM certificate chain"), "{m}");

        let cert = b"-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n";
        let f = files(&dir, cert, b"no key here");
        let m = message(server_config(&f));
        assert!(m.starts_with("--tls-key: `"), "{m}");
        assert!(m.contains("holds no PEM private key"), "{m}");

        // Parsable PEM, but no real key.
        let key = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n";
        let f = files(&dir, cert, key);
        let m = message(server_config(&f));
        assert!(m.starts_with("--tls-key: `"), "{m}");
        assert!(m.contains("cannot be used with --tls-cert"), "{m}");
        let _ = std::fs::remove_dir_all(&dir);
    }
}
