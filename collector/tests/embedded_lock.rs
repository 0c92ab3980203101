//! The embedded PostgreSQL is reachable only by the collector, and leaves no server behind.
//!
//! - `only_the_collector_reaches_the_embedded_cluster`: with `serve` running on a data dir, another
//!   local user (`nobody`, via `runuser`) cannot connect over TCP on the cluster's port nor over
//!   its Unix socket, nor read the password; the cluster superuser without the password is
//!   refused too; the collector (and `keys create` beside it) works. After `kill -9` of `serve`
//!   the orphaned server is stopped and started again by the next `serve`, and after SIGTERM no
//!   process of that cluster remains.
//! - `relocated_cluster_dir_is_private_and_checked`: as root with a data dir the `postgres` user
//!   cannot reach, the cluster lives in a fresh 0700 directory of `postgres` with an unguessable
//!   name, found again through the data dir, and a recorded directory someone else owns is
//!   refused.
//!
//! The other-user checks need root (as in CI); run as another user they are skipped with a note.

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::fs::{chown, MetadataExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use agenttally_collector::{EmbeddedOptions, EmbeddedPostgres};
use common::{batch, event};
use serde_json::json;

const BIN: &str = env!("CARGO_BIN_EXE_agenttally-collector");

fn is_root() -> bool {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid() == 0)
        .unwrap_or(false)
}

fn uid_of(user: &str) -> u32 {
    let passwd = std::fs::read_to_string("/etc/passwd").expect("/etc/passwd");
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == user)
        .and_then(|f| f[2].parse().ok())
        .unwrap_or_else(|| panic!("no user {user}"))
}

/// A running `serve`: stopped with SIGTERM when dropped (a failing assertion must not leave it,
/// and its PostgreSQL, running).
struct Serve(Option<Child>);

impl Serve {
    fn take(mut self) -> Child {
        self.0.take().expect("child")
    }
}

impl Drop for Serve {
    fn drop(&mut self) {
        if let Some(child) = self.0.take() {
            sigterm_and_wait(child);
        }
    }
}

fn serve(data_dir: &Path) -> (Serve, String) {
    let mut child = Command::new(BIN)
        .args([
            "serve",
            "--listen",
            "127.0.0.1:0",
            "--no-fsync",
            "--data-dir",
        ])
        .arg(data_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
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
    (Serve(Some(child)), addr)
}

fn keys_create(data_dir: &Path) -> String {
    let out = Command::new(BIN)
        .args(["keys", "create", "--tenant", "acme", "--scope", "ingest"])
        .arg("--data-dir")
        .arg(data_dir)
        .stderr(Stdio::inherit())
        .output()
        .expect("run keys create");
    assert!(out.status.success(), "keys create failed");
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

async fn post_one(addr: &str, key: &str) {
    let r = reqwest::Client::new()
        .post(format!("http://{addr}/v1/batch"))
        .header("authorization", format!("Bearer {key}"))
        .header("content-type", "application/json")
        .body(batch(&[event("acme", json!({}))]))
        .send()
        .await
        .expect("post");
    assert_eq!(r.status().as_u16(), 200);
    let v: serde_json::Value = r.json().await.expect("json");
    assert_eq!(v["accepted"], 1, "{v}");
}

/// `postmaster.pid` of a running cluster: (postmaster pid, port, socket dir, listen address).
fn postmaster(cluster: &Path) -> (u32, u16, PathBuf, String) {
    let text = std::fs::read_to_string(cluster.join("postmaster.pid")).expect("postmaster.pid");
    let lines: Vec<&str> = text.lines().collect();
    (
        lines[0].trim().parse().expect("pid"),
        lines[3].trim().parse().expect("port"),
        PathBuf::from(lines[4].trim()),
        lines
            .get(5)
            .map(|l| l.trim().to_string())
            .unwrap_or_default(),
    )
}

/// `psql -c 'SELECT 1'` against `host` (an address or a socket dir), as `user` when given, with
/// `password` when given. Returns (success, stderr).
fn psql(user: Option<&str>, host: &str, port: u16, password: Option<&str>) -> (bool, String) {
    let port = port.to_string();
    let args = [
        "psql",
        "-w",
        "-h",
        host,
        "-p",
        &port,
        "-U",
        "postgres",
        "-d",
        "agenttally",
        "-tAc",
        "SELECT 1",
    ];
    let mut cmd = match user {
        Some(u) => {
            let mut c = Command::new("runuser");
            c.args(["-u", u, "--"]).args(args);
            c
        }
        None => {
            let mut c = Command::new(args[0]);
            c.args(&args[1..]);
            c
        }
    };
    cmd.env_remove("PGPASSWORD").current_dir("/");
    if let Some(p) = password {
        cmd.env("PGPASSWORD", p);
    }
    let out = cmd.stdin(Stdio::null()).output().expect("run psql");
    (
        out.status.success() && String::from_utf8_lossy(&out.stdout).trim() == "1",
        String::from_utf8_lossy(&out.stderr).to_string(),
    )
}

/// Pids of processes belonging to `cluster`: a command line naming it or a working directory in
/// it (every PostgreSQL process works in its data directory; only the postmaster names it).
fn cluster_processes(cluster: &Path) -> Vec<u32> {
    let needle = cluster.to_string_lossy().to_string();
    let mut pids = Vec::new();
    for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<u32>() else {
            continue;
        };
        let cmdline = std::fs::read(entry.path().join("cmdline")).unwrap_or_default();
        let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
        let cwd = std::fs::read_link(entry.path().join("cwd")).unwrap_or_default();
        if cmdline.contains(&needle) || cwd.starts_with(cluster) {
            pids.push(pid);
        }
    }
    pids
}

/// Whether `pid` runs (a zombie, exited but not yet collected by its parent, does not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| {
            let rest = s[s.rfind(')')? + 1..].trim_start().to_string();
            Some(!rest.starts_with('Z'))
        })
        .unwrap_or(false)
}

