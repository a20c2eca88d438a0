//! The `Log` model: one LLM request as Bifrost records it, with Bifrost's JSON names.

use std::collections::BTreeMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};

use crate::error::{Error, Result};

/// Where a request is: `processing` until its response (or error) arrives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LogStatus {
    /// Started, not finished (a streaming completion in flight).
    Processing,
    /// Finished with a response.
    Success,
    /// Finished with an error.
    Error,
}

impl LogStatus {
    /// The status as stored and as the API spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            LogStatus::Processing => "processing",
            LogStatus::Success => "success",
            LogStatus::Error => "error",
        }
    }

    /// The status named `name`, or an error naming it.
    pub fn parse(name: &str) -> Result<LogStatus> {
        match name {
            "processing" => Ok(LogStatus::Processing),
            "success" => Ok(LogStatus::Success),
            "error" => Ok(LogStatus::Error),
            other => Err(Error::invalid(
                "status",
                format!("{other:?} is not processing, success or error"),
            )),
        }
    }
}

/// Token counts of a request, as providers report them; fields the model does not name are
/// kept as given.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct TokenUsage {
    /// Input tokens.
    #[serde(default)]
    pub prompt_tokens: i64,
    /// Output tokens.
    #[serde(default)]
    pub completion_tokens: i64,
    /// Input plus output tokens.
    #[serde(default)]
    pub total_tokens: i64,
    /// Everything else (`prompt_tokens_details`, `completion_tokens_details`, …).
    #[serde(flatten)]
    pub other: Map<String, Value>,
}

impl TokenUsage {
    /// Input tokens read from the provider's prompt cache, wherever the provider reports them.
    pub fn cached_read_tokens(&self) -> i64 {
        let details = self.other.get("prompt_tokens_details");
        ["cached_read_tokens", "cached_tokens"]
            .iter()
            .find_map(|k| details.and_then(|d| d.get(k)).and_then(Value::as_i64))
            .unwrap_or(0)
    }

    /// `total_tokens`, or input plus output where the provider left it out.
    pub fn total(&self) -> i64 {
        if self.total_tokens > 0 {
            self.total_tokens
        } else {
            self.prompt_tokens + self.completion_tokens
        }
    }
}

/// What a request sent and received: the large part of a log, left out of list pages, dropped
/// when content logging is off, and capped in size.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Content {
    /// Chat messages sent (a JSON array).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub input_history: Option<Value>,
    /// Responses-API input items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responses_input_history: Option<Value>,
    /// The assistant message received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub output_message: Option<Value>,
    /// Responses-API output items.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub responses_output: Option<Value>,
    /// Embedding vectors received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub embedding_output: Option<Value>,
    /// Rerank results received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rerank_output: Option<Value>,
    /// Model parameters sent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub params: Option<Value>,
    /// Tools offered.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tools: Option<Value>,
    /// Tool calls received.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tool_calls: Option<Value>,
    /// Text-to-speech input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speech_input: Option<Value>,
    /// Speech-to-text input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcription_input: Option<Value>,
    /// Image-generation input.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_generation_input: Option<Value>,
    /// Text-to-speech output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub speech_output: Option<Value>,
    /// Speech-to-text output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub transcription_output: Option<Value>,
    /// Image-generation output.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub image_generation_output: Option<Value>,
    /// Models listed.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub list_models_output: Option<Value>,
    /// Semantic-cache debug data.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache_debug: Option<Value>,
    /// The provider request as sent, when raw logging is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_request: Option<Value>,
    /// The provider response as received, when raw logging is on.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub raw_response: Option<Value>,
}

/// Content fields that belong to the request (the rest belong to the response).
const REQUEST_CONTENT: &[&str] = &[
    "input_history",
    "responses_input_history",
    "params",
    "tools",
    "speech_input",
    "transcription_input",
    "image_generation_input",
    "raw_request",
];

