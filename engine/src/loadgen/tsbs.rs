//! TSBS "cpu-only" shaped line protocol: N hosts across R regions, ten `usage_*` float fields.
//!
//! Generation is kept cheap (precomputed per-host prefixes, hand-rolled number formatting, an
//! xorshift generator) so the load generator is never the bottleneck it measures.

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

/// Generates batches of lines for a fleet, round-robin over its hosts.
#[derive(Debug)]
pub struct Fleet {
    /// `cpu,hostname=host_0,region=...,...` per host.
    prefixes: Vec<Vec<u8>>,
    /// ` usage_user=`, `,usage_system=`, ... per field.
    field_keys: Vec<Vec<u8>>,
    /// Current value of every (host, field): each moves by a random walk, as TSBS's cpu values do.
    values: Vec<f64>,
    next_host: usize,
    rng: u64,
}

impl Fleet {
    /// A fleet of `hosts` hosts over `regions` regions with `fields` fields per point, starting at
    /// host `first_host` (so several connections cover different hosts).
    pub fn new(hosts: usize, regions: usize, fields: usize, first_host: usize) -> Self {
        let hosts = hosts.max(1);
        let regions = regions.max(1);
        let prefixes = (0..hosts)
            .map(|h| {
                let region = region_name(h % regions);
                format!(
                    "cpu,arch=x{arch},datacenter={region}{dc},hostname=host_{h},os=Ubuntu16.04LTS,rack={rack},region={region},service={service},service_environment=production,service_version={version},team={team}",
                    arch = if h % 2 == 0 { "64" } else { "86" },
                    dc = ['a', 'b', 'c'][h % 3],
                    rack = h % 100,
                    service = h % 20,
                    version = h % 2,
                    team = ["SF", "NYC", "LON", "CHI"][h % 4],
                )
                .into_bytes()
            })
            .collect();
        let field_keys = (0..fields.max(1))
            .map(|i| {
                let sep = if i == 0 { ' ' } else { ',' };
                match FIELDS.get(i) {
                    Some(name) => format!("{sep}{name}="),
                    None => format!("{sep}field_{i}="),
                }
                .into_bytes()
            })
            .collect();
        let mut rng = 0x9E37_79B9_7F4A_7C15 ^ (first_host as u64).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        let values = (0..hosts * fields.max(1)).map(|_| (xorshift(&mut rng) % 1000) as f64 / 10.0).collect();
        Self { prefixes, field_keys, values, next_host: first_host % hosts, rng }
    }

    /// Field values per point.
    pub fn fields(&self) -> usize {
        self.field_keys.len()
    }

    /// Writes `lines` lines with timestamp `time` (ns) into `out` (cleared first).
    pub fn batch(&mut self, lines: usize, time: i64, out: &mut Vec<u8>) {
        out.clear();
        for _ in 0..lines {
            let host = self.next_host;
            out.extend_from_slice(&self.prefixes[host]);
            self.next_host = (host + 1) % self.prefixes.len();
            let fields = self.field_keys.len();
            let host_values = &mut self.values[host * fields..(host + 1) * fields];
            for (key, value) in self.field_keys.iter().zip(host_values) {
                out.extend_from_slice(key);
                // A percentage with one decimal, walking by up to ±1.0 per point and staying
                // within 0..100, like TSBS's clamped random walks of usage values.
                let step = (xorshift(&mut self.rng) % 21) as f64 / 10.0 - 1.0;
                *value = (*value + step).clamp(0.0, 100.0);
                let tenths = (*value * 10.0).round() as u64;
                push_u64(out, tenths / 10);
                out.push(b'.');
                out.push(b'0' + (tenths % 10) as u8);
            }
            out.push(b' ');
            push_u64(out, time.max(0) as u64);
            out.push(b'\n');
        }
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

fn push_u64(out: &mut Vec<u8>, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut i = digits.len();
    loop {
        i -= 1;
        digits[i] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    out.extend_from_slice(&digits[i..]);
}

#[cfg(test)]
mod tests {
    use augur_ingest::line_protocol::parse_points;
    use augur_ingest::Precision;

    use super::*;

    #[test]
    fn batches_are_valid_line_protocol_with_sorted_tags() {
        let mut fleet = Fleet::new(7, 3, 10, 0);
        let mut out = Vec::new();
        fleet.batch(50, 1_700_000_000_000_000_000, &mut out);
        let (points, errors) = parse_points(&out, Precision::Nanoseconds, 0);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(points.len(), 50);
        assert!(points.iter().all(|p| p.fields.len() == 10 && p.time == 1_700_000_000_000_000_000));
        let regions: std::collections::BTreeSet<_> =
            points.iter().map(|p| p.tags.iter().find(|(k, _)| k == "region").unwrap().1.clone()).collect();
        assert_eq!(regions.len(), 3);
        // Tags are generated in order, so the parser's no-copy fast path applies.
        let mut parser = augur_ingest::line_protocol::Parser::new(&out, Precision::Nanoseconds, 0, 1);
        while let Some(line) = parser.next() {
            assert!(line.unwrap().canonical_series().is_some());
        }
    }
}
