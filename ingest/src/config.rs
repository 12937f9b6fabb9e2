//! Configuration of the ingest tier: the data model's region rule, the router, and the HTTP and
//! TCP listeners. Every default lives in the `Default` impls here.

use std::net::SocketAddr;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// Largest accepted `max-body-bytes`: batch offsets are 32-bit.
pub const MAX_BODY_LIMIT: u64 = 1 << 30;

/// `n`, or the number of CPU cores when `n` is 0 (how counts of partitions and threads default).
pub fn cores_if_zero(n: usize) -> usize {
    if n == 0 {
        std::thread::available_parallelism().map_or(1, |n| n.get())
    } else {
        n
    }
}

/// `[model]`: how points map to regions.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct ModelConfig {
    /// The tag whose value is a point's region.
    pub region_tag: String,
    /// The region of points without that tag.
    pub default_region: String,
    /// Points timestamped further than this ahead of the server's clock are rejected.
    #[serde(with = "humantime_serde")]
    pub max_future: Duration,
}

impl Default for ModelConfig {
    fn default() -> Self {
        Self { region_tag: "region".into(), default_region: "default".into(), max_future: Duration::from_secs(600) }
    }
}

/// `[wal]`: the write-ahead log every acknowledged request is in first.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct WalConfig {
    /// `fsync`: a request is acknowledged once on disk (survives kill -9 and power loss).
    /// `none`: once handed to the OS (survives kill -9 of Augur, not a machine crash); for users
    /// who choose speed over safety.
    pub durability: crate::wal::Durability,
    /// How long a commit waits for more requests to share its fsync. 0 (the default) commits at
    /// once: requests arriving while an fsync runs form the next group by themselves, which
    /// measured faster than any wait (docs/performance.md).
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// A segment file is closed and a new one started past this many bytes.
    pub segment_bytes: u64,
    /// The log may not grow past this; ingest answers 503 until a checkpoint frees segments.
    pub max_bytes: u64,
    /// How often a checkpoint makes the outputs durable and lets the log drop old segments (also
    /// when the log passes a quarter of `max-bytes`). Bounds the replay after a crash.
    #[serde(with = "humantime_serde")]
    pub checkpoint_interval: Duration,
}

impl Default for WalConfig {
    fn default() -> Self {
        Self {
            durability: crate::wal::Durability::Fsync,
            flush_interval: Duration::ZERO,
            segment_bytes: 64 << 20,
            max_bytes: 4 << 30,
            checkpoint_interval: Duration::from_secs(30),
        }
    }
}

impl WalConfig {
    /// Every problem of this section.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.flush_interval > Duration::from_secs(1) {
            problems.push(format!("wal.flush-interval = {:?} is over the limit of 1s", self.flush_interval));
        }
        if self.segment_bytes < 1 << 20 {
            problems.push(format!("wal.segment-bytes = {} is under the minimum of 1 MiB", self.segment_bytes));
        }
        if self.max_bytes < 4 * self.segment_bytes {
            problems.push(format!(
                "wal.max-bytes = {} must be at least four segments (wal.segment-bytes = {})",
                self.max_bytes, self.segment_bytes
            ));
        }
        if self.checkpoint_interval < Duration::from_millis(10) || self.checkpoint_interval > Duration::from_secs(3600)
        {
            problems
                .push(format!("wal.checkpoint-interval = {:?} must be between 10ms and 1h", self.checkpoint_interval));
        }
        problems
    }
}

/// `[router]`: partition channels.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct RouterConfig {
    /// Number of partitions; 0 means one per CPU core.
    pub partitions: usize,
    /// Bytes of batches a partition may hold; past it writes wait (`http.admission-wait`), then
    /// get 503. Small on purpose: a checkpoint barrier queues behind what is here.
    pub queue_capacity_bytes: usize,
}

impl Default for RouterConfig {
    fn default() -> Self {
        // 8 MiB is about 0.2 s of a partition's work at this machine's rates (docs/performance.md):
        // enough to keep it busy between two writes, short enough for a barrier to pass quickly.
        Self { partitions: 0, queue_capacity_bytes: 8 << 20 }
    }
}

impl RouterConfig {
    /// The partition count with 0 resolved to the number of cores.
    pub fn resolved_partitions(&self) -> usize {
        cores_if_zero(self.partitions)
    }
}

