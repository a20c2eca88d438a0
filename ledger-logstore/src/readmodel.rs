//! The query-optimised read model: tables the searches need, maintained from the ledger's change
//! feed. Each batch of feed records is applied in one transaction together with the checkpoint,
//! so after a crash the model resumes exactly where its last commit left it.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use ledger_core::{FeedRecord, Mutation};
use ledger_readmodel::TableCheckpoint;
use serde::{Deserialize, Serialize};

use crate::aggregate;
use crate::db::{Cell, Db, Kind, Param, Sql, Tx, schema};
use crate::error::Result;
use crate::filter::micros;
use crate::model::{Log, LogUpdate};

/// What the log store writes to its ledger stream: every accepted change, in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
// Externally tagged: deserializes without buffering (an internal tag would make serde buffer
// every event before it knows the variant).
#[serde(rename_all = "snake_case")]
pub(crate) enum LogEvent {
    /// A new log.
    Create { log: Box<Log> },
    /// Changes to a log.
    Update { id: String, changes: LogUpdate },
    /// Logs deleted by id.
    Delete { ids: Vec<String> },
    /// `processing` logs accepted before `before` deleted (abandoned requests).
    Flush { before: DateTime<Utc> },
}

/// The checkpoint's name in `logstore_checkpoint`.
const CHECKPOINT: &str = "read_model";

/// The most bytes of a log's text a content search looks in.
const CONTENT_SUMMARY_BYTES: usize = 32 * 1024;

/// Logs per multi-row insert (well under both databases' limits on bound values).
const INSERT_ROWS: usize = 400;

/// Creates the read model's tables if missing.
pub(crate) async fn migrate(db: &Db) -> Result<()> {
    for statement in schema(db.dialect()) {
        db.execute(&Sql::new(statement)).await?;
    }
    checkpoint(db)?.migrate().await?;
    Ok(())
}

/// The read model's checkpoint, for the [`ledger_core::FeedConsumer`] that feeds it; it moves
/// inside [`apply`]'s transaction.
pub(crate) fn checkpoint(db: &Db) -> Result<TableCheckpoint> {
    Ok(TableCheckpoint::new(
        db.clone(),
        "logstore_checkpoint",
        CHECKPOINT,
    )?)
}

/// Applies the log events in `records` (the ledger stream's appends) and moves the checkpoint
/// past them, in one transaction. Records at or before the checkpoint (another process applied
/// them first) are skipped, so each is applied exactly once.
pub(crate) async fn apply(db: &Db, records: Vec<FeedRecord>) -> Result<()> {
    let Some(last) = records.last().map(|r| r.position) else {
        return Ok(());
    };
    let checkpoint = checkpoint(db)?;
    let mut tx = db.begin().await?;
    let done = checkpoint.lock(&mut tx).await?;
    if last <= done {
        return Ok(());
    }
    let mut creates: Vec<(Log, i64)> = Vec::new();
    for record in records.into_iter().filter(|r| r.position > done) {
        let Mutation::Append { entries, .. } = record.mutation else {
            continue;
        };
        for entry in entries {
            let event: LogEvent = match serde_json::from_value(entry.payload) {
                Ok(event) => event,
                Err(e) => {
                    tracing::error!(entry = %entry.id, error = %e, "not a log event; skipped");
                    continue;
                }
            };
            match event {
                LogEvent::Create { log } => creates.push((*log, entry.id.get())),
                other => {
                    // Keep the order: earlier creates land before a change that may touch them.
                    insert_logs(&mut tx, std::mem::take(&mut creates)).await?;
                    apply_change(&mut tx, other).await?;
                }
            }
        }
    }
    insert_logs(&mut tx, creates).await?;
    checkpoint.save_in(&mut tx, last).await?;
    Ok(tx.commit().await?)
}

/// The columns of `logstore_logs`, in insert order.
const COLUMNS: &str = "id, parent_request_id, ts, object_type, provider, model, status, \
    selected_key_id, selected_key_name, virtual_key_id, virtual_key_name, routing_rule_id, \
    routing_rule_name, routing_engines, latency, cost, prompt_tokens, completion_tokens, \
    total_tokens, cached_read_tokens, stream, created_at, entry_id";

