//! Throwaway database servers for tests and benchmarks, started natively on 127.0.0.1.
//!
//! `cargo xtask services up` installs what is missing (apt; pip into a venv, or the Kafka
//! broker tansu built with cargo, each cached per machine), starts each service on a free port with its data in a fresh directory, and records
//! its PID and URL under `target/services/`.
//! `up` also installs Chromium and ChromeDriver for the log store's browser test.
//! `down` stops exactly the processes `up` recorded. Tests find the URLs in the environment
//! (`cargo xtask test` exports them) or in `target/services/env`.
//!
//! Adding a service: implement [`Service`] and list it in [`all`].

use std::fs::{self, File};
use std::io::{Read, Write};
use std::net::{Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use crate::{Result, root};

/// A server the tests need.
pub trait Service {
    /// Short name, also the directory name under `target/services/`.
    fn name(&self) -> &'static str;
    /// The environment variable that carries its URL to the tests.
    fn env_var(&self) -> &'static str;
    /// Installs the server if missing (idempotent).
    fn install(&self) -> Result;
    /// Starts it with its data under `dir` on `port`; returns its URL and PID.
    fn start(&self, dir: &Path, port: u16, mode: Mode) -> Result<Running>;
    /// Stops the server started in `dir`.
    fn stop(&self, dir: &Path, running: &Running) -> Result;
    /// The URL of a server given from outside (an environment variable), used instead of
    /// starting one.
    fn external(&self) -> Option<String> {
        None
    }
}

/// How a server is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    /// Fast and not durable (fsync off): for tests.
    Test,
    /// The server's durable defaults: for benchmarks.
    Durable,
}

/// What `up` recorded about a started server.
#[derive(Debug, Clone)]
pub struct Running {
    pub url: String,
    pub pid: u32,
    pub dir: PathBuf,
}

/// Every service, in start order.
pub fn all() -> Vec<Box<dyn Service>> {
    vec![
        Box::new(Postgres),
        Box::new(SECANTUSDB),
        Box::new(NX27017),
        Box::new(ClickHouse18),
        Box::new(ChdbFront),
        Box::new(Tansu),
    ]
}

fn state_dir() -> PathBuf {
    root().join("target").join("services")
}

/// The file with one `VAR=url` line per running service.
pub fn env_file() -> PathBuf {
    state_dir().join("env")
}

fn record_file(service: &dyn Service) -> PathBuf {
    state_dir().join(format!("{}.state", service.name()))
}

fn read_record(service: &dyn Service) -> Option<Running> {
    let text = fs::read_to_string(record_file(service)).ok()?;
    let mut lines = text.lines();
    let pid = lines.next()?.parse().ok()?;
    let url = lines.next()?.to_owned();
    let dir = PathBuf::from(lines.next()?);
    Some(Running { url, pid, dir })
}

fn write_env(services: &[Box<dyn Service>]) -> Result {
    let mut text = String::new();
    for s in services {
        let url = s
            .external()
            .or_else(|| read_record(s.as_ref()).map(|r| r.url));
        if let Some(url) = url {
            text.push_str(&format!("{}={url}\n", s.env_var()));
        }
    }
    fs::write(env_file(), text).map_err(|e| format!("cannot write {}: {e}", env_file().display()))
}

/// Whether `pid` is a live process (a zombie awaiting its reaper counts as gone).
pub fn alive(pid: u32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state letter follows the parenthesised command name.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// A port that was free a moment ago.
fn free_port() -> Result<u16> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("no free port: {e}"))?;
    listener
        .local_addr()
        .map(|a| a.port())
        .map_err(|e| format!("no free port: {e}"))
}

