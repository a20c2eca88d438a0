//! JSON ↔ BSON, exact for everything a `serde_json::Value` holds, with BSON that MongoDB's own
//! tools can query.
//!
//! - `null`, booleans and strings are themselves (strings may hold U+0000: BSON strings carry
//!   their length).
//! - Integers are `Int64` (a server may hand back `Int32` for small ones: both read as integers).
//!   An integer above `i64::MAX` (a `u64`) is `{"%u64": "<decimal>"}`: `Decimal128` would be
//!   more natural, but not every MongoDB-wire server stores it.
//! - Floats are `Double`, sign of zero included; a `Double` always reads back as a float.
//! - Object keys are percent-escaped where MongoDB treats a key specially or BSON cannot hold it:
//!   `%` is `%25`, `.` is `%2E`, U+0000 is `%00`, a leading `$` is `%24`, and the empty key is
//!   `%`. Every other key is stored as it is, so `payload.customer.id` queries what it says.
//!   A key starting with `%` followed by anything but two hex digits (`%u64`, `%`) is never
//!   produced by escaping, which is what keeps the markers above unambiguous.

use mongodb::bson::{Bson, Document};
use serde_json::{Map, Number, Value};

/// The key of the one-field document that holds an integer above `i64::MAX`.
const U64_KEY: &str = "%u64";
/// The stored form of the empty key.
const EMPTY_KEY: &str = "%";

/// A JSON value as BSON.
pub fn to_bson(value: &Value) -> Bson {
    match value {
        Value::Null => Bson::Null,
        Value::Bool(b) => Bson::Boolean(*b),
        Value::Number(n) => number_to_bson(n),
        Value::String(s) => Bson::String(s.clone()),
        Value::Array(items) => Bson::Array(items.iter().map(to_bson).collect()),
        Value::Object(map) => Bson::Document(object_to_document(map)),
    }
}

fn number_to_bson(n: &Number) -> Bson {
    if let Some(i) = n.as_i64() {
        Bson::Int64(i)
    } else if let Some(u) = n.as_u64() {
        let mut marker = Document::new();
        marker.insert(U64_KEY, u.to_string());
        Bson::Document(marker)
    } else {
        // serde_json numbers are i64, u64 or finite f64.
        Bson::Double(n.as_f64().unwrap_or_default())
    }
}

fn object_to_document(map: &Map<String, Value>) -> Document {
    map.iter()
        .map(|(key, value)| (escape_key(key), to_bson(value)))
        .collect()
}

/// A BSON value as JSON; `Err` names what has no JSON form (BSON that this crate never writes).
pub fn to_json(value: &Bson) -> Result<Value, String> {
    Ok(match value {
        Bson::Null => Value::Null,
        Bson::Boolean(b) => Value::Bool(*b),
        Bson::Int32(i) => Value::from(*i),
        Bson::Int64(i) => Value::from(*i),
        Bson::Double(f) => Number::from_f64(*f)
            .map(Value::Number)
            .ok_or_else(|| format!("the float {f} has no JSON form"))?,
        Bson::String(s) => Value::String(s.clone()),
        Bson::Array(items) => Value::Array(items.iter().map(to_json).collect::<Result<_, _>>()?),
        Bson::Document(doc) => document_to_json(doc)?,
        other => {
            return Err(format!(
                "a BSON {:?} has no JSON form",
                other.element_type()
            ));
        }
    })
}

fn document_to_json(doc: &Document) -> Result<Value, String> {
    if doc.len() == 1
        && let Some(Bson::String(digits)) = doc.get(U64_KEY)
    {
        let n: u64 = digits
            .parse()
            .map_err(|_| format!("{U64_KEY} holds {digits:?}, not an unsigned integer"))?;
        return Ok(Value::from(n));
    }
    let mut map = Map::new();
    for (key, value) in doc {
        map.insert(unescape_key(key)?, to_json(value)?);
    }
    Ok(Value::Object(map))
}

/// A JSON object key (or metadata / annotation key) as a BSON field name.
pub fn escape_key(key: &str) -> String {
    if key.is_empty() {
        return EMPTY_KEY.to_owned();
    }
    let special = |c: char| matches!(c, '%' | '.' | '\0');
    if !key.starts_with('$') && !key.contains(special) {
        return key.to_owned();
    }
    let mut out = String::with_capacity(key.len() + 6);
    for (i, c) in key.char_indices() {
        match c {
            '%' => out.push_str("%25"),
            '.' => out.push_str("%2E"),
            '\0' => out.push_str("%00"),
            '$' if i == 0 => out.push_str("%24"),
            c => out.push(c),
        }
    }
    out
}

