//! The embedded default: a private PostgreSQL cluster run from the system's PostgreSQL binaries in
//! a data directory, started and stopped with the collector. Tests get their ephemeral cluster here.

use std::net::TcpListener;
use std::os::unix::fs::{chown, MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// The database the collector keeps its tables in, inside the embedded cluster.
pub const DATABASE: &str = "agenttally";
/// The cluster's superuser; the collector connects as it over loopback TCP with trust auth.
pub const SUPERUSER: &str = "postgres";

/// Where the PostgreSQL server binaries live (`initdb`, `pg_ctl`, `postgres`).
#[derive(Debug, Clone)]
pub struct PgBinaries {
    pub bindir: PathBuf,
}

impl PgBinaries {
    /// Search `pg_config --bindir`, then `PATH`, then `/usr/lib/postgresql/*/bin` (highest first).
    pub fn find() -> Result<Self> {
        let ok = |d: &Path| {
            ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|b| d.join(b).is_file())
        };
        if let Ok(out) = Command::new("pg_config").arg("--bindir").output() {
            let d = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            if out.status.success() && ok(&d) {
                return Ok(PgBinaries { bindir: d });
            }
        }
        if let Some(path) = std::env::var_os("PATH") {
            if let Some(d) = std::env::split_paths(&path).find(|d| ok(d)) {
                return Ok(PgBinaries { bindir: d });
            }
        }
        let mut versions: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .flatten()
            .filter_map(|e| {
                let v = e.file_name().to_string_lossy().parse::<u32>().ok()?;
                let d = e.path().join("bin");
                ok(&d).then_some((v, d))
            })
            .collect();
        versions.sort_by_key(|v| std::cmp::Reverse(v.0));
        match versions.into_iter().next() {
            Some((_, bindir)) => Ok(PgBinaries { bindir }),
            None => Err(Error::Embedded(
                "no PostgreSQL server binaries found (looked for initdb, pg_ctl and postgres via \
                 `pg_config --bindir`, PATH and /usr/lib/postgresql/*/bin): install PostgreSQL \
                 (e.g. `apt-get install postgresql`) or pass --database-url to use an existing server"
                    .into(),
            )),
        }
    }

    fn bin(&self, name: &str) -> PathBuf {
        self.bindir.join(name)
    }
}

/// Options of an embedded cluster.
#[derive(Debug, Clone)]
pub struct EmbeddedOptions {
    /// The collector's data directory; the cluster lives in `<data_dir>/pg`.
    pub data_dir: PathBuf,
    /// `fsync` of the cluster. On by default; tests turn it off.
    pub fsync: bool,
}

impl EmbeddedOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EmbeddedOptions {
            data_dir: data_dir.into(),
            fsync: true,
        }
    }
}

/// A running cluster. Stops the server on drop when this handle started it; an ephemeral cluster
/// also removes its directory.
#[derive(Debug)]
pub struct EmbeddedPostgres {
    bins: PgBinaries,
    cluster_dir: PathBuf,
    port: u16,
    fsync: bool,
    /// `(uid, gid)` of the `postgres` system user when we are root (PostgreSQL refuses root).
    run_as: Option<(u32, u32)>,
    /// True when this handle started the server (and so stops it).
    owned: bool,
    running: bool,
    /// Remove the whole directory on drop (ephemeral clusters).
    remove_on_drop: Option<PathBuf>,
}

impl EmbeddedPostgres {
    /// Start (initialising if needed) the cluster of `opts.data_dir`, or connect to it when a
    /// server is already running there (e.g. `keys create` while `serve` runs).
    pub fn start(opts: &EmbeddedOptions) -> Result<Self> {
        let bins = PgBinaries::find()?;
        let run_as = postgres_user_if_root()?;
        std::fs::create_dir_all(&opts.data_dir).map_err(|e| {
            Error::Embedded(format!(
                "cannot create data dir {}: {e}",
                opts.data_dir.display()
            ))
        })?;
        let data_dir = opts
            .data_dir
            .canonicalize()
            .map_err(|e| Error::Embedded(format!("data dir {}: {e}", opts.data_dir.display())))?;
        let mut cluster_dir = data_dir.join("pg");
        if let Some((uid, _)) = run_as {
            if let Some(blocked) = untraversable_ancestor(&data_dir, uid) {
                // The `postgres` user cannot reach a cluster under e.g. /root: keep it in /tmp,
                // named after the data dir so the same data dir finds it again.
                let alt = PathBuf::from(format!("/tmp/agenttally-pg-{:016x}", fnv1a(&data_dir)));
                tracing::warn!(
                    "{} is not traversable by the `postgres` system user; the embedded cluster \
                     lives in {} instead (it may not survive a reboot: choose a --data-dir the \
                     `postgres` user can reach to keep data durably)",
                    blocked.display(),
                    alt.display()
                );
                std::fs::write(
                    data_dir.join("CLUSTER_LOCATION.txt"),
                    format!("embedded PostgreSQL cluster: {}\n", alt.display()),
                )
                .ok();
                cluster_dir = alt;
            }
        }
        let mut pg = EmbeddedPostgres {
            bins,
            cluster_dir,
            port: 0,
            fsync: opts.fsync,
            run_as,
            owned: false,
            running: false,
            remove_on_drop: None,
        };
        pg.init_if_needed()?;
        if let Some(port) = pg.running_port() {
            pg.port = port;
            pg.running = true;
            tracing::info!("embedded PostgreSQL already running on port {port}; connecting");
        } else {
            pg.port = free_port()?;
            pg.start_server()?;
        }
        pg.ensure_database()?;
        Ok(pg)
    }

