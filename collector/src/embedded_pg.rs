//! The embedded default: a private PostgreSQL cluster run from the system's PostgreSQL binaries in
//! a data directory, started and stopped with the collector. Tests get their ephemeral cluster here.
//!
//! The cluster is reachable only by the collector: it listens on no TCP address, only on a Unix
//! socket in a directory inside the 0700 cluster directory (socket mode 0700 too), and the
//! superuser needs a generated password (SCRAM) kept in a 0600 file of the data directory. Other
//! local users can neither reach the socket nor read the password.
//!
//! Ownership of the running server is recorded in `<data_dir>/pg.owner` (pid and start time of
//! the process that started it): a server whose owner is gone (the collector was SIGKILLed) is
//! stopped and started again by the next start, which then owns it and stops it on shutdown; a
//! server whose owner is alive (`serve` running while `keys create` runs) is used and left alone.

use std::fmt;
use std::fs::{DirBuilder, OpenOptions};
use std::io::{ErrorKind, Write};
use std::net::TcpListener;
use std::os::unix::fs::{chown, DirBuilderExt, MetadataExt, OpenOptionsExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{SystemTime, UNIX_EPOCH};

use crate::error::{Error, Result};

/// The database the collector keeps its tables in, inside the embedded cluster.
pub const DATABASE: &str = "agenttally";
/// The cluster's superuser; the collector connects as it over the Unix socket, with a password.
pub const SUPERUSER: &str = "postgres";

/// The superuser's password, in the data directory (mode 0600).
const PASSWORD_FILE: &str = "pg.password";
/// Pid and start time of the process that started the running server.
const OWNER_FILE: &str = "pg.owner";
/// Where the cluster lives when it cannot live in `<data_dir>/pg` (root, untraversable data dir).
const LOCATION_FILE: &str = "CLUSTER_LOCATION.txt";
const LOCATION_PREFIX: &str = "embedded PostgreSQL cluster: ";
/// Settings the collector owns, rewritten before every start and included last from
/// `postgresql.conf`, so they win over anything earlier (including older embedded defaults).
const SETTINGS_FILE: &str = "agenttally.conf";

/// Pages a bitmap heap scan asks the kernel for ahead of reading them (`posix_fadvise`): the
/// read API's range reads use it (see `store::tenant_read_tx`); cold rollup reads took about
/// 1.5x less time with it. Only where PostgreSQL supports it: elsewhere a non-zero value is
/// refused at start.
#[cfg(target_os = "linux")]
const PREFETCH_SETTINGS: &str = "effective_io_concurrency = 256\n";
#[cfg(not(target_os = "linux"))]
const PREFETCH_SETTINGS: &str = "";
/// `v` as a quoted string of `postgresql.conf` (quotes doubled, backslashes escaped).
fn conf_string(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "''"))
}

/// The socket directory, inside the cluster directory.
const SOCKET_SUBDIR: &str = "socket";
/// `sun_path` holds 108 bytes including the NUL; PostgreSQL refuses longer socket paths.
const MAX_SOCKET_PATH: usize = 107;

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
    /// Server settings `(name, value)` of the operator's (`--embedded-pg-setting`), checked by
    /// [`parse_setting`]; written before the cluster's fixed connection settings.
    pub settings: Vec<(String, String)>,
}

impl EmbeddedOptions {
    pub fn new(data_dir: impl Into<PathBuf>) -> Self {
        EmbeddedOptions {
            data_dir: data_dir.into(),
            fsync: true,
            settings: Vec::new(),
        }
    }
}

/// Settings of the embedded cluster that keep it reachable only by the collector (no TCP, its
/// socket in a private directory, passwords always), or that have a flag of their own: an
/// operator's setting may not name them.
const FIXED_SETTINGS: &[&str] = &[
    "listen_addresses",
    "port",
    "unix_socket_directories",
    "unix_socket_group",
    "unix_socket_permissions",
    "password_encryption",
    "hba_file",
    "ident_file",
    "data_directory",
    "config_file",
    "external_pid_file",
    "fsync",
];

