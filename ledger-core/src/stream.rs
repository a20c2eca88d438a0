//! The typed layer: a [`Stream`] is a cheap handle on one stream of a store, with a codec, a
//! schema version and the upcasters that bring older entries up to it.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::Arc;

use futures::stream::{BoxStream, StreamExt};
use serde_json::Value;

use crate::codec::{Codec, JsonCodec};
use crate::entry::{
    AppendInput, AppendOutcome, AppendResult, Entry, EntryId, ExpectedVersion, RawPayload,
    StreamStat,
};
use crate::error::{Error, Result};
use crate::name::validate_stream_id;
use crate::read::ReadOptions;
use crate::store::Store;
use crate::subscribe::SubscribeOptions;
use crate::upcast::{Upcaster, UpcasterChain};

/// A typed handle on one stream of a store.
///
/// Appends encode `T` with the codec and stamp the stream's schema version; reads upcast entries
/// written under an older schema version (on the decoded JSON), then decode them into `T`.
/// Streams are cheap: create one per operation.
///
/// ```
/// use ledger_core::{AppendInput, ExpectedVersion, FieldMapper, MemoryStore, ReadOptions, Stream};
/// use serde::{Deserialize, Serialize};
///
/// #[derive(Debug, PartialEq, Serialize, Deserialize)]
/// struct Deposited { account: String, cents: u64 }
///
/// # #[tokio::main(flavor = "current_thread")]
/// # async fn main() -> ledger_core::Result<()> {
/// let store = MemoryStore::new();
/// // Schema version 1 called the field "amount".
/// let v1 = serde_json::json!({"account": "acct-1", "amount": 500});
/// store.append("acct-1", vec![AppendInput::new(v1)], ExpectedVersion::Any).await?;
///
/// let stream = Stream::<Deposited>::new(&store, "acct-1")?
///     .schema_version(2)?
///     .upcaster(FieldMapper::new(1).rename("amount", "cents"));
/// let deposit = Deposited { account: "acct-1".into(), cents: 250 };
/// stream.append_one(deposit, ExpectedVersion::Exact(1)).await?;
///
/// let entries = stream.read(&ReadOptions::new()).await?;
/// let cents: Vec<u64> = entries.iter().map(|e| e.payload.cents).collect();
/// assert_eq!(cents, [500, 250]);
/// assert_eq!(entries[0].schema_version, 1); // reported as written
/// # Ok(())
/// # }
/// ```
pub struct Stream<T, C = JsonCodec> {
    store: Store,
    id: String,
    codec: C,
    schema_version: u32,
    upcasters: UpcasterChain,
    _payload: PhantomData<fn() -> T>,
}

impl<T, C: Clone> Clone for Stream<T, C> {
    fn clone(&self) -> Self {
        Stream {
            store: self.store.clone(),
            id: self.id.clone(),
            codec: self.codec.clone(),
            schema_version: self.schema_version,
            upcasters: self.upcasters.clone(),
            _payload: PhantomData,
        }
    }
}

impl<T> Stream<T, JsonCodec>
where
    JsonCodec: Codec<T>,
{
    /// A stream of `T` encoded as JSON, at schema version 1.
    pub fn new(store: impl AsRef<Store>, id: impl Into<String>) -> Result<Self> {
        Self::with_codec(store, id, JsonCodec)
    }
}

impl<T, C: Codec<T>> Stream<T, C> {
    /// A stream with a custom codec, at schema version 1.
    pub fn with_codec(store: impl AsRef<Store>, id: impl Into<String>, codec: C) -> Result<Self> {
        let id = id.into();
        validate_stream_id(&id)?;
        Ok(Stream {
            store: store.as_ref().clone(),
            id,
            codec,
            schema_version: 1,
            upcasters: UpcasterChain::default(),
            _payload: PhantomData,
        })
    }

    /// Sets the schema version new entries are stamped with and old ones are upcast to (≥ 1).
    pub fn schema_version(mut self, version: u32) -> Result<Self> {
        if version == 0 {
            return Err(Error::InvalidArgument(
                "schema version 0 is invalid; versions start at 1".into(),
            ));
        }
        self.schema_version = version;
        Ok(self)
    }

    /// Adds an upcasting step.
    pub fn upcaster(mut self, step: impl Upcaster + 'static) -> Self {
        self.upcasters.push(Arc::new(step));
        self
    }

    /// The stream id.
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The schema version of new entries.
    pub fn current_schema_version(&self) -> u32 {
        self.schema_version
    }

    /// The underlying store.
    pub fn store(&self) -> &Store {
        &self.store
    }

