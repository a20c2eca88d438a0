//! Replays on ClickHouse itself: rows written twice for one entry read as one, with background
//! merges stopped, so no merge can have removed the copy. This is what makes the store a safe
//! bridge sink whatever the order of a crash and a cursor save.

use ledger_clickhouse::ClickHouseStore;
use ledger_core::testkit::server::server_url;
use ledger_core::testkit::{fresh_table, run};
use ledger_core::{AppendInput, ExpectedVersion, ListOptions, ReadOptions};
use serde_json::json;

fn urls() -> [String; 2] {
    ["LEDGER_CLICKHOUSE_URL", "LEDGER_CLICKHOUSE_LEGACY_URL"]
        .map(|var| server_url(var, env!("CARGO_MANIFEST_DIR")))
}

#[test]
fn every_row_written_twice_reads_once_before_any_merge() {
    for url in urls() {
        run(async {
            let table = fresh_table();
            let store = ClickHouseStore::builder()
                .table(&table)
                .connect(&url)
                .await
                .expect("store opens");
            let client = store.client();
            client
                .query(&format!("SYSTEM STOP MERGES `{table}`"))
                .execute()
                .await
                .expect("merges stop");
            let inputs = (1..=3)
                .map(|n| AppendInput::new(json!({"n": n, "text": "needle"})).tag("t"))
                .collect();
            store
                .append("s", inputs, ExpectedVersion::NoStream)
                .await
                .expect("append");
            let id = store.read("s", &ReadOptions::new()).await.unwrap()[1].id;
            store
                .set_tags("s", id, ["u".to_owned()].into())
                .await
                .expect("set_tags");
            // A replay of everything: each row again, as a part of its own.
            client
                .query(&format!("INSERT INTO `{table}` SELECT * FROM `{table}`"))
                .execute()
                .await
                .expect("rows copied");
            // Engines that optimize inserts collapse an entry's revisions within the copied
            // block, so count copies per entry rather than rows.
            let fewest: u64 = client
                .query(&format!(
                    "SELECT min(c) FROM (SELECT count() AS c FROM `{table}` GROUP BY id)"
                ))
                .fetch_one()
                .await
                .unwrap();
            assert!(
                fewest >= 2,
                "{url}: every entry is stored twice (fewest rows: {fewest})"
            );
            let entries = store.read("s", &ReadOptions::new()).await.unwrap();
            let versions: Vec<u64> = entries.iter().map(|e| e.version).collect();
            assert_eq!(versions, [1, 2, 3], "{url}: each entry read once");
            assert_eq!(
                entries[1].tags,
                ["u".to_owned()].into(),
                "{url}: the revision wins"
            );
            assert_eq!(store.count("s").await.unwrap(), 3, "{url}: count");
            assert_eq!(store.stat("s").await.unwrap().count, 3, "{url}: stat");
            let tagged = ReadOptions::new().tag("t");
            assert_eq!(
                store.read("s", &tagged).await.unwrap().len(),
                2,
                "{url}: a filter sees only the latest revision"
            );
            let found = store.search(Some("s"), "NEEDLE", &ReadOptions::new()).await;
            assert_eq!(found.unwrap().len(), 3, "{url}: search");
            assert_eq!(
                store.list_streams(&ListOptions::new()).await.unwrap(),
                ["s"],
                "{url}: list"
            );
            let next = store
                .append(
                    "s",
                    vec![AppendInput::new(json!(4))],
                    ExpectedVersion::Exact(3),
                )
                .await
                .expect("the stream is at version 3");
            assert_eq!(next.version, 4, "{url}: next version");
        });
    }
}
