//! One public async function per behaviour; each panics with a message when the store breaks it.

use super::StoreFactory;

/// Placeholder (the suite is being written).
pub async fn append_and_read<F: StoreFactory>(factory: &F) {
    let _ = factory.fresh().await;
}
