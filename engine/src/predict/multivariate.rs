//! `augur eval multivariate --data DIR --out DIR [--labels DIR]`: every host's CSV
//! (`timestamp,<field>,...`, one row per time step, history first; `.csv` or `.csv.gz`) fed row
//! by row through the per-host scorer ([`super::host::HostScorer`]), a fresh one
//! per host and one configuration for all; `OUT/<host>.csv` holds `timestamp,anomaly_score` for
//! every input row. Given labels (`DIR/<host>.txt`, one 0/1 per row of the labelled tail), the
//! fleet's point-wise scores ([`super::smd`]).

use std::io::Read;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};

use super::host::HostScorer;
use super::smd::{self, FleetScores};

/// The fixed alarm threshold the fleet's F1 is reported at (an event opens from 0.5).
pub const ALARM: f64 = 0.5;

/// One host's rows.
#[derive(Debug, Clone)]
pub struct Host {
    /// The file name without `.csv` / `.csv.gz`.
    pub name: String,
    /// Each row's timestamp (epoch seconds) as written.
    pub times: Vec<String>,
    /// Each row's values, one per field (`NaN` where empty).
    pub rows: Vec<Vec<f64>>,
    /// The fields' names, from the header.
    pub fields: Vec<String>,
}

/// Every host file in `dir`, sorted by name.
///
/// # Errors
/// When the folder cannot be read, holds no host file, or a file is malformed (named with its
/// line and column).
pub fn read_hosts(dir: &Path) -> anyhow::Result<Vec<Host>> {
    let mut hosts = Vec::new();
    for entry in std::fs::read_dir(dir).with_context(|| format!("reading {}", dir.display()))? {
        let path = entry?.path();
        let file = path.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_owned();
        let name = file.strip_suffix(".csv.gz").or_else(|| file.strip_suffix(".csv"));
        if let Some(name) = name {
            hosts.push(read_host(&path, name)?);
        }
    }
    if hosts.is_empty() {
        bail!("no <host>.csv or <host>.csv.gz in {}", dir.display());
    }
    hosts.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(hosts)
}

fn read_host(path: &Path, name: &str) -> anyhow::Result<Host> {
    let mut text = String::new();
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    if path.extension().is_some_and(|e| e == "gz") {
        flate2::read::GzDecoder::new(file).read_to_string(&mut text)
    } else {
        std::io::BufReader::new(file).read_to_string(&mut text)
    }
    .with_context(|| format!("reading {}", path.display()))?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else { bail!("{}: empty", path.display()) };
    let mut columns = header.split(',').map(str::trim);
    if columns.next() != Some("timestamp") {
        bail!("{}: line 1: the header must start with `timestamp`", path.display());
    }
    let fields: Vec<String> = columns.map(str::to_owned).collect();
    if fields.is_empty() {
        bail!("{}: line 1: no field after `timestamp`", path.display());
    }
    let mut host = Host { name: name.to_owned(), times: Vec::new(), rows: Vec::new(), fields };
    for (number, line) in lines {
        let mut cells = line.split(',').map(str::trim);
        let time = cells.next().unwrap_or_default();
        if time.parse::<i64>().is_err() {
            bail!("{}: line {}: timestamp {time:?} is not epoch seconds", path.display(), number + 1);
        }
        let row = cells
            .enumerate()
            .map(|(i, cell)| match cell {
                "" => Ok(f64::NAN),
                _ => cell.parse::<f64>().with_context(|| {
                    let field = host.fields.get(i).map_or("?", String::as_str);
                    format!("{}: line {}: field {field}: {cell:?} is not a number", path.display(), number + 1)
                }),
            })
            .collect::<anyhow::Result<Vec<f64>>>()?;
        if row.len() != host.fields.len() {
            bail!("{}: line {}: {} values for {} fields", path.display(), number + 1, row.len(), host.fields.len());
        }
        host.times.push(time.to_owned());
        host.rows.push(row);
    }
    Ok(host)
}

/// Scores every row of `host` with a fresh scorer.
pub fn score(host: &Host) -> Vec<f64> {
    let mut scorer = HostScorer::new(host.fields.len());
    host.rows.iter().map(|row| scorer.score(row)).collect()
}

/// `DIR/<host>.txt`: one 0/1 per row of the labelled tail.
///
/// # Errors
/// When the file cannot be read or holds anything but 0 and 1.
pub fn read_labels(dir: &Path, host: &str) -> anyhow::Result<Vec<bool>> {
    let path = dir.join(format!("{host}.txt"));
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading the labels of {host}: {}", path.display()))?;
    text.split_whitespace()
        .enumerate()
        .map(|(i, label)| match label {
            "0" => Ok(false),
            "1" => Ok(true),
            _ => bail!("{}: label {} is {label:?}, not 0 or 1", path.display(), i + 1),
        })
        .collect()
}

/// The command: score every host, write `OUT/<host>.csv`, and with `labels` print the fleet's
/// scores over each host's labelled tail.
///
/// # Errors
/// When the data or labels cannot be read, a host has more labels than rows, or a result cannot
/// be written.
pub fn run(data: &Path, out: &Path, labels: Option<&Path>) -> anyhow::Result<Option<FleetScores>> {
    let hosts = read_hosts(data)?;
    std::fs::create_dir_all(out).with_context(|| format!("creating {}", out.display()))?;
    let started = std::time::Instant::now();
    let mut scored = Vec::with_capacity(hosts.len());
    for host in &hosts {
        let scores = score(host);
        write_scores(&out.join(format!("{}.csv", host.name)), &host.times, &scores)?;
        scored.push(scores);
    }
    let rows: usize = hosts.iter().map(|h| h.rows.len()).sum();
    println!("scored {} hosts, {rows} rows in {:.2?}; results under {}", hosts.len(), started.elapsed(), out.display());
    let Some(labels) = labels else { return Ok(None) };
    let mut labelled = Vec::with_capacity(hosts.len());
    for (host, scores) in hosts.iter().zip(scored) {
        let tail = read_labels(labels, &host.name)?;
        if tail.len() > scores.len() {
            bail!("{}: {} labels for {} rows", host.name, tail.len(), scores.len());
        }
        labelled.push((scores[scores.len() - tail.len()..].to_vec(), tail));
    }
    let fleet = smd::fleet(&labelled, ALARM);
    println!(
        "mean over hosts (each its best threshold): best F1 {:.3}, AUPRC {:.3}",
        fleet.mean_best_f1, fleet.mean_auprc
    );
    println!("pooled (one threshold for every host):     best F1 {:.3}", fleet.pooled_best_f1);
    println!("fixed threshold {ALARM} (no tuning):           F1 {:.3}", fleet.fixed_f1);
    println!("leaving one host out (threshold of the others): F1 {:.3}", fleet.leave_one_out_f1);
    Ok(Some(fleet))
}

fn write_scores(path: &PathBuf, times: &[String], scores: &[f64]) -> anyhow::Result<()> {
    let mut text = String::from("timestamp,anomaly_score\n");
    for (time, score) in times.iter().zip(scores) {
        text.push_str(&format!("{time},{score}\n"));
    }
    std::fs::write(path, text).with_context(|| format!("writing {}", path.display()))
}
