//! Graphite plaintext, as carbon takes it over TCP: `<path> <value> [<timestamp>]` per line, the
//! path optionally tagged (`disk.used;host=web1;mount=/`, Graphite 1.1), the timestamp in Unix
//! seconds (a fraction allowed; missing or `-1` is now).
//!
//! Templates (`graphite.templates`, as InfluxDB's Graphite input writes them) turn a dotted path
//! into measurement, tags and field. Each is `[filter] template [tag=value,...]`:
//! - the template names each part of the path in turn: `measurement`, `field`, a tag name, or
//!   nothing (`..` skips a part); `measurement*` and `field*` take every part left. Several parts
//!   of one name are joined with `graphite.separator` (`.`). Parts past the template are ignored.
//!   Without a `field` part the field is `value`.
//! - the filter (`collectd.*`, `servers.*.cpu`) picks which paths the template is for: `*`
//!   matches any one part, and a filter matches the start of a path. Of the filters that match,
//!   the one with the most literal parts wins, then the longest. A template without a filter is
//!   the default; with none, the whole path is the measurement (`measurement*`).
//! - the tags after it are added to every point the template maps.
//!
//! For example `collectd.* .host.measurement.field*` maps collectd's
//! `collectd.web1.cpu-0.cpu-idle 98.5 1700000000` to `cpu-0,host=web1 cpu-idle=98.5
//! 1700000000000000000`. Tags of the tagged form win over the template's. Values are floats; NaN
//! and infinities cannot be stored. Each bad line is refused by number; the rest are stored.

use super::Converted;
use crate::point::FieldValue;

/// The default template: the whole path is the measurement.
const DEFAULT: &[Part] = &[Part::Measurement { greedy: true }];

/// What a template calls one part of a path.
#[derive(Debug, Clone, PartialEq)]
enum Part {
    Measurement { greedy: bool },
    Field { greedy: bool },
    Tag(String),
    Skip,
}

#[derive(Debug, Clone)]
struct Template {
    /// The filter's parts, `*` for any; empty for the default template.
    filter: Vec<String>,
    parts: Vec<Part>,
    tags: Vec<(String, String)>,
}

impl Template {
    fn parse(text: &str) -> Result<Self, String> {
        let words: Vec<&str> = text.split_whitespace().collect();
        let (filter, template, tags) = match words.as_slice() {
            [template] => (None, *template, None),
            [filter, template] if template.contains('=') => (None, *filter, Some(*template)),
            [filter, template] => (Some(*filter), *template, None),
            [filter, template, tags] => (Some(*filter), *template, Some(*tags)),
            _ => return Err("expected `[filter] template [tag=value,...]`".into()),
        };
        let parts: Vec<Part> = template
            .split('.')
            .map(|part| match part {
                "measurement" => Part::Measurement { greedy: false },
                "measurement*" => Part::Measurement { greedy: true },
                "field" => Part::Field { greedy: false },
                "field*" => Part::Field { greedy: true },
                "" => Part::Skip,
                tag => Part::Tag(tag.to_owned()),
            })
            .collect();
        if let Some(Part::Tag(tag)) = parts.iter().find(|p| matches!(p, Part::Tag(t) if t.contains('*') || t == "time"))
        {
            return Err(format!("`{tag}` cannot name a tag"));
        }
        if !parts.iter().any(|p| matches!(p, Part::Measurement { .. })) {
            return Err("the template names no `measurement` part".into());
        }
        let greedy =
            parts.iter().filter(|p| matches!(p, Part::Measurement { greedy: true } | Part::Field { greedy: true }));
        if greedy.count() > 1 {
            return Err("only one part can be greedy (`measurement*` or `field*`)".into());
        }
        let mut default_tags = Vec::new();
        for pair in tags.into_iter().flat_map(|t| t.split(',')) {
            match pair.split_once('=') {
                Some((k, v)) if !k.is_empty() && !v.is_empty() => default_tags.push((k.to_owned(), v.to_owned())),
                _ => return Err(format!("tag `{pair}`: expected `name=value`")),
            }
        }
        let filter = filter.map_or_else(Vec::new, |f| f.split('.').map(str::to_owned).collect());
        if filter.iter().any(String::is_empty) {
            return Err("the filter has an empty part".into());
        }
        Ok(Self { filter, parts, tags: default_tags })
    }