/// The content fields with their JSON names, as `&` or `&mut` (one list for both).
macro_rules! content_fields {
    ($c:expr, $($borrow:tt)+) => {
        [
            ("input_history", $($borrow)+ $c.input_history),
            ("responses_input_history", $($borrow)+ $c.responses_input_history),
            ("output_message", $($borrow)+ $c.output_message),
            ("responses_output", $($borrow)+ $c.responses_output),
            ("embedding_output", $($borrow)+ $c.embedding_output),
            ("rerank_output", $($borrow)+ $c.rerank_output),
            ("params", $($borrow)+ $c.params),
            ("tools", $($borrow)+ $c.tools),
            ("tool_calls", $($borrow)+ $c.tool_calls),
            ("speech_input", $($borrow)+ $c.speech_input),
            ("transcription_input", $($borrow)+ $c.transcription_input),
            ("image_generation_input", $($borrow)+ $c.image_generation_input),
            ("speech_output", $($borrow)+ $c.speech_output),
            ("transcription_output", $($borrow)+ $c.transcription_output),
            ("image_generation_output", $($borrow)+ $c.image_generation_output),
            ("list_models_output", $($borrow)+ $c.list_models_output),
            ("cache_debug", $($borrow)+ $c.cache_debug),
            ("raw_request", $($borrow)+ $c.raw_request),
            ("raw_response", $($borrow)+ $c.raw_response),
        ]
    };
}

