//! Official Docker images as the servers of the server tests, in place of the native servers
//! that `cargo xtask services up` starts: for a laptop or a CI that has Docker but not those
//! servers.
//!
//! With `LEDGER_TEST_SERVERS=containers`, [`server_url`](super::server::server_url) ignores the
//! URL variables and `target/services/env`: it starts the container for the variable it is asked
//! for, once per test process, and answers its URL. Every test of the process shares that
//! container, which is removed when the process exits. The whole suite, from the workspace root:
//!
//! ```text
//! LEDGER_TEST_SERVERS=containers cargo test --workspace --features ledger-core/testcontainers
//! ```
//!
//! | variable                        | image                                            |
//! |---------------------------------|--------------------------------------------------|
//! | `LEDGER_POSTGRES_URL`           | `postgres:15-alpine`                             |
//! | `LEDGER_MONGODB_URL`            | `mongo:5.0.6`, as a single-node replica set      |
//! | `LEDGER_MONGODB_STANDALONE_URL` | `mongo:5.0.6`, standalone                        |
//! | `LEDGER_CLICKHOUSE_URL`         | `clickhouse/clickhouse-server:23.3.8.21-alpine`  |
//! | `LEDGER_CLICKHOUSE_LEGACY_URL`  | `yandex/clickhouse-server:18.16.1`               |
//!
//! Unset, empty or `native`, `LEDGER_TEST_SERVERS` leaves the tests on the native servers; any
//! other value fails them. Starting containers needs the `testcontainers` feature (the
//! `testcontainers` and `testcontainers-modules` crates). CI builds and lints it
//! (`--all-features`) but has no Docker engine to run it: only the choice of servers, below, is
//! tested there.

/// The environment variable that chooses where the server tests get their servers.
pub const VAR: &str = "LEDGER_TEST_SERVERS";

/// Where the server tests get their servers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Servers {
    /// The URL in the test's variable, else in `target/services/env` (the default).
    Native,
    /// A Docker container that the test process starts.
    Containers,
}

impl Servers {
    /// The choice that `value` of [`VAR`] makes (`None`: unset). A value that is not understood
    /// is an error, naming the accepted ones, rather than the native servers: a typo must not
    /// quietly test something other than what was asked.
    pub fn parse(value: Option<&str>) -> Result<Servers, String> {
        match value {
            None | Some("" | "native") => Ok(Servers::Native),
            Some("containers") => Ok(Servers::Containers),
            Some(other) => Err(format!(
                "{VAR}={other:?} is not understood: leave it unset, empty or `native` for the \
                 native servers, or set it to `containers` to start Docker containers"
            )),
        }
    }

    /// The choice of this process's environment; panics on a value [`Servers::parse`] refuses.
    pub fn from_env() -> Servers {
        let value = std::env::var_os(VAR).map(|v| v.to_string_lossy().into_owned());
        Servers::parse(value.as_deref()).unwrap_or_else(|e| panic!("{e}"))
    }
}

/// A server that the tests find through a variable, as a container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Server {
    /// PostgreSQL.
    Postgres,
    /// MongoDB as a single-node replica set: transactions and change streams.
    MongoReplicaSet,
    /// MongoDB standalone: no transactions, so the code paths without them get tested too.
    MongoStandalone,
    /// ClickHouse, over HTTP.
    ClickHouse,
    /// ClickHouse 18.16, the oldest generation the ClickHouse backend supports.
    ClickHouseLegacy,
}

impl Server {
    /// Every server, in the order of [`Server`]'s variants.
    pub const ALL: [Server; 5] = [
        Server::Postgres,
        Server::MongoReplicaSet,
        Server::MongoStandalone,
        Server::ClickHouse,
        Server::ClickHouseLegacy,
    ];

