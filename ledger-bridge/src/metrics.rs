//! The bridge's OpenTelemetry instruments. Every measurement carries `bridge.name`; none carries
//! a stream name, which would make the number of series unbounded.

use opentelemetry::KeyValue;
use opentelemetry::metrics::{Counter, Gauge, Histogram, Meter};

use ledger_core::MutationKind;

/// Where a failure happened, as the `stage` attribute of `ledger.bridge.errors`.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Stage {
    Source,
    Sink,
}

impl Stage {
    fn as_str(self) -> &'static str {
        match self {
            Stage::Source => "source",
            Stage::Sink => "sink",
        }
    }
}

pub(crate) struct Metrics {
    name: KeyValue,
    polls: Counter<u64>,
    applied: Counter<u64>,
    skipped: Counter<u64>,
    errors: Counter<u64>,
    lag_records: Gauge<u64>,
    lag_seconds: Gauge<f64>,
    page_duration: Histogram<f64>,
}

impl Metrics {
    pub(crate) fn new(meter: &Meter, bridge: &str) -> Metrics {
        Metrics {
            name: KeyValue::new("bridge.name", bridge.to_owned()),
            polls: meter
                .u64_counter("ledger.bridge.polls")
                .with_description("Reads of the source's change feed")
                .build(),
            applied: meter
                .u64_counter("ledger.bridge.records.applied")
                .with_description("Feed records the sink applied")
                .build(),
            skipped: meter
                .u64_counter("ledger.bridge.records.skipped")
                .with_description("Feed records passed over because their kind is skipped")
                .build(),
            errors: meter
                .u64_counter("ledger.bridge.errors")
                .with_description(
                    "Failed reads of the source and applies to the sink, retried or not",
                )
                .build(),
            lag_records: meter
                .u64_gauge("ledger.bridge.lag.records")
                .with_description(
                    "Feed positions between the source's head and the last record applied",
                )
                .build(),
            lag_seconds: meter
                .f64_gauge("ledger.bridge.lag.seconds")
                .with_unit("s")
                .with_description("Age of the oldest record not yet applied, when it was read")
                .build(),
            page_duration: meter
                .f64_histogram("ledger.bridge.page.duration")
                .with_unit("s")
                .with_description("Time to apply one page of records to the sink")
                .build(),
        }
    }

    pub(crate) fn poll(&self) {
        self.polls.add(1, std::slice::from_ref(&self.name));
    }

    pub(crate) fn applied(&self, records: u64) {
        self.applied.add(records, std::slice::from_ref(&self.name));
    }

    pub(crate) fn skipped(&self, kind: MutationKind) {
        let attributes = [
            self.name.clone(),
            KeyValue::new("mutation.type", kind.as_str()),
        ];
        self.skipped.add(1, &attributes);
    }

    pub(crate) fn error(&self, stage: Stage) {
        let attributes = [self.name.clone(), KeyValue::new("stage", stage.as_str())];
        self.errors.add(1, &attributes);
    }

    pub(crate) fn lag(&self, records: u64, seconds: f64) {
        self.lag_records
            .record(records, std::slice::from_ref(&self.name));
        self.lag_seconds
            .record(seconds, std::slice::from_ref(&self.name));
    }

    pub(crate) fn page(&self, seconds: f64) {
        self.page_duration
            .record(seconds, std::slice::from_ref(&self.name));
    }
}
