use super::*;
use parquet::file::reader::{FileReader, SerializedFileReader};

/// Process events of a few hosts, as an agent would send them (pids, ports and sizes varied).
fn records(n: usize) -> Vec<Record> {
    let ch = schemas::decode::Channel {
        tenant: "t",
        agent: "a",
        message_key: "boot-1:7",
        stream_seq: 7,
        received: 1_780_000_000_000_000,
    };
    (0..n)
        .map(|i| {
            let line = format!(
                r#"{{"@timestamp":"2026-05-28T20:{:02}:{:02}.{:06}Z","host":{{"name":"h{}"}},"event":{{"category":"network","action":"connect"}},"process":{{"pid":{},"entity_id":"h{}-p-{}"}},"source":{{"port":{}}},"file":{{"size":{}}}}}"#,
                i / 3600 % 60,
                i / 60 % 60,
                i % 60 * 1000,
                i % 4,
                1000 + i * 7919 % 30000,
                i % 4,
                i,
                1024 + i * 104_729 % 60_000,
                i * 31
            );
            schemas::decode::decode_line(line.as_bytes(), i + 1, &ch, &schemas::decode::Limits::default()).unwrap()
        })
        .collect()
}

#[test]
fn times_ids_and_wide_numbers_skip_the_dictionary_and_read_back_as_written() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), false).unwrap();
    let mut recs = records(5000);
    let sent: std::collections::BTreeSet<(String, i64)> = recs
        .iter()
        .map(|r| (r.cell(schemas::fields::col::EVENT_ID).as_str().unwrap().to_owned(), r.time()))
        .collect();
    let entry = lake.write_file(1, "t", "2026-05-28", &mut recs).unwrap();
    let file = std::fs::File::open(dir.path().join(&entry.path)).unwrap();
    let reader = SerializedFileReader::new(file).unwrap();
    let group = reader.metadata().row_group(0);
    for (name, encoding) in ENCODINGS {
        let chunk = group.columns().iter().find(|c| c.column_path().string() == *name).unwrap();
        assert!(chunk.dictionary_page_offset().is_none(), "{name} has a dictionary");
        assert!(
            chunk.encodings().any(|e| e == *encoding),
            "{name}: {:?}",
            chunk.encodings().collect::<Vec<_>>()
        );
    }
    let host = group.columns().iter().find(|c| c.column_path().string() == "host_name").unwrap();
    assert!(host.dictionary_page_offset().is_some(), "other columns keep their dictionary");
    let back: std::collections::BTreeSet<(String, i64)> = lake
        .read_all(&entry)
        .unwrap()
        .iter()
        .map(|r| (r.cell(schemas::fields::col::EVENT_ID).as_str().unwrap().to_owned(), r.time()))
        .collect();
    assert_eq!(back, sent);
}