fn row(log: &Log, entry_id: i64) -> Vec<Param> {
    let [prompt, completion, total, cached] = log.tokens();
    let engines = (!log.routing_engines_used.is_empty())
        .then(|| format!(",{},", log.routing_engines_used.join(",")));
    vec![
        log.id.clone().into(),
        log.parent_request_id.clone().into(),
        micros(log.timestamp).into(),
        log.object.clone().into(),
        log.provider.clone().into(),
        log.model.clone().into(),
        log.status.as_str().into(),
        log.selected_key_id.clone().into(),
        log.selected_key_name.clone().into(),
        log.virtual_key_id.clone().into(),
        log.virtual_key_name.clone().into(),
        log.routing_rule_id.clone().into(),
        log.routing_rule_name.clone().into(),
        engines.into(),
        log.latency.into(),
        log.cost.into(),
        prompt.into(),
        completion.into(),
        total.into(),
        cached.into(),
        i64::from(log.stream).into(),
        log.created_at.map_or(0, micros).into(),
        entry_id.into(),
    ]
}

/// Metadata values as filters compare them: strings as they are, anything else as JSON text.
fn metadata_values(log: &Log) -> impl Iterator<Item = (&str, String)> {
    log.metadata.iter().map(|(k, v)| {
        let text = match v {
            serde_json::Value::String(s) => s.clone(),
            other => other.to_string(),
        };
        (k.as_str(), text)
    })
}

async fn insert_logs(tx: &mut Tx, mut logs: Vec<(Log, i64)>) -> Result<()> {
    if logs.is_empty() {
        return Ok(());
    }
    for chunk in logs.chunks_mut(INSERT_ROWS) {
        let mut sql = Sql::new(format!("INSERT INTO logstore_logs ({COLUMNS}) VALUES "));
        for (i, (log, entry_id)) in chunk.iter_mut().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind_list(row(log, *entry_id));
        }
        sql.push(" ON CONFLICT (id) DO NOTHING RETURNING id");
        let mut bodies =
            Sql::new("INSERT INTO logstore_bodies (id, content_summary, summary, body) VALUES ");
        for (i, (log, _)) in chunk.iter_mut().enumerate() {
            if i > 0 {
                bodies.push(", ");
            }
            bodies.bind_list([
                Param::from(log.id.as_str()),
                log.content_summary(CONTENT_SUMMARY_BYTES).into(),
                log.as_summary(ledger_sql::json_text).into(),
                ledger_sql::json_text(log).into(),
            ]);
        }
        bodies.push(" ON CONFLICT (id) DO NOTHING");
        tx.execute(&bodies).await?;
        let inserted = tx.fetch_texts(&sql).await?;
        // Only the logs inserted now count (an id already present was counted before).
        let inserted: std::collections::BTreeSet<&str> =
            inserted.iter().map(String::as_str).collect();
        let counted = chunk
            .iter()
            .map(|(log, _)| log)
            .filter(|l| inserted.contains(l.id.as_str()));
        aggregate::count_logs(tx, counted, 1).await?;
        let metadata: Vec<(&str, &str, String)> = chunk
            .iter()
            .flat_map(|(log, _)| metadata_values(log).map(|(k, v)| (log.id.as_str(), k, v)))
            .collect();
        for rows in metadata.chunks(INSERT_ROWS * 2) {
            let mut sql = Sql::new("INSERT INTO logstore_metadata (log_id, key, value) VALUES ");
            for (i, (id, key, value)) in rows.iter().enumerate() {
                if i > 0 {
                    sql.push(", ");
                }
                sql.bind_list([Param::from(*id), (*key).into(), value.clone().into()]);
            }
            sql.push(" ON CONFLICT (log_id, key) DO NOTHING");
            tx.execute(&sql).await?;
        }
    }
    record_dimensions(tx, logs.iter().map(|(log, _)| log)).await
}