impl Content {
    fn fields(&self) -> [(&'static str, &Option<Value>); 19] {
        content_fields!(self, &)
    }

    fn fields_mut(&mut self) -> [(&'static str, &mut Option<Value>); 19] {
        content_fields!(self, &mut)
    }

    /// The names of the content fields.
    pub fn field_names() -> impl Iterator<Item = &'static str> {
        Content::default()
            .fields()
            .map(|(name, _)| name)
            .into_iter()
    }
}

/// One LLM request: who sent it where, what it cost, how it went, and (optionally) what was
/// said. Serialized with Bifrost's JSON names (`object` is the request type).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(from = "LogWire")]
pub struct Log {
    /// The request id (unique in the store).
    pub id: String,
    /// For a fallback attempt: the request it falls back from.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_request_id: Option<String>,
    /// When the request started.
    pub timestamp: DateTime<Utc>,
    /// The request type: `chat_completion`, `embedding`, `responses`, `*_stream`, ….
    pub object: String,
    /// The provider (`openai`, `anthropic`, …).
    pub provider: String,
    /// The model.
    pub model: String,
    /// Retries made.
    #[serde(default)]
    pub number_of_retries: i64,
    /// Which fallback this attempt is (0: the primary).
    #[serde(default)]
    pub fallback_index: i64,
    /// The provider key used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_key_id: Option<String>,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub selected_key_name: Option<String>,
    /// The virtual key the caller used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_key_id: Option<String>,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub virtual_key_name: Option<String>,
    /// Routing engines that took part.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub routing_engines_used: Vec<String>,
    /// The routing rule applied.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_rule_id: Option<String>,
    /// Its name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub routing_rule_name: Option<String>,
    /// Milliseconds from request to response.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub latency: Option<f64>,
    /// Tokens used.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub token_usage: Option<TokenUsage>,
    /// Cost in USD.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cost: Option<f64>,
    /// How the request went.
    pub status: LogStatus,
    /// The error, for a failed request.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error_details: Option<Value>,
    /// Whether the response was streamed.
    #[serde(default)]
    pub stream: bool,
    /// Request headers and other caller data (`logging_headers`).
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub metadata: BTreeMap<String, Value>,
    /// Whether request content was cut to the size cap.
    #[serde(default)]
    pub is_large_payload_request: bool,
    /// Whether response content was cut to the size cap.
    #[serde(default)]
    pub is_large_payload_response: bool,
    /// What was sent and received.
    #[serde(flatten)]
    pub content: Content,
    /// When the store accepted the log (set by the store when absent); retention and flush
    /// key on it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created_at: Option<DateTime<Utc>>,
}

/// A log as its JSON reads: content fields inline. Deserializing [`Log`] through it spares serde's
/// buffering of every field that `#[serde(flatten)]` needs, the read model's hottest path.
#[derive(Deserialize)]
struct LogWire {
    id: String,
    #[serde(default)]
    parent_request_id: Option<String>,
    timestamp: DateTime<Utc>,
    object: String,
    provider: String,
    model: String,
    #[serde(default)]
    number_of_retries: i64,
    #[serde(default)]
    fallback_index: i64,
    #[serde(default)]
    selected_key_id: Option<String>,
    #[serde(default)]
    selected_key_name: Option<String>,
    #[serde(default)]
    virtual_key_id: Option<String>,
    #[serde(default)]
    virtual_key_name: Option<String>,
    #[serde(default)]
    routing_engines_used: Vec<String>,
    #[serde(default)]
    routing_rule_id: Option<String>,
    #[serde(default)]
    routing_rule_name: Option<String>,
    #[serde(default)]
    latency: Option<f64>,
    #[serde(default)]
    token_usage: Option<TokenUsage>,
    #[serde(default)]
    cost: Option<f64>,
    status: LogStatus,
    #[serde(default)]
    error_details: Option<Value>,
    #[serde(default)]
    stream: bool,
    #[serde(default)]
    metadata: BTreeMap<String, Value>,
    #[serde(default)]
    is_large_payload_request: bool,
    #[serde(default)]
    is_large_payload_response: bool,
    #[serde(default)]
    created_at: Option<DateTime<Utc>>,
    #[serde(default)]
    input_history: Option<Value>,
    #[serde(default)]
    responses_input_history: Option<Value>,
    #[serde(default)]
    output_message: Option<Value>,
    #[serde(default)]
    responses_output: Option<Value>,
    #[serde(default)]
    embedding_output: Option<Value>,
    #[serde(default)]
    rerank_output: Option<Value>,
    #[serde(default)]
    params: Option<Value>,
    #[serde(default)]
    tools: Option<Value>,
    #[serde(default)]
    tool_calls: Option<Value>,
    #[serde(default)]
    speech_input: Option<Value>,
    #[serde(default)]
    transcription_input: Option<Value>,
    #[serde(default)]
    image_generation_input: Option<Value>,
    #[serde(default)]
    speech_output: Option<Value>,
    #[serde(default)]
    transcription_output: Option<Value>,
    #[serde(default)]
    image_generation_output: Option<Value>,
    #[serde(default)]
    list_models_output: Option<Value>,
    #[serde(default)]
    cache_debug: Option<Value>,
    #[serde(default)]
    raw_request: Option<Value>,
    #[serde(default)]
    raw_response: Option<Value>,
}

impl From<LogWire> for Log {
    fn from(w: LogWire) -> Log {
        Log {
            id: w.id,
            parent_request_id: w.parent_request_id,
            timestamp: w.timestamp,
            object: w.object,
            provider: w.provider,
            model: w.model,
            number_of_retries: w.number_of_retries,
            fallback_index: w.fallback_index,
            selected_key_id: w.selected_key_id,
            selected_key_name: w.selected_key_name,
            virtual_key_id: w.virtual_key_id,
            virtual_key_name: w.virtual_key_name,
            routing_engines_used: w.routing_engines_used,
            routing_rule_id: w.routing_rule_id,
            routing_rule_name: w.routing_rule_name,
            latency: w.latency,
            token_usage: w.token_usage,
            cost: w.cost,
            status: w.status,
            error_details: w.error_details,
            stream: w.stream,
            metadata: w.metadata,
            is_large_payload_request: w.is_large_payload_request,
            is_large_payload_response: w.is_large_payload_response,
            created_at: w.created_at,
            content: Content {
                input_history: w.input_history,
                responses_input_history: w.responses_input_history,
                output_message: w.output_message,
                responses_output: w.responses_output,
                embedding_output: w.embedding_output,
                rerank_output: w.rerank_output,
                params: w.params,
                tools: w.tools,
                tool_calls: w.tool_calls,
                speech_input: w.speech_input,
                transcription_input: w.transcription_input,
                image_generation_input: w.image_generation_input,
                speech_output: w.speech_output,
                transcription_output: w.transcription_output,
                image_generation_output: w.image_generation_output,
                list_models_output: w.list_models_output,
                cache_debug: w.cache_debug,
                raw_request: w.raw_request,
                raw_response: w.raw_response,
            },
        }
    }
}

/// The most a log id, provider, model or key field may hold (Bifrost's `varchar(255)`).
pub const MAX_NAME_BYTES: usize = 255;

/// The largest latency a log may report, in ms (about 31 years).
pub const MAX_LATENCY_MS: f64 = 1e12;

/// The largest cost a log may report, in USD.
pub const MAX_COST: f64 = 1e9;

/// The largest token count a log may report.
pub const MAX_TOKENS: i64 = 1_000_000_000_000;

fn no_nul(field: &str, text: &str) -> Result<()> {
    if text.contains('\0') {
        return Err(Error::invalid(
            field,
            "contains U+0000 (NUL), which cannot be stored",
        ));
    }
    Ok(())
}

impl Log {
    /// A log with the fields every log has; the rest empty.
    pub fn new(
        id: impl Into<String>,
        timestamp: DateTime<Utc>,
        object: impl Into<String>,
        provider: impl Into<String>,
        model: impl Into<String>,
        status: LogStatus,
    ) -> Log {
        Log {
            id: id.into(),
            parent_request_id: None,
            timestamp,
            object: object.into(),
            provider: provider.into(),
            model: model.into(),
            number_of_retries: 0,
            fallback_index: 0,
            selected_key_id: None,
            selected_key_name: None,
            virtual_key_id: None,
            virtual_key_name: None,
            routing_engines_used: Vec::new(),
            routing_rule_id: None,
            routing_rule_name: None,
            latency: None,
            token_usage: None,
            cost: None,
            status,
            error_details: None,
            stream: false,
            metadata: BTreeMap::new(),
            is_large_payload_request: false,
            is_large_payload_response: false,
            content: Content::default(),
            created_at: None,
        }
    }

