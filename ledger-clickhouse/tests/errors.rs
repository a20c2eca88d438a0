//! Bad input and server errors come back as typed errors naming the bad value or the store.

use ledger_clickhouse::ClickHouseStore;
use ledger_core::testkit::server::server_url;
use ledger_core::testkit::{fresh_table, run};
use ledger_core::{AppendInput, BackendErrorKind, Error, ExpectedVersion};
use serde_json::json;

fn url() -> String {
    server_url("LEDGER_CLICKHOUSE_URL", env!("CARGO_MANIFEST_DIR"))
}

#[test]
fn a_url_that_is_not_clickhouse_http_is_invalid_argument_naming_it() {
    run(async {
        for bad in [
            "127.0.0.1:8123",
            "tcp://127.0.0.1:9000",
            "http://h:1/?table=x",
        ] {
            match ClickHouseStore::connect(bad).await {
                Err(Error::InvalidArgument(m)) => assert!(m.contains(bad), "{m}"),
                other => panic!("{bad}: expected InvalidArgument, got {other:?}"),
            }
        }
    });
}

#[test]
fn bad_table_and_database_names_are_invalid_names() {
    run(async {
        let table = ClickHouseStore::builder()
            .table("x; DROP")
            .connect(&url())
            .await;
        assert!(
            matches!(&table, Err(Error::InvalidName { kind: "table", name, .. }) if name == "x; DROP"),
            "{table:?}"
        );
        let database = ClickHouseStore::builder()
            .database("db`x")
            .connect(&url())
            .await;
        assert!(
            matches!(&database, Err(Error::InvalidName { kind: "database", name, .. }) if name == "db`x"),
            "{database:?}"
        );
    });
}

#[test]
fn a_server_nobody_runs_is_a_connection_error() {
    run(async {
        // A port that was free a moment ago.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let result = ClickHouseStore::connect(&format!("http://127.0.0.1:{port}")).await;
        match result {
            Err(e) => assert_eq!(e.backend_kind(), Some(BackendErrorKind::Connection), "{e}"),
            Ok(_) => panic!("a store opened on a port nobody listens on"),
        }
    });
}

#[test]
fn a_server_error_names_the_store_and_carries_the_servers_message() {
    run(async {
        let table = fresh_table();
        let store = ClickHouseStore::builder()
            .table(&table)
            .connect(&url())
            .await
            .expect("store opens");
        store
            .client()
            .query(&format!("DROP TABLE `{table}`"))
            .execute()
            .await
            .expect("the table is dropped behind the store's back");
        let append = store
            .append("s", vec![AppendInput::new(json!(1))], ExpectedVersion::Any)
            .await;
        match append {
            Err(e @ Error::Backend { .. }) => {
                let text = e.to_string();
                let Error::Backend { store: named, .. } = e else {
                    unreachable!()
                };
                assert_eq!(named.as_deref(), Some(table.as_str()));
                assert!(text.contains("Code: 60"), "the server's code: {text}");
            }
            other => panic!("expected a backend error, got {other:?}"),
        }
    });
}

#[test]
fn a_store_a_later_release_upgraded_is_refused_and_left_alone() {
    run(async {
        let table = fresh_table();
        let url = url();
        let open = || ClickHouseStore::builder().table(&table).connect(&url);
        let store = open().await.expect("store opens");
        store
            .append("s", vec![AppendInput::new(json!(1))], ExpectedVersion::Any)
            .await
            .expect("append");
        let later = ledger_clickhouse::SCHEMA_VERSION + 1;
        store
            .client()
            .query(&format!(
                "INSERT INTO `{table}_schema` (version) VALUES (?)"
            ))
            .bind(later)
            .execute()
            .await
            .expect("a later release records its schema");
        match open().await {
            Err(e) => assert!(e.to_string().contains(&format!("version {later}")), "{e}"),
            Ok(_) => panic!("a store with schema {later} opened"),
        }
        assert_eq!(
            store.count("s").await.unwrap(),
            1,
            "the entries are untouched"
        );
    });
}

#[test]
fn a_table_named_like_a_keyword_works() {
    run(async {
        // Valid under the core's rule, and a keyword where ClickHouse expects a table name.
        let store = ClickHouseStore::builder()
            .table("table")
            .connect(&url())
            .await
            .expect("store opens");
        let stream = fresh_table();
        store
            .append(
                &stream,
                vec![AppendInput::new(json!(1))],
                ExpectedVersion::NoStream,
            )
            .await
            .expect("append to table `table`");
        assert_eq!(store.count(&stream).await.unwrap(), 1);
    });
}
