//! One public async function per behaviour; each panics with a message when the store breaks it.
//!
//! Every function opens its own store on a fresh table ([`StoreFactory::fresh`]) and uses only the
//! public API. Ids are opaque: every id a test uses comes from an append. Behaviours gated by a
//! [`Capabilities`] flag are tested fully when the flag is set; when it is not, the test checks
//! that the operation answers [`Error::NotSupported`] (or that the `as_*` accessor is `None`).
//!
//! One module per behaviour area; every function is re-exported here, where
//! [`conformance_tests!`](crate::conformance_tests) finds it.

/// Asserts that `$result` is an `Err` matching `$pattern`; the rest is a `format!` context.
macro_rules! assert_err {
    ($result:expr, $pattern:pat if $guard:expr, $($context:tt)+) => {
        match $result {
            Ok(_) => panic!(
                "{}: expected Err({} if {}), got Ok",
                format_args!($($context)+),
                stringify!($pattern),
                stringify!($guard)
            ),
            Err(error) => assert!(
                matches!(error, $pattern if $guard),
                "{}: expected Err({} if {}), got Err({error:?})",
                format_args!($($context)+),
                stringify!($pattern),
                stringify!($guard)
            ),
        }
    };
    ($result:expr, $pattern:pat, $($context:tt)+) => {
        match $result {
            Ok(_) => panic!(
                "{}: expected Err({}), got Ok",
                format_args!($($context)+),
                stringify!($pattern)
            ),
            Err(error) => assert!(
                matches!(error, $pattern),
                "{}: expected Err({}), got Err({error:?})",
                format_args!($($context)+),
                stringify!($pattern)
            ),
        }
    };
}

mod support;

mod append;
mod close;
mod concurrency;
mod cursors_and_health;
mod dedup;
mod expected_version;
mod feed;
mod filter;
mod gap_safety;
mod list;
mod payload;
mod read;
mod rename;
mod search;
mod subscribe;
mod tags_and_annotations;
mod trim;
mod validation;

pub use append::*;
pub use close::*;
pub use concurrency::*;
pub use cursors_and_health::*;
pub use dedup::*;
pub use expected_version::*;
pub use feed::*;
pub use filter::*;
pub use gap_safety::*;
pub use list::*;
pub use payload::*;
pub use read::*;
pub use rename::*;
pub use search::*;
pub use subscribe::*;
pub use tags_and_annotations::*;
pub use trim::*;
pub use validation::*;
