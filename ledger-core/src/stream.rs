//! The typed layer: a [`Stream`] is a cheap handle on one stream of a store, with a codec, a
//! schema version and the upcasters that bring older entries up to it.

use std::collections::{BTreeMap, BTreeSet};
use std::marker::PhantomData;
use std::sync::Arc;

use futures::stream::{BoxStream, StreamExt};
use serde_json::Value;

use crate::codec::{Codec, JsonCodec};
use crate::entry::{AppendInput, AppendOutcome, Entry, ExpectedVersion, StreamStat};
use crate::error::{Error, Result};
use crate::name::validate_stream_id;
use crate::read::ReadOptions;
use crate::store::Store;
use crate::subscribe::{SubscribeOptions, subscribe_stream};
use crate::upcast::{Upcaster, UpcasterChain};

/// A typed handle on one stream of a store.
///
/// Appends encode `T` with the codec and stamp the stream's schema version; reads upcast entries
/// written under an older schema version (on the decoded JSON), then decode them into `T`.
/// Streams are cheap: create one per operation.
///
/// ```
/// use ledger_core::{AppendInput, ExpectedVersion, FieldMapper, MemoryStore, ReadOptions, Store, Stream};
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
/// let stream = Stream::<_, Deposited>::new(store.clone(), "acct-1")?
///     .schema_version(2)?
///     .upcaster(FieldMapper::new(1).rename("amount", "cents"));
/// let deposit = Deposited { account: "acct-1".into(), cents: 250 };
/// stream.append(vec![deposit], ExpectedVersion::Exact(1)).await?;
///
/// let entries = stream.read(&ReadOptions::new()).await?;
/// let cents: Vec<u64> = entries.iter().map(|e| e.payload.cents).collect();
/// assert_eq!(cents, [500, 250]);
/// assert_eq!(entries[0].schema_version, 1); // reported as written
/// # Ok(())
/// # }
/// ```
pub struct Stream<S: Store, T, C = JsonCodec> {
    store: S,
    id: String,
    codec: C,
    schema_version: u32,
    upcasters: UpcasterChain,
    _payload: PhantomData<fn() -> T>,
}