    /// A throwaway cluster in a fresh directory under /tmp, fsync off; removed on drop.
    pub fn start_ephemeral() -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("agenttally-test-{}-{nanos:x}", std::process::id()));
        let mut opts = EmbeddedOptions::new(&dir);
        opts.fsync = false;
        let mut pg = EmbeddedPostgres::start(&opts)?;
        pg.remove_on_drop = Some(dir);
        Ok(pg)
    }

    /// The TCP port the server listens on (127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Connection URL of the collector's database.
    pub fn database_url(&self) -> String {
        format!(
            "postgresql://{SUPERUSER}@127.0.0.1:{}/{DATABASE}",
            self.port
        )
    }

    /// The cluster's directory (PGDATA).
    pub fn cluster_dir(&self) -> &Path {
        &self.cluster_dir
    }

    /// Stop the server now (`pg_ctl stop -m fast`), whoever started it. `start_again` restarts it.
    pub fn stop(&mut self) -> Result<()> {
        if !self.running {
            return Ok(());
        }
        let d = self.cluster_dir.to_string_lossy().into_owned();
        self.pg_ctl(&["stop", "-D", &d, "-m", "fast", "-w", "-t", "60"])?;
        self.running = false;
        Ok(())
    }

    /// Stop the server if this handle started it (a cluster another process runs is left alone).
    pub fn shutdown(mut self) -> Result<()> {
        if self.owned {
            self.stop()?;
        }
        Ok(())
    }

    /// True when this handle started the server (and so stops it on drop).
    pub fn is_owned(&self) -> bool {
        self.owned
    }

    /// Start a stopped server again on the same port.
    pub fn start_again(&mut self) -> Result<()> {
        if !self.running {
            self.start_server()?;
        }
        Ok(())
    }

    fn init_if_needed(&self) -> Result<()> {
        if self.cluster_dir.join("PG_VERSION").is_file() {
            return Ok(());
        }
        std::fs::create_dir_all(&self.cluster_dir).map_err(|e| {
            Error::Embedded(format!("cannot create {}: {e}", self.cluster_dir.display()))
        })?;
        std::fs::set_permissions(&self.cluster_dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::Embedded(format!("{}: {e}", self.cluster_dir.display())))?;
        if let Some((uid, gid)) = self.run_as {
            chown(&self.cluster_dir, Some(uid), Some(gid)).map_err(|e| {
                Error::Embedded(format!("cannot chown {}: {e}", self.cluster_dir.display()))
            })?;
        }
        let d = self.cluster_dir.to_string_lossy().into_owned();
        let mut args = vec![
            "-D",
            &d,
            "-U",
            SUPERUSER,
            "--auth=trust",
            "-E",
            "UTF8",
            "--no-locale",
        ];
        if !self.fsync {
            args.push("--no-sync");
        }
        let out = self.run(&self.bins.bin("initdb"), &args)?;
        check(&out, "initdb")?;
        // Loopback TCP only: no Unix socket (its default directory may not exist or be writable).
        let conf = "\n# agenttally embedded defaults\nlisten_addresses = '127.0.0.1'\n\
                    unix_socket_directories = ''\nmax_connections = 100\n";
        let path = self.cluster_dir.join("postgresql.conf");
        let mut text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Embedded(format!("{}: {e}", path.display())))?;
        text.push_str(conf);
        std::fs::write(&path, text)
            .map_err(|e| Error::Embedded(format!("{}: {e}", path.display())))?;
        Ok(())
    }

    /// The port of a live server in this cluster, from `postmaster.pid` (line 4).
    fn running_port(&self) -> Option<u16> {
        let pid_file = std::fs::read_to_string(self.cluster_dir.join("postmaster.pid")).ok()?;
        let d = self.cluster_dir.to_string_lossy().into_owned();
        let status = self
            .run(&self.bins.bin("pg_ctl"), &["status", "-D", &d])
            .ok()?;
        if !status.status.success() {
            return None;
        }
        pid_file.lines().nth(3)?.trim().parse().ok()
    }

    fn start_server(&mut self) -> Result<()> {
        let d = self.cluster_dir.to_string_lossy().into_owned();
        let log = self.cluster_dir.join("server.log");
        let log = log.to_string_lossy().into_owned();
        let opts = format!(
            "-p {} -c fsync={}",
            self.port,
            if self.fsync { "on" } else { "off" }
        );
        self.pg_ctl(&["start", "-D", &d, "-l", &log, "-w", "-t", "60", "-o", &opts])
            .map_err(|e| {
                let tail = std::fs::read_to_string(self.cluster_dir.join("server.log"))
                    .unwrap_or_default();
                let tail: String = tail.lines().rev().take(10).collect::<Vec<_>>().join(" | ");
                Error::Embedded(format!(
                    "{e}; server.log (last lines, newest first): {tail}"
                ))
            })?;
        self.running = true;
        self.owned = true;
        Ok(())
    }

    fn ensure_database(&self) -> Result<()> {
        let psql = self.bins.bin("psql");
        let port = self.port.to_string();
        let base = [
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            SUPERUSER,
            "-d",
            "postgres",
        ];
        let query = format!("SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'");
        let mut args = base.to_vec();
        args.extend(["-tAc", &query]);
        let out = self.run(&psql, &args)?;
        check(&out, "psql")?;
        if String::from_utf8_lossy(&out.stdout).trim() != "1" {
            let create = format!("CREATE DATABASE {DATABASE}");
            let mut args = base.to_vec();
            args.extend(["-c", &create]);
            check(&self.run(&psql, &args)?, "psql CREATE DATABASE")?;
        }
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<()> {
        let out = self.run(&self.bins.bin("pg_ctl"), args)?;
        check(&out, "pg_ctl")
    }

    fn run(&self, program: &Path, args: &[&str]) -> Result<Output> {
        let mut cmd = Command::new(program);
        cmd.args(args).stdin(Stdio::null()).current_dir("/");
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid).env("HOME", "/tmp");
        }
        cmd.output()
            .map_err(|e| Error::Embedded(format!("cannot run {}: {e}", program.display())))
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if self.owned && self.running {
            if let Err(e) = self.stop() {
                tracing::error!("stopping embedded PostgreSQL: {e}");
            }
        }
        if let Some(dir) = self.remove_on_drop.take() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn check(out: &Output, what: &str) -> Result<()> {
    if out.status.success() {
        return Ok(());
    }
    Err(Error::Embedded(format!(
        "{what} failed ({}): {} {}",
        out.status,
        String::from_utf8_lossy(&out.stderr).trim(),
        String::from_utf8_lossy(&out.stdout).trim()
    )))
}