/// An operator's server setting for the embedded cluster, `NAME=VALUE` (e.g.
/// `shared_buffers=1GB`, `shared_preload_libraries=pg_stat_statements`,
/// `pg_stat_statements.track=all`). The error names the rule broken. PostgreSQL itself checks
/// the name and value when the cluster starts (an unknown name or a bad value stops the start,
/// with its message). An empty entry (a trailing `;` in the variable, or an empty variable)
/// gives `("", "")`, which the caller skips.
pub fn parse_setting(s: &str) -> std::result::Result<(String, String), String> {
    if s.trim().is_empty() {
        return Ok((String::new(), String::new()));
    }
    let Some((name, value)) = s.split_once('=') else {
        return Err(format!(
            "{s:?}: must be NAME=VALUE, e.g. shared_buffers=1GB"
        ));
    };
    let name = name.trim().to_ascii_lowercase();
    let word = |w: &str| {
        w.chars()
            .next()
            .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
            && w.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
    };
    let valid = match name.split_once('.') {
        Some((a, b)) => word(a) && word(b),
        None => word(&name),
    };
    if !valid {
        return Err(format!(
            "{name:?}: a setting's name is letters, digits and underscores, with at most one dot \
             (e.g. pg_stat_statements.track)"
        ));
    }
    if FIXED_SETTINGS.contains(&name.as_str()) {
        return Err(format!(
            "{name}: fixed in the embedded cluster (it listens only on a Unix socket in its \
             private directory, with passwords; fsync has --no-fsync); use --database-url for a \
             server configured otherwise"
        ));
    }
    let value = value.trim();
    if value.chars().any(|c| c == '\n' || c == '\r' || c == '\0') {
        return Err(format!("{name}: the value must be one line"));
    }
    Ok((name, value.to_string()))
}

/// A running cluster. Stops the server on drop when this handle started it; an ephemeral cluster
/// also removes its directory.
pub struct EmbeddedPostgres {
    bins: PgBinaries,
    data_dir: PathBuf,
    cluster_dir: PathBuf,
    /// Where the server's socket is (`.s.PGSQL.<port>`).
    socket_dir: PathBuf,
    /// Names the socket file; the server listens on no TCP port.
    port: u16,
    password: String,
    fsync: bool,
    /// The operator's settings (`EmbeddedOptions::settings`).
    settings: Vec<(String, String)>,
    /// `(uid, gid)` of the `postgres` system user when we are root (PostgreSQL refuses root).
    run_as: Option<(u32, u32)>,
    /// True when this handle started the server (and so stops it).
    owned: bool,
    running: bool,
    /// A socket directory made outside the cluster (its path there would be too long); removed
    /// on drop once the server is stopped.
    temp_socket_dir: Option<PathBuf>,
    /// Remove the whole directory on drop (ephemeral clusters).
    remove_on_drop: Option<PathBuf>,
}

impl fmt::Debug for EmbeddedPostgres {
    // The password stays out of logs and panic messages.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EmbeddedPostgres")
            .field("cluster_dir", &self.cluster_dir)
            .field("socket_dir", &self.socket_dir)
            .field("port", &self.port)
            .field("owned", &self.owned)
            .field("running", &self.running)
            .finish_non_exhaustive()
    }
}

/// What `postmaster.pid` says about a live server.
struct LiveServer {
    port: u16,
    socket_dir: Option<PathBuf>,
}