/// Starts every service not already running; returns `(env var, url)` pairs.
pub fn up(mode: Mode) -> Result<Vec<(&'static str, String)>> {
    fs::create_dir_all(state_dir()).map_err(|e| format!("cannot create target/services: {e}"))?;
    install_browser()?;
    let services = all();
    let mut urls = Vec::new();
    for service in &services {
        let service = service.as_ref();
        if let Some(url) = service.external() {
            eprintln!("xtask: {} given at {url}", service.env_var());
            urls.push((service.env_var(), url));
            continue;
        }
        if let Some(r) = read_record(service).filter(|r| alive(r.pid)) {
            eprintln!(
                "xtask: {} already running (pid {}) at {}",
                service.name(),
                r.pid,
                r.url
            );
            urls.push((service.env_var(), r.url));
            continue;
        }
        service.install()?;
        let dir = service_dir(service)?;
        let started = Instant::now();
        let running = service.start(&dir, free_port()?, mode)?;
        eprintln!(
            "xtask: {} up in {:.1?} (pid {}) at {}; logs in {}",
            service.name(),
            started.elapsed(),
            running.pid,
            running.url,
            dir.display()
        );
        let record = format!("{}\n{}\n{}\n", running.pid, running.url, dir.display());
        fs::write(record_file(service), record).map_err(|e| format!("cannot record: {e}"))?;
        urls.push((service.env_var(), running.url));
    }
    write_env(&services)?;
    Ok(urls)
}

/// [`up`], then puts each service's URL in this process's environment, where the commands it
/// runs (the tests, the benchmarks) find them.
pub fn up_and_export(mode: Mode) -> Result {
    for (var, url) in up(mode)? {
        // SAFETY: xtask is single-threaded; no other thread reads the environment.
        unsafe { std::env::set_var(var, url) };
    }
    Ok(())
}

/// Stops every service `up` recorded, and only those.
pub fn down() -> Result {
    let services = all();
    let mut failures = Vec::new();
    for service in &services {
        let service = service.as_ref();
        let Some(running) = read_record(service) else {
            continue;
        };
        if alive(running.pid) {
            if let Err(e) = service.stop(&running.dir, &running) {
                failures.push(e);
                continue;
            }
            eprintln!("xtask: {} (pid {}) stopped", service.name(), running.pid);
        }
        let _ = fs::remove_file(record_file(service));
        let _ = fs::remove_dir_all(&running.dir);
    }
    write_env(&services)?;
    if failures.is_empty() {
        Ok(())
    } else {
        Err(failures.join("; "))
    }
}

pub fn status() -> Result {
    for service in all() {
        match read_record(service.as_ref()) {
            Some(r) if alive(r.pid) => {
                println!(
                    "{:<10} running  pid {:<8} {}={}",
                    service.name(),
                    r.pid,
                    service.env_var(),
                    r.url
                )
            }
            Some(r) => println!(
                "{:<10} dead     pid {:<8} (recorded, not running)",
                service.name(),
                r.pid
            ),
            None => println!("{:<10} stopped", service.name()),
        }
    }
    Ok(())
}

/// A fresh data directory for `service`: under `target/services/` when the service's own user
/// can reach it, else under the system temp dir (a checkout inside a private directory).
fn service_dir(service: &dyn Service) -> Result<PathBuf> {
    let preferred = state_dir().join(service.name());
    let reachable = Command::new("runuser")
        .args(["-u", "postgres", "--", "test", "-x"])
        .arg(state_dir())
        .status()
        .is_ok_and(|s| s.success());
    let dir = if reachable {
        preferred
    } else {
        std::env::temp_dir().join(format!(
            "ledger-services-{}-{}",
            service.name(),
            std::process::id()
        ))
    };
    let _ = fs::remove_dir_all(&dir);
    fs::create_dir_all(&dir).map_err(|e| format!("cannot create {}: {e}", dir.display()))?;
    Ok(dir)
}