fn sigterm_and_wait(mut child: Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill");
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Some(s) = child.try_wait().expect("wait") {
            assert!(s.success(), "serve exited with {s}");
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    panic!("serve did not stop within 30 s of SIGTERM");
}

/// The cluster's port on 127.0.0.1 has no PostgreSQL behind it. Nothing listens there, or, as
/// the port is free for anyone, another process does (another test's HTTP server, seen once):
/// PostgreSQL answers the SSL request with `S` or `N`, anything else is not PostgreSQL.
fn assert_not_postgres_over_tcp(err: &str) {
    assert!(
        err.contains("Connection refused") || err.contains("invalid response to SSL negotiation"),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_the_collector_reaches_the_embedded_cluster() {
    let dir = std::env::temp_dir().join(format!("agenttally-lock-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let cluster = dir.join("pg");
    let (child, addr) = serve(&dir);
    // The collector works, and `keys create` beside it reaches the same cluster.
    let key = keys_create(&dir);
    post_one(&addr, &key).await;
    // Settings given to a command that finds the cluster running are not applied, and it says so.
    let out = Command::new(BIN)
        .args(["database-url", "--embedded-pg-setting", "work_mem=8MB"])
        .arg("--data-dir")
        .arg(&dir)
        .output()
        .expect("run database-url");
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{said}");
    assert!(said.contains("--embedded-pg-setting not applied"), "{said}");

    let (first_pid, port, socket_dir, listen) = postmaster(&cluster);
    assert_eq!(listen, "", "no TCP listen address");
    assert_eq!(
        socket_dir,
        cluster.join("socket"),
        "socket inside the cluster dir"
    );
    let mode = std::fs::metadata(&cluster).expect("cluster").mode() & 0o777;
    assert_eq!(mode, 0o700, "cluster dir mode");
    let pw_file = dir.join("pg.password");
    let pw_meta = std::fs::metadata(&pw_file).expect("password file");
    assert_eq!(pw_meta.mode() & 0o777, 0o600, "password file mode");
    let password = std::fs::read_to_string(&pw_file).expect("password");
    let password = password.trim();
    let sock = socket_dir.to_string_lossy().to_string();

    // The positive control: with the password, over the socket, the query runs.
    let (ok, err) = psql(None, &sock, port, Some(password));
    assert!(ok, "the collector's own credentials work: {err}");
    // The cluster superuser's name alone is not enough.
    let (ok, err) = psql(None, &sock, port, None);
    assert!(!ok, "no password, yet connected");
    assert!(err.contains("password"), "{err}");
    let (ok, err) = psql(None, "127.0.0.1", port, Some(password));
    assert!(!ok, "connected over TCP");
    assert_not_postgres_over_tcp(&err);

    if is_root() {
        // Another local user: no TCP, no socket (even knowing the password), no password file.
        let (ok, err) = psql(Some("nobody"), "127.0.0.1", port, None);
        assert!(!ok, "nobody connected over TCP");
        assert_not_postgres_over_tcp(&err);
        let (ok, err) = psql(Some("nobody"), &sock, port, Some(password));
        assert!(!ok, "nobody connected over the socket");
        assert!(err.contains("Permission denied"), "{err}");
        let out = Command::new("runuser")
            .args(["-u", "nobody", "--", "cat"])
            .arg(&pw_file)
            .stderr(Stdio::null())
            .output()
            .expect("runuser cat");
        assert!(!out.status.success(), "nobody read the password file");
        assert!(out.stdout.is_empty());
    } else {
        eprintln!("not root: skipping the other-user connection checks (they need runuser)");
    }

    // kill -9: the server outlives its collector, an orphan.
    let mut child = child.take();
    child.kill().expect("SIGKILL");
    child.wait().expect("wait");
    assert!(
        alive(first_pid) && cluster_processes(&cluster).contains(&first_pid),
        "the orphaned server still runs after kill -9"
    );
    // The next start stops the orphan and starts its own server, which it owns.
    let (child, addr) = serve(&dir);
    let (second_pid, _, _, _) = postmaster(&cluster);
    assert_ne!(second_pid, first_pid, "the orphan was restarted");
    assert!(!alive(first_pid), "the orphan is gone");
    post_one(&addr, &key).await;

    sigterm_and_wait(child.take());
    let left = cluster_processes(&cluster);
    assert!(
        left.is_empty(),
        "PostgreSQL processes left behind: {left:?}"
    );
    assert!(!cluster.join("postmaster.pid").exists());
    assert!(!dir.join("pg.owner").exists());
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn relocated_cluster_dir_is_private_and_checked() {
    if !is_root() {
        eprintln!("not root: the cluster is never relocated; skipping");
        return;
    }
    let postgres = uid_of("postgres");
    let top = std::env::temp_dir().join(format!("agenttally-reloc-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&top);
    let data = top.join("data");
    std::fs::create_dir_all(&data).expect("data dir");
    // The `postgres` user cannot traverse `top`: the cluster must live elsewhere.
    std::fs::set_permissions(&top, std::os::unix::fs::PermissionsExt::from_mode(0o700))
        .expect("chmod");
    let mut opts = EmbeddedOptions::new(&data);
    opts.fsync = false;

    let pg = EmbeddedPostgres::start(&opts).expect("start");
    let cluster = pg.cluster_dir().to_path_buf();
    let name = cluster
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    assert!(cluster.starts_with("/tmp"), "{}", cluster.display());
    let suffix = name.strip_prefix("agenttally-pg-").expect("prefix");
    assert_eq!(suffix.len(), 16, "a 64-bit random suffix: {name}");
    let meta = std::fs::symlink_metadata(&cluster).expect("cluster");
    assert_eq!(meta.uid(), postgres, "owned by postgres");
    assert_eq!(meta.mode() & 0o777, 0o700, "mode 0700");
    let record = std::fs::read_to_string(data.join("CLUSTER_LOCATION.txt")).expect("record");
    assert!(
        record.contains(&cluster.to_string_lossy().to_string()),
        "{record}"
    );
    let url = pg.database_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let query = |sql: &'static str| {
        let url = url.clone();
        rt.block_on(async move {
            let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .expect("connect");
            let conn = tokio::spawn(conn);
            let r = db.simple_query(sql).await.expect(sql);
            drop(db);
            let _ = conn.await;
            r.len()
        })
    };
    query("CREATE TABLE kept (x int)");
    pg.shutdown().expect("shutdown");

    // The same data dir finds the same cluster again, data and all.
    let pg = EmbeddedPostgres::start(&opts).expect("start again");
    assert_eq!(pg.cluster_dir(), cluster);
    let url = pg.database_url();
    rt.block_on(async {
        let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        db.simple_query("SELECT * FROM kept").await.expect("kept");
    });
    pg.shutdown().expect("shutdown");

    // A recorded directory someone else owns is refused, not used.
    chown(&cluster, Some(uid_of("nobody")), None).expect("chown");
    match EmbeddedPostgres::start(&opts) {
        Ok(_) => panic!("used a cluster dir owned by another user"),
        Err(e) => {
            let m = e.to_string();
            assert!(
                m.contains("must be a directory owned by the `postgres` user")
                    && m.contains("refusing"),
                "{m}"
            );
        }
    }
    let _ = std::fs::remove_dir_all(&cluster);
    let _ = std::fs::remove_dir_all(&top);
}

/// Connect to `url` and run `SELECT 1`.
fn select_one(url: &str) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let (db, conn) = tokio_postgres::connect(url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        db.simple_query("SELECT 1").await.expect("select 1");
    });
}

/// A cluster from before the lock (TCP on 127.0.0.1, trust auth, no password file) is locked on
/// its next start: no TCP listener, its access rules rewritten, a password set and required.
#[test]
fn a_cluster_from_before_the_lock_is_locked_on_start() {
    let dir = std::env::temp_dir().join(format!("agenttally-legacy-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut opts = EmbeddedOptions::new(&dir);
    opts.fsync = false;
    let pg = EmbeddedPostgres::start(&opts).expect("start");
    let cluster = pg.cluster_dir().to_path_buf();
    pg.shutdown().expect("shutdown");
    // What the earlier embedded setup left: trust over loopback TCP, no socket, no password.
    std::fs::write(
        cluster.join("pg_hba.conf"),
        "host all all 127.0.0.1/32 trust\n",
    )
    .expect("hba");
    let conf = cluster.join("postgresql.conf");
    let text = std::fs::read_to_string(&conf).expect("conf");
    let legacy = "listen_addresses = '127.0.0.1'\nunix_socket_directories = ''\n";
    // Settings after the collector's include line, as if appended by hand or an old version.
    std::fs::write(&conf, format!("{text}\n{legacy}")).expect("conf");
    std::fs::remove_file(dir.join("pg.password")).expect("remove password");

    let pg = EmbeddedPostgres::start(&opts).expect("start the old cluster");
    let (_, port, socket_dir, listen) = postmaster(&cluster);
    assert_eq!(listen, "", "no TCP listen address");
    assert_eq!(socket_dir, cluster.join("socket"));
    let hba = std::fs::read_to_string(cluster.join("pg_hba.conf")).expect("hba");
    assert!(
        !hba.contains("trust") && hba.contains("local all all scram-sha-256"),
        "{hba}"
    );
    select_one(&pg.database_url());
    // libpq takes the same URL (the benchmark hands it to `psql`).
    let out = Command::new("psql")
        .args([&pg.database_url(), "-w", "-tAc", "SELECT 1"])
        .env_remove("PGPASSWORD")
        .stdin(Stdio::null())
        .output()
        .expect("psql URL");
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "1",
        "psql with the database URL: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let sock = socket_dir.to_string_lossy().to_string();
    let (ok, err) = psql(None, &sock, port, None);
    assert!(
        !ok && err.contains("password"),
        "no password, yet connected: {err}"
    );
    let (ok, err) = psql(None, "127.0.0.1", port, None);
    assert!(!ok && err.contains("Connection refused"), "{err}");
    pg.shutdown().expect("shutdown");
    let _ = std::fs::remove_dir_all(&dir);
}

/// A data dir whose socket path would pass the 107-byte limit: the socket goes in a fresh
/// private directory under /tmp instead, kept across an outage, removed when the handle stops it.
#[test]
fn a_long_data_dir_puts_the_socket_in_a_private_dir() {
    let dir = std::env::temp_dir().join(format!(
        "agenttally-long-{}-{}",
        std::process::id(),
        "x".repeat(90)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    let mut opts = EmbeddedOptions::new(&dir);
    opts.fsync = false;
    let pg = EmbeddedPostgres::start(&opts).expect("start");
    let socket_dir = pg.socket_dir().to_path_buf();
    let name = socket_dir
        .file_name()
        .expect("name")
        .to_string_lossy()
        .to_string();
    assert!(
        socket_dir.parent() == Some(Path::new("/tmp")) && name.starts_with("agenttally-sock-"),
        "{}",
        socket_dir.display()
    );
    let meta = std::fs::symlink_metadata(&socket_dir).expect("socket dir");
    assert_eq!(meta.mode() & 0o777, 0o700, "socket dir mode");
    if is_root() {
        assert_eq!(meta.uid(), uid_of("postgres"), "owned by the server's user");
    }
    select_one(&pg.database_url());
    // An outage keeps the URL: the server comes back on the same socket.
    let mut pg = pg;
    let url = pg.database_url();
    pg.stop().expect("stop");
    pg.start_again().expect("start again");
    assert_eq!(pg.database_url(), url);
    select_one(&url);
    pg.shutdown().expect("shutdown");
    assert!(!socket_dir.exists(), "the socket dir is removed on stop");
    let _ = std::fs::remove_dir_all(&dir);
}

/// An operator's server settings (`--embedded-pg-setting`) reach the embedded cluster, e.g. to
/// preload `pg_stat_statements` for profiling; its connection settings cannot be named, and a
/// bad value stops the start with PostgreSQL's message naming the setting.
#[test]
fn operator_settings_reach_the_embedded_cluster_but_not_its_lock() {
    use agenttally_collector::embedded_pg::parse_setting;

    for (given, rule) in [
        (
            "listen_addresses=*",
            "listen_addresses: fixed in the embedded cluster",
        ),
        (
            "unix_socket_permissions=0777",
            "unix_socket_permissions: fixed",
        ),
        ("PASSWORD_ENCRYPTION=md5", "password_encryption: fixed"),
        ("fsync=off", "fsync: fixed"),
        ("shared_buffers", "must be NAME=VALUE"),
        ("bad name=1", "letters, digits and underscores"),
        ("a.b.c=1", "at most one dot"),
        (
            "work_mem=1\nlisten_addresses='*'",
            "the value must be one line",
        ),
    ] {
        let err = parse_setting(given).expect_err(given);
        assert!(err.contains(rule), "{given}: {err}");
    }
    assert_eq!(
        parse_setting(" pg_stat_statements.track = all "),
        Ok(("pg_stat_statements.track".into(), "all".into()))
    );

    let dir = std::env::temp_dir().join(format!("agenttally-settings-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let mut opts = EmbeddedOptions::new(&dir);
    opts.fsync = false;
    opts.settings = [
        "shared_buffers=48MB",
        "shared_preload_libraries=pg_stat_statements",
        "pg_stat_statements.track=all",
        // Quotes and backslashes are escaped in the settings file (else the start would fail).
        "application_name=it's a \\ test",
    ]
    .iter()
    .map(|s| parse_setting(s).expect(s))
    .collect();
    let pg = EmbeddedPostgres::start(&opts).expect("start with settings");
    let url = pg.database_url();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    let shown = rt.block_on(async {
        let (db, conn) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
            .await
            .expect("connect");
        tokio::spawn(conn);
        db.batch_execute("CREATE EXTENSION IF NOT EXISTS pg_stat_statements")
            .await
            .expect("pg_stat_statements loads");
        let statements: i64 = db
            .query_one("SELECT count(*) FROM pg_stat_statements", &[])
            .await
            .expect("pg_stat_statements preloaded")
            .get(0);
        assert!(statements > 0);
        let mut shown = Vec::new();
        for name in [
            "shared_buffers",
            "pg_stat_statements.track",
            "listen_addresses",
        ] {
            let row = db
                .query_one("SELECT current_setting($1)", &[&name])
                .await
                .expect("setting");
            shown.push(row.get::<_, String>(0));
        }
        shown
    });
    assert_eq!(shown, ["48MB", "all", ""]);
    pg.shutdown().expect("shutdown");

    // A value PostgreSQL refuses: the start fails with its message, naming the setting.
    opts.settings = vec![parse_setting("shared_buffers=lots").expect("parses")];
    let err = match EmbeddedPostgres::start(&opts) {
        Ok(_) => panic!("started with shared_buffers=lots"),
        Err(e) => e.to_string(),
    };
    assert!(err.contains("shared_buffers"), "{err}");
    let _ = std::fs::remove_dir_all(&dir);
}
