//! State every store keeps besides its data: whether it is closed, and its commit signal.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{Error, Result};

/// The open/closed flag and the commit signal behind [`crate::Store::commits`], for backends.
#[derive(Debug)]
pub struct Lifecycle {
    closed: AtomicBool,
    commits: tokio::sync::watch::Sender<u64>,
}

impl Default for Lifecycle {
    fn default() -> Self {
        Lifecycle {
            closed: AtomicBool::new(false),
            commits: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl Lifecycle {
    /// An open store's state.
    pub fn new() -> Self {
        Self::default()
    }

    /// [`Error::StoreClosed`] once [`Lifecycle::close`] was called.
    pub fn check_open(&self) -> Result<()> {
        if self.closed.load(Ordering::Acquire) {
            Err(Error::StoreClosed)
        } else {
            Ok(())
        }
    }

    /// Marks the store closed.
    pub fn close(&self) {
        self.closed.store(true, Ordering::Release);
    }

    /// Wakes subscribers: something may have been committed.
    pub fn committed(&self) {
        self.commits.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver for [`crate::Store::commits`].
    pub fn commits(&self) -> tokio::sync::watch::Receiver<u64> {
        self.commits.subscribe()
    }
}
