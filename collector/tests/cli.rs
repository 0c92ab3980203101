//! The binary as scripts and the end-to-end tests use it: `keys create` prints a key, `serve`
//! prints `listening on ADDR`, and SIGTERM drains and stops it (and the embedded cluster). A
//! numeric flag or variable out of its bounds is refused at parse time, exit code 2, no panic.

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agenttally_collector::{EmbeddedPostgres, Error, Server, ServerConfig};
use common::{batch, event};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_agenttally-collector");

fn keys_create(args: &[&str]) -> String {
    let out = Command::new(BIN)
        .args(["keys", "create"])
        .args(args)
        .stderr(Stdio::inherit())
        .output()
        .expect("run keys create");
    assert!(out.status.success(), "keys create failed");
    let key = String::from_utf8_lossy(&out.stdout).trim().to_string();
    assert!(key.starts_with("at_") && key.len() == 67, "{key}");
    key
}

fn serve(args: &[&str]) -> (Child, String) {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn serve");
    let stdout = child.stdout.take().expect("stdout");
    let mut line = String::new();
    BufReader::new(stdout).read_line(&mut line).expect("read");
    let addr = line
        .trim()
        .strip_prefix("listening on ")
        .unwrap_or_else(|| panic!("unexpected first line {line:?}"))
        .to_string();
    (child, addr)
}

