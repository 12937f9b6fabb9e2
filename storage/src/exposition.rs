//! The Prometheus text exposition format, written by `GET /metrics` and by every sink's
//! `render_metrics`, so all metric families look the same.

use std::fmt::Write;

/// Appends the `# HELP` and `# TYPE` lines of a metric family (`kind` is `counter` or `gauge`).
pub fn header(out: &mut String, name: &str, kind: &str, help: &str) {
    // Writing to a String cannot fail.
    let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
}

/// Appends one sample: `name{label="value",...} value`, label values escaped.
pub fn sample(out: &mut String, name: &str, labels: &[(&str, &str)], value: impl std::fmt::Display) {
    out.push_str(name);
    if !labels.is_empty() {
        out.push('{');
        for (i, (label, text)) in labels.iter().enumerate() {
            if i > 0 {
                out.push(',');
            }
            let escaped = text.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n");
            let _ = write!(out, "{label}=\"{escaped}\"");
        }
        out.push('}');
    }
    let _ = writeln!(out, " {value}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn samples_escape_label_values() {
        let mut out = String::new();
        header(&mut out, "m_total", "counter", "Things.");
        sample(&mut out, "m_total", &[], 1);
        sample(&mut out, "m_total", &[("p", "0"), ("region", "a\"b\\c\nd")], 2);
        assert_eq!(out, "# HELP m_total Things.\n# TYPE m_total counter\nm_total 1\nm_total{p=\"0\",region=\"a\\\"b\\\\c\\nd\"} 2\n");
    }
}