    fn matches(&self, path: &[&str]) -> bool {
        self.filter.len() <= path.len() && self.filter.iter().zip(path).all(|(f, p)| f == "*" || f == p)
    }

    /// How specific the filter is: literal parts, then length.
    fn specificity(&self) -> (usize, usize) {
        (self.filter.iter().filter(|f| *f != "*").count(), self.filter.len())
    }
}

/// Templates, compiled from `graphite.templates`.
#[derive(Debug, Clone)]
pub struct Templates {
    /// Filtered templates, most specific first: the first that matches wins. A scan, not a trie:
    /// deployments have a handful of templates.
    filtered: Vec<Template>,
    default: Option<Template>,
    separator: String,
}

impl Default for Templates {
    fn default() -> Self {
        Self { filtered: Vec::new(), default: None, separator: ".".into() }
    }
}

impl Templates {
    /// Compiles `templates`, joining several parts of one name with `separator`.
    ///
    /// # Errors
    /// Every bad template, each named by its index and text.
    pub fn new(templates: &[String], separator: &str) -> Result<Self, Vec<String>> {
        let mut out = Self { separator: separator.to_owned(), ..Self::default() };
        let mut problems = Vec::new();
        for (index, text) in templates.iter().enumerate() {
            match Template::parse(text) {
                Ok(template) if template.filter.is_empty() && out.default.is_some() => {
                    problems.push(format!("graphite.templates[{index}] `{text}`: a second template without a filter"));
                }
                Ok(template) if template.filter.is_empty() => out.default = Some(template),
                Ok(template) => out.filtered.push(template),
                Err(reason) => problems.push(format!("graphite.templates[{index}] `{text}`: {reason}")),
            }
        }
        // Stable: of two equally specific filters, the one configured first wins.
        out.filtered.sort_by_key(|t| std::cmp::Reverse(t.specificity()));
        if problems.is_empty() {
            Ok(out)
        } else {
            Err(problems)
        }
    }

    fn template_for(&self, path: &[&str]) -> (&[Part], &[(String, String)]) {
        match self.filtered.iter().find(|t| t.matches(path)).or(self.default.as_ref()) {
            Some(template) => (&template.parts, &template.tags),
            None => (DEFAULT, &[]),
        }
    }

    /// The measurement, tags (unsorted) and field of a dotted path.
    fn apply(&self, path: &str) -> (String, Vec<(String, String)>, String) {
        let parts: Vec<&str> = path.split('.').collect();
        let (template, default_tags) = self.template_for(&parts);
        let (mut measurement, mut field) = (Vec::new(), Vec::new());
        let mut tags: Vec<(String, Vec<&str>)> = Vec::new();
        for (i, part) in template.iter().enumerate() {
            let Some(&value) = parts.get(i) else { break };
            match part {
                Part::Measurement { greedy: false } => measurement.push(value),
                Part::Measurement { greedy: true } => measurement.extend(&parts[i..]),
                Part::Field { greedy: false } => field.push(value),
                Part::Field { greedy: true } => field.extend(&parts[i..]),
                Part::Tag(name) => match tags.iter_mut().find(|(n, _)| n == name) {
                    Some((_, values)) => values.push(value),
                    None => tags.push((name.clone(), vec![value])),
                },
                Part::Skip => {}
            }
        }
        let separator = self.separator.as_str();
        let mut all: Vec<(String, String)> = default_tags.to_vec();
        all.retain(|(k, _)| !tags.iter().any(|(n, _)| n == k));
        all.extend(tags.into_iter().map(|(name, values)| (name, values.join(separator))));
        let field = if field.is_empty() { "value".to_owned() } else { field.join(separator) };
        (measurement.join(separator), all, field)
    }
}

