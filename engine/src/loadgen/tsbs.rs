//! TSBS "cpu-only" shaped data: N hosts across R regions, ten `usage_*` float fields.
//!
//! Generation is kept cheap (integer random walks, an xorshift generator) so the load generator
//! is never the bottleneck it measures.

/// TSBS's region names; more regions than these get `region-<n>`.
const REGIONS: [&str; 9] = [
    "us-east-1",
    "us-west-1",
    "us-west-2",
    "eu-west-1",
    "eu-central-1",
    "ap-southeast-1",
    "ap-southeast-2",
    "ap-northeast-1",
    "sa-east-1",
];

/// TSBS's cpu fields; more fields than these get `field_<n>`.
const FIELDS: [&str; 10] = [
    "usage_user",
    "usage_system",
    "usage_idle",
    "usage_nice",
    "usage_iowait",
    "usage_irq",
    "usage_softirq",
    "usage_steal",
    "usage_guest",
    "usage_guest_nice",
];

/// A fleet of hosts, each with TSBS's tags and a random walk per field; the wire formats
/// ([`super::wire`]) render its points.
#[derive(Debug)]
pub struct Fleet {
    /// Each host's tags, sorted by key.
    tags: Vec<Vec<(&'static str, String)>>,
    /// The field names, `usage_user` first.
    fields: Vec<String>,
    /// Current value of every (host, field) in tenths of a percent: each moves by a random walk
    /// of up to ±1.0 per point within 0..100, like TSBS's clamped random walks of usage values.
    tenths: Vec<u16>,
    next_host: usize,
    rng: u64,
}

impl Fleet {
    /// A fleet of `hosts` hosts over `regions` regions with `fields` fields per point, starting at
    /// host `first_host` (so several connections cover different hosts).
    pub fn new(hosts: usize, regions: usize, fields: usize, first_host: usize) -> Self {
        let hosts = hosts.max(1);
        let regions = regions.max(1);
        let tags = (0..hosts)
            .map(|h| {
                let region = region_name(h % regions);
                vec![
                    ("arch", if h % 2 == 0 { "x64" } else { "x86" }.to_owned()),
                    ("datacenter", format!("{region}{}", ['a', 'b', 'c'][h % 3])),
                    ("hostname", format!("host_{h}")),
                    ("os", "Ubuntu16.04LTS".to_owned()),
                    ("rack", (h % 100).to_string()),
                    ("region", region),
                    ("service", (h % 20).to_string()),
                    ("service_environment", "production".to_owned()),
                    ("service_version", (h % 2).to_string()),
                    ("team", ["SF", "NYC", "LON", "CHI"][h % 4].to_owned()),
                ]
            })
            .collect();
        let fields = (0..fields.max(1))
            .map(|i| FIELDS.get(i).map_or_else(|| format!("field_{i}"), |name| (*name).to_owned()))
            .collect::<Vec<_>>();
        let mut rng = 0x9E37_79B9_7F4A_7C15 ^ (first_host as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let tenths = (0..hosts * fields.len()).map(|_| (xorshift(&mut rng) % 1000) as u16).collect();
        Self { tags, fields, tenths, next_host: first_host % hosts, rng }
    }

    /// Number of hosts.
    pub fn hosts(&self) -> usize {
        self.tags.len()
    }

    /// The tags of `host`, sorted by key.
    pub fn tags(&self, host: usize) -> &[(&'static str, String)] {
        &self.tags[host]
    }

    /// The field names.
    pub fn field_names(&self) -> &[String] {
        &self.fields
    }

    /// Field values per point.
    pub fn fields(&self) -> usize {
        self.fields.len()
    }

    /// The next point, round-robin over the hosts: its host and field values in tenths.
    pub fn next_point(&mut self) -> (usize, &[u16]) {
        let host = self.next_host;
        self.next_host = (host + 1) % self.tags.len();
        let fields = self.fields.len();
        let values = &mut self.tenths[host * fields..(host + 1) * fields];
        for value in values.iter_mut() {
            let step = (xorshift(&mut self.rng) % 21) as i32 - 10;
            *value = (i32::from(*value) + step).clamp(0, 1000) as u16;
        }
        (host, values)
    }
}

/// xorshift64: fast, and the values only need to look like telemetry.
fn xorshift(state: &mut u64) -> u64 {
    *state ^= *state << 13;
    *state ^= *state >> 7;
    *state ^= *state << 17;
    *state
}

/// The name of region `i`.
pub fn region_name(i: usize) -> String {
    REGIONS.get(i).map_or_else(|| format!("region-{i}"), |r| (*r).to_owned())
}
