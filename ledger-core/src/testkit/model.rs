//! Model-based property test: random operation sequences against a backend and `MemoryStore`.

use super::StoreFactory;

/// Runs the model test (placeholder while being written).
pub fn check<F: StoreFactory>(_factory: &F) {}