    /// `Ok` if the log can be stored: an id; names within [`MAX_NAME_BYTES`] and without NUL
    /// (which databases cannot store as text); metadata keys as filters can name them; latency, cost and token counts non-negative
    /// and within [`MAX_LATENCY_MS`], [`MAX_COST`] and [`MAX_TOKENS`], so sums never overflow.
    pub fn validate(&self) -> Result<()> {
        if self.id.is_empty() {
            return Err(Error::invalid("id", "a log needs an id"));
        }
        let names = [
            ("id", Some(&self.id)),
            ("parent_request_id", self.parent_request_id.as_ref()),
            ("object", Some(&self.object)),
            ("provider", Some(&self.provider)),
            ("model", Some(&self.model)),
            ("selected_key_id", self.selected_key_id.as_ref()),
            ("selected_key_name", self.selected_key_name.as_ref()),
            ("virtual_key_id", self.virtual_key_id.as_ref()),
            ("virtual_key_name", self.virtual_key_name.as_ref()),
            ("routing_rule_id", self.routing_rule_id.as_ref()),
            ("routing_rule_name", self.routing_rule_name.as_ref()),
        ];
        for (field, value) in names {
            if let Some(value) = value {
                if value.len() > MAX_NAME_BYTES {
                    return Err(Error::invalid(
                        field,
                        format!("{} bytes, at most {MAX_NAME_BYTES}", value.len()),
                    ));
                }
                no_nul(field, value)?;
            }
        }
        for engine in &self.routing_engines_used {
            if engine.contains(',') || engine.is_empty() {
                return Err(Error::invalid(
                    "routing_engines_used",
                    format!("{engine:?}: an engine name is not empty and holds no comma"),
                ));
            }
            no_nul("routing_engines_used", engine)?;
        }
        for (key, value) in &self.metadata {
            crate::filter::validate_metadata_key(key)?;
            if let Value::String(text) = value {
                no_nul(&format!("metadata.{key}"), text)?;
            }
        }
        let limits = [
            ("latency", self.latency, MAX_LATENCY_MS),
            ("cost", self.cost, MAX_COST),
        ];
        for (field, value, max) in limits {
            if let Some(v) = value
                && !(v.is_finite() && (0.0..=max).contains(&v))
            {
                return Err(Error::invalid(
                    field,
                    format!("{v} is not a number from 0 to {max}"),
                ));
            }
        }
        if let Some(usage) = &self.token_usage {
            let counts = [
                ("token_usage.prompt_tokens", usage.prompt_tokens),
                ("token_usage.completion_tokens", usage.completion_tokens),
                ("token_usage.total_tokens", usage.total_tokens),
                ("token_usage.cached_read_tokens", usage.cached_read_tokens()),
            ];
            for (field, n) in counts {
                if !(0..=MAX_TOKENS).contains(&n) {
                    return Err(Error::invalid(
                        field,
                        format!("{n} is not a count from 0 to {MAX_TOKENS}"),
                    ));
                }
            }
        }
        Ok(())
    }

