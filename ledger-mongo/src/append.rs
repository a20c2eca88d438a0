//! Appends: decided in a transaction where the deployment has them, under a per-stream write
//! lease where it does not. Either way the unique indexes on `(stream, version)` and
//! `(stream, dedup_key)` have the last word, so two appenders can never both win.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, Ordering};

use mongodb::bson::doc;
use mongodb::error::ErrorKind;

use ledger_core::backend::append::{dedup_keys, plan_append};
use ledger_core::backend::feed::StoredChange;
use ledger_core::{
    AppendInput, AppendResult, BackendErrorKind, EntryId, Error, ExpectedVersion, Result,
};

use crate::backend::{IDS, MongoBackend};
use crate::doc::{self as stored, field};
use crate::error::{backend, is_duplicate_key};
use crate::lease::Lease;
use crate::txn::{Retry, Tx, on, raced, transact};

/// Appends a batch on its own: in a transaction retried on conflicts, or under the stream's
/// write lease.
pub async fn append(
    store: &MongoBackend,
    stream: &str,
    inputs: &[AppendInput],
    expected: ExpectedVersion,
) -> Result<AppendResult> {
    if store.transactions {
        // The first try lets the unique index find taken dedup keys; only after it refused
        // one does a try look them up first (a lookup per append costs a query that scans the
        // stream's keys on some servers).
        let look_up = AtomicBool::new(false);
        return transact!(store, |session| {
            attempt(store, &mut session, stream, inputs, expected, &look_up).await
        });
    }
    let mut lease = Lease::acquire(store, stream).await?;
    let mut retry = Retry::new();
    let result = loop {
        // Without a transaction a refused key would leave part of the batch written: look
        // keys up first, always.
        let look_up = AtomicBool::new(true);
        match attempt(store, &mut None, stream, inputs, expected, &look_up).await {
            Err(e) if retry.again(&e).await => continue,
            other => break other,
        }
    };
    lease.release().await;
    result
}

/// Appends inside the caller's transaction (no retries: a conflict is the caller's to handle).
pub async fn append_in(
    store: &MongoBackend,
    session: &mut mongodb::ClientSession,
    stream: &str,
    inputs: &[AppendInput],
    expected: ExpectedVersion,
) -> Result<AppendResult> {
    // A refused key would abort the caller's transaction: look keys up first.
    let look_up = AtomicBool::new(true);
    attempt(
        store,
        &mut Some(session),
        stream,
        inputs,
        expected,
        &look_up,
    )
    .await
}

/// One try: read the stream's version and taken keys, plan, write. A race lost to another
/// writer comes back as a conflict to try again ([`raced`]).
async fn attempt(
    store: &MongoBackend,
    session: &mut Tx<'_>,
    stream: &str,
    inputs: &[AppendInput],
    expected: ExpectedVersion,
    look_up: &AtomicBool,
) -> Result<AppendResult> {
    let current = version(store, session, stream).await?;
    let keys = dedup_keys(inputs);
    let mut taken = HashMap::new();
    if !keys.is_empty() && current > 0 && look_up.load(Ordering::Relaxed) {
        taken = taken_keys(store, session, stream, keys.clone()).await?;
    }
    let plan = match plan_append(stream, inputs, current, &taken, expected) {
        // A batch of duplicates only is an idempotent retry whatever `expected` says: only
        // the keys can tell.
        Err(Error::Conflict { .. }) if !keys.is_empty() && current > 0 && taken.is_empty() => {
            look_up.store(true, Ordering::Relaxed);
            taken = taken_keys(store, session, stream, keys).await?;
            plan_append(stream, inputs, current, &taken, expected)?
        }
        other => other?,
    };
    if plan.is_empty() {
        return Ok(plan.result(&[]));
    }
    let count = plan.rows.len() as u64;
    // Ids are taken after the version was read, outside the transaction (so writers of other
    // streams never conflict on the counter): a writer that wins a later version read the
    // stream after this one's write, and took its ids after these.
    let last = store.take(&mut None, IDS, count).await?;
    let ids: Vec<EntryId> = (last - count as i64 + 1..=last).map(EntryId::new).collect();
    let created_at = store.now();
    let docs = plan
        .rows
        .iter()
        .zip(&ids)
        .map(|(&(index, version), &id)| {
            stored::entry_doc(id, stream, version, &inputs[index], index, created_at)
        })
        .collect::<Result<Vec<_>>>()?;
    if session.is_none() {
        // Before the entries, so a crash in between never hides them from list_streams.
        let action = store
            .streams
            .update_one(doc! {"_id": stream}, doc! {"$max": {"last_id": last}});
        action.upsert(true).await.map_err(backend)?;
    }
    // The feed position first: writers of the feed conflict on its counter until the first
    // commits, and a loser learns it before sending its batch.
    let change = StoredChange::Append {
        ids: ids.clone(),
        version: plan.new_version,
    };
    store.record_change(session, stream, change).await?;
    if let Err(e) = on!(session, store.entries.insert_many(docs).ordered(true)) {
        if is_duplicate_key(&e) {
            look_up.store(true, Ordering::Relaxed);
        }
        return Err(insert_failed(e, session.is_some(), stream));
    }
    let new_version = plan.new_version as i64;
    match session.as_mut() {
        Some(session) => {
            // Conditioned on the version read: a writer that raced this one makes the update
            // miss, and the upsert then collides with the stream's document.
            let action = store
                .streams
                .update_one(
                    doc! {"_id": stream, "version": current as i64},
                    doc! {"$set": {"version": new_version}, "$max": {"last_id": last}},
                )
                .upsert(true)
                .session(&mut **session);
            action.await.map_err(|e| {
                if is_duplicate_key(&e) {
                    raced(format!("stream {stream:?} was appended to concurrently"))
                } else {
                    backend(e)
                }
            })?;
        }
        None => {
            let action = store.streams.update_one(
                doc! {"_id": stream},
                doc! {"$max": {"version": new_version}},
            );
            action.await.map_err(backend)?;
        }
    }
    Ok(plan.result(&ids))
}

