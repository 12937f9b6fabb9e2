//! The whole configuration: `augur.toml`, then `AUGUR_SECTION__KEY` environment variables, then
//! command-line flags, each overriding the one before.

use std::path::{Path, PathBuf};
use std::time::Duration;

use augur_ingest::config::{
    AuthConfig, GraphiteConfig, HttpConfig, LimitsConfig, ModelConfig, OtlpConfig, RouterConfig, StatsdConfig,
    TcpConfig, WalConfig,
};
use augur_storage::parquet::ParquetConfig;
use augur_storage::postgres::PostgresConfig;
use serde::{Deserialize, Serialize};

use crate::pipeline::PipelineConfig;
use crate::predict::events::PredictConfig;
use crate::window::Resolution;

/// Prefix of environment overrides: `AUGUR_HTTP__ADDR=0.0.0.0:8086` sets `[http] addr`.
pub const ENV_PREFIX: &str = "AUGUR_";

/// Everything `augur serve` reads.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct Config {
    /// `[server]`: process-wide settings.
    pub server: ServerConfig,
    /// `[model]`: regions.
    pub model: ModelConfig,
    /// `[router]`: partitions.
    pub router: RouterConfig,
    /// `[engine]`: pipelines.
    pub engine: EngineConfig,
    /// `[http]`: the HTTP listener.
    pub http: HttpConfig,
    /// `[tcp]`: the TCP listener.
    pub tcp: TcpConfig,
    /// `[otlp]`: how OTLP attributes become tags.
    pub otlp: OtlpConfig,
    /// `[graphite]`: the Graphite plaintext listener (off by default).
    pub graphite: GraphiteConfig,
    /// `[statsd]`: the StatsD listener (off by default).
    pub statsd: StatsdConfig,
    /// `[wal]`: the write-ahead log under `<data-dir>/wal`.
    pub wal: WalConfig,
    /// `[parquet]`: the Parquet files under `<data-dir>/parquet`.
    pub parquet: ParquetConfig,
    /// `[postgres]`: the hot tier's shards (none: no hot tier).
    pub postgres: PostgresConfig,
    /// `[predict]`: anomaly scores and events.
    pub predict: PredictConfig,
    /// `[auth]`: tokens and their scopes.
    pub auth: AuthConfig,
    /// `[limits]`: per-tenant rates and new-series budgets.
    pub limits: LimitsConfig,
}

/// `[server]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ServerConfig {
    /// Where Augur keeps its data.
    pub data_dir: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self { data_dir: PathBuf::from("./augur-data") }
    }
}

impl ServerConfig {
    /// Where Parquet files go.
    pub fn parquet_dir(&self) -> PathBuf {
        self.data_dir.join("parquet")
    }

    /// Where the write-ahead log is.
    pub fn wal_dir(&self) -> PathBuf {
        self.data_dir.join("wal")
    }

    /// Where checkpoints are.
    pub fn state_dir(&self) -> PathBuf {
        self.data_dir.join("state")
    }
}

/// `[engine]`.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct EngineConfig {
    /// Threads of the ingest parsing pool; 0 means one per core. (Each partition runs on a thread
    /// of its own.)
    pub threads: usize,
    /// How long an idle partition waits for data before it applies the idle rule again.
    #[serde(with = "humantime_serde")]
    pub tick: Duration,
    /// Window resolutions, finest first; each a whole multiple of the one before.
    pub resolutions: Vec<humantime_serde::Serde<Duration>>,
    /// How far behind the newest event time a point may arrive and still be aggregated.
    #[serde(with = "humantime_serde")]
    pub allowed_lateness: Duration,
    /// After this long without data, a partition's watermark follows the wall clock.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            threads: 0,
            tick: Duration::from_millis(10),
            // Agents report every 10–60 s, so a 10 s rollup is the raw point again at several times
            // its cost; 1 m and 1 h are what dashboards read (docs/rollups.md). 10 s on request.
            resolutions: [60, 3600].map(|s| Duration::from_secs(s).into()).to_vec(),
            allowed_lateness: Duration::from_secs(10),
            idle_timeout: Duration::from_secs(30),
        }
    }
}

impl EngineConfig {
    /// The thread count with 0 resolved to the number of cores.
    pub fn resolved_threads(&self) -> usize {
        augur_ingest::config::cores_if_zero(self.threads)
    }