fn sh(program: &str, args: &[&str]) -> Result {
    let out = Command::new(program)
        .args(args)
        .output()
        .map_err(|e| format!("cannot start {program}: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "`{program} {}` failed: {}{}",
            args.join(" "),
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

/// Installs Debian packages (idempotent; refreshes the package lists once if needed).
fn apt_install(packages: &[&str]) -> Result {
    let mut args = vec!["install", "-y", "-q"];
    args.extend_from_slice(packages);
    if sh("apt-get", &args).is_ok() {
        return Ok(());
    }
    sh("apt-get", &["update", "-q"])?;
    sh("apt-get", &args)
}

/// Chromium and ChromeDriver from Debian, for the log store's page test (which starts its own
/// driver, so nothing is left running here).
fn install_browser() -> Result {
    if Path::new("/usr/bin/chromium").exists() && Path::new("/usr/bin/chromedriver").exists() {
        return Ok(());
    }
    eprintln!("xtask: installing Chromium and ChromeDriver with apt");
    apt_install(&["chromium", "chromium-driver"])
}

/// PostgreSQL 15 from Debian, one cluster per `up`.
struct Postgres;

const PG_BIN: &str = "/usr/lib/postgresql/15/bin";

impl Service for Postgres {
    fn name(&self) -> &'static str {
        "postgres"
    }

    fn env_var(&self) -> &'static str {
        "LEDGER_POSTGRES_URL"
    }

    fn install(&self) -> Result {
        if Path::new(PG_BIN).join("postgres").exists() {
            return Ok(());
        }
        eprintln!("xtask: installing PostgreSQL 15 with apt");
        apt_install(&["postgresql"])
    }

    fn start(&self, dir: &Path, port: u16, mode: Mode) -> Result<Running> {
        let data = dir.join("data");
        let dir_s = dir.to_string_lossy().into_owned();
        let data_s = data.to_string_lossy().into_owned();
        // initdb refuses to run as root: the cluster belongs to the postgres user.
        sh("chown", &["postgres:postgres", &dir_s])?;
        let as_postgres = |args: &[&str]| -> Result {
            let mut full = vec!["-u", "postgres", "--"];
            full.extend_from_slice(args);
            sh("runuser", &full)
        };
        let initdb = format!("{PG_BIN}/initdb");
        as_postgres(&[
            &initdb,
            "-D",
            &data_s,
            "-A",
            "trust",
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--no-locale",
            "--no-sync",
        ])?;
        let mut options =
            format!("-p {port} -k {dir_s} -c listen_addresses=127.0.0.1 -c max_connections=200");
        if mode == Mode::Test {
            options.push_str(" -c fsync=off -c synchronous_commit=off -c full_page_writes=off");
        }
        let log = format!("{dir_s}/server.log");
        let pg_ctl = format!("{PG_BIN}/pg_ctl");
        as_postgres(&[
            &pg_ctl, "-D", &data_s, "-l", &log, "-w", "-t", "60", "-o", &options, "start",
        ])?;
        let pid_text = fs::read_to_string(data.join("postmaster.pid"))
            .map_err(|e| format!("postgres started but wrote no pid file: {e}"))?;
        let pid = pid_text
            .lines()
            .next()
            .and_then(|l| l.trim().parse().ok())
            .ok_or("postmaster.pid has no pid")?;
        Ok(Running {
            url: format!("postgres://postgres@127.0.0.1:{port}/postgres"),
            pid,
            dir: dir.to_path_buf(),
        })
    }

    fn stop(&self, dir: &Path, running: &Running) -> Result {
        let data = dir.join("data").to_string_lossy().into_owned();
        let pg_ctl = format!("{PG_BIN}/pg_ctl");
        // pg_ctl's own verdict is not trusted alone: the recorded postmaster leaving is.
        let asked = sh(
            "runuser",
            &[
                "-u", "postgres", "--", &pg_ctl, "-D", &data, "-m", "fast", "-w", "stop",
            ],
        );
        if gone_within(running.pid, Duration::from_secs(30)) {
            return Ok(());
        }
        // Signal the recorded postmaster and nothing else.
        let _ = sh("kill", &["-TERM", &running.pid.to_string()]);
        if gone_within(running.pid, Duration::from_secs(30)) {
            return Ok(());
        }
        Err(format!(
            "postgres (pid {}) did not stop (pg_ctl: {})",
            running.pid,
            asked.err().unwrap_or_else(|| "ok".into())
        ))
    }
}

/// Waits until `pid` is gone; false if it is still alive after `limit`.
fn gone_within(pid: u32, limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while alive(pid) {
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    true
}

/// `$XDG_CACHE_HOME/ledger-xtask` (else `~/.cache/ledger-xtask`): what is built once per
/// machine and shared by every checkout and every run.
fn cache_dir() -> Result<PathBuf> {
    let cache = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute())
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .ok_or("neither XDG_CACHE_HOME nor HOME is set: no cache directory")?;
    Ok(cache.join("ledger-xtask"))
}

/// Removes what builds named `<prefix><pid>` left in `parent` when their process is gone.
fn remove_abandoned_builds(parent: &Path, prefix: &str) {
    for entry in fs::read_dir(parent).into_iter().flatten().flatten() {
        let name = entry.file_name().to_string_lossy().into_owned();
        let pid = name
            .strip_prefix(prefix)
            .and_then(|p| p.split('.').next())
            .and_then(|p| p.parse().ok());
        if pid.is_some_and(|pid| !alive(pid)) {
            let _ = fs::remove_dir_all(entry.path());
        }
    }
}

/// A Python virtualenv with pinned packages, built once per machine in the user's cache and
/// shared by every checkout and every run: a pip install takes half a minute, a look-up none.
struct Venv {
    /// What the packages are for; the start of the directory name.
    name: &'static str,
    /// `name==version` pins; the directory name carries them, so a new pin builds a new venv
    /// beside the old one (which a checkout still on the old pins keeps using).
    packages: &'static [&'static str],
}