/// Which of `keys` the stream's entries hold, and under which ids.
async fn taken_keys(
    store: &MongoBackend,
    session: &mut Tx<'_>,
    stream: &str,
    keys: Vec<&str>,
) -> Result<HashMap<String, EntryId>> {
    let found = store
        .find_all(
            session,
            &store.entries,
            doc! {field::STREAM: stream, field::DEDUP_KEY: {"$in": keys}},
            Some(doc! {field::DEDUP_KEY: 1}),
        )
        .await?;
    found
        .iter()
        .map(|d| {
            let id = EntryId::new(stored::int(d, field::ID)?);
            match d.get_str(field::DEDUP_KEY) {
                Ok(key) => Ok((key.to_owned(), id)),
                Err(_) => Err(Error::corrupt(format_args!("entry {id}: bad dedup_key"))),
            }
        })
        .collect()
}

/// The stream's version, read in `session`. Without transactions the highest stored version
/// counts too: an append that died between writing its entries and the stream's document
/// must not make the next one collide forever.
async fn version(store: &MongoBackend, session: &mut Tx<'_>, stream: &str) -> Result<u64> {
    let noted = match store.stream_doc(session, stream).await? {
        Some(doc) => stored::int_or_zero(&doc, "version")?,
        None => 0,
    };
    if session.is_some() {
        return Ok(noted as u64);
    }
    let highest = store
        .entries
        .find_one(doc! {field::STREAM: stream})
        .sort(doc! {field::VERSION: -1})
        .projection(doc! {field::VERSION: 1})
        .await
        .map_err(backend)?;
    let highest = match highest {
        Some(doc) => stored::int(&doc, field::VERSION)?,
        None => 0,
    };
    Ok(noted.max(highest) as u64)
}

/// What a failed insert of a batch means.
fn insert_failed(e: mongodb::error::Error, in_transaction: bool, stream: &str) -> Error {
    let written = match e.kind.as_ref() {
        // Ordered: the documents before the first one refused were written.
        ErrorKind::InsertMany(failure) => failure
            .write_errors
            .as_ref()
            .and_then(|errors| errors.iter().map(|w| w.index).min())
            .unwrap_or(0),
        _ => 0,
    };
    if !in_transaction && written > 0 {
        // Only a writer that outlived its lease can meet this (see Lease).
        return Error::backend(
            BackendErrorKind::Constraint,
            format!(
                "the first {written} entries of the batch for stream {stream:?} were written, \
                 the rest collided with a concurrent append: {e}"
            ),
        );
    }
    if is_duplicate_key(&e) {
        raced(format!(
            "a version or dedup key of stream {stream:?} was taken concurrently"
        ))
    } else {
        crate::error::refused(e, || format!("the batch for stream {stream:?}"))
    }
}