/// Root cannot run PostgreSQL: find the `postgres` system user to run it as instead.
fn postgres_user_if_root() -> Result<Option<(u32, u32)>> {
    let me = std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1);
    if me != 0 {
        return Ok(None);
    }
    let passwd = std::fs::read_to_string("/etc/passwd").unwrap_or_default();
    passwd
        .lines()
        .map(|l| l.split(':').collect::<Vec<_>>())
        .find(|f| f.len() > 3 && f[0] == "postgres")
        .and_then(|f| Some((f[2].parse().ok()?, f[3].parse().ok()?)))
        .map(Some)
        .ok_or_else(|| {
            Error::Embedded(
                "running as root, and PostgreSQL refuses to run as root: create a `postgres` \
                 system user (installing the postgresql package does) or run as another user"
                    .into(),
            )
        })
}

/// The first ancestor of `dir` (itself included) that `uid` cannot traverse, if any.
fn untraversable_ancestor(dir: &Path, uid: u32) -> Option<PathBuf> {
    dir.ancestors()
        .filter(|a| !a.as_os_str().is_empty())
        .find(|a| match std::fs::metadata(a) {
            Ok(m) => {
                let mode = m.mode();
                !(mode & 0o001 != 0 || (m.uid() == uid && mode & 0o100 != 0))
            }
            Err(_) => true,
        })
        .map(Path::to_path_buf)
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::Embedded(format!("cannot find a free port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::Embedded(format!("cannot find a free port: {e}")))
}

fn fnv1a(p: &Path) -> u64 {
    p.as_os_str()
        .as_encoded_bytes()
        .iter()
        .fold(0xcbf2_9ce4_8422_2325, |h, b| {
            (h ^ u64::from(*b)).wrapping_mul(0x0100_0000_01b3)
        })
}
