//! Schema evolution: upcasters turn old payloads into the current schema on read.
//!
//! Upcasting works on the decoded JSON value, never on stored bytes, and runs only for entries
//! older than the stream's schema version, one step at a time: v1→v2→…→current.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// One step of schema evolution: from `source_version()` to `source_version() + 1`.
pub trait Upcaster: Send + Sync {
    /// The schema version this step reads.
    fn source_version(&self) -> u32;
    /// The payload in the next schema version.
    fn upcast(&self, payload: Value) -> Result<Value>;
}

/// An upcaster from a closure; see [`upcaster`].
pub struct UpcastFn<F> {
    from: u32,
    f: F,
}

/// Makes an upcaster for the step `from` → `from + 1` from a closure.
///
/// ```
/// use ledger_core::{upcaster, Upcaster};
/// let step = upcaster(1, |mut v| {
///     v["currency"] = "EUR".into();
///     Ok(v)
/// });
/// assert_eq!(step.upcast(serde_json::json!({}))?["currency"], "EUR");
/// # Ok::<(), ledger_core::Error>(())
/// ```
pub fn upcaster<F>(from: u32, f: F) -> UpcastFn<F>
where
    F: Fn(Value) -> Result<Value> + Send + Sync,
{
    UpcastFn { from, f }
}

impl<F> Upcaster for UpcastFn<F>
where
    F: Fn(Value) -> Result<Value> + Send + Sync,
{
    fn source_version(&self) -> u32 {
        self.from
    }

    fn upcast(&self, payload: Value) -> Result<Value> {
        (self.f)(payload)
    }
}

/// The steps a stream knows, by the version they start from.
#[derive(Clone, Default)]
pub struct UpcasterChain {
    steps: BTreeMap<u32, Arc<dyn Upcaster>>,
}

impl fmt::Debug for UpcasterChain {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("UpcasterChain")
            .field("source_versions", &self.steps.keys().collect::<Vec<_>>())
            .finish()
    }
}

impl UpcasterChain {
    /// Adds a step; a later step for the same version replaces the earlier one.
    pub fn push(&mut self, step: Arc<dyn Upcaster>) {
        self.steps.insert(step.source_version(), step);
    }

    /// Brings `payload` from schema version `from` to `to`. Payloads at or above `to` are
    /// returned unchanged (a newer writer's entries are not downcast).
    pub fn apply(&self, mut payload: Value, from: u32, to: u32) -> Result<Value> {
        for version in from..to {
            let step = self.steps.get(&version).ok_or(Error::NoUpcaster {
                from: version,
                to: version + 1,
            })?;
            payload = step.upcast(payload)?;
        }
        Ok(payload)
    }
}

#[derive(Debug, Clone)]
enum FieldOp {
    Rename { from: String, to: String },
    AddDefault { field: String, value: Value },
    Remove { field: String },
    MoveInto { field: String, object: String },
    MoveOutOf { object: String, field: String },
}

/// A declarative upcaster for object payloads: rename, add a default, remove, and move a field
/// into or out of a nested object. Operations run in the order they were added. Values are moved,
/// never re-parsed, so numbers (including integers above 2^53) stay exact.
///
/// ```
/// use ledger_core::{FieldMapper, Upcaster};
/// use serde_json::json;
/// let v1_to_v2 = FieldMapper::new(1)
///     .rename("name", "full_name")
///     .add_default("currency", json!("EUR"))
///     .move_into("street", "address");
/// let v2 = v1_to_v2.upcast(json!({"name": "Ada", "street": "Main St", "id": 9007199254740993u64}))?;
/// assert_eq!(v2, json!({"full_name": "Ada", "currency": "EUR",
///                       "address": {"street": "Main St"}, "id": 9007199254740993u64}));
/// # Ok::<(), ledger_core::Error>(())
/// ```
#[derive(Debug, Clone)]
pub struct FieldMapper {
    from: u32,
    ops: Vec<FieldOp>,
}

impl FieldMapper {
    /// A mapper for the step `from` → `from + 1`.
    pub fn new(from: u32) -> Self {
        FieldMapper {
            from,
            ops: Vec::new(),
        }
    }

    /// Renames a top-level field (no-op if absent; replaces an existing `to`).
    pub fn rename(mut self, from: impl Into<String>, to: impl Into<String>) -> Self {
        self.ops.push(FieldOp::Rename {
            from: from.into(),
            to: to.into(),
        });
        self
    }

    /// Sets a top-level field to `value` if it is absent.
    pub fn add_default(mut self, field: impl Into<String>, value: Value) -> Self {
        self.ops.push(FieldOp::AddDefault {
            field: field.into(),
            value,
        });
        self
    }

    /// Removes a top-level field.
    pub fn remove(mut self, field: impl Into<String>) -> Self {
        self.ops.push(FieldOp::Remove {
            field: field.into(),
        });
        self
    }