/// Decodes newline-separated Graphite lines; `first_line` numbers the first, `now` (ns) times
/// lines without a timestamp.
pub fn decode(lines: &[u8], templates: &Templates, first_line: usize, now: i64) -> Converted {
    let mut out = Converted::new("line");
    for (index, line) in lines.split(|&b| b == b'\n').enumerate() {
        let number = first_line + index;
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            continue;
        }
        if let Err(error) = convert(&mut out, number, line, templates, now) {
            out.reject(number, || error);
        }
    }
    out
}

fn convert(out: &mut Converted, number: usize, line: &[u8], templates: &Templates, now: i64) -> Result<(), String> {
    let line = std::str::from_utf8(line).map_err(|_| "invalid UTF-8".to_owned())?;
    let words: Vec<&str> = line.split_ascii_whitespace().collect();
    let (path, value, time) = match words.as_slice() {
        [path, value] => (*path, *value, None),
        [path, value, time] => (*path, *value, Some(*time)),
        _ => return Err(format!("`{}`: expected `path value [timestamp]`", truncate(line))),
    };
    let value: f64 =
        value.parse().map_err(|_| format!("{path}: invalid value `{}`: expected a number", truncate(value)))?;
    if !value.is_finite() {
        return Err(format!("{path}: value {value} cannot be stored"));
    }
    let time = match time {
        None | Some("-1") => now,
        Some(text) => seconds(text)
            .ok_or_else(|| format!("{path}: invalid timestamp `{}`: expected Unix seconds", truncate(text)))?,
    };
    let mut sections = path.split(';');
    let dotted = sections.next().unwrap_or_default();
    let (measurement, mut tags, field) = templates.apply(dotted);
    if measurement.is_empty() || field.is_empty() {
        return Err(format!("{path}: the template gives an empty measurement or field"));
    }
    let mut explicit: Vec<(&str, &str)> = Vec::new();
    for tag in sections {
        match tag.split_once('=') {
            Some((k, v)) if !k.is_empty() && !v.is_empty() => {
                if explicit.iter().any(|(seen, _)| *seen == k) {
                    return Err(format!("{path}: tag `{k}` appears twice"));
                }
                explicit.push((k, v));
            }
            _ => return Err(format!("{path}: tag `{tag}`: expected `name=value`")),
        }
    }
    tags.retain(|(k, v)| !v.is_empty() && !explicit.iter().any(|(e, _)| e == k));
    let mut tags: Vec<(&str, &str)> = tags.iter().map(|(k, v)| (k.as_str(), v.as_str())).chain(explicit).collect();
    tags.sort_unstable();
    out.point(number, &measurement, tags, [(field.as_str(), FieldValue::Float(value))], Some(time));
    Ok(())
}

/// Unix seconds, whole or with a fraction, as nanoseconds; `None` when not a time from 1970 on.
fn seconds(text: &str) -> Option<i64> {
    let (whole, fraction) = text.split_once('.').unwrap_or((text, ""));
    if whole.is_empty() || !whole.bytes().all(|b| b.is_ascii_digit()) || !fraction.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let digits = &fraction[..fraction.len().min(9)];
    let nanos: i64 =
        if digits.is_empty() { 0 } else { digits.parse::<i64>().ok()? * 10_i64.pow(9 - digits.len() as u32) };
    whole.parse::<i64>().ok()?.checked_mul(1_000_000_000)?.checked_add(nanos)
}

fn truncate(text: &str) -> &str {
    let end = (0..=text.len().min(80)).rev().find(|&i| text.is_char_boundary(i)).unwrap_or(0);
    &text[..end]
}

#[cfg(test)]
mod tests {
    use super::*;

    const NOW: i64 = 1_700_000_000_000_000_000;

    fn templates(lines: &[&str]) -> Templates {
        Templates::new(&lines.iter().map(|s| s.to_string()).collect::<Vec<_>>(), ".").unwrap()
    }

    fn lines(body: &str, templates: &Templates) -> (Vec<String>, Vec<String>) {
        let converted = decode(body.as_bytes(), templates, 1, NOW);
        let text = String::from_utf8(converted.lines.clone()).unwrap();
        (text.lines().map(str::to_owned).collect(), converted.errors)
    }