/// `[http]`: the HTTP listener.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct HttpConfig {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// Largest request body, in bytes, counted after decompression too.
    pub max_body_bytes: u64,
    /// Bytes of request bodies (compressed and decompressed) held at once over all requests;
    /// past it, writes get 503. Bounds ingest memory together with the partition queues.
    pub max_inflight_bytes: u64,
    /// Open connections at most; more are closed on accept.
    pub max_connections: usize,
    /// Largest request head (request line and headers); larger ones get 431.
    pub max_header_bytes: usize,
    /// Time a client has to send a request's headers (also bounds idle keep-alive connections).
    #[serde(with = "humantime_serde")]
    pub header_read_timeout: Duration,
    /// Time a client has to send a request's body.
    #[serde(with = "humantime_serde")]
    pub body_read_timeout: Duration,
    /// How long a write waits for room while a partition queue is full before it gets 503:
    /// backpressure on the connection first, shedding only past it. 0 sheds at once.
    #[serde(with = "humantime_serde")]
    pub admission_wait: Duration,
    /// With `tls-key`: serve HTTPS with this certificate chain (PEM). Both or neither.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_cert: Option<std::path::PathBuf>,
    /// The certificate's private key (PEM).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tls_key: Option<std::path::PathBuf>,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8086)),
            max_body_bytes: 32 << 20,
            max_inflight_bytes: 256 << 20,
            max_connections: 1024,
            max_header_bytes: 64 << 10,
            header_read_timeout: Duration::from_secs(10),
            body_read_timeout: Duration::from_secs(30),
            admission_wait: Duration::from_secs(2),
            tls_cert: None,
            tls_key: None,
        }
    }
}

/// `[tcp]`: the newline-delimited line-protocol listener.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct TcpConfig {
    /// Address to listen on.
    pub addr: SocketAddr,
    /// Open connections at most; more are closed on accept.
    pub max_connections: usize,
    /// A connection that sends nothing for this long is closed.
    #[serde(with = "humantime_serde")]
    pub idle_timeout: Duration,
    /// Longest accepted line, in bytes; longer lines are skipped and counted as bad.
    pub max_line_bytes: usize,
}

impl Default for TcpConfig {
    fn default() -> Self {
        Self {
            addr: SocketAddr::from(([127, 0, 0, 1], 8094)),
            max_connections: 1024,
            idle_timeout: Duration::from_secs(60),
            max_line_bytes: 1 << 20,
        }
    }
}

/// `[graphite]`: the Graphite plaintext listener (TCP). It shares `[tcp]`'s connection count,
/// idle timeout and line limit.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct GraphiteConfig {
    /// Address to listen on (carbon's is 2003); none, the default, is no listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    /// `[filter] template [tag=value,...]` lines that turn dotted paths into points
    /// (docs/protocols.md); none: the whole path is the measurement.
    pub templates: Vec<String>,
    /// Joins several parts a template gives one name.
    pub separator: String,
}

impl Default for GraphiteConfig {
    fn default() -> Self {
        Self { addr: None, templates: Vec::new(), separator: ".".into() }
    }
}

impl GraphiteConfig {
    /// The compiled templates.
    ///
    /// # Errors
    /// Every bad template.
    pub fn templates(&self) -> Result<crate::protocols::graphite::Templates, Vec<String>> {
        crate::protocols::graphite::Templates::new(&self.templates, &self.separator)
    }
}

/// `[statsd]`: the StatsD listener (UDP).
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct StatsdConfig {
    /// Address to listen on (StatsD's is 8125); none, the default, is no listener.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub addr: Option<SocketAddr>,
    /// How long metrics aggregate before they are stored as points.
    #[serde(with = "humantime_serde")]
    pub flush_interval: Duration,
    /// Distinct metrics (name, type, tags) held in one interval; more are refused until the next.
    pub max_keys: usize,
    /// The percentiles timers report, each in (0, 100].
    pub percentiles: Vec<f64>,
}

impl Default for StatsdConfig {
    fn default() -> Self {
        Self {
            addr: None,
            flush_interval: Duration::from_secs(10),
            max_keys: 100_000,
            percentiles: vec![50.0, 90.0, 95.0, 99.0],
        }
    }
}