    /// Moves a top-level field into the object `object` (created if absent).
    pub fn move_into(mut self, field: impl Into<String>, object: impl Into<String>) -> Self {
        self.ops.push(FieldOp::MoveInto {
            field: field.into(),
            object: object.into(),
        });
        self
    }

    /// Moves `field` out of the object `object` to the top level.
    pub fn move_out_of(mut self, object: impl Into<String>, field: impl Into<String>) -> Self {
        self.ops.push(FieldOp::MoveOutOf {
            object: object.into(),
            field: field.into(),
        });
        self
    }

    fn fail(&self, reason: String) -> Error {
        Error::Upcast {
            from: self.from,
            reason,
        }
    }

    fn apply(&self, op: &FieldOp, map: &mut Map<String, Value>) -> Result<()> {
        match op {
            FieldOp::Rename { from, to } => {
                if let Some(v) = map.remove(from) {
                    map.insert(to.clone(), v);
                }
            }
            FieldOp::AddDefault { field, value } => {
                map.entry(field.clone()).or_insert_with(|| value.clone());
            }
            FieldOp::Remove { field } => {
                map.remove(field);
            }
            FieldOp::MoveInto { field, object } => {
                if let Some(v) = map.remove(field) {
                    let target = map
                        .entry(object.clone())
                        .or_insert_with(|| Value::Object(Map::new()));
                    let Value::Object(target) = target else {
                        return Err(self.fail(format!("field {object:?} is not an object")));
                    };
                    target.insert(field.clone(), v);
                }
            }
            FieldOp::MoveOutOf { object, field } => {
                let moved = match map.get_mut(object) {
                    None => None,
                    Some(Value::Object(inner)) => inner.remove(field),
                    Some(_) => {
                        return Err(self.fail(format!("field {object:?} is not an object")));
                    }
                };
                if let Some(v) = moved {
                    map.insert(field.clone(), v);
                }
            }
        }
        Ok(())
    }
}

impl Upcaster for FieldMapper {
    fn source_version(&self) -> u32 {
        self.from
    }

    fn upcast(&self, payload: Value) -> Result<Value> {
        let mut map = match payload {
            Value::Object(map) => map,
            Value::Null => return Ok(Value::Null),
            other => {
                return Err(self.fail(format!(
                    "payload is not a JSON object: {}",
                    crate::json_kind(&other)
                )));
            }
        };
        for op in &self.ops {
            self.apply(op, &mut map)?;
        }
        Ok(Value::Object(map))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn chain_runs_each_step_in_order() {
        let mut chain = UpcasterChain::default();
        chain.push(Arc::new(FieldMapper::new(2).rename("b", "c")));
        chain.push(Arc::new(FieldMapper::new(1).rename("a", "b")));
        assert_eq!(chain.apply(json!({"a": 1}), 1, 3).unwrap(), json!({"c": 1}));
        assert_eq!(chain.apply(json!({"a": 1}), 3, 3).unwrap(), json!({"a": 1}));
    }

    #[test]
    fn missing_step_names_both_versions() {
        let mut chain = UpcasterChain::default();
        chain.push(Arc::new(FieldMapper::new(1)));
        let err = chain.apply(json!({}), 1, 3).unwrap_err();
        assert!(matches!(err, Error::NoUpcaster { from: 2, to: 3 }), "{err}");
    }

    #[test]
    fn field_mapper_keeps_large_integers_and_nested_values_exact() {
        let big = json!({"n": 18446744073709551615u64, "m": -9223372036854775808i64,
                         "o": {"x": 123456789012345678u64, "y": [1.5, "s"]}});
        let out = FieldMapper::new(1)
            .move_out_of("o", "x")
            .rename("n", "count")
            .upcast(big)
            .unwrap();
        assert_eq!(
            out,
            json!({"count": 18446744073709551615u64, "m": -9223372036854775808i64,
                   "o": {"y": [1.5, "s"]}, "x": 123456789012345678u64})
        );
    }

    #[test]
    fn field_mapper_default_does_not_override_and_remove_drops() {
        let out = FieldMapper::new(1)
            .add_default("a", json!(0))
            .add_default("b", json!(2))
            .remove("c")
            .upcast(json!({"a": 1, "c": 3}))
            .unwrap();
        assert_eq!(out, json!({"a": 1, "b": 2}));
    }

    #[test]
    fn field_mapper_rejects_non_objects_and_passes_null() {
        let m = FieldMapper::new(4).rename("a", "b");
        assert!(matches!(
            m.upcast(json!([1])),
            Err(Error::Upcast { from: 4, .. })
        ));
        assert_eq!(m.upcast(Value::Null).unwrap(), Value::Null);
        let into_scalar = FieldMapper::new(1).move_into("a", "b");
        assert!(into_scalar.upcast(json!({"a": 1, "b": 2})).is_err());
    }
}