impl EmbeddedPostgres {
    /// Start (initialising if needed) the cluster of `opts.data_dir`. A server already running
    /// there is used as it is when the process that started it is alive (e.g. `keys create`
    /// while `serve` runs); an orphan (its starter died, e.g. SIGKILLed) is stopped and started
    /// again, so this handle owns it and stops it on shutdown.
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
        let cluster_dir = locate_cluster(&data_dir, run_as)?;
        let mut pg = EmbeddedPostgres {
            bins,
            socket_dir: cluster_dir.join(SOCKET_SUBDIR),
            data_dir,
            cluster_dir,
            port: 0,
            password: String::new(),
            fsync: opts.fsync,
            settings: opts.settings.clone(),
            run_as,
            owned: false,
            running: false,
            temp_socket_dir: None,
            remove_on_drop: None,
        };
        pg.init_if_needed()?;
        match pg.live_server() {
            Some(live) if owner_alive(&pg.data_dir.join(OWNER_FILE)) => {
                let Some(socket_dir) = live.socket_dir else {
                    return Err(Error::Embedded(format!(
                        "the PostgreSQL server running in {} has no Unix socket: stop the \
                         process using it and start again",
                        pg.cluster_dir.display()
                    )));
                };
                pg.password = pg.read_password()?.ok_or_else(|| {
                    Error::Embedded(format!(
                        "{}: missing, and a server is running in {}: stop it and start again",
                        pg.data_dir.join(PASSWORD_FILE).display(),
                        pg.cluster_dir.display()
                    ))
                })?;
                pg.port = live.port;
                pg.socket_dir = socket_dir;
                pg.running = true;
                tracing::info!(
                    "embedded PostgreSQL already running (started by a live collector); connecting"
                );
                if !opts.settings.is_empty() {
                    tracing::warn!(
                        "--embedded-pg-setting not applied: the cluster in {} runs with the \
                         settings of the collector that started it; they apply when a collector \
                         given them starts it",
                        pg.cluster_dir.display()
                    );
                }
            }
            live => {
                if let Some(orphan) = live {
                    tracing::warn!(
                        "an embedded PostgreSQL server whose collector is gone runs in {}; \
                         stopping it and starting it again",
                        pg.cluster_dir.display()
                    );
                    let d = pg.cluster_dir.to_string_lossy().into_owned();
                    pg.pg_ctl(&["stop", "-D", &d, "-m", "fast", "-w", "-t", "60"])?;
                    pg.remove_stale_socket_dir(orphan.socket_dir.as_deref());
                }
                pg.password = pg.ensure_password()?;
                pg.port = free_port()?;
                pg.start_server()?;
            }
        }
        pg.ensure_database()?;
        Ok(pg)
    }

    /// A throwaway cluster in a fresh directory under the temp dir, fsync off; removed on drop.
    pub fn start_ephemeral() -> Result<Self> {
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_nanos())
            .unwrap_or_default();
        let dir =
            std::env::temp_dir().join(format!("agenttally-test-{}-{nanos:x}", std::process::id()));
        let mut opts = EmbeddedOptions::new(&dir);
        opts.fsync = false;
        let mut pg = match EmbeddedPostgres::start(&opts) {
            Ok(pg) => pg,
            Err(e) => {
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e);
            }
        };
        pg.remove_on_drop = Some(dir);
        Ok(pg)
    }

    /// The server's port number. It only names the Unix socket (`.s.PGSQL.<port>` in
    /// [`Self::socket_dir`]): the server listens on no TCP address.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// The directory holding the server's Unix socket.
    pub fn socket_dir(&self) -> &Path {
        &self.socket_dir
    }

    /// Connection URL of the collector's database: the superuser with its password, over the
    /// Unix socket (`postgresql://postgres:PASSWORD@/agenttally?host=SOCKET_DIR&port=PORT`).
    pub fn database_url(&self) -> String {
        format!(
            "postgresql://{SUPERUSER}:{}@/{DATABASE}?host={}&port={}",
            self.password,
            percent_encode(self.socket_dir.as_os_str().as_encoded_bytes()),
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
        if self.owned {
            let _ = std::fs::remove_file(self.data_dir.join(OWNER_FILE));
        }
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
        self.make_private(&self.cluster_dir)?;
        // A password set by an earlier cluster in this data dir is not this cluster's.
        let _ = std::fs::remove_file(self.data_dir.join(PASSWORD_FILE));
        let d = self.cluster_dir.to_string_lossy().into_owned();
        // `reject` until the first start writes pg_hba.conf; the password is set before that.
        let mut args = vec![
            "-D",
            &d,
            "-U",
            SUPERUSER,
            "--auth=reject",
            "-E",
            "UTF8",
            "--no-locale",
        ];
        if !self.fsync {
            args.push("--no-sync");
        }
        let out = self.run(&self.bins.bin("initdb"), &args, None)?;
        check(&out, "initdb")
    }

    /// The collector-owned settings and access rules, written before every start: Unix socket
    /// only (mode 0700, in a 0700 directory), SCRAM passwords for every connection.
    fn write_config(&mut self) -> Result<()> {
        let inside = self.cluster_dir.join(SOCKET_SUBDIR);
        // `.s.PGSQL.` + 5 digits after the directory and a slash.
        self.socket_dir = if inside.as_os_str().len() + 15 <= MAX_SOCKET_PATH {
            if !inside.is_dir() {
                std::fs::create_dir(&inside).map_err(|e| {
                    Error::Embedded(format!("cannot create {}: {e}", inside.display()))
                })?;
            }
            self.make_private(&inside)?;
            inside
        } else {
            // Too long for a socket path: a private directory with an unguessable name, kept
            // across `stop`/`start_again` so the database URL stays the same.
            match &self.temp_socket_dir {
                Some(dir) if dir.is_dir() => dir.clone(),
                _ => {
                    let dir = private_dir(Path::new("/tmp"), "agenttally-sock-", self.run_as)?;
                    self.temp_socket_dir = Some(dir.clone());
                    dir
                }
            }
        };
        // Defaults, then the operator's settings (which may change them), then the fixed
        // connection settings last, so that nothing before them wins.
        let mut settings = format!(
            "# Written by agenttally-collector before every start; edits are overwritten.\n\
             max_connections = 100\n{PREFETCH_SETTINGS}"
        );
        if !self.settings.is_empty() {
            settings.push_str("# --embedded-pg-setting\n");
            for (name, value) in &self.settings {
                settings.push_str(&format!("{name} = {}\n", conf_string(value)));
            }
        }
        settings.push_str(&format!(
            "# fixed: reachable only by the collector\n\
             listen_addresses = ''\n\
             unix_socket_directories = {}\n\
             unix_socket_permissions = 0700\n\
             password_encryption = 'scram-sha-256'\n",
            conf_string(&self.socket_dir.to_string_lossy())
        ));
        self.write_private(&self.cluster_dir.join(SETTINGS_FILE), &settings)?;
        self.write_private(
            &self.cluster_dir.join("pg_hba.conf"),
            "# Written by agenttally-collector before every start; edits are overwritten.\n\
             # Unix socket only (no TCP listener), password (SCRAM) always.\n\
             local all all scram-sha-256\n",
        )?;
        let conf = self.cluster_dir.join("postgresql.conf");
        let text = std::fs::read_to_string(&conf)
            .map_err(|e| Error::Embedded(format!("{}: {e}", conf.display())))?;
        let include = format!("include '{SETTINGS_FILE}'");
        // Last, so nothing set after it (such as the TCP settings of older versions) wins.
        let last = text
            .lines()
            .map(str::trim)
            .rfind(|l| !l.is_empty() && !l.starts_with('#'));
        if last != Some(include.as_str()) {
            let mut f = OpenOptions::new()
                .append(true)
                .open(&conf)
                .map_err(|e| Error::Embedded(format!("{}: {e}", conf.display())))?;
            writeln!(
                f,
                "\n# agenttally embedded settings (last, so they win)\n{include}"
            )
            .map_err(|e| Error::Embedded(format!("{}: {e}", conf.display())))?;
        }
        Ok(())
    }

    /// The superuser's password from the data dir, or `None` when there is none yet.
    fn read_password(&self) -> Result<Option<String>> {
        let path = self.data_dir.join(PASSWORD_FILE);
        let meta = match std::fs::symlink_metadata(&path) {
            Ok(m) => m,
            Err(e) if e.kind() == ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::Embedded(format!("{}: {e}", path.display()))),
        };
        if !meta.is_file() || meta.mode() & 0o077 != 0 || meta.uid() != current_uid() {
            return Err(Error::Embedded(format!(
                "{}: must be a regular file of this user with mode 0600, got mode {:o} owned by \
                 uid {}",
                path.display(),
                meta.mode() & 0o7777,
                meta.uid()
            )));
        }
        let text = std::fs::read_to_string(&path)
            .map_err(|e| Error::Embedded(format!("{}: {e}", path.display())))?;
        Ok(Some(text.trim().to_string()))
    }

    /// The superuser's password; the first time (or for a cluster from before passwords), a new
    /// one set in single-user mode while the server is stopped, then stored 0600.
    fn ensure_password(&self) -> Result<String> {
        if let Some(p) = self.read_password()? {
            return Ok(p);
        }
        let mut bytes = [0u8; 24];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::Embedded(format!("cannot generate a password: {e}")))?;
        let password: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        // Written beside, renamed into place once the cluster has it: a crash in between leaves
        // no file that disagrees with the cluster.
        let path = self.data_dir.join(PASSWORD_FILE);
        let pending = self.data_dir.join(format!("{PASSWORD_FILE}.new"));
        let _ = std::fs::remove_file(&pending);
        let mut f = OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(&pending)
            .map_err(|e| Error::Embedded(format!("{}: {e}", pending.display())))?;
        f.write_all(password.as_bytes())
            .and_then(|()| f.sync_all())
            .map_err(|e| Error::Embedded(format!("{}: {e}", pending.display())))?;
        drop(f);
        let d = self.cluster_dir.to_string_lossy().into_owned();
        let fsync = format!("fsync={}", if self.fsync { "on" } else { "off" });
        // Single-user mode opens no socket at all; the password travels on stdin, not argv.
        let out = self.run(
            &self.bins.bin("postgres"),
            &[
                "--single",
                "-D",
                &d,
                "-c",
                "password_encryption=scram-sha-256",
                "-c",
                &fsync,
                "postgres",
            ],
            Some(format!("ALTER ROLE {SUPERUSER} PASSWORD '{password}'\n").as_bytes()),
        )?;
        check(&out, "postgres --single (setting the superuser password)")?;
        let said = String::from_utf8_lossy(&out.stdout) + String::from_utf8_lossy(&out.stderr);
        if said.contains("ERROR") || said.contains("FATAL") {
            return Err(Error::Embedded(format!(
                "postgres --single (setting the superuser password): {}",
                said.replace(&password, "***").trim()
            )));
        }
        std::fs::rename(&pending, &path)
            .map_err(|e| Error::Embedded(format!("{}: {e}", path.display())))?;
        Ok(password)
    }

    /// The live server of this cluster, from `postmaster.pid` (port line 4, socket dir line 5).
    fn live_server(&self) -> Option<LiveServer> {
        let pid_file = std::fs::read_to_string(self.cluster_dir.join("postmaster.pid")).ok()?;
        let d = self.cluster_dir.to_string_lossy().into_owned();
        let status = self
            .run(&self.bins.bin("pg_ctl"), &["status", "-D", &d], None)
            .ok()?;
        if !status.status.success() {
            return None;
        }
        let lines: Vec<&str> = pid_file.lines().collect();
        let port = lines.get(3)?.trim().parse().ok()?;
        let socket_dir = lines
            .get(4)
            .map(|l| l.trim())
            .filter(|l| !l.is_empty())
            .map(PathBuf::from);
        Some(LiveServer { port, socket_dir })
    }

    /// After stopping an orphan: its socket directory, when it was a temporary one of ours.
    fn remove_stale_socket_dir(&self, dir: Option<&Path>) {
        let Some(dir) = dir else { return };
        let ours = dir.parent() == Some(Path::new("/tmp"))
            && dir
                .file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("agenttally-sock-"));
        if ours && dir != self.cluster_dir.join(SOCKET_SUBDIR) {
            let _ = std::fs::remove_dir_all(dir);
        }
    }

    fn start_server(&mut self) -> Result<()> {
        self.write_config()?;
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
        let owner = self.data_dir.join(OWNER_FILE);
        let me = std::process::id();
        let started = process_start_time(me).unwrap_or_default();
        std::fs::write(&owner, format!("{me} {started}\n"))
            .map_err(|e| Error::Embedded(format!("{}: {e}", owner.display())))?;
        Ok(())
    }

    fn ensure_database(&self) -> Result<()> {
        let psql = self.bins.bin("psql");
        let port = self.port.to_string();
        let host = self.socket_dir.to_string_lossy().into_owned();
        let base = [
            "-w", "-h", &host, "-p", &port, "-U", SUPERUSER, "-d", "postgres",
        ];
        let query = format!("SELECT 1 FROM pg_database WHERE datname = '{DATABASE}'");
        let mut args = base.to_vec();
        args.extend(["-tAc", &query]);
        let out = self.run(&psql, &args, None)?;
        check(&out, "psql")?;
        if String::from_utf8_lossy(&out.stdout).trim() != "1" {
            let create = format!("CREATE DATABASE {DATABASE}");
            let mut args = base.to_vec();
            args.extend(["-c", &create]);
            check(&self.run(&psql, &args, None)?, "psql CREATE DATABASE")?;
        }
        Ok(())
    }

    fn pg_ctl(&self, args: &[&str]) -> Result<()> {
        let out = self.run(&self.bins.bin("pg_ctl"), args, None)?;
        check(&out, "pg_ctl")
    }

    fn run(&self, program: &Path, args: &[&str], stdin: Option<&[u8]>) -> Result<Output> {
        let mut cmd = Command::new(program);
        cmd.args(args)
            .current_dir("/")
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .stdin(if stdin.is_some() {
                Stdio::piped()
            } else {
                Stdio::null()
            });
        if !self.password.is_empty() {
            cmd.env("PGPASSWORD", &self.password);
        }
        if let Some((uid, gid)) = self.run_as {
            cmd.uid(uid).gid(gid).env("HOME", "/tmp");
        }
        let cannot = |e| Error::Embedded(format!("cannot run {}: {e}", program.display()));
        let mut child = cmd.spawn().map_err(cannot)?;
        if let (Some(input), Some(mut pipe)) = (stdin, child.stdin.take()) {
            // Dropping the pipe after writing is the end of input.
            pipe.write_all(input).map_err(cannot)?;
        }
        child.wait_with_output().map_err(cannot)
    }

    /// Mode 0700, owned by the server's user.
    fn make_private(&self, dir: &Path) -> Result<()> {
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|e| Error::Embedded(format!("{}: {e}", dir.display())))?;
        if let Some((uid, gid)) = self.run_as {
            chown(dir, Some(uid), Some(gid))
                .map_err(|e| Error::Embedded(format!("cannot chown {}: {e}", dir.display())))?;
        }
        Ok(())
    }

    /// Write a file of the cluster: mode 0600, owned by the server's user.
    fn write_private(&self, path: &Path, text: &str) -> Result<()> {
        let err = |e: std::io::Error| Error::Embedded(format!("{}: {e}", path.display()));
        std::fs::write(path, text).map_err(err)?;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).map_err(err)?;
        if let Some((uid, gid)) = self.run_as {
            chown(path, Some(uid), Some(gid)).map_err(err)?;
        }
        Ok(())
    }
}

