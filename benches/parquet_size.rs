//! Bytes on disk per field value for TSBS-shaped raw points, for Augur's encoder and for the
//! alternatives it was chosen over. Prints a table; not a timing.
//!
//! `cargo bench -p augur-suite --bench parquet_size`: 1000 hosts × 10 fields, one point per host
//! every 10 s for one hour (3.6M field values), through the real parser, router and raw-batch
//! builder, then encoded as one file per variant.

use arrow_array::RecordBatch;
use augur_engine::loadgen::tsbs::Fleet;
use augur_engine::loadgen::wire::{Format, Renderer};
use augur_engine::raw::raw_batches;
use augur_storage::parquet::file::{Encoder, SortOrder};
use augur_suite::Batcher;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, Encoding, ZstdLevel};
use parquet::file::properties::WriterProperties;
use parquet::schema::types::ColumnPath;

const HOSTS: usize = 1000;
const FIELDS: usize = 10;
const STEPS: i64 = 360;

fn raw_batch() -> RecordBatch {
    let batcher = Batcher::default();
    let mut fleet = Renderer::new(Format::LineProtocol, Fleet::new(HOSTS, 1, FIELDS, 0));
    let mut body = Vec::new();
    let mut points = Vec::new();
    let start = 1_700_000_000 / 3600 * 3600 * 1_000_000_000i64;
    for step in 0..STEPS {
        fleet.batch(HOSTS, start + step * 10_000_000_000, &mut body);
        points.push(batcher.batch(&body));
    }
    let mut raw = raw_batches(&points).unwrap();
    assert_eq!(raw.len(), 1, "one region, one hour");
    let batch = raw.remove(0).1;
    // The region lives in the path, as the sink writes it.
    let keep: Vec<usize> = (0..batch.num_columns()).filter(|&i| batch.schema().field(i).name() != "region").collect();
    batch.project(&keep).unwrap()
}

fn encode(batch: &RecordBatch, properties: WriterProperties) -> usize {
    let mut bytes = Vec::new();
    let mut writer = ArrowWriter::try_new(&mut bytes, batch.schema(), Some(properties)).unwrap();
    writer.write(batch).unwrap();
    writer.close().unwrap();
    bytes.len()
}

fn main() {
    if std::env::args().any(|a| a == "--list") {
        return;
    }
    let batch = raw_batch();
    let values = (batch.num_rows() * FIELDS) as f64;
    let augur_bytes =
        Encoder::new(3, 1 << 20, 128 << 20).unwrap().encode(std::slice::from_ref(&batch), SortOrder::Raw).unwrap();
    if let Ok(path) = std::env::var("AUGUR_PARQUET_SIZE_OUT") {
        std::fs::write(path, &augur_bytes).unwrap(); // for inspecting column sizes by hand
    }
    let augur = augur_bytes.len();
    // The alternatives get the same sorted rows.
    let sorted = {
        let bytes =
            Encoder::new(1, 1 << 20, 128 << 20).unwrap().encode(std::slice::from_ref(&batch), SortOrder::Raw).unwrap();
        let reader = parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder::try_new(bytes::Bytes::from(bytes))
            .unwrap()
            .with_batch_size(usize::MAX)
            .build()
            .unwrap();
        let batches: Vec<RecordBatch> = reader.map(Result::unwrap).collect();
        arrow_select::concat::concat_batches(&batches[0].schema(), &batches).unwrap()
    };
    let zstd = |level| Compression::ZSTD(ZstdLevel::try_new(level).unwrap());
    let time = || ColumnPath::from("time");
    let float_columns: Vec<String> =
        sorted.schema().fields().iter().filter(|f| f.name().starts_with("usage")).map(|f| f.name().clone()).collect();
    let mut byte_stream_split = WriterProperties::builder()
        .set_compression(zstd(3))
        .set_column_dictionary_enabled(time(), false)
        .set_column_encoding(time(), Encoding::DELTA_BINARY_PACKED);
    for column in &float_columns {
        byte_stream_split = byte_stream_split
            .set_column_dictionary_enabled(ColumnPath::from(column.as_str()), false)
            .set_column_encoding(ColumnPath::from(column.as_str()), Encoding::BYTE_STREAM_SPLIT);
    }
    let variants: Vec<(&str, usize)> = vec![
        ("augur: dictionaries, delta timestamps, zstd 3 (chosen)", augur),
        (
            "parquet-rs defaults (snappy-free, uncompressed, dictionaries)",
            encode(&sorted, WriterProperties::builder().build()),
        ),
        (
            "dictionaries, zstd 3, dictionary timestamps",
            encode(&sorted, WriterProperties::builder().set_compression(zstd(3)).build()),
        ),
        ("byte-stream-split floats, delta timestamps, zstd 3", encode(&sorted, byte_stream_split.build())),
        (
            "dictionaries, delta timestamps, zstd 9",
            encode(
                &sorted,
                WriterProperties::builder()
                    .set_compression(zstd(9))
                    .set_column_dictionary_enabled(time(), false)
                    .set_column_encoding(time(), Encoding::DELTA_BINARY_PACKED)
                    .build(),
            ),
        ),
    ];
    println!("{} rows, {} field values, 10 tags per row", sorted.num_rows(), values);
    for (name, bytes) in variants {
        println!("  {name:<64} {bytes:>10} bytes  {:.3} bytes/value", bytes as f64 / values);
    }
}