    /// Appends payloads (no keys, metadata or tags).
    pub async fn append(
        &self,
        payloads: Vec<T>,
        expected: ExpectedVersion,
    ) -> Result<AppendResult> {
        self.append_inputs(
            payloads.into_iter().map(AppendInput::new).collect(),
            expected,
        )
        .await
    }

    /// Appends one payload and returns its outcome.
    pub async fn append_one(&self, payload: T, expected: ExpectedVersion) -> Result<AppendOutcome> {
        let result = self.append(vec![payload], expected).await?;
        Ok(result.outcomes[0])
    }

    /// Appends inputs with keys, metadata and tags. Each is stamped with the stream's schema
    /// version, whatever its own `schema_version` says.
    pub async fn append_inputs(
        &self,
        inputs: Vec<AppendInput<T>>,
        expected: ExpectedVersion,
    ) -> Result<AppendResult> {
        let encoded = inputs
            .into_iter()
            .map(|input| {
                let mut raw =
                    input.map_payload(|p| self.codec.encode(&p).map_err(Error::Encode))?;
                raw.schema_version = self.schema_version;
                Ok(raw)
            })
            .collect::<Result<Vec<_>>>()?;
        self.store.append(&self.id, encoded, expected).await
    }

    /// Reads one page, upcast and decoded. One undecodable entry fails the page with its id.
    pub async fn read(&self, options: &ReadOptions) -> Result<Vec<Entry<T>>> {
        let raw = self.store.read_json(&self.id, options).await?;
        raw.into_iter().map(|e| self.decode_json(e)).collect()
    }

    /// Decodes one entry read as JSON text: straight from the text when it needs no upcasting,
    /// else through [`Stream::decode`].
    fn decode_json(&self, entry: Entry<RawPayload>) -> Result<Entry<T>> {
        let id = entry.id;
        if entry.schema_version >= self.schema_version {
            return entry.map_payload(|payload| {
                self.codec
                    .decode_json(&payload)
                    .map_err(|source| Error::Decode { id, source })
            });
        }
        let entry = entry.map_payload(|payload| {
            serde_json::from_str(payload.get())
                .map_err(|e| Error::corrupt(format_args!("payload of entry {id}: {e}")))
        })?;
        self.decode(entry)
    }

    /// Upcasts and decodes one raw entry of this stream.
    pub fn decode(&self, entry: Entry) -> Result<Entry<T>> {
        let from = entry.schema_version;
        let id = entry.id;
        entry.map_payload(|payload: Value| {
            let current = self.upcasters.apply(payload, from, self.schema_version)?;
            self.codec
                .decode(current)
                .map_err(|source| Error::Decode { id, source })
        })
    }

    /// Number of entries.
    pub async fn count(&self) -> Result<u64> {
        self.store.count(&self.id).await
    }

    /// Count, first/last id and last version.
    pub async fn stat(&self) -> Result<StreamStat> {
        self.store.stat(&self.id).await
    }

    /// Replaces one entry's tags.
    pub async fn set_tags(&self, id: EntryId, tags: BTreeSet<String>) -> Result<()> {
        self.store.set_tags(&self.id, id, tags).await
    }

    /// Merges annotation changes into one entry (`None` deletes a key).
    pub async fn set_annotations(
        &self,
        id: EntryId,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        self.store.set_annotations(&self.id, id, changes).await
    }

    /// Deletes entries with id `<= up_to`.
    pub async fn trim(&self, up_to: EntryId) -> Result<u64> {
        self.store.trim(&self.id, up_to).await
    }

    /// A handle that can only read this stream: it has no write methods at all.
    pub fn read_only(self) -> ReadOnlyStream<T, C> {
        ReadOnlyStream { inner: self }
    }

    /// Optimistic concurrency in one call: reads the whole stream, lets `decide` turn its
    /// entries into new payloads, and appends them expecting the version it read. If another
    /// writer appended in between ([`Error::Conflict`]), it reads and decides again, up to
    /// `attempts` times in all, and returns the last conflict if every attempt lost. `decide`
    /// returning nothing appends nothing.
    ///
    /// ```
    /// use ledger_core::{MemoryStore, Stream};
    /// # #[tokio::main(flavor = "current_thread")]
    /// # async fn main() -> ledger_core::Result<()> {
    /// let store = MemoryStore::new();
    /// let seats = Stream::<String>::new(&store, "flight-7")?;
    /// // Book seat 1A unless someone holds it: the check and the append cannot race.
    /// let booked = seats
    ///     .decide(3, |history| {
    ///         let taken = history.iter().any(|e| e.payload == "1A");
    ///         Ok(if taken { vec![] } else { vec!["1A".to_owned()] })
    ///     })
    ///     .await?;
    /// assert_eq!(booked.version, 1);
    /// # Ok(())
    /// # }
    /// ```
    pub async fn decide<F>(&self, attempts: u32, mut decide: F) -> Result<AppendResult>
    where
        F: FnMut(&[Entry<T>]) -> Result<Vec<T>>,
    {
        let mut attempt = 0;
        loop {
            attempt += 1;
            let history = self.load().await?;
            let version = match history.last() {
                Some(last) => last.version,
                None => self.stat().await?.last_version,
            };
            let payloads = decide(&history)?;
            if payloads.is_empty() {
                return Ok(AppendResult {
                    outcomes: Vec::new(),
                    version,
                });
            }
            match self.append(payloads, ExpectedVersion::Exact(version)).await {
                Err(e) if e.is_conflict() && attempt < attempts => continue,
                other => return other,
            }
        }
    }

