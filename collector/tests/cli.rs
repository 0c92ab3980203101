//! The binary as scripts and the end-to-end tests use it: `keys create` prints a key, `serve`
//! prints `listening on ADDR`, and SIGTERM drains and stops it (and the embedded cluster).

mod common;

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agenttally_collector::EmbeddedPostgres;
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