/// Remembers the values filter dropdowns offer (models, keys, …) with when each was last
/// seen, so filter data reads a small table instead of scanning logs.
async fn record_dimensions<'a>(tx: &mut Tx, logs: impl Iterator<Item = &'a Log>) -> Result<()> {
    let mut seen: BTreeMap<(String, String), (Option<String>, i64)> = BTreeMap::new();
    let mut note = |kind: &str, value: &str, name: Option<&String>, at: i64| {
        let slot = seen
            .entry((kind.to_owned(), value.to_owned()))
            .or_insert((None, at));
        slot.1 = slot.1.max(at);
        if name.is_some() {
            slot.0 = name.cloned();
        }
    };
    for log in logs {
        let at = micros(log.timestamp);
        note("model", &log.model, None, at);
        note("provider", &log.provider, None, at);
        let keyed = [
            ("selected_key", &log.selected_key_id, &log.selected_key_name),
            ("virtual_key", &log.virtual_key_id, &log.virtual_key_name),
            ("routing_rule", &log.routing_rule_id, &log.routing_rule_name),
        ];
        for (kind, id, name) in keyed {
            if let Some(id) = id {
                note(kind, id, name.as_ref(), at);
            }
        }
        for engine in &log.routing_engines_used {
            note("routing_engine", engine, None, at);
        }
        for (key, value) in metadata_values(log) {
            note(&format!("metadata:{key}"), &value, None, at);
        }
    }
    let rows: Vec<_> = seen.into_iter().collect();
    for chunk in rows.chunks(INSERT_ROWS) {
        let mut sql =
            Sql::new("INSERT INTO logstore_dimensions (kind, value, name, last_seen) VALUES ");
        for (i, ((kind, value), (name, at))) in chunk.iter().enumerate() {
            if i > 0 {
                sql.push(", ");
            }
            sql.bind_list([
                Param::from(kind.as_str()),
                value.as_str().into(),
                name.clone().into(),
                (*at).into(),
            ]);
        }
        sql.push(
            " ON CONFLICT (kind, value) DO UPDATE SET \
             name = COALESCE(excluded.name, logstore_dimensions.name), \
             last_seen = CASE WHEN excluded.last_seen > logstore_dimensions.last_seen \
             THEN excluded.last_seen ELSE logstore_dimensions.last_seen END",
        );
        tx.execute(&sql).await?;
    }
    Ok(())
}

async fn apply_change(tx: &mut Tx, event: LogEvent) -> Result<()> {
    match event {
        LogEvent::Create { .. } => unreachable!("creates are batched by apply"),
        LogEvent::Update { id, changes } => {
            let mut find = Sql::new(
                "SELECT b.body, l.entry_id FROM logstore_logs l \
                 JOIN logstore_bodies b ON b.id = l.id WHERE l.id = ",
            );
            find.bind(id.as_str());
            let Some(found) = tx.fetch(&find, &[Kind::Text, Kind::Int]).await?.pop() else {
                // Deleted (or expired) before the change arrived: nothing to change.
                return Ok(());
            };
            let mut cells = found.into_iter();
            let body = cells.next().and_then(Cell::text).unwrap_or_default();
            let entry_id = cells.next().map_or(0, |c| c.int());
            let current = decode(&body)?;
            let updated = match changes.apply_to(&current) {
                Ok(updated) => updated,
                Err(e) => {
                    tracing::error!(log = %id, error = %e, "a change that no longer applies; skipped");
                    return Ok(());
                }
            };
            delete_ids(tx, &[id]).await?;
            insert_logs(tx, vec![(updated, entry_id)]).await
        }
        LogEvent::Delete { ids } => delete_ids(tx, &ids).await.map(drop),
        LogEvent::Flush { before } => {
            let mut select = Sql::new(
                "SELECT id FROM logstore_logs WHERE status = 'processing' AND created_at < ",
            );
            select.bind(micros(before));
            let ids = tx.fetch_texts(&select).await?;
            delete_ids(tx, &ids).await.map(drop)
        }
    }
}