impl Drop for EmbeddedPostgres {
    fn drop(&mut self) {
        if self.owned && self.running {
            if let Err(e) = self.stop() {
                tracing::error!("stopping embedded PostgreSQL: {e}");
            }
        }
        if !self.running {
            if let Some(dir) = self.temp_socket_dir.take() {
                let _ = std::fs::remove_dir_all(dir);
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

fn current_uid() -> u32 {
    std::fs::metadata("/proc/self")
        .map(|m| m.uid())
        .unwrap_or(1)
}

/// Root cannot run PostgreSQL: find the `postgres` system user to run it as instead.
fn postgres_user_if_root() -> Result<Option<(u32, u32)>> {
    if current_uid() != 0 {
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

/// The cluster directory of `data_dir`: `<data_dir>/pg`, unless we are root and the `postgres`
/// user cannot reach it. Then it is a directory under /tmp with an unguessable name, made 0700
/// and owned by `postgres`, recorded in `<data_dir>/CLUSTER_LOCATION.txt`. A recorded directory
/// that is not a 0700 directory of `postgres` (someone else made it) is refused.
fn locate_cluster(data_dir: &Path, run_as: Option<(u32, u32)>) -> Result<PathBuf> {
    let default = data_dir.join("pg");
    let Some((uid, gid)) = run_as else {
        return Ok(default);
    };
    let Some(blocked) = untraversable_ancestor(data_dir, uid) else {
        return Ok(default);
    };
    let record = data_dir.join(LOCATION_FILE);
    if let Ok(text) = std::fs::read_to_string(&record) {
        let recorded = text
            .lines()
            .find_map(|l| l.strip_prefix(LOCATION_PREFIX))
            .map(|p| PathBuf::from(p.trim()));
        if let Some(dir) = recorded {
            match std::fs::symlink_metadata(&dir) {
                Ok(m) if m.is_dir() && m.uid() == uid && m.mode() & 0o077 == 0 => return Ok(dir),
                Ok(m) => {
                    return Err(Error::Embedded(format!(
                        "{} (recorded in {}): must be a directory owned by the `postgres` user \
                         (uid {uid}) with mode 0700, got {} owned by uid {} with mode {:o}; \
                         refusing to use it",
                        dir.display(),
                        record.display(),
                        if m.is_dir() {
                            "a directory"
                        } else {
                            "not a directory"
                        },
                        m.uid(),
                        m.mode() & 0o7777
                    )))
                }
                Err(e) if e.kind() == ErrorKind::NotFound => {
                    tracing::warn!(
                        "the embedded cluster recorded in {} ({}) is gone; initialising a new one",
                        record.display(),
                        dir.display()
                    );
                }
                Err(e) => return Err(Error::Embedded(format!("{}: {e}", dir.display()))),
            }
        }
    }
    let dir = private_dir(Path::new("/tmp"), "agenttally-pg-", Some((uid, gid)))?;
    tracing::warn!(
        "{} is not traversable by the `postgres` system user; the embedded cluster lives in {} \
         instead (it may not survive a reboot: choose a --data-dir the `postgres` user can reach \
         to keep data durably)",
        blocked.display(),
        dir.display()
    );
    std::fs::write(&record, format!("{LOCATION_PREFIX}{}\n", dir.display()))
        .map_err(|e| Error::Embedded(format!("{}: {e}", record.display())))?;
    Ok(dir)
}

/// A new directory `<parent>/<prefix><random>`, mode 0700, owned by `owner`. Created with
/// `mkdir` (which fails on an existing name), so nobody can have made it first.
fn private_dir(parent: &Path, prefix: &str, owner: Option<(u32, u32)>) -> Result<PathBuf> {
    for _ in 0..16 {
        let mut bytes = [0u8; 8];
        getrandom::fill(&mut bytes)
            .map_err(|e| Error::Embedded(format!("cannot generate a directory name: {e}")))?;
        let name: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let dir = parent.join(format!("{prefix}{name}"));
        match DirBuilder::new().mode(0o700).create(&dir) {
            Ok(()) => {
                let err = |e: std::io::Error| Error::Embedded(format!("{}: {e}", dir.display()));
                std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                    .map_err(err)?;
                if let Some((uid, gid)) = owner {
                    chown(&dir, Some(uid), Some(gid)).map_err(err)?;
                }
                return Ok(dir);
            }
            Err(e) if e.kind() == ErrorKind::AlreadyExists => continue,
            Err(e) => {
                return Err(Error::Embedded(format!(
                    "cannot create {}: {e}",
                    dir.display()
                )))
            }
        }
    }
    Err(Error::Embedded(format!(
        "cannot create a private directory in {}: every random name was taken",
        parent.display()
    )))
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

/// The start time of live process `pid` (clock ticks since boot, field 22 of
/// `/proc/<pid>/stat`): with the pid, it names one process even after the pid is reused.
fn process_start_time(pid: u32) -> Option<u64> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces and parentheses; fields after it do not.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // A zombie has exited; only its parent has not collected it yet.
    if fields.next()? == "Z" {
        return None;
    }
    fields.nth(18)?.parse().ok()
}

/// Whether the process recorded in the owner file still runs.
fn owner_alive(path: &Path) -> bool {
    let Ok(text) = std::fs::read_to_string(path) else {
        return false;
    };
    let mut fields = text.split_whitespace();
    let (Some(pid), Some(started)) = (
        fields.next().and_then(|p| p.parse::<u32>().ok()),
        fields.next().and_then(|s| s.parse::<u64>().ok()),
    ) else {
        return false;
    };
    process_start_time(pid) == Some(started)
}

fn free_port() -> Result<u16> {
    let l = TcpListener::bind("127.0.0.1:0")
        .map_err(|e| Error::Embedded(format!("cannot find a free port: {e}")))?;
    l.local_addr()
        .map(|a| a.port())
        .map_err(|e| Error::Embedded(format!("cannot find a free port: {e}")))
}

/// Percent-encode every byte but unreserved URL characters (for a path in a query parameter).
fn percent_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|&b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => {
                char::from(b).to_string()
            }
            _ => format!("%{b:02X}"),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn socket_dir_is_percent_encoded() {
        assert_eq!(percent_encode(b"/tmp/a b&c=d"), "%2Ftmp%2Fa%20b%26c%3Dd");
        let url = "postgresql://postgres:pw@/agenttally?host=%2Ftmp%2Fa%20b%26c&port=5433";
        let cfg: tokio_postgres::Config = url.parse().expect("parse");
        assert_eq!(
            cfg.get_hosts(),
            &[tokio_postgres::config::Host::Unix(PathBuf::from(
                "/tmp/a b&c"
            ))]
        );
        assert_eq!(cfg.get_ports(), &[5433]);
    }

    #[test]
    fn start_time_names_this_process() {
        let me = std::process::id();
        assert!(process_start_time(me).is_some());
        let dir = std::env::temp_dir().join(format!("agenttally-owner-{me}"));
        std::fs::create_dir_all(&dir).expect("dir");
        let f = dir.join("owner");
        std::fs::write(
            &f,
            format!("{me} {}\n", process_start_time(me).unwrap_or(0)),
        )
        .expect("write");
        assert!(owner_alive(&f));
        std::fs::write(&f, format!("{me} 1\n")).expect("write");
        assert!(!owner_alive(&f), "a reused pid is not the owner");
        std::fs::write(&f, "garbage").expect("write");
        assert!(!owner_alive(&f));
        let _ = std::fs::remove_dir_all(dir);
    }
}
