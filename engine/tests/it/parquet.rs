//! Points through the real pipeline into the Parquet sink, read back with the parquet crate.

use std::collections::{BTreeMap, BTreeSet};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::{
    Array, BooleanArray, Float64Array, Int64Array, RecordBatch, StringArray, TimestampNanosecondArray, UInt64Array,
};
use augur_ingest::line_protocol::parse_points;
use augur_ingest::{FieldValue, Point, Precision};
use augur_storage::parquet::layout::unescape;
use augur_storage::parquet::{ParquetConfig, ParquetSink};
use augur_storage::sink::{FanOut, MemorySink, Sink};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;

use crate::harness::{config, Harness, SECOND};

struct TempDir(PathBuf);

impl TempDir {
    fn new(label: &str) -> Self {
        let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
        let path = std::env::temp_dir().join(format!("augur-it-{label}-{}-{nanos}", std::process::id()));
        std::fs::create_dir_all(&path).unwrap();
        Self(path)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn files(root: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let mut stack = vec![root.to_owned()];
    while let Some(dir) = stack.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn read(path: &Path) -> Vec<RecordBatch> {
    let reader = ParquetRecordBatchReaderBuilder::try_new(File::open(path).unwrap()).unwrap().build().unwrap();
    reader.map(Result::unwrap).collect()
}

/// The Hive partition values of a file, decoded.
fn partitions(root: &Path, file: &Path) -> BTreeMap<String, String> {
    file.parent()
        .unwrap()
        .strip_prefix(root)
        .unwrap()
        .components()
        .filter_map(|c| c.as_os_str().to_str()?.split_once('=').map(|(k, v)| (k.to_owned(), unescape(v).unwrap())))
        .collect()
}

/// Raw rows of the tree as points, with the region from the path.
fn raw_points(root: &Path) -> Vec<(String, Point)> {
    let mut points = Vec::new();
    for file in files(&root.join("raw")) {
        let measurement = unescape(
            file.strip_prefix(root.join("raw")).unwrap().components().next().unwrap().as_os_str().to_str().unwrap(),
        )
        .unwrap();
        let region = partitions(root, &file)["region"].clone();
        for batch in read(&file) {
            let time =
                batch.column_by_name("time").unwrap().as_any().downcast_ref::<TimestampNanosecondArray>().unwrap();
            for row in 0..batch.num_rows() {
                let mut point = Point {
                    measurement: measurement.clone(),
                    tags: Vec::new(),
                    fields: Vec::new(),
                    time: time.value(row),
                };
                for (field, column) in batch.schema().fields().iter().zip(batch.columns()) {
                    let name = field.name().as_str();
                    if name == "time" || name == "series_id" || column.is_null(row) {
                        continue;
                    }
                    let any = column.as_any();
                    if let Some(text) = any.downcast_ref::<StringArray>() {
                        // Tags and string fields are both text: string fields are named `s` here.
                        if name == "s" {
                            point.fields.push((name.into(), FieldValue::String(text.value(row).into())));
                        } else {
                            point.tags.push((name.into(), text.value(row).into()));
                        }
                    } else if let Some(v) = any.downcast_ref::<Float64Array>() {
                        point.fields.push((name.into(), FieldValue::Float(v.value(row))));
                    } else if let Some(v) = any.downcast_ref::<Int64Array>() {
                        point.fields.push((name.into(), FieldValue::Integer(v.value(row))));
                    } else if let Some(v) = any.downcast_ref::<UInt64Array>() {
                        point.fields.push((name.into(), FieldValue::Unsigned(v.value(row))));
                    } else if let Some(v) = any.downcast_ref::<BooleanArray>() {
                        point.fields.push((name.into(), FieldValue::Boolean(v.value(row))));
                    } else {
                        panic!("unexpected column type of {name}");
                    }
                }
                point.tags.sort();
                point.fields.sort_by(|a, b| a.0.cmp(&b.0));
                points.push((region.clone(), point));
            }
        }
    }
    points.sort_by(|a, b| (a.1.time, &a.1.measurement, &a.0).cmp(&(b.1.time, &b.1.measurement, &b.0)));
    points
}

fn run(root: &Path, body: &str) -> Arc<ParquetSink> {
    let parquet = Arc::new(ParquetSink::open(root.to_owned(), ParquetConfig::default(), 0).unwrap());
    let memory = Arc::new(MemorySink::default());
    let outputs: Arc<dyn Sink> = Arc::new(FanOut(vec![memory.clone(), parquet.clone()]));
    let mut harness =
        Harness::with_sink(3, &config(&[10 * SECOND, 60 * SECOND], 10 * SECOND, i64::MAX), memory, outputs);
    harness.write(body);
    harness.finish(0);
    parquet
}

#[test]
fn every_point_reads_back_value_for_value_with_schema_growth_and_every_type() {
    let dir = TempDir::new("parquet-roundtrip");
    let body = "\
cpu,host=a,region=eu f=1.5,i=-3i,u=4u,b=true,s=\"x y\" 1000000000
cpu,host=b,region=eu f=2.5,i=7i 2000000000
cpu,host=a,rack=r1,region=eu f=3.5,g=9.25 3000000000
mem,host=a,region=us used=42i 1500000000
cpu,host=c f=0.5 4000000000
cpu,host=a,region=eu f=4.5 3700000000000
";
    let sink = run(&dir.0, body);
    let (expected, errors) = parse_points(body.as_bytes(), Precision::Nanoseconds, 0);
    assert!(errors.is_empty());
    let mut expected: Vec<(String, Point)> = expected
        .into_iter()
        .map(|mut p| {
            let region = p.tags.iter().find(|(k, _)| k == "region").map_or("default".to_owned(), |(_, v)| v.clone());
            // The region tag lives in the path (`region=`), not in the file.
            p.tags.retain(|(k, _)| k != "region");
            p.fields.sort_by(|a, b| a.0.cmp(&b.0));
            (region, p)
        })
        .collect();
    expected.sort_by(|a, b| (a.1.time, &a.1.measurement, &a.0).cmp(&(b.1.time, &b.1.measurement, &b.0)));
    assert_eq!(raw_points(&dir.0), expected);

    // Hours, regions and measurements each have their folder.
    let folders: BTreeSet<String> = files(&dir.0.join("raw"))
        .iter()
        .map(|f| f.parent().unwrap().strip_prefix(&dir.0).unwrap().display().to_string())
        .collect();
    assert!(folders.contains("raw/cpu/region=eu/date=1970-01-01/hour=0"), "{folders:?}");
    assert!(folders.contains("raw/cpu/region=eu/date=1970-01-01/hour=1"), "{folders:?}");
    assert!(folders.contains("raw/cpu/region=default/date=1970-01-01/hour=0"), "{folders:?}");
    assert!(folders.contains("raw/mem/region=us/date=1970-01-01/hour=0"), "{folders:?}");
    assert!(sink.stats().rows.load(std::sync::atomic::Ordering::SeqCst) >= 6);

    // Rollups: one folder per (resolution, region, date), without the columns the path holds.
    let rollups = files(&dir.0.join("rollups"));
    assert!(!rollups.is_empty());
    for file in &rollups {
        let parts = partitions(&dir.0, file);
        assert!(["10s", "1m"].contains(&parts["resolution"].as_str()), "{parts:?}");
        for batch in read(file) {
            assert!(batch.column_by_name("region").is_none() && batch.column_by_name("resolution").is_none());
            assert!(batch.column_by_name("sketch").is_some());
        }
    }
}

#[test]
fn hostile_regions_and_measurements_stay_inside_the_tree_and_read_back_unchanged() {
    let dir = TempDir::new("parquet-paths");
    let hostile = ["..", "../../etc", "a/b", "%2F", "EU", "eu", "x\u{1}y", "ü/..", "C:\\\\tmp", "region=x"];
    let mut body = String::new();
    for (i, value) in hostile.iter().enumerate() {
        let escaped = value.replace('\\', "\\\\").replace(' ', "\\ ").replace(',', "\\,").replace('=', "\\=");
        body.push_str(&format!("{escaped},region={escaped} v={i} {}\n", i as i64 * SECOND));
    }
    run(&dir.0, &body);
    let root = dir.0.canonicalize().unwrap();
    let mut seen = BTreeSet::new();
    for file in files(&dir.0) {
        assert!(file.canonicalize().unwrap().starts_with(&root), "{} escaped the tree", file.display());
        if file.starts_with(dir.0.join("raw")) {
            let parts = partitions(&dir.0, &file);
            let measurement = unescape(
                file.strip_prefix(dir.0.join("raw"))
                    .unwrap()
                    .components()
                    .next()
                    .unwrap()
                    .as_os_str()
                    .to_str()
                    .unwrap(),
            )
            .unwrap();
            assert_eq!(parts["region"], measurement, "region and measurement were written equal");
            seen.insert(measurement);
        }
    }
    let expected: BTreeSet<String> = hostile.iter().map(|v| (*v).to_owned()).collect();
    assert_eq!(seen, expected, "every value has its own folder and decodes back unchanged");
}