    /// The variable the tests name this server by.
    pub fn var(self) -> &'static str {
        match self {
            Server::Postgres => "LEDGER_POSTGRES_URL",
            Server::MongoReplicaSet => "LEDGER_MONGODB_URL",
            Server::MongoStandalone => "LEDGER_MONGODB_STANDALONE_URL",
            Server::ClickHouse => "LEDGER_CLICKHOUSE_URL",
            Server::ClickHouseLegacy => "LEDGER_CLICKHOUSE_LEGACY_URL",
        }
    }

    /// The server that variable `var` names; `None` for a variable no container serves.
    pub fn for_var(var: &str) -> Option<Server> {
        Server::ALL.into_iter().find(|server| server.var() == var)
    }

    /// The official image, as (name, tag), pinned so that every run tests the same server.
    /// PostgreSQL is the major version the native servers run; the others are the tags the
    /// `testcontainers-modules` images are tested with (their readiness checks expect them).
    pub fn image(self) -> (&'static str, &'static str) {
        match self {
            Server::Postgres => ("postgres", "15-alpine"),
            Server::MongoReplicaSet | Server::MongoStandalone => ("mongo", "5.0.6"),
            Server::ClickHouse => ("clickhouse/clickhouse-server", "23.3.8.21-alpine"),
            Server::ClickHouseLegacy => ("yandex/clickhouse-server", "18.16.1"),
        }
    }
}

/// The URL of the container for variable `var`, started on the first call of the process.
/// Panics when no container serves `var`, when ledger-core was built without the
/// `testcontainers` feature, or when the container cannot start.
pub fn url(var: &str) -> String {
    let Some(server) = Server::for_var(var) else {
        let known: Vec<&str> = Server::ALL.iter().map(|s| s.var()).collect();
        panic!(
            "{VAR}=containers has no container for {var}; it serves {}",
            known.join(", ")
        )
    };
    docker::url(server)
}

#[cfg(not(feature = "testcontainers"))]
mod docker {
    use super::{Server, VAR};

    pub(super) fn url(_: Server) -> String {
        panic!(
            "{VAR}=containers needs ledger-core's `testcontainers` feature: add \
             `--features ledger-core/testcontainers` to the cargo command"
        )
    }
}

#[cfg(feature = "testcontainers")]
mod docker {
    use std::any::Any;
    use std::sync::{Mutex, Once, OnceLock, PoisonError};

    use testcontainers::runners::SyncRunner;
    use testcontainers::{ContainerRequest, Image, ImageExt};
    use testcontainers_modules::{clickhouse::ClickHouse, mongo::Mongo, postgres::Postgres};

    use super::{Server, VAR};

    /// Each server's URL, or why it did not start, indexed by [`Server`]: decided once per
    /// process, so that after a failed start every test fails at once with the same reason.
    static URLS: [OnceLock<Result<String, String>>; Server::ALL.len()] =
        [const { OnceLock::new() }; Server::ALL.len()];

    /// The containers started, kept alive until the process exits. A container is removed
    /// only when dropped, and statics never are: [`remove_all`] drops these at exit.
    static RUNNING: Mutex<Vec<Box<dyn Any + Send>>> = Mutex::new(Vec::new());

    pub(super) fn url(server: Server) -> String {
        let url = URLS[server as usize].get_or_init(|| {
            // The sync runner blocks on a runtime of its own, which panics on a thread of the
            // caller's runtime (an async test factory): start the container on a fresh thread.
            std::thread::spawn(move || start(server))
                .join()
                .unwrap_or_else(|_| Err("the start panicked".to_owned()))
        });
        match url {
            Ok(url) => url.clone(),
            Err(e) => panic!(
                "{VAR}=containers: cannot start the container for {} ({}:{}): {e}. Is Docker \
                 running?",
                server.var(),
                server.image().0,
                server.image().1
            ),
        }
    }

    fn start(server: Server) -> Result<String, String> {
        let mongo = |host: &str, port| format!("mongodb://{host}:{port}/?directConnection=true");
        match server {
            // The image's default password, given in the URL.
            Server::Postgres => keep(server, Postgres::default(), 5432, |host, port| {
                format!("postgres://postgres:postgres@{host}:{port}/postgres")
            }),
            Server::MongoReplicaSet => keep(server, Mongo::repl_set(), 27017, mongo),
            Server::MongoStandalone => keep(server, Mongo::default(), 27017, mongo),
            // User `default` without a password, as the image starts.
            Server::ClickHouse | Server::ClickHouseLegacy => {
                keep(server, ClickHouse::default(), 8123, |host, port| {
                    format!("http://{host}:{port}")
                })
            }
        }
    }

