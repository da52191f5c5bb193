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

/// Rows read by position through the page index are the rows at those positions (as a full read
/// orders them), across pages and row groups, in the order asked; a position past the end is
/// `None`. The footer parsed for the first read serves the second, and goes with the file.
#[test]
fn chosen_rows_are_read_through_the_page_index_in_the_order_asked() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), false).unwrap();
    let n = ROW_GROUP_ROWS + 30_000;
    let mut recs = records(n);
    let entry = lake.write_file(1, "t", "2026-05-28", &mut recs).unwrap();
    let all = lake.read_all(&entry).unwrap();
    let id = |r: &Record| r.cell(schemas::fields::col::EVENT_ID).as_str().unwrap().to_owned();
    let asked = [n - 1, 0, 20_001, ROW_GROUP_ROWS + 1, n + 5, 0, 41_000];
    for _ in 0..2 {
        let got = lake.read_rows(&entry, &asked).unwrap();
        let want: Vec<Option<String>> = asked.iter().map(|&i| all.get(i).map(id)).collect();
        assert_eq!(got.iter().map(|r| r.as_ref().map(id)).collect::<Vec<_>>(), want);
    }
    let meta = lake.footers.get(&entry.path).expect("the footer is kept");
    assert!(meta.metadata().offset_index().is_some_and(|o| !o.is_empty()), "with its offset index");
    lake.remove(&entry.path).unwrap();
    assert!(lake.footers.get(&entry.path).is_none());
}