impl<S: Store + Clone, T, C: Clone> Clone for Stream<S, T, C> {
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

impl<S: Store, T> Stream<S, T, JsonCodec>
where
    JsonCodec: Codec<T>,
{
    /// A stream of `T` encoded as JSON, at schema version 1.
    pub fn new(store: S, id: impl Into<String>) -> Result<Self> {
        Self::with_codec(store, id, JsonCodec)
    }
}

impl<S: Store, T, C: Codec<T>> Stream<S, T, C> {
    /// A stream with a custom codec, at schema version 1.
    pub fn with_codec(store: S, id: impl Into<String>, codec: C) -> Result<Self> {
        let id = id.into();
        validate_stream_id(&id)?;
        Ok(Stream {
            store,
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
    pub fn store(&self) -> &S {
        &self.store
    }

    /// Appends payloads (no keys, metadata or tags).
    pub async fn append(
        &self,
        payloads: Vec<T>,
        expected: ExpectedVersion,
    ) -> Result<Vec<AppendOutcome<S::Id>>> {
        self.append_inputs(
            payloads.into_iter().map(AppendInput::new).collect(),
            expected,
        )
        .await
    }

    /// Appends inputs with keys, metadata and tags. Each is stamped with the stream's schema
    /// version, whatever its own `schema_version` says.
    pub async fn append_inputs(
        &self,
        inputs: Vec<AppendInput<T>>,
        expected: ExpectedVersion,
    ) -> Result<Vec<AppendOutcome<S::Id>>> {
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
    pub async fn read(&self, options: &ReadOptions<S::Id>) -> Result<Vec<Entry<S::Id, T>>> {
        let raw = self.store.read(&self.id, options).await?;
        raw.into_iter().map(|e| self.decode(e)).collect()
    }

    /// Upcasts and decodes one raw entry of this stream.
    pub fn decode(&self, entry: Entry<S::Id>) -> Result<Entry<S::Id, T>> {
        let from = entry.schema_version;
        let id = entry.id.to_string();
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
    pub async fn stat(&self) -> Result<StreamStat<S::Id>> {
        self.store.stat(&self.id).await
    }

    /// Replaces one entry's tags.
    pub async fn set_tags(&self, id: &S::Id, tags: BTreeSet<String>) -> Result<()> {
        self.store.set_tags(&self.id, id, tags).await
    }

    /// Merges annotation changes into one entry (`None` deletes a key).
    pub async fn set_annotations(
        &self,
        id: &S::Id,
        changes: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        self.store.set_annotations(&self.id, id, changes).await
    }

    /// Deletes entries with id `<= up_to`.
    pub async fn trim(&self, up_to: &S::Id) -> Result<u64> {
        self.store.trim(&self.id, up_to).await
    }

    /// A handle that reads this stream and refuses every write with [`Error::ReadOnly`].
    pub fn read_only(self) -> ReadOnlyStream<S, T, C> {
        ReadOnlyStream { inner: self }
    }
}

impl<S, T, C> Stream<S, T, C>
where
    S: Store + Clone + 'static,
    T: Send + 'static,
    C: Codec<T> + Clone + 'static,
{
    /// Entries with version greater than `after_version` (0: from the start), upcast and decoded,
    /// then live entries as they are appended. No entry is lost or repeated across the switch.
    /// An entry that cannot be upcast or decoded is yielded as an error, which ends the
    /// subscription (like every error that is not retried; see [`subscribe_stream`]).
    pub fn subscribe(
        &self,
        after_version: u64,
        options: SubscribeOptions,
    ) -> BoxStream<'static, Result<Entry<S::Id, T>>> {
        let decoder = self.clone();
        subscribe_stream(self.store.clone(), self.id.clone(), after_version, options)
            .map(move |item| item.and_then(|entry| decoder.decode(entry)))
            .scan(false, |failed, item| {
                // The first error is the last item.
                let next = (!*failed).then_some(item);
                *failed = matches!(next, Some(Err(_)));
                std::future::ready(next)
            })
            .boxed()
    }
}

/// A [`Stream`] that can only be read: every write returns [`Error::ReadOnly`].
pub struct ReadOnlyStream<S: Store, T, C = JsonCodec> {
    inner: Stream<S, T, C>,
}

impl<S: Store, T, C: Codec<T>> ReadOnlyStream<S, T, C> {
    /// The stream id.
    pub fn id(&self) -> &str {
        self.inner.id()
    }

    /// Reads one page, upcast and decoded.
    pub async fn read(&self, options: &ReadOptions<S::Id>) -> Result<Vec<Entry<S::Id, T>>> {
        self.inner.read(options).await
    }

    /// Number of entries.
    pub async fn count(&self) -> Result<u64> {
        self.inner.count().await
    }

    /// Count, first/last id and last version.
    pub async fn stat(&self) -> Result<StreamStat<S::Id>> {
        self.inner.stat().await
    }

    fn refuse<R>(&self) -> Result<R> {
        Err(Error::ReadOnly(self.inner.id.clone()))
    }

    /// Always [`Error::ReadOnly`].
    pub async fn append(&self, _: Vec<T>, _: ExpectedVersion) -> Result<Vec<AppendOutcome<S::Id>>> {
        self.refuse()
    }

    /// Always [`Error::ReadOnly`].
    pub async fn append_inputs(
        &self,
        _: Vec<AppendInput<T>>,
        _: ExpectedVersion,
    ) -> Result<Vec<AppendOutcome<S::Id>>> {
        self.refuse()
    }

    /// Always [`Error::ReadOnly`].
    pub async fn set_tags(&self, _: &S::Id, _: BTreeSet<String>) -> Result<()> {
        self.refuse()
    }

    /// Always [`Error::ReadOnly`].
    pub async fn set_annotations(
        &self,
        _: &S::Id,
        _: BTreeMap<String, Option<String>>,
    ) -> Result<()> {
        self.refuse()
    }

    /// Always [`Error::ReadOnly`].
    pub async fn trim(&self, _: &S::Id) -> Result<u64> {
        self.refuse()
    }
}

impl<S, T, C> ReadOnlyStream<S, T, C>
where
    S: Store + Clone + 'static,
    T: Send + 'static,
    C: Codec<T> + Clone + 'static,
{
    /// See [`Stream::subscribe`].
    pub fn subscribe(
        &self,
        after_version: u64,
        options: SubscribeOptions,
    ) -> BoxStream<'static, Result<Entry<S::Id, T>>> {
        self.inner.subscribe(after_version, options)
    }
}