    /// Prompt, completion, total and cached-read tokens (0 where not reported).
    pub fn tokens(&self) -> [i64; 4] {
        self.token_usage.as_ref().map_or([0; 4], |u| {
            [
                u.prompt_tokens,
                u.completion_tokens,
                u.total(),
                u.cached_read_tokens(),
            ]
        })
    }

    /// The log as a list page shows it: no content but the last input message.
    pub fn summary(&self) -> Log {
        self.clone().as_summary(Log::clone)
    }

    /// Runs `f` on the log as [`Log::summary`] shows it, without copying the content.
    pub(crate) fn as_summary<R>(&mut self, f: impl FnOnce(&Log) -> R) -> R {
        let content = std::mem::take(&mut self.content);
        self.content.input_history = match &content.input_history {
            Some(Value::Array(messages)) => messages.last().map(|m| Value::Array(vec![m.clone()])),
            _ => None,
        };
        let result = f(self);
        self.content = content;
        result
    }

    /// Drops content (content logging off).
    pub fn drop_content(&mut self) {
        self.content = Content::default();
    }

    /// Replaces each content field whose JSON is longer than `max_bytes` by a preview string
    /// of its first `max_bytes` bytes, and flags the side (request or response) it belongs to.
    pub fn cap_content(&mut self, max_bytes: usize) {
        let mut request = false;
        let mut response = false;
        for (name, field) in self.content.fields_mut() {
            let Some(value) = field else { continue };
            // The estimate is never below the JSON's length, so most fields skip serializing.
            if json_size_bound(value) <= max_bytes {
                continue;
            }
            let text = value.to_string();
            if text.len() <= max_bytes {
                continue;
            }
            let mut end = max_bytes;
            while !text.is_char_boundary(end) {
                end -= 1;
            }
            *field = Some(Value::String(text[..end].to_owned()));
            if REQUEST_CONTENT.contains(&name) {
                request = true;
            } else {
                response = true;
            }
        }
        self.is_large_payload_request |= request;
        self.is_large_payload_response |= response;
    }

    /// The text a content search looks in: every message text, prompt and error message,
    /// lower-cased, at most `max_bytes`.
    pub fn content_summary(&self, max_bytes: usize) -> String {
        let mut out = String::new();
        for (name, field) in self.content.fields() {
            if matches!(name, "raw_request" | "raw_response" | "embedding_output") {
                continue;
            }
            if let Some(value) = field {
                collect_text(value, false, &mut out, max_bytes);
            }
        }
        if let Some(error) = &self.error_details {
            collect_text(error, false, &mut out, max_bytes);
        }
        out.to_lowercase()
    }
}

/// A bound on the length of `value`'s JSON that is cheap to take (escapes counted at their
/// longest, numbers at 24 bytes).
pub(crate) fn json_size_bound(value: &Value) -> usize {
    match value {
        Value::Null | Value::Bool(_) => 5,
        Value::Number(_) => 24,
        Value::String(s) => s.len() * 6 + 2,
        Value::Array(items) => 2 + items.iter().map(|v| json_size_bound(v) + 1).sum::<usize>(),
        Value::Object(map) => {
            2 + map
                .iter()
                .map(|(k, v)| k.len() * 6 + 4 + json_size_bound(v))
                .sum::<usize>()
        }
    }
}

/// Appends the text leaves of `value` under keys that hold prose (or all of a bare string).
fn collect_text(value: &Value, prose: bool, out: &mut String, max_bytes: usize) {
    if out.len() >= max_bytes {
        return;
    }
    match value {
        Value::String(s) if prose || out.is_empty() && s.len() < max_bytes => {
            let room = max_bytes - out.len();
            let mut end = s.len().min(room);
            while !s.is_char_boundary(end) {
                end -= 1;
            }
            if !out.is_empty() {
                out.push(' ');
            }
            out.extend(s[..end].chars().filter(|c| *c != '\0'));
        }
        Value::Array(items) => items
            .iter()
            .for_each(|v| collect_text(v, prose, out, max_bytes)),
        Value::Object(map) => {
            for (k, v) in map {
                let prose = matches!(
                    k.as_str(),
                    "content" | "text" | "message" | "input" | "prompt" | "reasoning" | "refusal"
                );
                collect_text(v, prose, out, max_bytes);
            }
        }
        _ => {}
    }
}

/// Changes to a log, as Bifrost's `Update(id, map)` takes them: field names (JSON names of
/// [`Log`]) and their new values, `null` clearing a field. A streaming completion that
/// finishes sets `status`, `latency`, `token_usage`, `output_message`, ….
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LogUpdate(pub Map<String, Value>);

impl LogUpdate {
    /// No changes.
    pub fn new() -> LogUpdate {
        LogUpdate::default()
    }

