//! HTTPS: the collector serves TLS 1.3 and 1.2 with a certificate made at test time by a test CA,
//! and the SDK verifies it.
//!
//! - `sdk_delivers_over_https_to_a_trusted_collector`: the SDK client trusting the test CA
//!   (`ca_file`) delivers a batch and the events land in PostgreSQL.
//! - `plain_http_to_the_tls_port_is_refused`: no plain-HTTP request is served, nothing lands.
//! - `a_client_that_does_not_trust_the_ca_stores_nothing`: the built-in roots refuse the test
//!   CA's certificate; nothing lands, and the server goes on serving trusted clients.
//! - `tls_1_2_and_1_3_are_served_and_nothing_older`: a TLS 1.2-only and a TLS 1.3-only client are
//!   served; a TLS 1.1 ClientHello gets a `protocol_version` alert.
//! - `a_silent_client_holds_up_neither_others_nor_shutdown`: the handshake timeout's purpose.
//! - `the_binary_serves_https_and_names_bad_tls_flags`: `serve --tls-cert --tls-key` prints
//!   `listening on https://...`; a missing or unusable file is refused by flag and file.
#![allow(clippy::unwrap_used)]

mod common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use agenttally::{Client, ProviderEvent, Usage};
use agenttally_collector::config::TlsFiles;
use agenttally_collector::tls::PROTOCOL_VERSIONS;
use agenttally_collector::{EmbeddedPostgres, Scope};
use common::Env;
use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rust_decimal::Decimal;
use rustls::pki_types::{CertificateDer, ServerName};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

const BIN: &str = env!("CARGO_BIN_EXE_agenttally-collector");

/// A test CA and a server certificate it signed for `localhost` and `127.0.0.1`, as PEM files in
/// a directory of their own (removed on drop).
struct Pki {
    dir: PathBuf,
    ca: PathBuf,
    ca_der: CertificateDer<'static>,
    files: TlsFiles,
}

impl Pki {
    fn new() -> Pki {
        let dir = std::env::temp_dir().join(format!("agenttally-tls-{}", uuid::Uuid::now_v7()));
        std::fs::create_dir_all(&dir).unwrap();

        let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        ca_params
            .distinguished_name
            .push(DnType::CommonName, "AgentTally test CA");
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();

        let mut params =
            CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
        params
            .distinguished_name
            .push(DnType::CommonName, "agenttally-collector");
        let key = KeyPair::generate().unwrap();
        let cert = params.signed_by(&key, &ca).unwrap();

        let pki = Pki {
            ca: dir.join("ca.pem"),
            ca_der: ca.der().clone(),
            files: TlsFiles {
                cert: dir.join("server.pem"),
                key: dir.join("server.key"),
            },
            dir,
        };
        std::fs::write(&pki.ca, ca.pem()).unwrap();
        std::fs::write(&pki.files.cert, cert.pem()).unwrap();
        std::fs::write(&pki.files.key, key.serialize_pem()).unwrap();
        pki
    }
}