impl Venv {
    /// `$XDG_CACHE_HOME/ledger-xtask/<name>-venv-v1-<pins>` (else `~/.cache/...`); `v1` is the
    /// recipe below: bump it to rebuild every venv.
    fn dir(&self) -> Result<PathBuf> {
        let pins = self.packages.join("+");
        Ok(cache_dir()?.join(format!("{}-venv-v1-{pins}", self.name)))
    }

    /// The venv's interpreter; gone with the Python that built the venv (an upgrade).
    fn python(dir: &Path) -> PathBuf {
        dir.join("bin").join("python")
    }

    /// Builds the venv unless it is there. It is built in `<dir>.build-<pid>`, where it stays
    /// (a venv's scripts name its path in their shebangs), and `<dir>` becomes a symlink to it
    /// once complete: an interrupted build is never taken for a venv, and of two racing builds
    /// the first to link wins.
    fn install(&self) -> Result {
        let dir = self.dir()?;
        if Self::python(&dir).exists() {
            return Ok(());
        }
        // Only a complete build is ever linked: a link without an interpreter behind it is to a
        // venv whose Python went away.
        let _ = fs::remove_file(&dir);
        let parent = dir.parent().expect("the venv lives in the cache");
        fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        let prefix = format!(
            "{}.build-",
            dir.file_name().expect("named").to_string_lossy()
        );
        // Builds interrupted before (their process gone) would otherwise pile up, 150 MB each.
        remove_abandoned_builds(parent, &prefix);
        let build_name = format!("{prefix}{}", std::process::id());
        let build = parent.join(&build_name);
        eprintln!(
            "xtask: installing {} into {} (once per machine)",
            self.packages.join(" "),
            build.display()
        );
        let build_s = build.to_string_lossy().into_owned();
        let python = Self::python(&build).to_string_lossy().into_owned();
        let mut pip = vec!["-m", "pip", "install", "--no-input", "-q"];
        pip.extend_from_slice(self.packages);
        let linked = sh("python3", &["-m", "venv", "--clear", &build_s])
            .and_then(|()| sh(&python, &pip))
            .and_then(|()| {
                std::os::unix::fs::symlink(&build_name, &dir)
                    .map_err(|e| format!("cannot link {}: {e}", dir.display()))
            });
        if linked.is_err() {
            let _ = fs::remove_dir_all(&build);
            // Another run linked its build first: that venv is as good as this one.
            if Self::python(&dir).exists() {
                return Ok(());
            }
        }
        linked
    }

    /// The path of the venv's console script `name`.
    fn bin(&self, name: &str) -> Result<PathBuf> {
        Ok(self.dir()?.join("bin").join(name))
    }
}

/// The MongoDB-wire-compatible servers, one venv for both.
const MONGO_VENV: Venv = Venv {
    name: "mongo",
    packages: &["SecantusDB==0.7.0b3", "nx-27017==0.8.1"],
};

