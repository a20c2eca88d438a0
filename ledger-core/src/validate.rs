//! Validation of what callers hand to a store: append inputs, payloads, tags and annotations.
//! [`crate::Store`] runs these before any backend sees a call.

use std::collections::{BTreeMap, BTreeSet};

use crate::entry::AppendInput;
use crate::error::{Error, Result};
use crate::name::validate_stream_id;

/// Deepest nesting of arrays and objects a payload may have. serde_json reads JSON at most 128
/// levels deep, and the records that carry a payload (a change-feed record) wrap it in a few
/// more, so a deeper payload could be stored but never read back: appends refuse it.
pub const MAX_PAYLOAD_DEPTH: usize = 100;

/// [`Error::InvalidArgument`] if `payload` nests arrays and objects deeper than
/// [`MAX_PAYLOAD_DEPTH`]. Iterative, so no payload is too deep to check.
pub fn validate_payload(payload: &serde_json::Value) -> Result<()> {
    use serde_json::Value;
    // (container, its depth): scalars add no depth.
    let mut pending = vec![(payload, 1)];
    while let Some((value, depth)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        if depth > MAX_PAYLOAD_DEPTH {
            return Err(Error::InvalidArgument(format!(
                "payload nests arrays and objects more than {MAX_PAYLOAD_DEPTH} levels deep, \
                 which cannot be read back"
            )));
        }
        pending.extend(children.map(|child| (child, depth + 1)));
    }
    Ok(())
}

/// Checks one input: schema version at least 1, keys not empty, no NUL in stored text.
pub fn validate_input<P>(input: &AppendInput<P>) -> Result<()> {
    if input.schema_version == 0 {
        return Err(Error::InvalidArgument(
            "schema version 0 is invalid; versions start at 1".into(),
        ));
    }
    if input.dedup_key.as_deref() == Some("") {
        return Err(Error::InvalidArgument(
            "dedup key must not be empty (use None for no key)".into(),
        ));
    }
    if input.order_key.as_deref() == Some("") {
        return Err(Error::InvalidArgument(
            "order key must not be empty (use None for no key)".into(),
        ));
    }
    let keys = input.order_key.iter().chain(&input.dedup_key);
    let metadata = input.metadata.iter().flat_map(|(k, v)| [k, v]);
    keys.chain(metadata)
        .try_for_each(|text| no_nul("a key or metadata", text))?;
    validate_tags(&input.tags)
}

/// Text that databases store as text (keys, metadata, tags, annotations) must not contain NUL,
/// which PostgreSQL and others cannot store. Payload strings may (they are JSON-escaped).
fn no_nul(what: &str, text: &str) -> Result<()> {
    if text.contains('\0') {
        return Err(Error::InvalidArgument(format!(
            "{what} contains U+0000 (NUL), which cannot be stored: {text:?}"
        )));
    }
    Ok(())
}

/// Checks tags for [`crate::Store::set_tags`] and appends: no NUL.
pub fn validate_tags(tags: &BTreeSet<String>) -> Result<()> {
    tags.iter().try_for_each(|t| no_nul("a tag", t))
}

/// Checks changes for [`crate::Store::set_annotations`]: no NUL in keys or values.
pub fn validate_annotations(changes: &BTreeMap<String, Option<String>>) -> Result<()> {
    changes
        .iter()
        .flat_map(|(k, v)| std::iter::once(k).chain(v))
        .try_for_each(|text| no_nul("an annotation", text))
}

/// Checks a stream id and every input of a batch (payloads included), before any database work.
pub fn validate_append(stream: &str, inputs: &[AppendInput]) -> Result<()> {
    validate_stream_id(stream)?;
    inputs.iter().try_for_each(|input| {
        validate_input(input)?;
        validate_payload(&input.payload)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn empty_keys_and_schema_version_zero_are_rejected() {
        assert!(validate_input(&AppendInput::new(json!(1)).dedup_key("")).is_err());
        assert!(validate_input(&AppendInput::new(json!(1)).schema_version(0)).is_err());
        assert!(validate_input(&AppendInput::new(json!(1)).order_key("")).is_err());
    }

    #[test]
    fn payloads_up_to_the_depth_limit_are_accepted() {
        let nested = |depth| (1..depth).fold(json!([]), |inner, _| json!([inner]));
        assert!(validate_payload(&nested(MAX_PAYLOAD_DEPTH)).is_ok());
        assert!(validate_payload(&nested(MAX_PAYLOAD_DEPTH + 1)).is_err());
        assert!(validate_payload(&json!(1)).is_ok());
    }
}
