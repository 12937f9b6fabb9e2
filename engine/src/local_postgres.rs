//! Throwaway PostgreSQL servers on loopback, started from the system's PostgreSQL binaries
//! (`initdb`, `pg_ctl`): the two shards of `augur demo` and the servers of the tests. Not for
//! production data: they trade durability for speed (`fsync = off`).
//!
//! `initdb` refuses to run as root, so as root every command runs as the `postgres` user through
//! `runuser`, and the server's directory belongs to that user.

use std::ffi::OsString;
use std::net::TcpListener;
use std::os::unix::fs::chown;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The user the servers run as when Augur runs as root.
const SERVICE_USER: &str = "postgres";

/// Where PostgreSQL's server binaries are, or what to install when they are missing.
///
/// Looks at `AUGUR_PG_BIN`, then the newest `/usr/lib/postgresql/<version>/bin` (Debian), then
/// `pg_config --bindir`.
///
/// # Errors
/// A message naming the package to install when no `initdb` is found.
pub fn find_binaries() -> Result<PathBuf, String> {
    let has_initdb = |dir: &Path| dir.join("initdb").is_file();
    if let Some(dir) = std::env::var_os("AUGUR_PG_BIN").map(PathBuf::from) {
        return if has_initdb(&dir) { Ok(dir) } else { Err(format!("AUGUR_PG_BIN={} holds no initdb", dir.display())) };
    }
    let mut debian: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| Some((entry.file_name().to_str()?.parse().ok()?, entry.path().join("bin"))))
        .filter(|(_, bin)| has_initdb(bin))
        .collect();
    debian.sort();
    if let Some((_, bin)) = debian.pop() {
        return Ok(bin);
    }
    let from_pg_config = Command::new("pg_config")
        .arg("--bindir")
        .output()
        .ok()
        .filter(|out| out.status.success())
        .map(|out| PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()));
    match from_pg_config {
        Some(dir) if has_initdb(&dir) => Ok(dir),
        _ => Err("PostgreSQL server binaries (initdb, pg_ctl) not found: install them with \
                  `apt-get install -y postgresql` or point AUGUR_PG_BIN at their directory"
            .to_owned()),
    }
}

/// A PostgreSQL server in its own directory, listening on 127.0.0.1. Stopped (immediately) and
/// removed on drop.
#[derive(Debug)]
pub struct LocalPostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
    /// Whether commands run as [`SERVICE_USER`] (we are root).
    as_service_user: bool,
}

impl LocalPostgres {
    /// Creates a cluster in `dir` (which must not exist), with user `augur` trusted on loopback,
    /// and starts it on a free port.
    ///
    /// # Errors
    /// When the binaries are missing or `initdb`/`pg_ctl` fail (their output is in the message).
    pub fn start(dir: &Path) -> Result<Self, String> {
        let bin = find_binaries()?;
        // SAFETY: geteuid has no preconditions and cannot fail.
        let as_service_user = unsafe { libc::geteuid() } == 0;
        std::fs::create_dir_all(dir).map_err(|e| format!("creating {}: {e}", dir.display()))?;
        let dir = dir.canonicalize().map_err(|e| format!("resolving {}: {e}", dir.display()))?;
        if as_service_user {
            let (uid, gid) = service_user_ids()?;
            chown(&dir, Some(uid), Some(gid)).map_err(|e| format!("chown {} to {SERVICE_USER}: {e}", dir.display()))?;
        }
        let port = free_port()?;
        let server = Self { bin, dir, port, as_service_user };
        server.run(
            "initdb",
            &["-D", &server.data().to_string_lossy(), "-U", "augur", "--auth=trust", "-E", "UTF8", "--no-sync"],
        )?;
        server.start_again()?;
        Ok(server)
    }

    /// Starts the server again after [`LocalPostgres::stop`], on the same port.
    ///
    /// # Errors
    /// When `pg_ctl start` fails (its output and the server log are in the message).
    pub fn start_again(&self) -> Result<(), String> {
        let options = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c fsync=off -c synchronous_commit=off \
             -c full_page_writes=off -c max_connections=200",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("server.log");
        let started = self.run(
            "pg_ctl",
            &[
                "-D",
                &self.data().to_string_lossy(),
                "-l",
                &log.to_string_lossy(),
                "-w",
                "-t",
                "60",
                "-o",
                &options,
                "start",
            ],
        );
        started.map_err(|e| format!("{e}\nserver log:\n{}", std::fs::read_to_string(&log).unwrap_or_default()))
    }

    /// Stops the server (fast shutdown: open connections are cut).
    ///
    /// # Errors
    /// When `pg_ctl stop` fails.
    pub fn stop(&self) -> Result<(), String> {
        self.run("pg_ctl", &["-D", &self.data().to_string_lossy(), "-m", "fast", "-w", "stop"])
    }