/// A MongoDB-wire-compatible server run from [`MONGO_VENV`]. Both keep their data in memory
/// whatever the [`Mode`], so Mode::Test and Mode::Durable start them the same way.
struct WireServer {
    name: &'static str,
    env_var: &'static str,
    /// The console script that runs the server in the foreground.
    script: &'static str,
    /// The script's arguments, given the service directory and the port.
    args: fn(&Path, u16) -> Vec<String>,
}

/// A single-node replica set: transactions and change streams.
const SECANTUSDB: WireServer = WireServer {
    name: "secantusdb",
    env_var: "LEDGER_MONGODB_URL",
    script: "secantusd-py",
    args: |_, port| {
        let port = port.to_string();
        [
            "--host",
            "127.0.0.1",
            "--port",
            &port,
            "--storage-path",
            ":memory:",
            "--log-level",
            "WARNING",
        ]
        .map(String::from)
        .to_vec()
    },
};

/// A standalone server: no transactions, so the code paths without them get tested too.
const NX27017: WireServer = WireServer {
    name: "nx27017",
    env_var: "LEDGER_MONGODB_STANDALONE_URL",
    script: "nx-27017",
    args: |dir, port| {
        let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
        [
            "--host".into(),
            "127.0.0.1".into(),
            "-p".into(),
            port.to_string(),
            "--db".into(),
            "memory".into(),
            "--log-file".into(),
            file("nx.log"),
            "--pid-file".into(),
            file("nx.pid"),
        ]
        .to_vec()
    },
};

impl Service for WireServer {
    fn name(&self) -> &'static str {
        self.name
    }

    fn env_var(&self) -> &'static str {
        self.env_var
    }

    fn install(&self) -> Result {
        MONGO_VENV.install()
    }

    fn start(&self, dir: &Path, port: u16, _mode: Mode) -> Result<Running> {
        let mut command = Command::new(MONGO_VENV.bin(self.script)?);
        command.args((self.args)(dir, port));
        Ok(Running {
            url: format!("mongodb://127.0.0.1:{port}/?directConnection=true"),
            pid: spawn_server(self.name, command, dir, port, answers_hello)?,
            dir: dir.to_path_buf(),
        })
    }

    fn stop(&self, _dir: &Path, running: &Running) -> Result {
        terminate(self.name, running.pid)
    }
}

/// How long a spawned server gets to answer.
const START_LIMIT: Duration = Duration::from_secs(30);

/// Runs `command` as the server `name`, detached, in `dir`, and waits until `ready(port)`;
/// returns the PID of the process spawned, the one [`terminate`] signals. Detached: in
/// its own process group (a Ctrl-C at the terminal that ran `up` does not reach it), output to
/// `dir/server.log`, and temporary files in `dir` (which `down` removes even after a KILL).
fn spawn_server(
    name: &str,
    mut command: Command,
    dir: &Path,
    port: u16,
    ready: fn(u16) -> bool,
) -> Result<u32> {
    let log_path = dir.join("server.log");
    let log = File::create(&log_path)
        .map_err(|e| format!("cannot create {}: {e}", log_path.display()))?;
    let err_log = log
        .try_clone()
        .map_err(|e| format!("cannot share {}: {e}", log_path.display()))?;
    let mut child = command
        .current_dir(dir)
        .env("TMPDIR", dir)
        .stdin(Stdio::null())
        .stdout(log)
        .stderr(err_log)
        .process_group(0)
        .spawn()
        .map_err(|e| format!("cannot start {name}: {e}"))?;
    let pid = child.id();
    let deadline = Instant::now() + START_LIMIT;
    let failure = loop {
        if let Ok(Some(status)) = child.try_wait() {
            break format!("{name} exited ({status}) before answering on port {port}");
        }
        if ready(port) {
            return Ok(pid);
        }
        if Instant::now() >= deadline {
            // Not recorded, so nothing else would ever stop it.
            let _ = terminate(name, pid);
            break format!(
                "{name} (pid {pid}) did not answer on port {port} within {START_LIMIT:?}"
            );
        }
        std::thread::sleep(Duration::from_millis(100));
    };
    Err(format!(
        "{failure}; the end of {}:\n{}",
        log_path.display(),
        tail(&log_path, 20)
    ))
}

