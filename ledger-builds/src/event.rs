//! The build event: Probo's wire format, checked once at the door, and the `build` row it maps
//! to.
//!
//! A Kafka message's value is `{"version": "1", "data": {"event", "data", "build"}}`; every
//! event carries a full snapshot of the build, so the row is a function of the newest snapshot,
//! not of the event's name. Where Probo-DB's mapping was wrong ours differs, as documented on
//! [`Build`].

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use serde_json::{Map, Value, json};

/// `statusBuild` values the `build` table admits.
pub const BUILD_STATUSES: &[&str] = &[
    "pending",
    "running",
    "error",
    "success",
    "failed",
    "successful",
];

/// `statusSubmitted` values the `build` table admits.
pub const SUBMITTED_STATUSES: &[&str] = &["pending", "submitted", "error", "paused"];

/// An accepted build event: what the ledger keeps (`{event, data, build}`, as received) and the
/// row it maps to.
#[derive(Debug, Clone, PartialEq)]
pub struct BuildEvent {
    /// The event's name (`started`, `status updated`, `ready`, `updated`, `reaped`…).
    pub event: String,
    /// The inner event object as received: what the ledger entry holds.
    pub payload: Value,
    /// The row the snapshot maps to.
    pub build: Build,
}

/// Why a message was refused (it goes to the dead-letter stream with this reason).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct Rejection(pub String);

fn reject(reason: impl Into<String>) -> Rejection {
    Rejection(reason.into())
}

impl BuildEvent {
    /// Parses a message value. Anything but a well-formed event with a valid build snapshot is
    /// a [`Rejection`] naming what is wrong; nothing here panics on any input.
    pub fn parse(bytes: &[u8]) -> Result<BuildEvent, Rejection> {
        let wrapper: Value = serde_json::from_slice(bytes)
            .map_err(|e| reject(format!("the message is not JSON: {e}")))?;
        let Value::Object(mut wrapper) = wrapper else {
            return Err(reject(format!(
                "the message is {}, not an object {{\"version\", \"data\"}}",
                kind(&wrapper)
            )));
        };
        match wrapper.get("version") {
            None => {}
            Some(Value::String(v)) if v == "1" => {}
            Some(Value::Number(n)) if n.as_u64() == Some(1) => {}
            Some(other) => {
                return Err(reject(format!(
                    "unsupported message version {other}: expected \"1\""
                )));
            }
        }
        let inner = match wrapper.remove("data") {
            Some(Value::Object(inner)) => inner,
            None => return Err(reject("the message has no \"data\" object")),
            Some(other) => {
                return Err(reject(format!(
                    "\"data\" is {}, not an object {{\"event\", \"data\", \"build\"}}",
                    kind(&other)
                )));
            }
        };
        BuildEvent::from_inner(inner)
    }

    /// From the inner event object (what the ledger entry holds).
    pub fn from_payload(payload: Value) -> Result<BuildEvent, Rejection> {
        match payload {
            Value::Object(inner) => BuildEvent::from_inner(inner),
            other => Err(reject(format!(
                "the event is {}, not an object",
                kind(&other)
            ))),
        }
    }

    fn from_inner(inner: Map<String, Value>) -> Result<BuildEvent, Rejection> {
        let event = match inner.get("event") {
            None => String::new(),
            Some(Value::String(e)) => e.clone(),
            Some(other) => {
                return Err(reject(format!(
                    "\"data.event\" is {}, not a string",
                    kind(other)
                )));
            }
        };
        match inner.get("data") {
            None | Some(Value::Object(_)) => {}
            Some(other) => {
                return Err(reject(format!(
                    "\"data.data\" is {}, not an object",
                    kind(other)
                )));
            }
        }
        let build = match inner.get("build") {
            Some(Value::Object(build)) => Build::from_snapshot(build)?,
            None => return Err(reject("the event has no \"data.build\" object")),
            Some(other) => {
                return Err(reject(format!(
                    "\"data.build\" is {}, not an object",
                    kind(other)
                )));
            }
        };
        Ok(BuildEvent {
            event,
            payload: Value::Object(inner),
            build,
        })
    }

    /// The wire message for this event's payload (what a producer sends).
    pub fn to_message(&self) -> Vec<u8> {
        serde_json::to_vec(&json!({"version": "1", "data": self.payload}))
            .expect("a JSON value serializes")
    }
}

