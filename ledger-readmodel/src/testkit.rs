//! Fresh, empty databases for applications' tests (feature `testkit`).

use ledger_core::testkit::{fresh_table, server::server_url};

/// The databases a read model runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// An SQLite file in the temporary directory.
    Sqlite,
    /// A schema of its own on the test PostgreSQL server (`LEDGER_POSTGRES_URL`).
    Postgres,
}

/// The URL of a fresh, empty database of `backend`: an SQLite file under
/// `<tmp>/<dir>/`, or a new PostgreSQL schema made the connection's search path.
pub async fn fresh_url(backend: Backend, dir: &str) -> String {
    let name = fresh_table();
    match backend {
        Backend::Sqlite => {
            let dir = std::env::temp_dir().join(dir);
            std::fs::create_dir_all(&dir).expect("a temp dir");
            format!("sqlite:{}", dir.join(format!("{name}.db")).display())
        }
        Backend::Postgres => {
            let server = server_url("LEDGER_POSTGRES_URL", env!("CARGO_MANIFEST_DIR"));
            let pool = sqlx::PgPool::connect(&server)
                .await
                .unwrap_or_else(|e| panic!("connecting to {server}: {e}"));
            sqlx::query(&format!("CREATE SCHEMA {name}"))
                .execute(&pool)
                .await
                .expect("a fresh schema");
            pool.close().await;
            let separator = if server.contains('?') { '&' } else { '?' };
            format!("{server}{separator}options=-c%20search_path%3D{name}")
        }
    }
}

/// Defines a module `$name` with the test `body` run once per backend (tests `sqlite` and
/// `postgres`), `$backend` bound to the [`Backend`].
#[macro_export]
macro_rules! on_both {
    ($name:ident, |$backend:ident| $body:block) => {
        mod $name {
            use super::*;

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn sqlite() {
                let $backend = $crate::testkit::Backend::Sqlite;
                $body
            }

            #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn postgres() {
                let $backend = $crate::testkit::Backend::Postgres;
                $body
            }
        }
    };
}

/// Starts a service binary (`command`, with its arguments) that prints
/// `listening on http://ADDRESS` on stderr; returns the child and the address. The child is
/// killed when dropped; its stderr is drained so it never blocks.
pub async fn start_service(
    mut command: tokio::process::Command,
) -> (tokio::process::Child, String) {
    use tokio::io::{AsyncBufReadExt, BufReader};
    let mut child = command
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .expect("the service binary starts");
    let mut lines = BufReader::new(child.stderr.take().expect("piped stderr")).lines();
    let address = tokio::time::timeout(std::time::Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.expect("the service's stderr") {
            if let Some(rest) = line.split("listening on http://").nth(1) {
                return rest.trim().to_owned();
            }
            eprintln!("service: {line}");
        }
        panic!("the service exited before listening");
    })
    .await
    .expect("the service listens within a minute");
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    (child, address)
}

/// Kills `child` with SIGKILL: no shutdown code runs.
pub fn kill_hard(child: &tokio::process::Child) {
    let pid = child.id().expect("a running child") as i32;
    // SAFETY: signalling a child process the test started.
    unsafe { libc::kill(pid, libc::SIGKILL) };
}