/// The key [`escape_key`] made `field` from.
pub fn unescape_key(field: &str) -> Result<String, String> {
    if field == EMPTY_KEY {
        return Ok(String::new());
    }
    if !field.contains('%') {
        return Ok(field.to_owned());
    }
    let mut out = String::with_capacity(field.len());
    let mut rest = field;
    while let Some(at) = rest.find('%') {
        out.push_str(&rest[..at]);
        let escape = rest.get(at + 1..at + 3);
        let c = match escape {
            Some("25") => '%',
            Some("2E") => '.',
            Some("00") => '\0',
            Some("24") if out.is_empty() => '$',
            _ => return Err(format!("field name {field:?} holds an unknown escape")),
        };
        out.push(c);
        rest = &rest[at + 3..];
    }
    out.push_str(rest);
    Ok(out)
}

/// Deepest payload stored as BSON; deeper ones are stored as their JSON text, since MongoDB
/// refuses documents nested more than 100 levels and an entry wraps its payload in one more.
pub const MAX_BSON_DEPTH: usize = 90;

/// How deep `value` nests arrays and objects (a scalar: 0). Iterative.
pub fn depth(value: &Value) -> usize {
    let mut deepest = 0;
    let mut pending = vec![(value, 0usize)];
    while let Some((value, level)) = pending.pop() {
        let children: Box<dyn Iterator<Item = &Value>> = match value {
            Value::Array(items) => Box::new(items.iter()),
            Value::Object(map) => Box::new(map.values()),
            _ => continue,
        };
        deepest = deepest.max(level + 1);
        pending.extend(children.map(|child| (child, level + 1)));
    }
    deepest
}

/// Every string value of `value`, at any depth, ASCII-lowercased: what substring search
/// matches (`ledger_core::payload_contains`), kept beside the payload so one indexed regex
/// over an array finds it.
pub fn search_strings(value: &Value) -> Vec<String> {
    ledger_core::backend::payload_strings(value)
        .into_iter()
        .map(str::to_ascii_lowercase)
        .collect()
}

/// The longest run of ASCII letters, digits and spaces in `text`, lowercased: a regular
/// expression without a single special character, which every MongoDB-wire server matches
/// alike (not all of them match quotes, backslashes or non-ASCII text in a pattern as MongoDB
/// does). Every string containing `text` contains it; `None` if `text` has no such run.
pub fn search_prefilter(text: &str) -> Option<String> {
    let plain = |c: char| c.is_ascii_alphanumeric() || c == ' ';
    text.split(|c: char| !plain(c))
        .max_by_key(|run| run.len())
        .filter(|run| !run.is_empty())
        .map(str::to_ascii_lowercase)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_json_value_round_trips() {
        let value = json!({
            "": 1, "$set": {"a.b": [u64::MAX, i64::MIN, -0.0, 1e16, 0.5]},
            "%": "100%", "%u64": "x", "nul\u{0}key": "a\u{0}b", "ünï": {"$": null, "ok": true},
            "u": {"%u64": "18446744073709551615"}
        });
        let bson = to_bson(&value);
        let back = to_json(&bson).unwrap();
        assert_eq!(back, value);
        assert_eq!(
            serde_json::to_string(&back).unwrap(),
            serde_json::to_string(&value).unwrap(),
            "the same text: floats stay floats, -0.0 keeps its sign"
        );
    }

    #[test]
    fn plain_keys_are_stored_as_they_are() {
        assert_eq!(escape_key("customer_id"), "customer_id");
        assert_eq!(escape_key("a$b"), "a$b");
        assert_eq!(escape_key("$a.b%"), "%24a%2Eb%25");
        assert_eq!(escape_key(""), "%");
        for key in ["", "$a.b%", "%", "%25", "a\0b", "$$"] {
            assert_eq!(unescape_key(&escape_key(key)).unwrap(), key);
        }
        assert!(unescape_key("%u64x").is_err());
    }

    #[test]
    fn the_search_prefilter_is_the_longest_plain_run() {
        assert_eq!(search_prefilter("c:\\Dir\\x").as_deref(), Some("dir"));
        assert_eq!(search_prefilter("said \"HI\"").as_deref(), Some("said "));
        assert_eq!(search_prefilter("\"\\"), None);
        assert_eq!(search_prefilter("çøDé").as_deref(), Some("d"));
    }

    #[test]
    fn search_strings_are_the_string_values_lowercased() {
        let value = json!({"Key": ["AbC", {"x": "Ünï"}], "n": 5});
        assert_eq!(search_strings(&value), ["abc", "Ünï"]);
        assert_eq!(depth(&json!(1)), 0);
        assert_eq!(depth(&json!({"a": [[]]})), 3);
    }
}