    /// Every entry of the stream, decoded, in order.
    async fn load(&self) -> Result<Vec<Entry<T>>> {
        let mut history = Vec::new();
        let mut options = ReadOptions::new().limit(crate::MAX_LIMIT);
        loop {
            let page = self.read(&options).await?;
            let full = page.len() == options.limit as usize;
            options.after = page.last().map(|e| e.id);
            history.extend(page);
            if !full {
                return Ok(history);
            }
        }
    }
}

impl<T, C> Stream<T, C>
where
    T: Send + 'static,
    C: Codec<T> + Clone + 'static,
{
    /// Every entry `options` selects, upcast and decoded, reading page after page (of
    /// `options.limit`) as the stream is consumed. The first error ends it.
    pub fn read_all(&self, options: ReadOptions) -> BoxStream<'static, Result<Entry<T>>> {
        let decoder = self.clone();
        until_error(
            self.store
                .read_all_json(&self.id, options)
                .map(move |item| item.and_then(|entry| decoder.decode_json(entry))),
        )
    }

    /// Entries with version greater than `after_version` (0: from the start), upcast and decoded,
    /// then live entries as they are appended. No entry is lost or repeated across the switch.
    /// An entry that cannot be upcast or decoded is yielded as an error, which ends the
    /// subscription (like every error that is not retried; see [`crate::subscribe_stream`]).
    pub fn subscribe(
        &self,
        after_version: u64,
        options: SubscribeOptions,
    ) -> BoxStream<'static, Result<Entry<T>>> {
        let decoder = self.clone();
        until_error(
            self.store
                .subscribe(&self.id, after_version, options)
                .map(move |item| item.and_then(|entry| decoder.decode(entry))),
        )
    }
}

/// `items` up to and including its first error.
fn until_error<T: Send + 'static>(
    items: impl futures::Stream<Item = Result<T>> + Send + 'static,
) -> BoxStream<'static, Result<T>> {
    items
        .scan(false, |failed, item| {
            let next = (!*failed).then_some(item);
            *failed = matches!(next, Some(Err(_)));
            std::future::ready(next)
        })
        .boxed()
}

/// A [`Stream`] that can only be read: it has no write methods, so a write through it does not
/// compile.
///
/// ```compile_fail
/// use ledger_core::{ExpectedVersion, MemoryStore, Stream};
/// # async fn f() -> ledger_core::Result<()> {
/// let read_only = Stream::<u32>::new(MemoryStore::new(), "s")?.read_only();
/// read_only.append(vec![1], ExpectedVersion::Any).await?; // no such method
/// # Ok(())
/// # }
/// ```
pub struct ReadOnlyStream<T, C = JsonCodec> {
    inner: Stream<T, C>,
}

impl<T, C: Codec<T>> ReadOnlyStream<T, C> {
    /// The stream id.
    pub fn id(&self) -> &str {
        self.inner.id()
    }

    /// Reads one page, upcast and decoded.
    pub async fn read(&self, options: &ReadOptions) -> Result<Vec<Entry<T>>> {
        self.inner.read(options).await
    }

    /// Number of entries.
    pub async fn count(&self) -> Result<u64> {
        self.inner.count().await
    }

    /// Count, first/last id and last version.
    pub async fn stat(&self) -> Result<StreamStat> {
        self.inner.stat().await
    }
}

impl<T, C> ReadOnlyStream<T, C>
where
    T: Send + 'static,
    C: Codec<T> + Clone + 'static,
{
    /// See [`Stream::read_all`].
    pub fn read_all(&self, options: ReadOptions) -> BoxStream<'static, Result<Entry<T>>> {
        self.inner.read_all(options)
    }

    /// See [`Stream::subscribe`].
    pub fn subscribe(
        &self,
        after_version: u64,
        options: SubscribeOptions,
    ) -> BoxStream<'static, Result<Entry<T>>> {
        self.inner.subscribe(after_version, options)
    }
}