/// A stored log from its `body`.
pub(crate) fn decode(body: &str) -> Result<Log> {
    serde_json::from_str(body).map_err(|e| {
        crate::error::Error::Store(ledger_core::Error::backend(
            ledger_core::BackendErrorKind::Corrupt,
            std::io::Error::other(format!("a stored log does not decode: {e}")),
        ))
    })
}

/// Deletes logs (and their metadata) by id; returns how many logs were deleted.
pub(crate) async fn delete_ids(tx: &mut Tx, ids: &[String]) -> Result<u64> {
    let mut deleted = 0;
    for chunk in ids.chunks(INSERT_ROWS) {
        let mut bodies = Sql::new("SELECT body FROM logstore_bodies WHERE id IN ");
        bodies.bind_list(chunk.iter().map(String::as_str));
        let logs = tx
            .fetch_texts(&bodies)
            .await?
            .iter()
            .map(|body| decode(body))
            .collect::<Result<Vec<Log>>>()?;
        aggregate::count_logs(tx, &logs, -1).await?;
        let mut metadata = Sql::new("DELETE FROM logstore_metadata WHERE log_id IN ");
        metadata.bind_list(chunk.iter().map(String::as_str));
        tx.execute(&metadata).await?;
        let mut bodies = Sql::new("DELETE FROM logstore_bodies WHERE id IN ");
        bodies.bind_list(chunk.iter().map(String::as_str));
        tx.execute(&bodies).await?;
        let mut logs = Sql::new("DELETE FROM logstore_logs WHERE id IN ");
        logs.bind_list(chunk.iter().map(String::as_str));
        deleted += tx.execute(&logs).await?;
    }
    Ok(deleted)
}

/// How many of `ids` are logs.
pub(crate) async fn existing(db: &Db, ids: &[String]) -> Result<u64> {
    let mut n = 0;
    for chunk in ids.chunks(INSERT_ROWS) {
        let mut sql = Sql::new("SELECT COUNT(*) FROM logstore_logs WHERE id IN ");
        sql.bind_list(chunk.iter().map(String::as_str));
        n += db.fetch(&sql, &[Kind::Int]).await?[0][0].int() as u64;
    }
    Ok(n)
}

/// The oldest ledger entry a live log was created by.
pub(crate) async fn oldest_live_entry(tx: &mut Tx) -> Result<Option<i64>> {
    let sql = Sql::new("SELECT MIN(entry_id) FROM logstore_logs");
    Ok(tx
        .fetch(&sql, &[Kind::Int])
        .await?
        .pop()
        .and_then(|mut r| r.pop())
        .and_then(|c| match c {
            Cell::Int(v) => v,
            _ => None,
        }))
}

/// Whether any `processing` log was accepted before `before`.
pub(crate) async fn stale_processing(tx: &mut Tx, before: DateTime<Utc>) -> Result<bool> {
    let mut sql =
        Sql::new("SELECT id FROM logstore_logs WHERE status = 'processing' AND created_at < ");
    sql.bind(micros(before)).push(" LIMIT 1");
    Ok(!tx.fetch_texts(&sql).await?.is_empty())
}

/// The ids and ledger entries of up to `limit` logs accepted before `cutoff`.
pub(crate) async fn expired(
    tx: &mut Tx,
    cutoff: DateTime<Utc>,
    limit: u32,
) -> Result<Vec<(String, i64)>> {
    let mut sql = Sql::new("SELECT id, entry_id FROM logstore_logs WHERE created_at < ");
    sql.bind(micros(cutoff))
        .push(" ORDER BY created_at LIMIT ")
        .bind(i64::from(limit));
    Ok(tx
        .fetch(&sql, &[Kind::Text, Kind::Int])
        .await?
        .into_iter()
        .map(|r| {
            let mut cells = r.into_iter();
            let id = cells.next().and_then(Cell::text).unwrap_or_default();
            (id, cells.next().map_or(0, |c| c.int()))
        })
        .collect())
}