/// The last `lines` lines of the file at `path`.
fn tail(path: &Path, lines: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let all: Vec<&str> = text.lines().collect();
    all[all.len().saturating_sub(lines)..].join("\n")
}

/// Whether a MongoDB wire-protocol server on `port` answers `hello` as a writable primary: a
/// server can accept connections before it serves commands, and a replica set before it has
/// elected itself. Driver-free: one OP_MSG, by hand.
fn answers_hello(port: u16) -> bool {
    // BSON {hello: 1, $db: "admin"}: int32 and string elements, then the terminating zero.
    let mut doc = Vec::new();
    doc.extend(b"\x10hello\0");
    doc.extend(1i32.to_le_bytes());
    doc.extend(b"\x02$db\0");
    doc.extend(6i32.to_le_bytes());
    doc.extend(b"admin\0\0");
    let doc_len = (doc.len() + 4) as i32;
    // OP_MSG (2013): header (length, request id, response to, opcode), flags, a kind-0 section.
    let mut msg = Vec::new();
    msg.extend((16 + 4 + 1 + doc_len).to_le_bytes());
    msg.extend(1i32.to_le_bytes());
    msg.extend(0i32.to_le_bytes());
    msg.extend(2013i32.to_le_bytes());
    msg.extend(0u32.to_le_bytes());
    msg.push(0);
    msg.extend(doc_len.to_le_bytes());
    msg.extend(doc);
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let reply = (|| -> std::io::Result<Vec<u8>> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(&msg)?;
        let mut len = [0; 4];
        stream.read_exact(&mut len)?;
        let mut rest = vec![0; (i32::from_le_bytes(len) as usize).saturating_sub(4)];
        stream.read_exact(&mut rest)?;
        Ok(rest)
    })();
    // A reply to request 1 holding the boolean `isWritablePrimary: true` (servers disagree on
    // the type of `ok`; a failed `hello` has no such field).
    let primary = b"\x08isWritablePrimary\0\x01";
    reply.is_ok_and(|r| {
        r.get(4..8) == Some(&1i32.to_le_bytes()) && r.windows(primary.len()).any(|w| w == primary)
    })
}

/// Whether an HTTP server on `port` answers `GET /ping` with ClickHouse's `Ok.`.
fn answers_ping(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    let reply = (|| -> std::io::Result<String> {
        let mut stream = TcpStream::connect_timeout(&addr, Duration::from_millis(500))?;
        stream.set_read_timeout(Some(Duration::from_secs(2)))?;
        stream.write_all(b"GET /ping HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")?;
        let mut reply = String::new();
        stream.read_to_string(&mut reply)?;
        Ok(reply)
    })();
    reply.is_ok_and(|r| r.starts_with("HTTP/1.") && r.contains(" 200 ") && r.ends_with("Ok.\n"))
}

/// Debian's ClickHouse 18.16: the oldest server generation the ClickHouse backend supports.
struct ClickHouse18;

const CLICKHOUSE_SERVER: &str = "/usr/sbin/clickhouse-server";

