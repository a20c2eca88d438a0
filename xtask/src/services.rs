//! Throwaway database servers for tests and benchmarks, started natively on 127.0.0.1.
//!
//! `cargo xtask services up` installs what is missing (apt), starts each service on a free port
//! with its data in a fresh directory, and records its PID and URL under `target/services/`.
//! `down` stops exactly the processes `up` recorded. Tests find the URLs in the environment
//! (`cargo xtask test` exports them) or in `target/services/env`.
//!
//! Adding a service: implement [`Service`] and list it in [`all`].

use std::fs;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
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
    vec![Box::new(Postgres)]
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
        if let Some(r) = read_record(s.as_ref()) {
            text.push_str(&format!("{}={}\n", s.env_var(), r.url));
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
    let services = all();
    let mut urls = Vec::new();
    for service in &services {
        let service = service.as_ref();
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
