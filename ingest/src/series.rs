//! Series identity: the canonical series key and its stable 64-bit id.
//!
//! A series is a measurement plus its tag set. Its **canonical key** is the line-protocol text
//! `measurement,k1=v1,k2=v2` with tags sorted by key (byte order of the unescaped keys) and every
//! name escaped the canonical way ([`escape_measurement_into`], [`escape_name_into`]: `,`, space
//! and `\` in measurements; `,`, `=`, space and `\` in tag keys and values). Its **id** is
//! XXH3-64 with seed 0 of the key's bytes. XXH3 is a published, frozen algorithm, so the same
//! series gets the same id on every machine and in every release: ids may be stored.

use xxhash_rust::xxh3::xxh3_64;

use crate::line_protocol::{escape_measurement_into, escape_name_into, ParsedLine};

/// A series id: XXH3-64 (seed 0) of the canonical series key.
pub type SeriesId = u64;

/// The id of a canonical series key.
pub fn series_id(canonical_key: &[u8]) -> SeriesId {
    xxh3_64(canonical_key)
}

/// Appends the canonical series key of `measurement` and `tags` (sorted by key) to `out`.
pub fn canonical_key_into<'a>(
    measurement: &str,
    tags: impl IntoIterator<Item = (&'a str, &'a str)>,
    out: &mut Vec<u8>,
) {
    escape_measurement_into(measurement, out);
    for (key, value) in tags {
        out.push(b',');
        escape_name_into(key, out);
        out.push(b'=');
        escape_name_into(value, out);
    }
}

/// Computes series ids of parsed lines, reusing its buffers between lines.
#[derive(Debug, Default)]
pub struct SeriesHasher {
    key: Vec<u8>,
    name: Vec<u8>,
}

impl SeriesHasher {
    /// The series id of `line`. Hashes the input bytes in place when they already are canonical
    /// (the usual case); otherwise builds the canonical key first.
    pub fn id_of(&mut self, line: &ParsedLine<'_, '_>) -> SeriesId {
        if let Some(raw) = line.canonical_series {
            return series_id(raw);
        }
        self.key.clear();
        self.canonical_name(line.measurement, escape_measurement_into);
        for (key, value) in line.tags {
            self.key.push(b',');
            self.canonical_name(*key, escape_name_into);
            self.key.push(b'=');
            self.canonical_name(*value, escape_name_into);
        }
        series_id(&self.key)
    }

    fn canonical_name(&mut self, name: crate::line_protocol::Escaped<'_>, escape: fn(&str, &mut Vec<u8>)) {
        self.name.clear();
        name.unescape_name_into(&mut self.name);
        // The parser validated the line as UTF-8 and unescaping only removes ASCII backslashes.
        escape(std::str::from_utf8(&self.name).unwrap_or_default(), &mut self.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::line_protocol::Parser;
    use crate::point::Precision;

    fn id_of_line(line: &str) -> SeriesId {
        let mut parser = Parser::new(line.as_bytes(), Precision::Nanoseconds, 0, 1);
        let parsed = parser.next().unwrap().unwrap();
        SeriesHasher::default().id_of(&parsed)
    }

    #[test]
    fn ids_are_pinned_forever() {
        // Stored ids depend on these values: a change here is a breaking change of the data.
        // Cross-checked with the reference implementation (Python `xxhash.xxh3_64_intdigest`).
        assert_eq!(series_id(b"cpu,host=a,region=eu"), 0xe3a4_297a_000b_e2a6);
        assert_eq!(series_id(b"cpu"), 0xecaa_9c72_5d35_8abe);
    }

    #[test]
    fn order_and_escaping_do_not_change_the_id() {
        let canonical = id_of_line("cpu,host=a,region=eu v=1");
        assert_eq!(id_of_line("cpu,region=eu,host=a v=2 5"), canonical);
        assert_eq!(id_of_line(r"c\pu,host=a v=1"), id_of_line(r"c\\pu,host=a v=1"));
        let mut key = Vec::new();
        canonical_key_into("my cpu", [("a,b", "c=d")], &mut key);
        assert_eq!(key, br"my\ cpu,a\,b=c\=d");
        assert_eq!(id_of_line(r"my\ cpu,a\,b=c\=d v=1"), series_id(&key));
        assert_ne!(id_of_line("cpu,host=a v=1"), id_of_line("cpu,host=b v=1"));
    }
}