impl Service for ClickHouse18 {
    fn name(&self) -> &'static str {
        "clickhouse18"
    }

    fn env_var(&self) -> &'static str {
        "LEDGER_CLICKHOUSE_LEGACY_URL"
    }

    fn install(&self) -> Result {
        if Path::new(CLICKHOUSE_SERVER).exists() {
            return Ok(());
        }
        eprintln!("xtask: installing ClickHouse 18.16 with apt");
        apt_install(&["clickhouse-server"])
    }

    fn start(&self, dir: &Path, port: u16, _mode: Mode) -> Result<Running> {
        // MergeTree parts are not fsynced by default, so one config serves both modes.
        let tcp_port = free_port()?;
        let path = |name: &str| dir.join(name).to_string_lossy().into_owned();
        let config = format!(
            "<yandex>
  <logger><level>warning</level><console>1</console></logger>
  <listen_host>127.0.0.1</listen_host>
  <http_port>{port}</http_port>
  <tcp_port>{tcp_port}</tcp_port>
  <path>{data}/</path>
  <tmp_path>{tmp}/</tmp_path>
  <user_files_path>{files}/</user_files_path>
  <format_schema_path>{schemas}/</format_schema_path>
  <users_config>{users}</users_config>
  <default_profile>default</default_profile>
  <default_database>default</default_database>
  <timezone>UTC</timezone>
  <mark_cache_size>268435456</mark_cache_size>
  <max_concurrent_queries>200</max_concurrent_queries>
</yandex>
",
            data = path("data"),
            tmp = path("tmp"),
            files = path("user_files"),
            schemas = path("format_schemas"),
            users = path("users.xml"),
        );
        // One user, without a password, reachable from this machine only.
        let users = "<yandex>
  <profiles><default></default></profiles>
  <users><default>
    <password></password>
    <networks><ip>127.0.0.1</ip></networks>
    <profile>default</profile>
    <quota>default</quota>
  </default></users>
  <quotas><default><interval>
    <duration>3600</duration><queries>0</queries><errors>0</errors>
    <result_rows>0</result_rows><read_rows>0</read_rows><execution_time>0</execution_time>
  </interval></default></quotas>
</yandex>
";
        let write = |name: &str, text: &str| {
            fs::write(dir.join(name), text).map_err(|e| format!("cannot write {name}: {e}"))
        };
        write("config.xml", &config)?;
        write("users.xml", users)?;
        let mut command = Command::new(CLICKHOUSE_SERVER);
        command.arg(format!("--config-file={}", path("config.xml")));
        Ok(Running {
            url: format!("http://127.0.0.1:{port}"),
            pid: spawn_server(self.name(), command, dir, port, answers_ping)?,
            dir: dir.to_path_buf(),
        })
    }

    fn stop(&self, _dir: &Path, running: &Running) -> Result {
        terminate(self.name(), running.pid)
    }
}

/// A current ClickHouse engine, `chdb-core` (in-process, no server of its own).
const CHDB_VENV: Venv = Venv {
    name: "chdb",
    packages: &["chdb-core==26.9.0", "lz4==4.4.5"],
};

/// The HTTP front of `xtask/chdb/front.py` over [`CHDB_VENV`]'s engine: ClickHouse's HTTP
/// interface as the `clickhouse` crate uses it.
struct ChdbFront;

/// The front's script and its tests.
fn chdb_dir() -> PathBuf {
    root().join("xtask").join("chdb")
}

impl Service for ChdbFront {
    fn name(&self) -> &'static str {
        "chdb"
    }

    fn env_var(&self) -> &'static str {
        "LEDGER_CLICKHOUSE_URL"
    }

    fn install(&self) -> Result {
        CHDB_VENV.install()
    }

    fn start(&self, dir: &Path, port: u16, _mode: Mode) -> Result<Running> {
        let mut command = Command::new(Venv::python(&CHDB_VENV.dir()?));
        command
            .arg(chdb_dir().join("front.py"))
            .args(["--host", "127.0.0.1", "--port", &port.to_string(), "--data"])
            .arg(dir.join("data"));
        Ok(Running {
            url: format!("http://127.0.0.1:{port}"),
            pid: spawn_server(self.name(), command, dir, port, answers_ping)?,
            dir: dir.to_path_buf(),
        })
    }

    fn stop(&self, _dir: &Path, running: &Running) -> Result {
        terminate(self.name(), running.pid)
    }
}

/// Runs the HTTP front's own tests (it is test infrastructure, so it is tested too).
pub fn test_chdb_front() -> Result {
    CHDB_VENV.install()?;
    let python = Venv::python(&CHDB_VENV.dir()?);
    crate::run(
        &python.to_string_lossy(),
        &[
            "-m",
            "unittest",
            "discover",
            "-s",
            &chdb_dir().to_string_lossy(),
        ],
    )
}

