//! Running a mutation: inside a multi-document transaction where the deployment has them,
//! retried whole when MongoDB aborts it for a write conflict; directly where it has none.

use std::time::Duration;

use mongodb::ClientSession;
use mongodb::error::UNKNOWN_TRANSACTION_COMMIT_RESULT;
use tokio::time::Instant;

use ledger_core::{BackendErrorKind, Error, Result};

use crate::error::backend;

/// The transaction a step runs in: `None` where the deployment has none.
pub type Tx<'a> = Option<&'a mut ClientSession>;

/// Runs `$action` (a driver action) in `$session` (a `&mut Tx`) if there is one.
macro_rules! on {
    ($session:expr, $action:expr) => {
        match ($session).as_mut() {
            Some(session) => $action.session(&mut **session).await,
            None => $action.await,
        }
    };
}

/// Runs `$body` (a `Result`) with `$session` bound to a transaction of `$backend` (or `None`
/// without transactions), commits it, and runs it again while MongoDB aborts it as a conflict.
macro_rules! transact {
    ($backend:expr, |$session:ident| $body:expr) => {{
        let mut retry = $crate::txn::Retry::new();
        loop {
            let mut owned = $backend.begin().await?;
            let result = {
                #[allow(unused_mut)]
                let mut $session: $crate::txn::Tx<'_> = owned.as_mut();
                async { $body }.await
            };
            match $crate::txn::finish(owned, result).await {
                Ok(value) => break Ok(value),
                Err(e) if retry.again(&e).await => continue,
                Err(e) => break Err(e),
            }
        }
    }};
}

pub(crate) use {on, transact};

/// How long a mutation keeps retrying conflicts before it reports one.
const RETRY_FOR: Duration = Duration::from_secs(60);

/// Paces the retries of one mutation.
pub struct Retry {
    deadline: Instant,
    attempt: u32,
}

impl Default for Retry {
    fn default() -> Self {
        Self::new()
    }
}

impl Retry {
    pub fn new() -> Self {
        Retry {
            deadline: Instant::now() + RETRY_FOR,
            attempt: 0,
        }
    }

    /// Waits a little and says `true` if `e` is a conflict worth running the mutation again
    /// for; `false` once the time for retries is up.
    pub async fn again(&mut self, e: &Error) -> bool {
        if e.backend_kind() != Some(BackendErrorKind::Serialization)
            || Instant::now() > self.deadline
        {
            return false;
        }
        self.attempt += 1;
        // Up to 1 ms at first, growing to 20 ms: conflicting writers spread out instead of
        // colliding again in step.
        let cap_us = (1000u64 << self.attempt.min(5)).min(20_000);
        tokio::time::sleep(Duration::from_micros(fastrand::u64(100..=cap_us))).await;
        true
    }
}

/// A transaction on `client`.
pub async fn begin(client: &mongodb::Client) -> Result<ClientSession> {
    let mut session = client.start_session().await.map_err(backend)?;
    session.start_transaction().await.map_err(backend)?;
    Ok(session)
}

/// Commits `session` if `result` is `Ok`, aborts it otherwise.
pub async fn finish<T>(session: Option<ClientSession>, result: Result<T>) -> Result<T> {
    let Some(mut session) = session else {
        return result;
    };
    match result {
        Ok(value) => {
            commit(&mut session).await?;
            Ok(value)
        }
        Err(e) => {
            // An abort that fails leaves the transaction to the server's timeout; the error
            // that made us abort is the one to report.
            let _ = session.abort_transaction().await;
            Err(e)
        }
    }
}

/// Commits, retrying a commit whose outcome the driver could not learn (committing twice is
/// safe: MongoDB answers a repeated commit with the first one's outcome).
pub async fn commit(session: &mut ClientSession) -> Result<()> {
    let mut tries = 0;
    loop {
        match session.commit_transaction().await {
            Ok(()) => return Ok(()),
            Err(e) if e.contains_label(UNKNOWN_TRANSACTION_COMMIT_RESULT) && tries < 3 => {
                tries += 1;
            }
            Err(e) => return Err(backend(e)),
        }
    }
}

/// The conflict an append reports to run again: a unique index refused its write because a
/// concurrent writer took the version or dedup key first.
pub fn raced(what: impl Into<String>) -> Error {
    Error::backend(BackendErrorKind::Serialization, what.into())
}