/// A build's row in the read model, mapped from a snapshot as Probo-DB's `dbDataFromBuild`
/// does, with these differences:
///
/// - `id` and `projectId` must be UUIDs and `requestId` one if given; a snapshot that breaks
///   this, or holds a status outside the table's enums, is refused (Probo-DB failed the insert
///   and lost the event).
/// - A missing `reaped` is `false` (Probo-DB stored `true`), missing statuses are `pending`
///   (Probo-DB: `error`), a missing `reapedReasonText` is null, and missing times are the epoch
///   in UTC (Probo-DB: 1 February 1970, local time).
/// - A nested `null` (`"pullRequest": null`) reads as missing (Probo-DB's listener crashed).
/// - Byte counts must be non-negative integers.
#[derive(Debug, Clone, PartialEq)]
pub struct Build {
    /// `id`, lower-cased.
    pub build_id: String,
    /// `projectId`, lower-cased.
    pub project_id: String,
    /// `requestId`, lower-cased.
    pub request_id: Option<String>,
    /// `createdAt`, microseconds since the epoch.
    pub time_started: i64,
    /// `updatedAt`, microseconds since the epoch: what orders snapshots of one build.
    pub time_updated: i64,
    /// `diskSpace.virtualBytes`.
    pub bytes_virtual: i64,
    /// `diskSpace.realBytes`: the build's disk usage.
    pub bytes_real: i64,
    /// `config`, as given (null when missing).
    pub config: Value,
    /// `branch.name`.
    pub branch_name: Option<String>,
    /// `branch.htmlUrl`.
    pub branch_url: Option<String>,
    /// `commit.htmlUrl`.
    pub commit_url: Option<String>,
    /// `commit.ref`.
    pub commit_ref: Option<String>,
    /// `pullRequest.description`.
    pub pr_description: Option<String>,
    /// `pullRequest.htmlUrl`.
    pub pr_url: Option<String>,
    /// `pullRequest.name`.
    pub pr_name: Option<String>,
    /// `pullRequest.number` (a string, as Probo sends it; a number is written out).
    pub pr_number: Option<String>,
    /// `reaped`: the build's environment was destroyed.
    pub reaped: bool,
    /// `reapedReason`.
    pub reaped_reason: i64,
    /// `reapedReasonText`.
    pub reaped_reason_text: Option<String>,
    /// `reapedDate` (ISO time or epoch milliseconds), microseconds since the epoch.
    pub reaped_date: Option<i64>,
    /// `pinned`.
    pub pinned: bool,
    /// `submittedState`, one of [`SUBMITTED_STATUSES`].
    pub status_submitted: String,
    /// `status`, one of [`BUILD_STATUSES`].
    pub status_build: String,
}

impl Build {
    /// Maps a build snapshot to its row; see [`Build`] for what is refused.
    pub fn from_snapshot(build: &Map<String, Value>) -> Result<Build, Rejection> {
        let s = Snapshot(build);
        let uuid_at = |path: &str| -> Result<Option<String>, Rejection> {
            match s.text(path)? {
                None => Ok(None),
                Some(id) => parse_uuid(&id)
                    .map(Some)
                    .map_err(|e| reject(format!("build.{path}: {e}"))),
            }
        };
        let build_id = uuid_at("id")?.ok_or_else(|| reject("build.id is missing"))?;
        let project_id =
            uuid_at("projectId")?.ok_or_else(|| reject("build.projectId is missing"))?;
        let status = |path: &str, allowed: &[&str]| -> Result<String, Rejection> {
            match s.text(path)? {
                None => Ok("pending".to_owned()),
                Some(v) if allowed.contains(&v.as_str()) => Ok(v),
                Some(v) => Err(reject(format!(
                    "build.{path} {v:?} is not one of {}",
                    allowed.join(", ")
                ))),
            }
        };
        Ok(Build {
            request_id: uuid_at("requestId")?,
            time_started: s.time("createdAt")?.unwrap_or(0),
            time_updated: s.time("updatedAt")?.unwrap_or(0),
            bytes_virtual: s.bytes("diskSpace.virtualBytes")?,
            bytes_real: s.bytes("diskSpace.realBytes")?,
            config: s.get("config").cloned().unwrap_or(Value::Null),
            branch_name: s.text("branch.name")?,
            branch_url: s.text("branch.htmlUrl")?,
            commit_url: s.text("commit.htmlUrl")?,
            commit_ref: s.text("commit.ref")?,
            pr_description: s.text("pullRequest.description")?,
            pr_url: s.text("pullRequest.htmlUrl")?,
            pr_name: s.text("pullRequest.name")?,
            pr_number: s.text("pullRequest.number")?,
            reaped: s.flag("reaped")?,
            reaped_reason: s.int("reapedReason")?.unwrap_or(0),
            reaped_reason_text: s.text("reapedReasonText")?,
            reaped_date: s.time("reapedDate")?,
            pinned: s.flag("pinned")?,
            status_submitted: status("submittedState", SUBMITTED_STATUSES)?,
            status_build: status("status", BUILD_STATUSES)?,
            build_id,
            project_id,
        })
    }

