//! The door: every message a source delivers becomes a ledger entry before anything else
//! happens to it. An accepted event goes to its build's stream, a refused one to the dead-letter
//! stream with its reason; either way its dedup key comes from where it was read, so a message
//! delivered twice is stored once.

use std::collections::BTreeMap;

use futures::StreamExt;
use ledger_core::{AppendInput, AppendOutcome, Error as LedgerError, ExpectedVersion, Store};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

use crate::error::Result;
use crate::event::BuildEvent;
use crate::readmodel::build_stream;

/// The ledger stream refused messages go to.
pub const DEAD_LETTER_STREAM: &str = "builds-dead-letter";

/// The most bytes of a refused message the dead-letter stream keeps.
pub const DEAD_LETTER_MESSAGE_BYTES: usize = 64 * 1024;

/// Build streams appended to at once by one batch.
const CONCURRENT_APPENDS: usize = 8;

/// Where a message was read: what makes its dedup key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "source", rename_all = "snake_case")]
pub enum Origin {
    /// A Kafka record.
    Kafka {
        /// Its topic.
        topic: String,
        /// Its partition.
        partition: i32,
        /// Its offset.
        offset: i64,
    },
    /// An entry of a ledger stream (the embedded source).
    Ledger {
        /// The stream.
        stream: String,
        /// The entry's version.
        version: u64,
    },
    /// A line of JSON lines input (a replay); identified by its content, so replaying a file
    /// twice stores nothing new.
    Line {
        /// The line's number in its input, from 1.
        number: u64,
        /// The SHA-256 of the line, hexadecimal.
        digest: String,
    },
}

impl Origin {
    /// The origin of line `number` with content `line`.
    pub fn line(number: u64, line: &[u8]) -> Origin {
        let digest = Sha256::digest(line)
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect();
        Origin::Line { number, digest }
    }

    /// The dedup key of entries read from here.
    pub fn dedup_key(&self) -> String {
        match self {
            Origin::Kafka {
                topic,
                partition,
                offset,
            } => format!("kafka:{topic}:{partition}:{offset}"),
            Origin::Ledger { stream, version } => format!("ledger:{stream}:{version}"),
            Origin::Line { digest, .. } => format!("line:{digest}"),
        }
    }

    fn stamp(&self, input: AppendInput) -> AppendInput {
        let input = input.dedup_key(self.dedup_key());
        match self {
            Origin::Kafka {
                topic,
                partition,
                offset,
            } => input
                .metadata("source", "kafka")
                .metadata("topic", topic)
                .metadata("partition", partition.to_string())
                .metadata("offset", offset.to_string()),
            Origin::Ledger { stream, version } => input
                .metadata("source", "ledger")
                .metadata("stream", stream)
                .metadata("version", version.to_string()),
            Origin::Line { number, .. } => input
                .metadata("source", "line")
                .metadata("line", number.to_string()),
        }
    }
}

/// A message as a source delivered it.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    /// Where it was read.
    pub origin: Origin,
    /// Its value (`None`: a Kafka record without one).
    pub value: Option<Vec<u8>>,
}

/// What became of a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Stored in its build's stream.
    Stored,
    /// Already stored (a redelivery).
    Duplicate,
    /// Refused, and stored in the dead-letter stream with this reason.
    DeadLettered(String),
}

/// A refused message as the dead-letter stream keeps it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct DeadLetter {
    /// Why it was refused.
    pub reason: String,
    /// Where it was read.
    pub origin: Origin,
    /// Its value as text (invalid UTF-8 and NUL replaced), at most
    /// [`DEAD_LETTER_MESSAGE_BYTES`]; `None` for a record without a value.
    pub message: Option<String>,
    /// Whether `message` was cut short.
    pub truncated: bool,
}

impl DeadLetter {
    fn new(reason: String, origin: Origin, value: Option<&[u8]>) -> DeadLetter {
        let mut truncated = false;
        let message = value.map(|v| {
            let mut text = String::from_utf8_lossy(v).replace('\0', "\u{FFFD}");
            if text.len() > DEAD_LETTER_MESSAGE_BYTES {
                let mut end = DEAD_LETTER_MESSAGE_BYTES;
                while !text.is_char_boundary(end) {
                    end -= 1;
                }
                text.truncate(end);
                truncated = true;
            }
            text
        });
        DeadLetter {
            reason,
            origin,
            message,
            truncated,
        }
    }
}