    fn validate(&self, problems: &mut Vec<String>) {
        if self.threads > 1024 {
            problems.push(format!("engine.threads = {} is over the limit of 1024", self.threads));
        }
        if self.tick.is_zero() || self.tick > Duration::from_secs(1) {
            problems.push(format!("engine.tick = {:?} must be above 0 and at most 1s", self.tick));
        }
        if self.resolutions.is_empty() {
            problems.push("engine.resolutions must list at least one resolution".into());
        }
        if self.resolutions.first().is_some_and(|r| r.as_millis() < 1) {
            problems.push("engine.resolutions: the finest must be at least 1ms".into());
        }
        for pair in self.resolutions.windows(2) {
            let (fine, coarse) = (pair[0].as_nanos(), pair[1].as_nanos());
            if fine == 0 || coarse <= fine || coarse % fine != 0 {
                problems.push(format!(
                    "engine.resolutions: {:?} must be a whole multiple of {:?}, the resolution before it",
                    *pair[1], *pair[0]
                ));
            }
        }
        if self.idle_timeout.is_zero() {
            problems.push("engine.idle-timeout must be above 0".into());
        }
    }
}

/// Why a configuration could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read config file {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// The file or an override is not valid TOML for this schema.
    #[error("invalid configuration{origin}: {message}")]
    Parse {
        /// Where the text came from (` in <file>` or ` from environment`).
        origin: String,
        /// What the parser said, with the key and position.
        message: String,
    },
    /// Values that parse but cannot work, all of them listed.
    #[error("invalid configuration:\n  - {}", .0.join("\n  - "))]
    Invalid(Vec<String>),
}

impl Config {
    /// Loads `file` (or the defaults when `None`) and applies the `AUGUR_SECTION__KEY` overrides
    /// found in `env`. Does not validate: call [`Config::validate`] after applying flags.
    ///
    /// # Errors
    /// When the file cannot be read or does not match the schema.
    pub fn load(file: Option<&Path>, env: impl IntoIterator<Item = (String, String)>) -> Result<Self, ConfigError> {
        let (mut table, origin) = match file {
            Some(path) => {
                let text = std::fs::read_to_string(path)
                    .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
                let table: toml::Table = toml::from_str(&text).map_err(|e| ConfigError::Parse {
                    origin: format!(" in {}", path.display()),
                    message: e.to_string(),
                })?;
                (table, format!(" in {} or the environment", path.display()))
            }
            None => (toml::Table::new(), " from the environment".to_owned()),
        };
        for (name, value) in env {
            let Some(rest) = name.strip_prefix(ENV_PREFIX) else {
                continue;
            };
            let Some((section, key)) = rest.split_once("__") else {
                continue;
            };
            let (section, key) = (env_key(section), env_key(key));
            let value = parse_env_value(&value);
            let entry = table.entry(section.clone()).or_insert_with(|| toml::Value::Table(toml::Table::new()));
            match entry {
                toml::Value::Table(section_table) => {
                    section_table.insert(key, value);
                }
                _ => {
                    return Err(ConfigError::Parse {
                        origin: origin.clone(),
                        message: format!("`{section}` is not a section, so {name} cannot set a key in it"),
                    })
                }
            }
        }
        toml::Value::Table(table)
            .try_into()
            .map_err(|e: toml::de::Error| ConfigError::Parse { origin, message: e.to_string() })
    }

    /// The pipelines' settings.
    pub fn pipeline(&self) -> PipelineConfig {
        let nanos = |d: Duration| i64::try_from(d.as_nanos()).unwrap_or(i64::MAX);
        let engine = &self.engine;
        PipelineConfig {
            tick: engine.tick,
            resolutions: engine.resolutions.iter().map(|r| Resolution::new(**r)).collect(),
            allowed_lateness: nanos(engine.allowed_lateness),
            idle_timeout: nanos(engine.idle_timeout),
            predict: std::sync::Arc::new(self.predict.clone()),
        }
    }

    /// Every problem of this configuration at once.
    ///
    /// # Errors
    /// [`ConfigError::Invalid`] listing each problem with its key.
    pub fn validate(&self) -> Result<(), ConfigError> {
        let mut problems = augur_ingest::config::validate(&self.model, &self.router, &self.http, &self.tcp);
        self.engine.validate(&mut problems);
        problems.extend(self.wal.validate());
        problems.extend(self.otlp.validate());
        problems.extend(self.graphite.templates().err().unwrap_or_default());
        problems.extend(self.statsd.validate());
        for (key, addr) in [("graphite.addr", self.graphite.addr), ("statsd.addr", self.statsd.addr)] {
            if let Some(addr) = addr.filter(|a| self.auth.enabled && !a.ip().is_loopback()) {
                problems.push(format!(
                    "{key} = {addr} is beyond loopback, and the protocol carries no credentials: bind it to 127.0.0.1 or set auth.enabled = false"
                ));
            }
        }
        problems.extend(self.predict.validate());
        if let Some(resolution) = &self.predict.resolution {
            let known: Vec<String> = self.pipeline().resolutions.into_iter().map(|r| r.name).collect();
            if !known.contains(resolution) {
                problems.push(format!(
                    "predict.resolution = {resolution:?} is not one of engine.resolutions ({})",
                    known.join(", ")
                ));
            }
        }
        problems.extend(self.parquet.validate());
        problems.extend(self.postgres.validate());
        problems.extend(self.auth.validate());
        if self.auth.enabled && !self.tcp.addr.ip().is_loopback() {
            problems.push(format!(
                "tcp.addr = {} is beyond loopback, and TCP line protocol carries no credentials: bind it to 127.0.0.1 (HTTP takes tokens) or set auth.enabled = false",
                self.tcp.addr
            ));
        }
        if self.server.data_dir.as_os_str().is_empty() {
            problems.push("server.data-dir must not be empty".into());
        }
        if problems.is_empty() {
            Ok(())
        } else {
            Err(ConfigError::Invalid(problems))
        }
    }
}