    #[test]
    fn without_templates_the_path_is_the_measurement() {
        let (points, errors) = lines("servers.web1.cpu 12.5 1700000000\nload 1\n", &Templates::default());
        assert_eq!(points, ["servers.web1.cpu value=12.5 1700000000000000000", &format!("load value=1.0 {NOW}")]);
        assert!(errors.is_empty());
    }

    #[test]
    fn templates_map_parts_and_the_most_specific_filter_wins() {
        let t = templates(&[
            "collectd.* .host.measurement.field*",
            "servers.*.cpu .host.measurement.measurement region=eu",
            "servers.* .host.measurement* dc=x",
            "measurement.measurement.field",
        ]);
        let body = "collectd.web1.cpu-0.cpu-idle 98.5 1700000000\n\
                    servers.web2.cpu.user 3 1700000000.25\n\
                    servers.web3.disk.sda.used 7 1700000000\n\
                    app.http.requests 9 1700000000\n\
                    servers.web4.cpu.sys;region=us;rack=r1 1 1700000000\n";
        let (points, errors) = lines(body, &t);
        assert!(errors.is_empty(), "{errors:?}");
        assert_eq!(
            points,
            [
                "cpu-0,host=web1 cpu-idle=98.5 1700000000000000000",
                "cpu.user,host=web2,region=eu value=3.0 1700000000250000000",
                "disk.sda.used,dc=x,host=web3 value=7.0 1700000000000000000",
                "app.http requests=9.0 1700000000000000000",
                "cpu.sys,host=web4,rack=r1,region=us value=1.0 1700000000000000000",
            ]
        );
        let t = Templates::new(&[".host.measurement.measurement".into()], "_").unwrap();
        assert_eq!(lines("s.h.cpu.user 1 1", &t).0, ["cpu_user,host=h value=1.0 1000000000"]);
    }

    #[test]
    fn bad_lines_are_named_by_number_and_the_rest_kept() {
        let body = "ok 1 1\nbad abc 1\nnan nan 1\nlate 1 yesterday\nx 1 2 3\nt;host 1 1\n\nok 2 -1\n";
        let converted = decode(body.as_bytes(), &Templates::default(), 10, NOW);
        assert_eq!(converted.sources, [10, 17]);
        assert_eq!(converted.error_count, 5);
        let e = &converted.errors;
        assert_eq!(e[0], "line 11: bad: invalid value `abc`: expected a number");
        assert_eq!(e[1], "line 12: nan: value NaN cannot be stored");
        assert_eq!(e[2], "line 13: late: invalid timestamp `yesterday`: expected Unix seconds");
        assert_eq!(e[3], "line 14: `x 1 2 3`: expected `path value [timestamp]`");
        assert_eq!(e[4], "line 15: t;host: tag `host`: expected `name=value`");
    }

    #[test]
    fn bad_templates_are_all_reported() {
        let problems = Templates::new(
            &[
                "host.field".into(),
                "a.* measurement*.field*".into(),
                "x y z w".into(),
                "measurement".into(),
                "f".into(),
            ],
            ".",
        )
        .unwrap_err();
        assert_eq!(problems.len(), 4, "{problems:?}");
        assert!(problems[0].starts_with("graphite.templates[0] `host.field`: the template names no `measurement`"));
        assert!(problems[1].contains("only one part can be greedy"));
        assert!(problems[3].starts_with("graphite.templates[4] `f`"), "{problems:?}");
    }

    proptest::proptest! {
        #![proptest_config(proptest::prelude::ProptestConfig { cases: 256, ..Default::default() })]

        /// Any bytes: each non-blank line is a point or one error, never a panic.
        #[test]
        fn any_line_is_a_point_or_an_error(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..300)) {
            let t = templates(&[".host.measurement.field*", "a.* measurement.tag"]);
            let converted = decode(&bytes, &t, 1, NOW);
            let rendered = converted.lines.iter().filter(|&&b| b == b'\n').count();
            proptest::prop_assert_eq!(rendered, converted.sources.len());
            let non_blank = bytes.split(|&b| b == b'\n').filter(|l| !l.iter().all(u8::is_ascii_whitespace)).count();
            proptest::prop_assert_eq!(converted.sources.len() + converted.error_count, non_blank);
        }
    }
}
