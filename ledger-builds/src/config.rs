//! Configuration: Probo-DB's YAML keys, layered. The defaults below, then each `-c` file in
//! order (a later one wins, key by key), then the environment and flags.

use std::collections::BTreeMap;
use std::path::PathBuf;

use config::{Config, File, FileFormat};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The defaults, Probo-DB's `defaults.yaml` plus the database.
pub const DEFAULTS: &str = "\
host: 0.0.0.0
port: 8442
serverName: probodb
version: '1.0.0'
database: sqlite:builds.db
buildsEventStream:
  plugin: Kafka
  config:
    group: proboDb
    topic: build_events
    version: 1
    brokers: 127.0.0.1:9092
    offsetReset: latest
";

/// The service's settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct Settings {
    /// The address the API listens on.
    pub host: String,
    /// The port the API listens on.
    pub port: u16,
    /// The name `GET /` gives.
    pub server_name: String,
    /// The version `GET /` gives.
    pub version: String,
    /// The database: `sqlite:PATH` or `postgres://…`.
    pub database: String,
    /// Where build events come from.
    pub builds_event_stream: EventStream,
    /// Probo-DB's plugin directory; plugins here are Rust types added in code, so only `null`
    /// is accepted (a value is refused rather than ignored).
    #[serde(default)]
    pub plugin_directory: Option<String>,
}

/// `buildsEventStream`: the source and its settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventStream {
    /// `Kafka`, or `Ledger` (the embedded source: the topic is a stream of the service's own
    /// ledger, no broker needed).
    pub plugin: SourceKind,
    /// The source's settings.
    pub config: KafkaSettings,
}

/// The kinds of source.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum SourceKind {
    /// A Kafka consumer group.
    Kafka,
    /// A stream of the service's ledger.
    Ledger,
}

/// The consumer's settings (`buildsEventStream.config`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct KafkaSettings {
    /// The consumer group.
    pub group: String,
    /// The topic (for the `Ledger` source: the stream).
    pub topic: String,
    /// The wire format's version; only 1 exists.
    pub version: u32,
    /// Bootstrap brokers, `host:port[,host:port…]`.
    pub brokers: String,
    /// Where a new group starts: `latest` (Probo-DB's) or `earliest`.
    pub offset_reset: OffsetReset,
    /// Records stored (and committed) at a time at most.
    #[serde(default = "default_batch")]
    pub batch: usize,
    /// Further librdkafka settings (`security.protocol`, `session.timeout.ms`…).
    #[serde(default)]
    pub librdkafka: BTreeMap<String, String>,
}

fn default_batch() -> usize {
    500
}

/// Where a new consumer group starts reading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    /// At the end: only records produced from now on (Probo-DB's behaviour).
    Latest,
    /// At the beginning of the topic.
    Earliest,
}

impl OffsetReset {
    /// librdkafka's name.
    pub fn as_str(self) -> &'static str {
        match self {
            OffsetReset::Latest => "latest",
            OffsetReset::Earliest => "earliest",
        }
    }
}

/// Settings given by flag or environment, which win over every file.
#[derive(Debug, Clone, Default)]
pub struct Overrides {
    /// `host`.
    pub host: Option<String>,
    /// `port`.
    pub port: Option<u16>,
    /// `database`.
    pub database: Option<String>,
    /// `buildsEventStream.config.brokers`.
    pub brokers: Option<String>,
    /// `buildsEventStream.config.topic`.
    pub topic: Option<String>,
    /// `buildsEventStream.config.group`.
    pub group: Option<String>,
}

impl Settings {
    /// The defaults, then `files` in order, then `overrides`.
    pub fn load(files: &[PathBuf], overrides: &Overrides) -> Result<Settings> {
        let mut builder = Config::builder().add_source(File::from_str(DEFAULTS, FileFormat::Yaml));
        for path in files {
            if !path.is_file() {
                return Err(Error::Config(format!("{}: no such file", path.display())));
            }
            builder = builder.add_source(File::from(path.as_path()).format(FileFormat::Yaml));
        }
        let set = |key: &str, value: &Option<String>| value.clone().map(|v| (key.to_owned(), v));
        let overrides = [
            set("host", &overrides.host),
            set("port", &overrides.port.map(|p| p.to_string())),
            set("database", &overrides.database),
            set("buildsEventStream.config.brokers", &overrides.brokers),
            set("buildsEventStream.config.topic", &overrides.topic),
            set("buildsEventStream.config.group", &overrides.group),
        ];
        for (key, value) in overrides.into_iter().flatten() {
            builder = builder
                .set_override(key, value)
                .map_err(|e| Error::Config(e.to_string()))?;
        }
        let settings: Settings = builder
            .build()
            .and_then(Config::try_deserialize)
            .map_err(|e| Error::Config(e.to_string()))?;
        settings.check()?;
        Ok(settings)
    }