    /// Freezes the server and its backends (`SIGSTOP`): connections stay open but nothing answers,
    /// the way a hung or partitioned server behaves. [`LocalPostgres::resume`] thaws it.
    ///
    /// # Errors
    /// When the server's processes cannot be found or signalled.
    pub fn pause(&self) -> Result<(), String> {
        self.signal("STOP")
    }

    /// Thaws a server frozen by [`LocalPostgres::pause`].
    ///
    /// # Errors
    /// When the server's processes cannot be found or signalled.
    pub fn resume(&self) -> Result<(), String> {
        self.signal("CONT")
    }

    /// Sends `signal` to the postmaster (its pid is the first line of `postmaster.pid`) and its
    /// children: only processes this server started.
    fn signal(&self, signal: &str) -> Result<(), String> {
        let pid_file = self.data().join("postmaster.pid");
        let text = std::fs::read_to_string(&pid_file).map_err(|e| format!("reading {}: {e}", pid_file.display()))?;
        let postmaster = text.lines().next().unwrap_or_default().trim().to_owned();
        let children = Command::new("pgrep").args(["-P", &postmaster]).output().map_err(|e| format!("pgrep: {e}"))?;
        let mut pids = vec![postmaster];
        pids.extend(String::from_utf8_lossy(&children.stdout).split_whitespace().map(str::to_owned));
        let status =
            Command::new("kill").arg(format!("-{signal}")).args(&pids).status().map_err(|e| format!("kill: {e}"))?;
        if status.success() {
            Ok(())
        } else {
            Err(format!("kill -{signal} {} failed", pids.join(" ")))
        }
    }

    /// The port it listens on.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// A connection URL for `database`.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://augur@127.0.0.1:{}/{database}", self.port)
    }

    /// Creates `database` (a name of letters, digits and `_`).
    ///
    /// # Errors
    /// When the name is not plain or `createdb` fails.
    pub fn create_database(&self, database: &str) -> Result<(), String> {
        if database.is_empty() || !database.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_') {
            return Err(format!("database name {database:?} must be letters, digits and _"));
        }
        self.run("createdb", &["-h", "127.0.0.1", "-p", &self.port.to_string(), "-U", "augur", database])
    }

    /// Runs `sql` with `psql` in `database` and returns its unaligned, tuples-only output
    /// (columns separated by `|`, one row per line).
    ///
    /// # Errors
    /// When `psql` fails (the server's message is in the error).
    pub fn psql(&self, database: &str, sql: &str) -> Result<String, String> {
        let port = self.port.to_string();
        let args = [
            "-X",
            "-tA",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            "127.0.0.1",
            "-p",
            &port,
            "-U",
            "augur",
            "-d",
            database,
            "-c",
            sql,
        ];
        let out = Command::new(self.bin.join("psql")).args(args).output().map_err(|e| format!("running psql: {e}"))?;
        if out.status.success() {
            Ok(String::from_utf8_lossy(&out.stdout).trim().to_owned())
        } else {
            Err(format!("psql {sql:?} failed: {}", String::from_utf8_lossy(&out.stderr)))
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), String> {
        let program_path = self.bin.join(program);
        let mut command = if self.as_service_user {
            let mut c = Command::new("runuser");
            c.args(["-u", SERVICE_USER, "--"]).arg(&program_path);
            c
        } else {
            Command::new(&program_path)
        };
        // `pg_ctl start` leaves the server running with our stdout unless it gets its own.
        let output: Output = command
            .args(args.iter().map(OsString::from))
            .current_dir(&self.dir)
            .stdin(std::process::Stdio::null())
            .output()
            .map_err(|e| format!("running {}: {e}", program_path.display()))?;
        if output.status.success() {
            Ok(())
        } else {
            Err(format!(
                "{program} {} failed ({}): {}{}",
                args.join(" "),
                output.status,
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            ))
        }
    }
}

impl Drop for LocalPostgres {
    fn drop(&mut self) {
        let _ = self.run("pg_ctl", &["-D", &self.data().to_string_lossy(), "-m", "immediate", "-w", "stop"]);
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn service_user_ids() -> Result<(u32, u32), String> {
    let id = |flag: &str| -> Result<u32, String> {
        let out = Command::new("id").args([flag, SERVICE_USER]).output().map_err(|e| format!("running id: {e}"))?;
        String::from_utf8_lossy(&out.stdout).trim().parse().map_err(|_| {
            format!(
                "no `{SERVICE_USER}` user to run PostgreSQL as root: install it with `apt-get install -y postgresql`"
            )
        })
    };
    Ok((id("-u")?, id("-g")?))
}

/// A loopback port nobody listens on now. Another process could take it before the server binds;
/// on loopback in a test run that is rare, and `pg_ctl` then fails with a clear message.
fn free_port() -> Result<u16, String> {
    TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr()).map(|a| a.port()).map_err(|e| format!("{e}"))
}