impl StatsdConfig {
    /// Every problem of this section.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.flush_interval < Duration::from_millis(100) || self.flush_interval > Duration::from_secs(3600) {
            problems.push(format!("statsd.flush-interval = {:?} must be between 100ms and 1h", self.flush_interval));
        }
        if self.max_keys == 0 {
            problems.push("statsd.max-keys must be at least 1".into());
        }
        if let Some(p) = self.percentiles.iter().find(|p| !(**p > 0.0 && **p <= 100.0)) {
            problems.push(format!("statsd.percentiles: {p} is not in (0, 100]"));
        }
        problems
    }
}

/// `[otlp]`: how OTLP attributes become tags.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct OtlpConfig {
    /// Attributes stored as tags of another name: `"host.name" = "host"`. Map an attribute to
    /// `model.region-tag` to place its points in that region.
    pub tag_names: std::collections::BTreeMap<String, String>,
    /// Attributes that never become tags; a trailing `*` matches any rest. By default the SDK's
    /// own name and version, which would otherwise split every series at each SDK upgrade.
    pub drop_attributes: Vec<String>,
}

impl Default for OtlpConfig {
    fn default() -> Self {
        Self {
            tag_names: [("host.name", "host"), ("cloud.region", "region")]
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
            drop_attributes: vec!["telemetry.sdk.*".into(), "telemetry.distro.*".into()],
        }
    }
}

impl OtlpConfig {
    /// Whether the attribute `key` is left out.
    pub fn drops(&self, key: &str) -> bool {
        self.drop_attributes.iter().any(|pattern| match pattern.strip_suffix('*') {
            Some(prefix) => key.starts_with(prefix),
            None => key == pattern,
        })
    }

    /// Every problem of this section.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        for (attribute, tag) in &self.tag_names {
            if tag.is_empty() || tag == "time" {
                problems.push(format!("otlp.tag-names: `{attribute}` cannot become the tag `{tag}`"));
            }
        }
        if let Some(empty) = self.drop_attributes.iter().find(|p| p.is_empty() || *p == "*") {
            problems.push(format!("otlp.drop-attributes: `{empty}` would drop every attribute or none"));
        }
        problems
    }
}

/// What a token may do. `admin` implies `read` and `write`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Scope {
    /// The write endpoints.
    Write,
    /// The query API.
    Read,
    /// Operations: `/metrics`, `/api/v1/partitions`, `/api/v1/status`, the status page; and the rest.
    Admin,
}

impl std::fmt::Display for Scope {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Write => "write",
            Self::Read => "read",
            Self::Admin => "admin",
        })
    }
}

/// `[auth]`: who may write, read and operate.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct AuthConfig {
    /// On unless set to `false`; then every client may do everything (a warning at start when a
    /// listener is bound beyond loopback).
    pub enabled: bool,
    /// The tokens (`[[auth.tokens]]`).
    pub tokens: Vec<TokenConfig>,
}

impl Default for AuthConfig {
    fn default() -> Self {
        Self { enabled: true, tokens: Vec::new() }
    }
}

/// Shortest accepted token: a guessable token is no protection.
pub const MIN_TOKEN_BYTES: usize = 16;

/// One `[[auth.tokens]]` entry.
#[derive(Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct TokenConfig {
    /// A name for logs and errors (the token itself is never shown).
    pub name: String,
    /// The secret clients send.
    #[serde(serialize_with = "redacted")]
    pub token: String,
    /// What it may do.
    pub scopes: Vec<Scope>,
    /// The account its limits count against (default: its name). Tokens of one tenant share them.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tenant: Option<String>,
    /// This token's own rate, instead of `limits.points-per-second`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub points_per_second: Option<u64>,
    /// This token's own burst, instead of `limits.burst-points`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub burst_points: Option<u64>,
}

impl std::fmt::Debug for TokenConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TokenConfig")
            .field("name", &self.name)
            .field("token", &"<redacted>")
            .field("scopes", &self.scopes)
            .field("tenant", &self.tenant)
            .field("points_per_second", &self.points_per_second)
            .field("burst_points", &self.burst_points)
            .finish()
    }
}

fn redacted<S: serde::Serializer>(_: &str, serializer: S) -> Result<S::Ok, S::Error> {
    serializer.serialize_str("<redacted>")
}