    /// The row as `GET /build/:id` serves it (Probo-DB's shape: byte counts as strings, times
    /// as ISO strings), with `id` the row's number.
    pub fn to_row(&self, id: i64) -> Value {
        json!({
            "id": id,
            "buildId": self.build_id,
            "requestId": self.request_id,
            "projectId": self.project_id,
            "timeStarted": iso(self.time_started),
            "timeUpdated": iso(self.time_updated),
            "bytesVirtual": self.bytes_virtual.to_string(),
            "bytesReal": self.bytes_real.to_string(),
            "config": self.config,
            "branchName": self.branch_name,
            "branchUrl": self.branch_url,
            "commitUrl": self.commit_url,
            "commitRef": self.commit_ref,
            "prDescription": self.pr_description,
            "prUrl": self.pr_url,
            "prName": self.pr_name,
            "prNumber": self.pr_number,
            "reaped": self.reaped,
            "reapedReason": self.reaped_reason,
            "reapedReasonText": self.reaped_reason_text,
            "reapedDate": self.reaped_date.map(iso),
            "pinned": self.pinned,
            "statusSubmitted": self.status_submitted,
            "statusBuild": self.status_build,
        })
    }
}

/// Microseconds since the epoch as an ISO time with milliseconds, as Probo-DB's JSON has them.
pub fn iso(micros: i64) -> String {
    Utc.timestamp_micros(micros)
        .single()
        .map(|t| t.to_rfc3339_opts(SecondsFormat::Millis, true))
        .unwrap_or_default()
}

/// Checks a UUID in its hyphenated form (8-4-4-4-12 hex digits, either case, nothing around
/// it) and returns it lower-cased; the error names the value.
pub fn parse_uuid(text: &str) -> Result<String, String> {
    let groups: Vec<&str> = text.split('-').collect();
    let shaped = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, n)| g.len() == n && g.bytes().all(|b| b.is_ascii_hexdigit()));
    if shaped {
        Ok(text.to_ascii_lowercase())
    } else {
        Err(format!(
            "{text:?} is not a UUID (8-4-4-4-12 hexadecimal digits)"
        ))
    }
}

fn kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A snapshot read by dotted path; a `null` anywhere on the path reads as missing.
struct Snapshot<'a>(&'a Map<String, Value>);