    fn check(&self) -> Result<()> {
        if let Some(dir) = &self.plugin_directory {
            return Err(Error::invalid(
                "pluginDirectory",
                format!(
                    "{dir:?}: plugins are added in code (BuildServiceOptions::plugin); leave it null"
                ),
            ));
        }
        let stream = &self.builds_event_stream.config;
        if stream.version != 1 {
            return Err(Error::invalid(
                "buildsEventStream.config.version",
                format!("{}: only version 1 exists", stream.version),
            ));
        }
        if stream.batch == 0 || stream.batch > 100_000 {
            return Err(Error::invalid(
                "buildsEventStream.config.batch",
                format!("{} is not between 1 and 100000", stream.batch),
            ));
        }
        for (field, value) in [("group", &stream.group), ("topic", &stream.topic)] {
            if value.is_empty() {
                return Err(Error::invalid(
                    format!("buildsEventStream.config.{field}"),
                    "is empty",
                ));
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(text: &str) -> tempfile::NamedTempFile {
        let mut f = tempfile::Builder::new().suffix(".yaml").tempfile().unwrap();
        std::io::Write::write_all(&mut f, text.as_bytes()).unwrap();
        f
    }

    #[test]
    fn defaults_are_probo_dbs() {
        let s = Settings::load(&[], &Overrides::default()).unwrap();
        assert_eq!((s.host.as_str(), s.port), ("0.0.0.0", 8442));
        assert_eq!(
            (s.server_name.as_str(), s.version.as_str()),
            ("probodb", "1.0.0")
        );
        let c = &s.builds_event_stream.config;
        assert_eq!(
            (c.group.as_str(), c.topic.as_str()),
            ("proboDb", "build_events")
        );
        assert_eq!(c.offset_reset, OffsetReset::Latest);
        assert_eq!(s.builds_event_stream.plugin, SourceKind::Kafka);
    }

    #[test]
    fn later_files_win_key_by_key_and_overrides_win_over_files() {
        let a = file("port: 9000\nserverName: a\nbuildsEventStream:\n  config:\n    topic: t1\n");
        let b = file("serverName: b\nbuildsEventStream:\n  config:\n    group: g2\n");
        let overrides = Overrides {
            port: Some(9100),
            brokers: Some("127.0.0.1:1".into()),
            ..Overrides::default()
        };
        let s = Settings::load(&[a.path().into(), b.path().into()], &overrides).unwrap();
        assert_eq!((s.port, s.server_name.as_str()), (9100, "b"));
        let c = &s.builds_event_stream.config;
        assert_eq!((c.topic.as_str(), c.group.as_str()), ("t1", "g2"));
        assert_eq!(c.brokers, "127.0.0.1:1");
    }

    #[test]
    fn bad_settings_are_named() {
        let cases = [
            ("port: x\n", "port"),
            ("prot: 1\n", "prot"),
            ("pluginDirectory: /plugins\n", "pluginDirectory"),
            ("buildsEventStream:\n  config:\n    version: 2\n", "version"),
            (
                "buildsEventStream:\n  config:\n    offsetReset: middle\n",
                "middle",
            ),
            ("buildsEventStream:\n  plugin: Carrier\n", "Carrier"),
        ];
        for (text, named) in cases {
            let f = file(text);
            let e = Settings::load(&[f.path().into()], &Overrides::default()).unwrap_err();
            assert!(e.to_string().contains(named), "{e} does not name {named}");
        }
        let missing = Settings::load(&["/no/such.yaml".into()], &Overrides::default());
        assert!(missing.unwrap_err().to_string().contains("/no/such.yaml"));
    }
}