    /// Sets field `name` to `value`.
    pub fn set(mut self, name: &str, value: impl Serialize) -> LogUpdate {
        let value = serde_json::to_value(value).unwrap_or(Value::Null);
        self.0.insert(name.to_owned(), value);
        self
    }

    /// Sets the status.
    pub fn status(self, status: LogStatus) -> LogUpdate {
        self.set("status", status)
    }

    /// Sets the latency in milliseconds.
    pub fn latency(self, ms: f64) -> LogUpdate {
        self.set("latency", ms)
    }

    /// Sets the token usage.
    pub fn token_usage(self, usage: TokenUsage) -> LogUpdate {
        self.set("token_usage", usage)
    }

    /// Sets the cost in USD.
    pub fn cost(self, usd: f64) -> LogUpdate {
        self.set("cost", usd)
    }

    /// Sets the assistant message.
    pub fn output_message(self, message: Value) -> LogUpdate {
        self.set("output_message", message)
    }

    /// Sets the error.
    pub fn error_details(self, error: Value) -> LogUpdate {
        self.set("error_details", error)
    }

    /// `Ok` if every field is one a log has and may change (`id` and `created_at` may not).
    pub fn validate(&self) -> Result<()> {
        if self.0.is_empty() {
            return Err(Error::invalid("update", "no fields to change"));
        }
        for name in self.0.keys() {
            if matches!(name.as_str(), "id" | "created_at") {
                return Err(Error::invalid(
                    name,
                    "a log's id and created_at never change",
                ));
            }
            if !LOG_FIELDS.contains(&name.as_str()) && !Content::field_names().any(|f| f == name) {
                return Err(Error::invalid(name, "not a field of a log"));
            }
        }
        Ok(())
    }