impl Snapshot<'_> {
    fn get(&self, path: &str) -> Option<&Value> {
        let mut parts = path.split('.');
        let mut at = self.0.get(parts.next()?)?;
        for part in parts {
            at = at.as_object()?.get(part)?;
        }
        Some(at).filter(|v| !v.is_null())
    }

    fn wrong(&self, path: &str, expected: &str, got: &Value) -> Rejection {
        reject(format!("build.{path} is {}, not {expected}", kind(got)))
    }

    fn text(&self, path: &str) -> Result<Option<String>, Rejection> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::String(s)) if s.contains('\0') => {
                Err(reject(format!("build.{path} contains a NUL character")))
            }
            Some(Value::String(s)) => Ok(Some(s.clone())),
            Some(Value::Number(n)) => Ok(Some(n.to_string())),
            Some(other) => Err(self.wrong(path, "a string", other)),
        }
    }

    fn flag(&self, path: &str) -> Result<bool, Rejection> {
        match self.get(path) {
            None => Ok(false),
            Some(Value::Bool(b)) => Ok(*b),
            Some(other) => Err(self.wrong(path, "a boolean", other)),
        }
    }

    fn int(&self, path: &str) -> Result<Option<i64>, Rejection> {
        match self.get(path) {
            None => Ok(None),
            Some(Value::Number(n)) => n
                .as_i64()
                .map(Some)
                .ok_or_else(|| reject(format!("build.{path} {n} is not a 64-bit integer"))),
            Some(other) => Err(self.wrong(path, "an integer", other)),
        }
    }

    fn bytes(&self, path: &str) -> Result<i64, Rejection> {
        match self.int(path)? {
            Some(n) if n < 0 => Err(reject(format!("build.{path} {n} is negative"))),
            n => Ok(n.unwrap_or(0)),
        }
    }

    /// An ISO time or epoch milliseconds, as microseconds since the epoch.
    fn time(&self, path: &str) -> Result<Option<i64>, Rejection> {
        let bad = |v: &dyn std::fmt::Display| reject(format!("build.{path} {v} is not a time"));
        match self.get(path) {
            None => Ok(None),
            Some(Value::String(s)) => DateTime::parse_from_rfc3339(s)
                .map(|t| Some(t.timestamp_micros()))
                .map_err(|_| bad(&format!("{s:?}"))),
            Some(Value::Number(n)) => n
                .as_i64()
                .and_then(|ms| ms.checked_mul(1000))
                .filter(|&us| Utc.timestamp_micros(us).single().is_some())
                .map(Some)
                .ok_or_else(|| bad(n)),
            Some(other) => Err(self.wrong(path, "a time", other)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ID: &str = "edae5055-db9e-4ae4-8863-7561cb6e0aa2";
    const PROJECT: &str = "c01f0f8c-9774-43e7-b717-5ca78bd44c01";

    fn message(build: Value) -> Vec<u8> {
        serde_json::to_vec(
            &json!({"version": "1", "data": {"event": "ready", "data": {}, "build": build}}),
        )
        .unwrap()
    }

    #[test]
    fn a_snapshot_maps_to_the_probo_row() {
        let event = BuildEvent::parse(&message(json!({
            "id": ID.to_uppercase(), "projectId": PROJECT, "status": "success",
            "createdAt": "2026-01-02T03:04:05.678Z", "updatedAt": 1767323045678i64,
            "diskSpace": {"realBytes": 1001, "virtualBytes": 2001},
            "branch": {"name": "main", "htmlUrl": "https://x/b"},
            "pullRequest": {"number": 7, "name": "pr"},
            "config": {"image": "php"},
        })))
        .unwrap();
        let b = &event.build;
        assert_eq!(event.event, "ready");
        assert_eq!(b.build_id, ID);
        assert_eq!((b.bytes_real, b.bytes_virtual), (1001, 2001));
        assert_eq!(b.pr_number.as_deref(), Some("7"));
        assert_eq!((b.reaped, b.status_submitted.as_str()), (false, "pending"));
        let row = b.to_row(3);
        assert_eq!(row["timeStarted"], "2026-01-02T03:04:05.678Z");
        assert_eq!(row["timeUpdated"], "2026-01-02T03:04:05.678Z");
        assert_eq!(row["bytesReal"], "1001");
        assert_eq!(row["config"]["image"], "php");
        assert_eq!(row["commitRef"], Value::Null);
    }

    #[test]
    fn a_nested_null_reads_as_missing() {
        let event = BuildEvent::parse(&message(
            json!({"id": ID, "projectId": PROJECT, "pullRequest": null, "diskSpace": null}),
        ))
        .unwrap();
        assert_eq!(event.build.pr_name, None);
        assert_eq!(event.build.bytes_real, 0);
    }

    #[test]
    fn malformed_messages_are_refused_with_their_reason() {
        let cases: Vec<(Vec<u8>, &str)> = vec![
            (b"not json".to_vec(), "not JSON"),
            (b"[1]".to_vec(), "is an array"),
            (br#"{"version":"1"}"#.to_vec(), "no \"data\""),
            (
                br#"{"version":"2","data":{}}"#.to_vec(),
                "unsupported message version",
            ),
            (br#"{"data":null}"#.to_vec(), "\"data\" is null"),
            (
                br#"{"data":{"build":null}}"#.to_vec(),
                "\"data.build\" is null",
            ),
            (
                br#"{"data":{"data":null,"build":{}}}"#.to_vec(),
                "\"data.data\" is null",
            ),
            (
                message(json!({"projectId": PROJECT})),
                "build.id is missing",
            ),
            (
                message(json!({"id": "x", "projectId": PROJECT})),
                "\"x\" is not a UUID",
            ),
            (
                message(json!({"id": format!("a{ID}"), "projectId": PROJECT})),
                "is not a UUID",
            ),
            (message(json!({"id": ID})), "build.projectId is missing"),
            (
                message(json!({"id": ID, "projectId": PROJECT, "status": "fail"})),
                "\"fail\" is not one of",
            ),
            (
                message(json!({"id": ID, "projectId": PROJECT, "diskSpace": {"realBytes": -1}})),
                "negative",
            ),
            (
                message(json!({"id": ID, "projectId": PROJECT, "updatedAt": "yesterday"})),
                "not a time",
            ),
            (
                message(json!({"id": ID, "projectId": PROJECT, "reaped": "yes"})),
                "not a boolean",
            ),
            (
                message(json!({"id": ID, "projectId": PROJECT, "updatedAt": i64::MAX})),
                "not a time",
            ),
            (
                message(json!({"id": ID, "projectId": PROJECT, "branch": {"name": "a\u{0}b"}})),
                "NUL",
            ),
        ];
        for (bytes, expected) in cases {
            let reason = BuildEvent::parse(&bytes).unwrap_err().0;
            assert!(reason.contains(expected), "{reason:?} lacks {expected:?}");
        }
    }

    #[test]
    fn uuids_are_anchored_and_either_case() {
        assert_eq!(parse_uuid(&ID.to_uppercase()).unwrap(), ID);
        assert!(parse_uuid(&format!("{ID}x")).is_err());
        assert!(parse_uuid(&format!(" {ID}")).is_err());
        assert!(parse_uuid("edae5055db9e4ae488637561cb6e0aa2").is_err());
        assert!(parse_uuid("gdae5055-db9e-4ae4-8863-7561cb6e0aa2").is_err());
    }
}