/// `HTTP` → `http`, `MAX_BODY_BYTES` → `max-body-bytes`.
fn env_key(part: &str) -> String {
    part.to_ascii_lowercase().replace('_', "-")
}

/// An override's value as TOML when it is one (`8`, `true`, `"x"`), else as a plain string
/// (`127.0.0.1:8086`, `250ms`).
fn parse_env_value(raw: &str) -> toml::Value {
    toml::from_str::<toml::Table>(&format!("v = {raw}"))
        .ok()
        .and_then(|mut t| t.remove("v"))
        .unwrap_or_else(|| toml::Value::String(raw.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(pairs: &[(&str, &str)]) -> Vec<(String, String)> {
        pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect()
    }

    #[test]
    fn defaults_are_loopback_and_valid_once_a_token_is_given() {
        let mut config = Config::load(None, env(&[])).unwrap();
        let Err(ConfigError::Invalid(problems)) = config.validate() else { panic!("auth is on by default") };
        assert_eq!(problems.len(), 1, "{problems:?}");
        assert!(problems[0].starts_with("auth is on and no token is configured"), "{problems:?}");
        assert!(config.http.addr.ip().is_loopback());
        assert!(config.tcp.addr.ip().is_loopback());
        config.auth.tokens.push(augur_ingest::config::TokenConfig {
            name: "ops".into(),
            token: "0123456789abcdef".into(),
            scopes: vec![augur_ingest::config::Scope::Admin],
            tenant: None,
            points_per_second: None,
            burst_points: None,
        });
        config.validate().unwrap();
        config.tcp.addr = ([0, 0, 0, 0], 8094).into();
        let Err(ConfigError::Invalid(problems)) = config.validate() else { panic!("TCP beyond loopback with auth") };
        assert!(problems[0].contains("TCP line protocol carries no credentials"), "{problems:?}");
    }

    #[test]
    fn environment_overrides_file_values() {
        let dir = std::env::temp_dir().join(format!("augur-config-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join("augur.toml");
        std::fs::write(&file, "[router]\npartitions = 3\n[http]\naddr = \"127.0.0.1:9000\"\n").unwrap();
        let config = Config::load(
            Some(&file),
            env(&[("AUGUR_ROUTER__PARTITIONS", "5"), ("AUGUR_TCP__IDLE_TIMEOUT", "250ms"), ("UNRELATED", "x")]),
        )
        .unwrap();
        assert_eq!(config.router.partitions, 5);
        assert_eq!(config.http.addr.port(), 9000);
        assert_eq!(config.tcp.idle_timeout, Duration::from_millis(250));
    }

    #[test]
    fn ingest_and_storage_agree_on_the_longest_partition_value() {
        assert_eq!(
            augur_ingest::write::MAX_PARTITION_VALUE_BYTES,
            augur_storage::parquet::layout::MAX_PARTITION_VALUE_BYTES
        );
    }

    #[test]
    fn unknown_keys_are_named() {
        let err = Config::load(None, env(&[("AUGUR_HTTP__ADRESS", "x")])).unwrap_err();
        assert!(err.to_string().contains("adress"), "{err}");
    }

    #[test]
    fn validation_lists_every_problem() {
        let mut config = Config::default();
        config.auth.enabled = false;
        config.model.region_tag.clear();
        config.http.max_body_bytes = 1;
        config.engine.tick = Duration::ZERO;
        config.engine.resolutions = [10, 15].map(|s| Duration::from_secs(s).into()).to_vec();
        let Err(ConfigError::Invalid(problems)) = config.validate() else { panic!("expected invalid") };
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[3].contains("whole multiple"), "{problems:?}");
    }
}