    /// Starts `image` as `server`'s pinned image, keeps it in [`RUNNING`] and gives the URL
    /// that `url` makes of the host and the host port mapped to container port `port`.
    fn keep<I: Image + 'static>(
        server: Server,
        image: I,
        port: u16,
        url: impl Fn(&str, u16) -> String,
    ) -> Result<String, String> {
        let (name, tag) = server.image();
        let request: ContainerRequest<I> = image.with_name(name).with_tag(tag);
        let container = request.start().map_err(|e| e.to_string())?;
        let host = container.get_host().map_err(|e| e.to_string())?;
        let port = container
            .get_host_port_ipv4(port)
            .map_err(|e| e.to_string())?;
        static AT_EXIT: Once = Once::new();
        AT_EXIT.call_once(|| {
            // SAFETY: `remove_all` is a plain function with no arguments that never unwinds.
            // If registering fails, the containers outlive the process: nothing worse.
            let _ = unsafe { libc::atexit(remove_all) };
        });
        RUNNING
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(Box::new(container));
        Ok(url(&host.to_string(), port))
    }

    /// Removes the containers started, at process exit.
    extern "C" fn remove_all() {
        let running = std::mem::take(&mut *RUNNING.lock().unwrap_or_else(PoisonError::into_inner));
        // On a fresh thread: the exiting one's thread-locals (the runtime's) may be gone.
        if let Ok(remover) = std::thread::Builder::new().spawn(move || drop(running)) {
            let _ = remover.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn unset_empty_and_native_choose_the_native_servers() {
        for value in [None, Some(""), Some("native")] {
            assert_eq!(Servers::parse(value), Ok(Servers::Native), "{value:?}");
        }
    }

    #[test]
    fn containers_chooses_containers() {
        assert_eq!(Servers::parse(Some("containers")), Ok(Servers::Containers));
    }

    #[test]
    fn any_other_value_is_an_error_naming_the_accepted_ones() {
        for value in ["docker", "Containers", " containers", "container", "NATIVE"] {
            let error = Servers::parse(Some(value)).expect_err(value);
            for named in [VAR, &format!("{value:?}"), "`native`", "`containers`"] {
                assert!(error.contains(named), "{error:?} lacks {named}");
            }
        }
    }

    #[test]
    fn each_variable_names_its_server_and_image() {
        let expected = [
            ("LEDGER_POSTGRES_URL", Server::Postgres, "postgres"),
            ("LEDGER_MONGODB_URL", Server::MongoReplicaSet, "mongo"),
            (
                "LEDGER_MONGODB_STANDALONE_URL",
                Server::MongoStandalone,
                "mongo",
            ),
            (
                "LEDGER_CLICKHOUSE_URL",
                Server::ClickHouse,
                "clickhouse/clickhouse-server",
            ),
        ];
        for (var, server, image) in expected {
            assert_eq!(Server::for_var(var), Some(server), "{var}");
            assert_eq!(server.var(), var);
            assert_eq!(server.image().0, image, "{var}");
        }
        assert_eq!(Server::for_var("LEDGER_SQLITE_URL"), None);
        assert_eq!(Server::for_var("ledger_postgres_url"), None);
    }

    #[test]
    fn urls_index_servers_in_declaration_order() {
        for (index, server) in Server::ALL.into_iter().enumerate() {
            assert_eq!(server as usize, index, "{server:?}");
        }
    }

    #[test]
    #[should_panic(expected = "no container for LEDGER_NOPE_URL")]
    fn an_unknown_variable_panics_naming_it() {
        url("LEDGER_NOPE_URL");
    }

    #[cfg(not(feature = "testcontainers"))]
    #[test]
    #[should_panic(expected = "add `--features ledger-core/testcontainers`")]
    fn without_the_feature_a_container_panics_saying_how_to_get_it() {
        url("LEDGER_POSTGRES_URL");
    }
}