impl Drop for Pki {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

async fn start(pki: &Pki) -> Env {
    let files = pki.files.clone();
    let env = Env::start_with(move |c| c.tls = Some(files)).await;
    assert!(env.base.starts_with("https://127.0.0.1:"), "{}", env.base);
    env
}

fn addr(env: &Env) -> SocketAddr {
    env.server.as_ref().unwrap().addr()
}

fn event(tenant: &str, i: u64) -> agenttally::AnalyticsEvent {
    ProviderEvent::api_call(tenant, "openai", "gpt-4o")
        .usage(Usage {
            input_tokens: 100 + i,
            output_tokens: 20,
            ..Usage::default()
        })
        .cost_usd(Decimal::new(123, 4))
        .correlation_id("run-1")
        .build()
        .unwrap()
}

/// A client speaking only `versions` and trusting only `ca`.
fn client_config(
    ca: &CertificateDer<'static>,
    versions: &[&'static rustls::SupportedProtocolVersion],
) -> Arc<rustls::ClientConfig> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(ca.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_protocol_versions(versions)
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    Arc::new(config)
}

/// `GET /healthz` over TLS with `config`, as `localhost`: the version negotiated and the
/// response's status line.
async fn healthz_over(
    addr: SocketAddr,
    config: Arc<rustls::ClientConfig>,
) -> std::io::Result<(rustls::ProtocolVersion, String)> {
    let tcp = TcpStream::connect(addr).await?;
    let name = ServerName::try_from("localhost").unwrap();
    let mut tls = tokio_rustls::TlsConnector::from(config)
        .connect(name, tcp)
        .await?;
    let version = tls.get_ref().1.protocol_version().unwrap();
    tls.write_all(b"GET /healthz HTTP/1.1\r\nhost: localhost\r\nconnection: close\r\n\r\n")
        .await?;
    let mut response = Vec::new();
    tls.read_to_end(&mut response).await?;
    let text = String::from_utf8_lossy(&response);
    Ok((version, text.lines().next().unwrap_or("").to_string()))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sdk_delivers_over_https_to_a_trusted_collector() {
    let pki = Pki::new();
    let mut env = start(&pki).await;
    let key = env.key(Some("acme"), &[Scope::Ingest]).await;
    let client = Client::builder()
        .endpoint(&env.base)
        .api_key(key)
        .ca_file(&pki.ca)
        .build()
        .unwrap();
    for i in 0..25 {
        client.track(event("acme", i)).unwrap();
    }
    tokio::task::block_in_place(|| client.flush(Duration::from_secs(20))).unwrap();
    let stats = client.stats();
    assert_eq!((stats.sent, stats.dropped.total()), (25, 0), "{stats:?}");
    assert_eq!(
        env.count("SELECT count(*) FROM events WHERE tenant_id = 'acme'")
            .await,
        25
    );
    tokio::task::block_in_place(|| client.shutdown(Duration::from_secs(5))).unwrap();
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_http_to_the_tls_port_is_refused() {
    let pki = Pki::new();
    let mut env = start(&pki).await;
    let key = env.key(Some("acme"), &[Scope::Ingest]).await;
    let plain = format!("http://{}", addr(&env));

    let health = reqwest::get(format!("{plain}/healthz")).await;
    assert!(
        health.as_ref().map_or(true, |r| !r.status().is_success()),
        "{health:?}"
    );
    let post = reqwest::Client::new()
        .post(format!("{plain}/v1/batch"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(common::batch(&[common::event(
            "acme",
            serde_json::json!({}),
        )]))
        .send()
        .await;
    assert!(
        post.as_ref().map_or(true, |r| !r.status().is_success()),
        "{post:?}"
    );

    // On the wire: whatever comes back is no HTTP response.
    let mut tcp = TcpStream::connect(addr(&env)).await.unwrap();
    tcp.write_all(b"GET /healthz HTTP/1.1\r\nhost: x\r\n\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer)).await;
    assert!(!answer.starts_with(b"HTTP/"), "{answer:?}");

    assert_eq!(env.count("SELECT count(*) FROM events").await, 0);
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_trust_the_ca_stores_nothing() {
    let pki = Pki::new();
    let mut env = start(&pki).await;
    let key = env.key(Some("acme"), &[Scope::Ingest]).await;

    // The built-in (webpki) roots do not know the test CA.
    let client = Client::builder()
        .endpoint(&env.base)
        .api_key(&key)
        .max_retry_time(Duration::from_millis(500))
        .retry_delays(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();
    for i in 0..5 {
        client.track(event("acme", i)).unwrap();
    }
    let flushed = tokio::task::block_in_place(|| client.flush(Duration::from_secs(20)));
    let stats = client.stats();
    assert!(flushed.is_err(), "{stats:?}");
    assert_eq!(
        (stats.sent, stats.dropped.undeliverable),
        (0, 5),
        "{stats:?}"
    );
    assert!(stats.requests >= 1, "{stats:?}");

    // reqwest with its default roots fails the same way, at the handshake.
    let e = reqwest::get(format!("{}/healthz", env.base))
        .await
        .unwrap_err();
    assert!(e.is_connect(), "{e:?}");

    // A CA file that holds another CA does not help either.
    let other = Pki::new();
    let client = Client::builder()
        .endpoint(&env.base)
        .api_key(&key)
        .ca_file(&other.ca)
        .max_retry_time(Duration::from_millis(300))
        .retry_delays(Duration::from_millis(10), Duration::from_millis(50))
        .build()
        .unwrap();
    client.track(event("acme", 9)).unwrap();
    assert!(tokio::task::block_in_place(|| client.flush(Duration::from_secs(20))).is_err());
    assert_eq!(client.stats().sent, 0);

    assert_eq!(env.count("SELECT count(*) FROM events").await, 0);
    // Failed handshakes are not fatal: a trusting client is served.
    let (_, status) = healthz_over(addr(&env), client_config(&pki.ca_der, PROTOCOL_VERSIONS))
        .await
        .unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");
    env.shutdown().await;
}

/// A ClientHello record of legacy version 3.2 (TLS 1.1) with two TLS 1.1 cipher suites and
/// `extensions` (each one type, length, data; none: no extensions block, as TLS 1.1 clients sent).
fn tls11_hello(extensions: &[u8]) -> Vec<u8> {
    let be16 = |n: usize| u16::try_from(n).unwrap().to_be_bytes();
    let mut hello = vec![0x03, 0x02];
    hello.extend_from_slice(&[7; 32]); // random
    hello.push(0); // no session id
    hello.extend_from_slice(&[0x00, 0x04, 0xc0, 0x13, 0x00, 0x2f]); // cipher suites
    hello.extend_from_slice(&[0x01, 0x00]); // null compression
    if !extensions.is_empty() {
        hello.extend_from_slice(&be16(extensions.len()));
        hello.extend_from_slice(extensions);
    }
    let mut handshake = vec![0x01, 0x00]; // client_hello, 24-bit length
    handshake.extend_from_slice(&be16(hello.len()));
    handshake.extend_from_slice(&hello);
    let mut record = vec![0x16, 0x03, 0x02]; // handshake record
    record.extend_from_slice(&be16(handshake.len()));
    record.extend_from_slice(&handshake);
    record
}

/// Send `hello`, read until the server closes: it must answer with one fatal alert and nothing
/// else (no ServerHello). Returns the alert's description.
async fn refusal(addr: SocketAddr, hello: Vec<u8>) -> u8 {
    let mut tcp = TcpStream::connect(addr).await.unwrap();
    tcp.write_all(&hello).await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), tcp.read_to_end(&mut answer))
        .await
        .expect("the server closes the connection")
        .unwrap();
    // One alert record (content type 21), fatal (level 2).
    assert_eq!(answer.len(), 7, "{answer:?}");
    assert_eq!(
        (answer[0], answer[5]),
        (0x15, 2),
        "not a fatal alert: {answer:?}"
    );
    answer[6]
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_1_2_and_1_3_are_served_and_nothing_older() {
    assert_eq!(
        PROTOCOL_VERSIONS
            .iter()
            .map(|v| v.version)
            .collect::<Vec<_>>(),
        [
            rustls::ProtocolVersion::TLSv1_3,
            rustls::ProtocolVersion::TLSv1_2
        ]
    );
    let pki = Pki::new();
    let mut env = start(&pki).await;
    for version in [&rustls::version::TLS12, &rustls::version::TLS13] {
        let config = client_config(&pki.ca_der, &[version]);
        let (negotiated, status) = healthz_over(addr(&env), config).await.unwrap();
        assert_eq!(negotiated, version.version);
        assert_eq!(status, "HTTP/1.1 200 OK");
    }

    // rustls cannot speak TLS 1.1, so send TLS 1.1 ClientHellos by hand. One as TLS 1.1 clients
    // sent it (no extensions) is refused outright; with the signature_algorithms extension
    // rustls asks for first, the refusal names the version.
    const HANDSHAKE_FAILURE: u8 = 40;
    const PROTOCOL_VERSION: u8 = 70;
    assert_eq!(
        refusal(addr(&env), tls11_hello(&[])).await,
        HANDSHAKE_FAILURE
    );
    let signature_algorithms = [0x00, 0x0d, 0x00, 0x06, 0x00, 0x04, 0x04, 0x03, 0x04, 0x01];
    assert_eq!(
        refusal(addr(&env), tls11_hello(&signature_algorithms)).await,
        PROTOCOL_VERSION
    );
    env.shutdown().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_holds_up_neither_others_nor_shutdown() {
    let pki = Pki::new();
    let mut env = start(&pki).await;
    // Connected, never says a word: its handshake waits for the timeout.
    let silent = TcpStream::connect(addr(&env)).await.unwrap();
    let half = TcpStream::connect(addr(&env)).await.unwrap();
    let mut half = half;
    half.write_all(&[0x16, 0x03, 0x01, 0x00, 0x40])
        .await
        .unwrap(); // a record header, no body

    let (_, status) = healthz_over(addr(&env), client_config(&pki.ca_der, PROTOCOL_VERSIONS))
        .await
        .unwrap();
    assert_eq!(status, "HTTP/1.1 200 OK");

    let began = Instant::now();
    env.shutdown().await;
    assert!(
        began.elapsed() < Duration::from_secs(5),
        "shutdown waited {:?} for unfinished handshakes",
        began.elapsed()
    );
    drop((silent, half));
}

/// Run the binary with `args`, wait for it to exit (it must: these are refusals), return its exit
/// code and stderr.
fn refused(args: &[&str]) -> (i32, String) {
    let out = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .env_remove("AGENTTALLY_TLS_CERT")
        .env_remove("AGENTTALLY_TLS_KEY")
        .stdin(Stdio::null())
        .output()
        .unwrap();
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn path(p: &Path) -> &str {
    p.to_str().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_binary_serves_https_and_names_bad_tls_flags() {
    let pki = Pki::new();
    let (cert, key) = (path(&pki.files.cert), path(&pki.files.key));
    // Both or neither.
    let (code, err) = refused(&["--tls-cert", cert]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--tls-key"), "{err}");
    let (code, err) = refused(&["--tls-key", key]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--tls-cert"), "{err}");
    // Unusable files, refused before any database is opened (none is given here).
    let missing = pki.dir.join("missing.pem");
    let (code, err) = refused(&["--tls-cert", path(&missing), "--tls-key", key]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--tls-cert: cannot read `") && err.contains("missing.pem"),
        "{err}"
    );
    let (code, err) = refused(&["--tls-cert", cert, "--tls-key", path(&pki.ca)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--tls-key: `") && err.contains("ca.pem` holds no PEM private key"),
        "{err}"
    );
    let other = Pki::new();
    let (code, err) = refused(&["--tls-cert", cert, "--tls-key", path(&other.files.key)]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("is not the private key of the certificate in --tls-cert"),
        "{err}"
    );
    let bogus = pki.dir.join("bogus.pem");
    std::fs::write(
        &bogus,
        "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
    )
    .unwrap();
    let (code, err) = refused(&["--tls-cert", path(&bogus), "--tls-key", key]);
    assert_eq!(code, 1, "{err}");
    assert!(
        err.contains("--tls-cert: `") && err.contains("holds a certificate that cannot be used"),
        "{err}"
    );

    // Served: the first line is the https URL; the SDK's CA file makes it trusted.
    let pg = tokio::task::spawn_blocking(EmbeddedPostgres::start_ephemeral)
        .await
        .unwrap()
        .unwrap();
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--database-url"])
        .arg(pg.database_url())
        .env("AGENTTALLY_TLS_CERT", cert)
        .env("AGENTTALLY_TLS_KEY", key)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let url = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    assert!(url.starts_with("https://127.0.0.1:"), "{url}");
    let trusting = reqwest::Client::builder()
        .tls_built_in_root_certs(false)
        .add_root_certificate(reqwest::Certificate::from_der(&pki.ca_der).unwrap())
        .build()
        .unwrap();
    let health = trusting.get(format!("{url}/healthz")).send().await.unwrap();
    assert_eq!(health.status().as_u16(), 200);
    let _ = child.kill();
    let _ = child.wait();
    tokio::task::spawn_blocking(move || pg.shutdown())
        .await
        .unwrap()
        .unwrap();
}