/// The Kafka-compatible broker tansu (from crates.io, SQLite storage engine): there is no
/// Kafka in Debian, PyPI or npm.
struct Tansu;

const TANSU_VERSION: &str = "0.6.0";

impl Tansu {
    /// `<cache>/tansu-<version>-v1`; `v1` is the recipe in `install`.
    fn dir() -> Result<PathBuf> {
        Ok(cache_dir()?.join(format!("tansu-{TANSU_VERSION}-v1")))
    }

    fn binary() -> Result<PathBuf> {
        Ok(Self::dir()?.join("bin").join("tansu"))
    }
}

impl Service for Tansu {
    fn name(&self) -> &'static str {
        "tansu"
    }

    fn env_var(&self) -> &'static str {
        "LEDGER_KAFKA_BROKERS"
    }

    fn external(&self) -> Option<String> {
        std::env::var(self.env_var()).ok().filter(|b| !b.is_empty())
    }

    /// Builds the broker once per machine (9 to 12 minutes on 2 cores) into
    /// `<dir>.build-<pid>` with a target directory of its own, then renames it to `<dir>`: an
    /// interrupted build is never taken for a broker, and its leftovers are removed next time.
    fn install(&self) -> Result {
        let dir = Self::dir()?;
        if Self::binary()?.exists() {
            return Ok(());
        }
        let parent = dir.parent().expect("the broker lives in the cache");
        fs::create_dir_all(parent)
            .map_err(|e| format!("cannot create {}: {e}", parent.display()))?;
        let prefix = format!(
            "{}.build-",
            dir.file_name().expect("named").to_string_lossy()
        );
        remove_abandoned_builds(parent, &prefix);
        let build = parent.join(format!("{prefix}{}", std::process::id()));
        let target = parent.join(format!("{prefix}{}.target", std::process::id()));
        eprintln!(
            "xtask: building tansu {TANSU_VERSION} into {} (once per machine, about 10 minutes)",
            dir.display()
        );
        let status = Command::new("cargo")
            .args([
                "install",
                &format!("tansu@{TANSU_VERSION}"),
                "--locked",
                "--quiet",
            ])
            .args(["--no-default-features", "--features", "libsql", "--root"])
            .arg(&build)
            .env("CARGO_TARGET_DIR", &target)
            .status()
            .map_err(|e| format!("cannot run cargo install tansu: {e}"))?;
        let _ = fs::remove_dir_all(&target);
        if !status.success() {
            let _ = fs::remove_dir_all(&build);
            return Err(format!(
                "cargo install tansu@{TANSU_VERSION} failed ({status})"
            ));
        }
        if let Err(e) = fs::rename(&build, &dir) {
            let _ = fs::remove_dir_all(&build);
            // Another run finished its build first: that broker is as good as this one.
            if !Self::binary()?.exists() {
                return Err(format!("cannot move the broker to {}: {e}", dir.display()));
            }
        }
        Ok(())
    }

    fn start(&self, dir: &Path, port: u16, _mode: Mode) -> Result<Running> {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut command = Command::new(Self::binary()?);
        command
            .arg("broker")
            .args(["--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "sqlite://tansu.db"]);
        Ok(Running {
            url: format!("127.0.0.1:{port}"),
            pid: spawn_server(self.name(), command, dir, port, accepts)?,
            dir: dir.to_path_buf(),
        })
    }

    fn stop(&self, _dir: &Path, running: &Running) -> Result {
        terminate(self.name(), running.pid)
    }
}

/// Whether something accepts connections on `port`.
fn accepts(port: u16) -> bool {
    let addr = SocketAddr::from((Ipv4Addr::LOCALHOST, port));
    TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok()
}

/// Stops `pid` and nothing else: TERM, then KILL if it lingers.
fn terminate(name: &str, pid: u32) -> Result {
    let pid_s = pid.to_string();
    for (signal, limit) in [("-TERM", 10), ("-KILL", 5)] {
        let _ = sh("kill", &[signal, &pid_s]);
        if gone_within(pid, Duration::from_secs(limit)) {
            return Ok(());
        }
    }
    Err(format!("{name} (pid {pid}) did not stop"))
}
