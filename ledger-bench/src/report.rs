//! `BENCHMARKS.md`: the measured ratios and the settings they were measured with.

use crate::Sizes;

/// One measured workload: baseline and ledger medians in events per second.
pub struct Row {
    pub backend: &'static str,
    pub workload: String,
    pub baseline: String,
    pub raw_eps: f64,
    pub ledger_eps: f64,
    pub target: Option<f64>,
}

/// A measurement that is not a ratio (a latency, say).
pub struct Measurement {
    pub backend: &'static str,
    pub what: String,
    pub value: String,
}

pub struct Report {
    sizes: Sizes,
    quick: bool,
    rows: Vec<Row>,
    measurements: Vec<Measurement>,
    settings: Vec<(String, String)>,
}

impl Report {
    pub fn new(sizes: Sizes, quick: bool) -> Self {
        Report {
            sizes,
            quick,
            rows: Vec::new(),
            measurements: Vec::new(),
            settings: Vec::new(),
        }
    }

    pub fn row(&mut self, row: Row) {
        let ratio = row.ledger_eps / row.raw_eps;
        println!(
            "{:<10} {:<44} raw {:>10.0}/s  ledger {:>10.0}/s  ratio {ratio:.2}",
            row.backend, row.workload, row.raw_eps, row.ledger_eps
        );
        self.rows.push(row);
    }

    pub fn measurement(&mut self, m: Measurement) {
        println!("{:<10} {:<60} {}", m.backend, m.what, m.value);
        self.measurements.push(m);
    }

    pub fn setting(&mut self, key: impl Into<String>, value: impl Into<String>) {
        self.settings.push((key.into(), value.into()));
    }

    pub fn render(&self) -> String {
        let s = &self.sizes;
        let mut out = String::from("# Benchmarks\n\n");
        out.push_str(
            "Measured by `cargo xtask bench` (release build). Every ledger figure is a ratio against a \
             raw baseline (sqlx, the MongoDB driver, or the `clickhouse` crate) that writes or reads the same rows in the \
             same run, on the same machine, alternating baseline and ledger (reads: page by page); each figure is the median of the \
             repetitions. Events are about 200-byte JSON payloads with two metadata keys and a \
             dedup key. Client and servers share two cores, and between full runs of the same code \
             a ratio has moved by up to 0.25 (whole-stream reads most): a target within that of \
             its mark is not settled by one run.\n\n",
        );
        if self.quick {
            out.push_str("**Quick run: sizes are too small for meaningful numbers.**\n\n");
        }
        out.push_str(
            "| backend | workload | baseline | raw ev/s | ledger ev/s | ratio | target |\n",
        );
        out.push_str("|---|---|---|---:|---:|---:|---:|\n");
        for r in &self.rows {
            let ratio = r.ledger_eps / r.raw_eps;
            let target = match r.target {
                Some(t) if ratio >= t => format!("≥ {t:.1} (met)"),
                Some(t) => format!("≥ {t:.1} (**not met**)"),
                None => "–".to_owned(),
            };
            out.push_str(&format!(
                "| {} | {} | {} | {:.0} | {:.0} | {ratio:.2} | {target} |\n",
                r.backend, r.workload, r.baseline, r.raw_eps, r.ledger_eps
            ));
        }
        if !self.measurements.is_empty() {
            out.push_str("\n| backend | measurement | value |\n|---|---|---:|\n");
            for m in &self.measurements {
                out.push_str(&format!("| {} | {} | {} |\n", m.backend, m.what, m.value));
            }
        }
        out.push_str("\n## Settings\n\n");
        out.push_str(&format!(
            "- sizes (SQLite, PostgreSQL): {} single-entry appends (one commit each, round-robin over 25 streams per \
             writer); {} batches of {} (one new stream per batch); with several writers, tokio \
             tasks on one pool share the work; {} entries read back by cursor pagination in pages \
             of {}; one stream of {} events (written in appends of 1000) read whole in pages of \
             {}; {} repetitions\n",
            s.single_appends,
            s.batches,
            s.batch,
            s.read_entries,
            s.page,
            s.long.events,
            s.long.page,
            s.repeats
        ));
        for (k, v) in &self.settings {
            out.push_str(&format!("- {k}: {v}\n"));
        }
        out
    }
}
