//! The commit signal behind [`crate::Store::commits`], for backends.

/// Wakes subscriptions: a backend calls [`CommitSignal::committed`] after each commit it makes
/// (or learns of, as from PostgreSQL's NOTIFY), and hands out receivers from
/// [`CommitSignal::subscribe`] in [`crate::backend::Backend::commits`].
#[derive(Debug)]
pub struct CommitSignal {
    sender: tokio::sync::watch::Sender<u64>,
}

impl Default for CommitSignal {
    fn default() -> Self {
        CommitSignal {
            sender: tokio::sync::watch::Sender::new(0),
        }
    }
}

impl CommitSignal {
    /// A signal nobody has raised yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Wakes subscribers: something may have been committed.
    pub fn committed(&self) {
        self.sender.send_modify(|n| *n = n.wrapping_add(1));
    }

    /// A receiver that changes after each later commit.
    pub fn subscribe(&self) -> tokio::sync::watch::Receiver<u64> {
        self.sender.subscribe()
    }
}