impl AuthConfig {
    /// Every problem of this section.
    pub fn validate(&self) -> Vec<String> {
        let mut problems = Vec::new();
        if self.enabled && self.tokens.is_empty() {
            problems.push(
                "auth is on and no token is configured: add [[auth.tokens]] entries (name, token, scopes), or set auth.enabled = false to let every client in".into(),
            );
        }
        let mut names = std::collections::HashSet::new();
        let mut secrets = std::collections::HashSet::new();
        for token in &self.tokens {
            if token.name.is_empty() {
                problems.push("auth.tokens: a token has an empty name".into());
            } else if !names.insert(&token.name) {
                problems.push(format!("auth.tokens: the name `{}` is used twice", token.name));
            }
            if token.token.len() < MIN_TOKEN_BYTES {
                problems.push(format!(
                    "auth.tokens `{}`: the token is shorter than {MIN_TOKEN_BYTES} characters",
                    token.name
                ));
            } else if !secrets.insert(&token.token) {
                problems.push(format!("auth.tokens `{}`: the same token is configured twice", token.name));
            }
            if token.scopes.is_empty() {
                problems.push(format!("auth.tokens `{}`: no scopes (use write, read, admin)", token.name));
            }
        }
        problems
    }
}

/// `[limits]`: how much one tenant (a token's tenant, or a client address with auth off) may do.
#[derive(Debug, Clone, Default, PartialEq, Deserialize, Serialize)]
#[serde(default, deny_unknown_fields, rename_all = "kebab-case")]
pub struct LimitsConfig {
    /// Points per second a tenant may write on average; 0 is no limit. Over it: 429 with
    /// `Retry-After` (HTTP), or reads pause (TCP).
    pub points_per_second: u64,
    /// Points a tenant may write at once above the rate; 0 means one second's worth.
    pub burst_points: u64,
    /// New series a tenant may create per hour; 0 is no limit. Lines of further new series are
    /// rejected (400, named by line); lines of known series are stored.
    pub new_series_per_hour: u64,
}

/// Reports every problem of the ingest configuration, each prefixed with its key.
pub fn validate(model: &ModelConfig, router: &RouterConfig, http: &HttpConfig, tcp: &TcpConfig) -> Vec<String> {
    let mut problems = Vec::new();
    let mut check = |ok: bool, problem: String| {
        if !ok {
            problems.push(problem);
        }
    };
    check(!model.region_tag.is_empty(), "model.region-tag must not be empty".into());
    check(!model.default_region.is_empty(), "model.default-region must not be empty".into());
    check(router.partitions <= 4096, format!("router.partitions = {} is over the limit of 4096", router.partitions));
    check(
        router.queue_capacity_bytes >= 1 << 20,
        format!("router.queue-capacity-bytes = {} is under the minimum of 1 MiB", router.queue_capacity_bytes),
    );
    check(
        (1024..=MAX_BODY_LIMIT).contains(&http.max_body_bytes),
        format!("http.max-body-bytes = {} must be between 1 KiB and 1 GiB", http.max_body_bytes),
    );
    check(
        http.max_inflight_bytes >= 2 * http.max_body_bytes + (1 << 20),
        format!(
            "http.max-inflight-bytes = {} must be at least twice http.max-body-bytes ({}) plus 1 MiB, for one body and its decompressed copy",
            http.max_inflight_bytes, http.max_body_bytes
        ),
    );
    check(http.max_connections > 0, "http.max-connections must be at least 1".into());
    check(
        (8192..=16 << 20).contains(&http.max_header_bytes),
        format!("http.max-header-bytes = {} must be between 8 KiB and 16 MiB", http.max_header_bytes),
    );
    check(tcp.max_connections > 0, "tcp.max-connections must be at least 1".into());
    check(
        http.tls_cert.is_some() == http.tls_key.is_some(),
        "http.tls-cert and http.tls-key go together: set both for HTTPS, or neither".into(),
    );
    check(
        !http.header_read_timeout.is_zero() && !http.body_read_timeout.is_zero(),
        "http.header-read-timeout and http.body-read-timeout must be above 0".into(),
    );
    check(
        http.admission_wait <= Duration::from_secs(60),
        format!("http.admission-wait = {:?} is over the limit of 60s (clients time out first)", http.admission_wait),
    );
    check(!tcp.idle_timeout.is_zero(), "tcp.idle-timeout must be above 0".into());
    check(
        (256..=MAX_BODY_LIMIT as usize).contains(&tcp.max_line_bytes),
        format!("tcp.max-line-bytes = {} must be between 256 bytes and 1 GiB", tcp.max_line_bytes),
    );
    problems
}