fn sigterm_and_wait(mut child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    for _ in 0..300 {
        if let Some(s) = child.try_wait().expect("wait") {
            assert!(s.success(), "serve exited with {s}");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("serve did not stop within 30 s of SIGTERM");
}

async fn post(addr: &str, key: &str, tenant: &str) -> serde_json::Value {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/v1/batch"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(batch(&[event(tenant, json!({}))]))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    r.json().await.expect("json")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_and_keys_against_a_database_url() {
    let pg = tokio::task::spawn_blocking(EmbeddedPostgres::start_ephemeral)
        .await
        .expect("join")
        .expect("pg");
    let url = pg.database_url();
    let key = keys_create(&[
        "--tenant",
        "acme",
        "--scope",
        "ingest",
        "--database-url",
        &url,
    ]);
    let (child, addr) = serve(&["--database-url", &url]);
    let v = post(&addr, &key, "acme").await;
    assert_eq!(v["accepted"], 1);
    // A platform key made while the server runs works at once.
    let platform = keys_create(&[
        "--platform",
        "--scope",
        "ingest",
        "--scope",
        "read",
        "--database-url",
        &url,
    ]);
    assert_eq!(post(&addr, &platform, "zeta").await["accepted"], 1);
    // A named admin key: the name is in the tenant's key listing.
    let admin = keys_create(&[
        "--tenant",
        "acme",
        "--scope",
        "admin",
        "--name",
        "billing bot",
        "--database-url",
        &url,
    ]);
    let listed: serde_json::Value = reqwest::Client::new()
        .get(format!("http://{addr}/v1/keys"))
        .header("authorization", format!("Bearer {admin}"))
        .send()
        .await
        .expect("list")
        .json()
        .await
        .expect("json");
    assert!(
        listed.to_string().contains("\"name\":\"billing bot\""),
        "{listed}"
    );
    // A bad name is refused by name, before anything is stored.
    let out = Command::new(BIN)
        .args([
            "keys", "create", "--tenant", "acme", "--scope", "read", "--name", " ",
        ])
        .args(["--database-url", &url])
        .output()
        .expect("run keys create");
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("name: must be a string of 1 to 200"), "{err}");
    sigterm_and_wait(child);

    // Retention below the floor the first start recorded (30 days): refused, exit code 1, the
    // flag named; `retention` lowers the floor; then it starts.
    let out = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--raw-retention-days",
            "7",
        ])
        .args(["--database-url", &url])
        .output()
        .expect("run serve");
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("--raw-retention-days, AGENTTALLY_RAW_RETENTION_DAYS): 7 days is shorter"),
        "{err}"
    );
    let out = Command::new(BIN)
        .args([
            "retention",
            "--raw-retention-days",
            "7",
            "--database-url",
            &url,
        ])
        .output()
        .expect("run retention");
    assert!(out.status.success(), "{out:?}");
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("raw events 7 days (was 30 days), hourly rollups 90 days (was 90 days)"),
        "{said}"
    );
    let (child, addr) = serve(&["--database-url", &url, "--raw-retention-days", "7"]);
    assert_eq!(post(&addr, &key, "acme").await["accepted"], 1);
    sigterm_and_wait(child);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn serve_with_the_embedded_default() {
    let dir = std::env::temp_dir().join(format!("agenttally-cli-{}", std::process::id()));
    let d = dir.to_string_lossy().to_string();
    // No server yet: keys create starts the cluster temporarily (and stops it again).
    let key = keys_create(&[
        "--tenant",
        "acme",
        "--scope",
        "ingest",
        "--data-dir",
        &d,
        "--no-fsync",
    ]);
    assert!(
        !Path::new(&dir).join("pg/postmaster.pid").exists(),
        "keys create left PostgreSQL running"
    );
    let (child, addr) = serve(&["--data-dir", &d, "--no-fsync"]);
    assert_eq!(post(&addr, &key, "acme").await["accepted"], 1);
    // Server running: keys create connects to its cluster.
    let key2 = keys_create(&["--tenant", "beta", "--scope", "ingest", "--data-dir", &d]);
    assert_eq!(post(&addr, &key2, "beta").await["accepted"], 1);
    sigterm_and_wait(child);
    assert!(
        !Path::new(&dir).join("pg/postmaster.pid").exists(),
        "serve left PostgreSQL running"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// Every numeric flag of `serve`, given a huge (or zero where zero is out of bounds) value as a
/// flag and as its environment variable: a clean error naming the flag and the rule, exit code 2,
/// before any database is touched.
#[test]
fn huge_numbers_are_refused_at_parse_time() {
    const U32_MAX: &str = "4294967295";
    const U64_MAX: &str = "18446744073709551615";
    const BEYOND_U64: &str = "18446744073709551616";
    let cases = [
        (
            "--raw-retention-days",
            "AGENTTALLY_RAW_RETENTION_DAYS",
            U32_MAX,
            "1 and 3650",
        ),
        (
            "--raw-retention-days",
            "AGENTTALLY_RAW_RETENTION_DAYS",
            U64_MAX,
            "1 and 3650",
        ),
        (
            "--raw-retention-days",
            "AGENTTALLY_RAW_RETENTION_DAYS",
            "0",
            "1 and 3650",
        ),
        (
            "--hourly-retention-days",
            "AGENTTALLY_HOURLY_RETENTION_DAYS",
            U32_MAX,
            "1 and 3650",
        ),
        (
            "--hourly-retention-days",
            "AGENTTALLY_HOURLY_RETENTION_DAYS",
            BEYOND_U64,
            "1 and 3650",
        ),
        (
            "--commit-interval-ms",
            "AGENTTALLY_COMMIT_INTERVAL_MS",
            U64_MAX,
            "0 and 10000",
        ),
        (
            "--commit-interval-ms",
            "AGENTTALLY_COMMIT_INTERVAL_MS",
            BEYOND_U64,
            "0 and 10000",
        ),
        ("--writers", "AGENTTALLY_WRITERS", U64_MAX, "1 and 32"),
        ("--writers", "AGENTTALLY_WRITERS", "0", "1 and 32"),
        (
            "--rate-query-per-minute",
            "AGENTTALLY_RATE_QUERY_PER_MINUTE",
            U32_MAX,
            "0 and 1000000",
        ),
        (
            "--rate-export-per-hour",
            "AGENTTALLY_RATE_EXPORT_PER_HOUR",
            BEYOND_U64,
            "0 and 1000000",
        ),
        (
            "--rate-ingest-per-second",
            "AGENTTALLY_RATE_INGEST_PER_SECOND",
            U64_MAX,
            "0 and 1000000",
        ),
        (
            "--max-concurrent-exports",
            "AGENTTALLY_MAX_CONCURRENT_EXPORTS",
            U64_MAX,
            "1 and 64",
        ),
        (
            "--max-concurrent-exports",
            "AGENTTALLY_MAX_CONCURRENT_EXPORTS",
            "0",
            "1 and 64",
        ),
        (
            "--export-link-ttl",
            "AGENTTALLY_EXPORT_LINK_TTL",
            "59",
            "60 and 604800",
        ),
        (
            "--export-link-ttl",
            "AGENTTALLY_EXPORT_LINK_TTL",
            BEYOND_U64,
            "60 and 604800",
        ),
        (
            "--erasure-grace-days",
            "AGENTTALLY_ERASURE_GRACE_DAYS",
            U32_MAX,
            "0 and 3650",
        ),
    ];
    let run = |args: &[&str], env: Option<(&str, &str)>| {
        let mut cmd = Command::new(BIN);
        cmd.arg("serve").args(args);
        for (_, var, _, _) in &cases {
            cmd.env_remove(var);
        }
        if let Some((k, v)) = env {
            cmd.env(k, v);
        }
        let out = cmd.stdin(Stdio::null()).output().expect("run serve");
        (
            out.status.code(),
            String::from_utf8_lossy(&out.stderr).to_string(),
        )
    };
    for (flag, var, value, range) in cases {
        let want = format!("'{flag} <"); // clap names the flag for an env value too
        let rule = format!("must be between {range}, got {value}");
        for (how, (code, stderr)) in [
            ("flag", run(&[flag, value], None)),
            ("env", run(&[], Some((var, value)))),
        ] {
            assert_eq!(code, Some(2), "{flag}={value} as {how}: {stderr}");
            assert!(
                stderr.contains(&want) && stderr.contains(&rule),
                "{flag}={value} as {how}: want `{want}` and `{rule}` in {stderr}"
            );
            assert!(!stderr.contains("panicked"), "{stderr}");
        }
    }
    // JWT settings are checked before any database is opened.
    let (code, stderr) = run(&["--jwt-hs256-secret", "short"], None);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--jwt-hs256-secret: must be at least 32 bytes, got 5"),
        "{stderr}"
    );
    let (code, stderr) = run(&["--jwt-public-key", "/nonexistent/key.pem"], None);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("--jwt-public-key: cannot read"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The listen port is numeric too: out of range is a parse error, not a panic.
    let (code, stderr) = run(&["--listen", "127.0.0.1:4294967295"], None);
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("--listen"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    // The embedded cluster's settings: its lock cannot be named (flag or variable, one of
    // several), and they make no sense against another server.
    for (args, env) in [
        (vec!["--embedded-pg-setting", "listen_addresses=*"], None),
        (
            vec![],
            Some((
                "AGENTTALLY_EMBEDDED_PG_SETTINGS",
                "work_mem=64MB;listen_addresses=*",
            )),
        ),
    ] {
        let (code, stderr) = run(&args, env);
        assert_eq!(code, Some(2), "{stderr}");
        assert!(
            stderr.contains("'--embedded-pg-setting <NAME=VALUE>'")
                && stderr.contains("listen_addresses: fixed in the embedded cluster"),
            "{stderr}"
        );
    }
    let (code, stderr) = run(
        &[
            "--database-url",
            "postgres://nobody@127.0.0.1:1/none",
            "--embedded-pg-setting",
            "work_mem=64MB",
        ],
        None,
    );
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("--embedded-pg-setting, AGENTTALLY_EMBEDDED_PG_SETTINGS): applies only to the embedded cluster"),
        "{stderr}"
    );
}

/// A `ServerConfig` built directly (as tests and embedders do) with huge values is refused by
/// `Server::start` with the setting named, before it connects to anything.
#[tokio::test]
async fn server_start_refuses_huge_settings() {
    let mut cfg = ServerConfig::new("postgresql://127.0.0.1:1/unused");
    cfg.raw_retention_days = u32::MAX;
    match Server::start(cfg).await {
        Err(Error::Config(m)) => assert_eq!(
            m,
            "config.raw_retention_days: must be between 1 and 3650, got 4294967295"
        ),
        other => panic!("expected a config error, got {other:?}"),
    }
    let mut cfg = ServerConfig::new("postgresql://127.0.0.1:1/unused");
    cfg.commit_interval = Duration::MAX;
    assert!(
        matches!(Server::start(cfg).await, Err(Error::Config(m)) if m.starts_with("config.commit_interval"))
    );
}