/// Stores `messages` in the ledger, one outcome each in order. Events of one build keep their
/// order (one append per build stream); a message the ledger itself refuses (too large, say) is
/// dead-lettered with the ledger's reason. An error means nothing is known about the batch:
/// deliver it again (its dedup keys make that safe).
pub(crate) async fn store(ledger: &Store, messages: &[Message]) -> Result<Vec<Outcome>> {
    let mut outcomes: Vec<Option<Outcome>> = vec![None; messages.len()];
    let mut by_build: BTreeMap<String, Vec<(usize, AppendInput)>> = BTreeMap::new();
    let mut refused: Vec<(usize, DeadLetter)> = Vec::new();
    for (i, message) in messages.iter().enumerate() {
        let parsed = match &message.value {
            None => Err("the record has no value".to_owned()),
            Some(value) => BuildEvent::parse(value).map_err(|e| e.0),
        };
        match parsed {
            Ok(event) => {
                let input = message.origin.stamp(AppendInput::new(event.payload));
                by_build
                    .entry(build_stream(&event.build.build_id))
                    .or_default()
                    .push((i, input));
            }
            Err(reason) => refused.push((
                i,
                DeadLetter::new(reason, message.origin.clone(), message.value.as_deref()),
            )),
        }
    }
    let mut appends = futures::stream::iter(by_build)
        .map(|(stream, inputs)| async move {
            let (indexes, inputs): (Vec<usize>, Vec<AppendInput>) = inputs.into_iter().unzip();
            let result = ledger.append(&stream, inputs, ExpectedVersion::Any).await;
            (indexes, result)
        })
        .buffer_unordered(CONCURRENT_APPENDS);
    while let Some((indexes, result)) = appends.next().await {
        match result {
            Ok(appended) => {
                for (i, outcome) in indexes.into_iter().zip(appended.outcomes) {
                    outcomes[i] = Some(match outcome {
                        AppendOutcome::Appended { .. } => Outcome::Stored,
                        _ => Outcome::Duplicate,
                    });
                }
            }
            // The ledger refuses what it cannot hold; which message it was is not said, so each
            // is tried alone and only those refused alone are dead-lettered.
            Err(LedgerError::InvalidArgument(_) | LedgerError::InvalidName { .. })
                if indexes.len() > 1 =>
            {
                for i in indexes {
                    let one = Box::pin(store(ledger, std::slice::from_ref(&messages[i]))).await?;
                    outcomes[i] = one.into_iter().next();
                }
            }
            Err(e @ (LedgerError::InvalidArgument(_) | LedgerError::InvalidName { .. })) => {
                let i = indexes[0];
                let message = &messages[i];
                refused.push((
                    i,
                    DeadLetter::new(
                        format!("the ledger refused the event: {e}"),
                        message.origin.clone(),
                        message.value.as_deref(),
                    ),
                ));
            }
            Err(e) => return Err(e.into()),
        }
    }
    drop(appends);
    if !refused.is_empty() {
        let inputs = refused
            .iter()
            .map(|(_, letter)| {
                let payload = serde_json::to_value(letter).expect("a dead letter serializes");
                letter.origin.stamp(AppendInput::new(payload))
            })
            .collect();
        ledger
            .append(DEAD_LETTER_STREAM, inputs, ExpectedVersion::Any)
            .await?;
        for (i, letter) in refused {
            outcomes[i] = Some(Outcome::DeadLettered(letter.reason));
        }
    }
    Ok(outcomes
        .into_iter()
        .map(|o| o.expect("every message has an outcome"))
        .collect())
}

/// The wire message of an event for the embedded source: what a producer appends to the
/// source stream with [`emit`].
pub fn wire(event: &Value) -> Value {
    json!({"version": "1", "data": event})
}

/// Appends a wire message (`{"version", "data"}`) to the ledger stream `stream`, for a service
/// whose source is that stream (no broker needed).
pub async fn emit(ledger: &Store, stream: &str, message: Value) -> Result<()> {
    ledger
        .append_one(stream, AppendInput::new(message), ExpectedVersion::Any)
        .await?;
    Ok(())
}