    /// `log` with these changes, checked as a whole (a wrong type names its field).
    pub fn apply_to(&self, log: &Log) -> Result<Log> {
        let mut value = serde_json::to_value(log).map_err(|e| Error::invalid("update", e))?;
        let object = value
            .as_object_mut()
            .expect("a log serializes to an object");
        for (name, v) in &self.0 {
            object.insert(name.clone(), v.clone());
        }
        let updated: Log =
            serde_json::from_value(value).map_err(|e| Error::invalid("update", e))?;
        updated.validate()?;
        Ok(updated)
    }
}

/// The fields of [`Log`] outside its content.
const LOG_FIELDS: &[&str] = &[
    "id",
    "parent_request_id",
    "timestamp",
    "object",
    "provider",
    "model",
    "number_of_retries",
    "fallback_index",
    "selected_key_id",
    "selected_key_name",
    "virtual_key_id",
    "virtual_key_name",
    "routing_engines_used",
    "routing_rule_id",
    "routing_rule_name",
    "latency",
    "token_usage",
    "cost",
    "status",
    "error_details",
    "stream",
    "metadata",
    "is_large_payload_request",
    "is_large_payload_response",
    "created_at",
];

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn chat() -> Log {
        let mut log = Log::new(
            "req-1",
            Utc::now(),
            "chat_completion",
            "openai",
            "gpt-4o",
            LogStatus::Success,
        );
        log.content.input_history = Some(json!([
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "What is the Capital of France?"}
        ]));
        log.content.output_message = Some(json!({"role": "assistant", "content": "Paris."}));
        log
    }

    #[test]
    fn a_log_serializes_with_bifrost_names() {
        let log = chat();
        let v = serde_json::to_value(&log).unwrap();
        assert_eq!(v["object"], "chat_completion");
        assert_eq!(v["status"], "success");
        assert_eq!(v["output_message"]["content"], "Paris.");
        let back: Log = serde_json::from_value(v).unwrap();
        assert_eq!(back, log);
    }

    #[test]
    fn the_summary_keeps_only_the_last_input_message() {
        let summary = chat().summary();
        assert_eq!(
            summary.content.input_history,
            Some(json!([{"role": "user", "content": "What is the Capital of France?"}]))
        );
        assert_eq!(summary.content.output_message, None);
    }

    #[test]
    fn the_content_summary_holds_message_text_lower_cased() {
        let text = chat().content_summary(10_000);
        assert!(text.contains("capital of france"), "{text}");
        assert!(text.contains("paris."), "{text}");
        assert!(!text.contains("assistant"), "roles are not prose: {text}");
    }

    #[test]
    fn capping_content_flags_the_side_it_cut() {
        let mut log = chat();
        log.content.output_message = Some(json!({"content": "é".repeat(200)}));
        log.cap_content(151);
        assert!(log.is_large_payload_response && !log.is_large_payload_request);
        let Some(Value::String(preview)) = &log.content.output_message else {
            panic!(
                "expected a preview string, got {:?}",
                log.content.output_message
            );
        };
        assert!(preview.len() <= 151);
    }

    #[test]
    fn an_update_of_an_unknown_or_fixed_field_is_refused_by_name() {
        let e = LogUpdate::new()
            .set("colour", "red")
            .validate()
            .unwrap_err();
        assert!(e.to_string().contains("colour"), "{e}");
        let e = LogUpdate::new().set("id", "x").validate().unwrap_err();
        assert!(e.to_string().contains("id"), "{e}");
        let e = LogUpdate::new()
            .set("latency", "fast")
            .apply_to(&chat())
            .unwrap_err();
        assert!(e.to_string().contains("update"), "{e}");
    }

    #[test]
    fn the_size_bound_is_never_below_the_json_length() {
        let values = [
            json!({"a": "x\n\"y\u{1}", "b": [1.5e300, -7, null, true], "é": {"k": "漢字"}}),
            serde_json::to_value(chat()).unwrap(),
            json!("\u{0}".repeat(50)),
        ];
        for v in values {
            assert!(json_size_bound(&v) >= v.to_string().len(), "{v}");
        }
    }

    #[test]
    fn a_log_deserializes_from_its_flat_json_with_content_inline() {
        let log = chat();
        let text = serde_json::to_string(&log).unwrap();
        assert!(text.contains("\"output_message\":"), "{text}");
        assert_eq!(serde_json::from_str::<Log>(&text).unwrap(), log);
    }

    #[test]
    fn nul_and_outsized_numbers_are_refused_by_name() {
        let mut log = chat();
        log.provider = "a\0b".into();
        assert!(log.validate().unwrap_err().to_string().contains("provider"));
        let mut log = chat();
        log.metadata.insert("team".into(), json!("x\0"));
        assert!(
            log.validate()
                .unwrap_err()
                .to_string()
                .contains("metadata.team")
        );
        let mut log = chat();
        log.token_usage = Some(TokenUsage {
            prompt_tokens: 5_000_000_000_000_000_000,
            ..TokenUsage::default()
        });
        assert!(
            log.validate()
                .unwrap_err()
                .to_string()
                .contains("prompt_tokens")
        );
        let mut log = chat();
        log.latency = Some(1e308);
        assert!(log.validate().unwrap_err().to_string().contains("latency"));
        let mut log = chat();
        log.content.output_message = Some(json!({"content": "nul\0inside"}));
        assert!(!log.content_summary(1000).contains('\0'));
    }

    #[test]
    fn validation_names_the_bad_field() {
        let mut log = chat();
        log.cost = Some(f64::NAN);
        assert!(log.validate().unwrap_err().to_string().contains("cost"));
        let mut log = chat();
        log.model = "m".repeat(300);
        assert!(log.validate().unwrap_err().to_string().contains("model"));
    }
}
