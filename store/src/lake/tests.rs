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

/// Files sorted on (host, time) merge into one stream in that order, a slice at a time, every
/// row once; a file that does not declare the order (a compaction's Z-ordered file) is
/// sorted first; a file whose footer claims the order falsely fails the merge.
/// `recs` newest first, written by a plain Parquet writer (no order declared) as file 9 of `like`'s
/// partition: its catalog entry and its rows.
fn undeclared(lake: &Lake, recs: &[Record], like: &FileEntry) -> (FileEntry, RecordBatch) {
    let mut rest = recs.to_vec();
    rest.reverse();
    let batch = records_to_batch(&rest).unwrap();
    let mut bytes = Vec::new();
    let mut w = parquet::arrow::ArrowWriter::try_new(&mut bytes, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
    let rel = "events/tenant=t/date=2026-05-28/000000000009-legacy.parquet";
    lake.overwrite(rel, &bytes).unwrap();
    let entry = FileEntry {
        id: 9,
        path: rel.into(),
        rows: rest.len() as i64,
        bytes: bytes.len() as i64,
        sha256: sha256_hex(&bytes),
        ..like.clone()
    };
    (entry, batch)
}

#[test]
fn sorted_files_merge_in_host_time_order_and_a_false_footer_fails() {
    use schemas::fields::col;
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), false).unwrap();
    let mut recs = records(40_000);
    let id = |r: &Record| r.cell(col::EVENT_ID).as_str().unwrap().to_owned();
    let sent: std::collections::BTreeSet<String> = recs.iter().map(id).collect();
    let mut inputs = Vec::new();
    for (i, part) in recs[..30_000].chunks_mut(10_000).enumerate() {
        inputs.push(lake.write_file(i as i64 + 1, "t", "2026-05-28", part).unwrap());
    }
    // Undeclared and out of order: written by a plain Parquet writer, newest first.
    let (legacy, batch) = undeclared(&lake, &recs[30_000..], &inputs[0]);
    inputs.insert(1, legacy);

    let mut merge = lake.sorted_merge(&inputs).unwrap();
    let (mut got, mut keys, mut slices) = (Vec::new(), Vec::new(), 0);
    while let Some(slice) = merge.next_slice(3000).unwrap() {
        assert!(slice.num_rows() <= 3000);
        slices += 1;
        for r in batch_to_records(&slice) {
            keys.push((r.host().to_owned(), r.time()));
            got.push(id(&r));
        }
    }
    assert_eq!(got.len(), sent.len(), "every row once");
    assert_eq!(got.iter().cloned().collect::<std::collections::BTreeSet<_>>(), sent);
    assert!(keys.windows(2).all(|w| w[0] <= w[1]), "in (host, time) order");
    assert_eq!(slices, sent.len().div_ceil(3000));

    // A staged file's footer declares the order; these rows are not in it.
    let staged = lake.stage("t", "2026-05-28", &batch, Order::HostTime).unwrap();
    let liar = lake.publish(staged, 10).unwrap();
    let mut merge = lake.sorted_merge(&[inputs[0].clone(), liar]).unwrap();
    let err = std::iter::from_fn(|| merge.next_slice(3000).transpose()).find_map(Result::err);
    let err = err.map(|e| e.to_string());
    assert!(err.as_ref().is_some_and(|e| e.contains("not sorted on (host, time)")), "{err:?}");
}

fn event_id(r: &Record) -> String {
    r.cell(schemas::fields::col::EVENT_ID).as_str().unwrap().to_owned()
}

/// Rows (event ids) of a merge read row-wise ([`SortedMerge`]), in order.
fn row_wise(lake: &Lake, inputs: &[FileEntry]) -> Vec<String> {
    let mut merge = lake.sorted_merge(inputs).unwrap();
    let mut ids = Vec::new();
    while let Some(slice) = merge.next_slice(4096).unwrap() {
        ids.extend(batch_to_records(&slice).iter().map(event_id));
    }
    ids
}

#[test]
fn a_vertical_merge_writes_the_row_wise_order_a_column_at_a_time_with_the_footer_ingest_writes() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), false).unwrap();
    let mut recs = records(90_000);
    let (sent_min, sent_max) = (recs.iter().map(Record::time).min(), recs.iter().map(Record::time).max());
    let mut inputs = Vec::new();
    let (small, large) = recs.split_at_mut(20_000);
    let (a, b) = small.split_at_mut(10_000);
    for (i, part) in [a, b, large].into_iter().enumerate() {
        inputs.push(lake.write_file(i as i64 + 1, "t", "2026-05-28", part).unwrap());
    }
    // Equal keys in two inputs (the first file's rows again, under other ids): the earlier input's
    // row comes first in both merges.
    let mut again = records(10_000);
    for (i, r) in again.iter_mut().enumerate() {
        r.set(schemas::fields::col::EVENT_ID, schemas::Cell::Str(format!("again-{i}")));
    }
    inputs.push(lake.write_file(4, "t", "2026-05-28", &mut again).unwrap());
    let want = row_wise(&lake, &inputs);

    let mut merge = lake.vertical_merge(&inputs).unwrap().expect("every input declares (host, time)");
    let mut out = lake.stage_writer("t", "2026-05-28", merge.schema(), Order::HostTime).unwrap();
    let mut groups = 0;
    while let Some(group) = merge.next_group(ROW_GROUP_ROWS) {
        out.write_by_column(group.rows(), |c| merge.column(&group, c)).unwrap();
        groups += 1;
    }
    let entry = lake.publish(out.finish().unwrap(), 5).unwrap();
    assert_eq!(groups, 100_000usize.div_ceil(ROW_GROUP_ROWS));
    assert_eq!((entry.rows, Some(entry.min_time), Some(entry.max_time)), (100_000, sent_min, sent_max));
    let got: Vec<String> = lake
        .read_batches(&entry)
        .unwrap()
        .iter()
        .flat_map(|b| batch_to_records(b).iter().map(event_id).collect::<Vec<_>>())
        .collect();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the vertical merge's rows are the row-wise merge's, in its order");
    let twin = got.iter().position(|id| id == "again-0").unwrap();
    assert_eq!(got[twin - 1], event_id(&records(1)[0]), "a tie takes the earlier input's row first");

    // The footer ingest's writer makes: row groups cut at ROW_GROUP_ROWS, the order declared, blooms.
    let bytes = lake.objects.get(&entry.path).unwrap();
    let reader = SerializedFileReader::new(bytes).unwrap();
    let meta = reader.metadata();
    assert!(sorted::declares_host_time(meta));
    assert_eq!(meta.row_group(0).num_rows() as usize, ROW_GROUP_ROWS);
    let user = meta.file_metadata().schema_descr().columns().iter().position(|c| c.name() == "user_name");
    assert!(
        meta.row_group(0).column(user.unwrap()).bloom_filter_offset().is_some(),
        "user_name has a bloom filter"
    );
}

#[test]
fn a_vertical_merge_leaves_undeclared_inputs_to_the_row_wise_merge_and_fails_a_false_footer() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), false).unwrap();
    let mut recs = records(2_000);
    let first = lake.write_file(1, "t", "2026-05-28", &mut recs[..1_000]).unwrap();
    let (legacy, batch) = undeclared(&lake, &recs[1_000..], &first);
    assert!(lake.vertical_merge(&[first.clone(), legacy]).unwrap().is_none());
    // Declared but not in order: the merge fails rather than write a footer that lies.
    let liar = lake.publish(lake.stage("t", "2026-05-28", &batch, Order::HostTime).unwrap(), 10).unwrap();
    let err = lake.vertical_merge(&[first, liar]).err().map(|e| e.to_string());
    assert!(err.as_ref().is_some_and(|e| e.contains("not sorted on (host, time)")), "{err:?}");
}

/// A bulk load's batches (each sorted, and one not) make the file `write_file` makes of the same
/// records: the same rows in (host, time) order, whole records equal, row groups cut at the same
/// size, the same time range and the footer's sort declared.
#[test]
fn batches_written_as_one_file_match_the_records_path_row_for_row() {
    let dir = tempfile::tempdir().unwrap();
    let lake = Lake::open(dir.path(), false).unwrap();
    let mut all = records(3 * ROW_GROUP_ROWS / 2);
    let mut batches = Vec::new();
    for (i, chunk) in all.chunks(ROW_GROUP_ROWS / 3).enumerate() {
        let mut chunk = chunk.to_vec();
        if i != 1 {
            sort_host_time(&mut chunk);
        }
        batches.push(records_to_batch(&chunk).unwrap());
    }
    let bulk = lake.write_batches(1, "t", "2026-05-28", &batches).unwrap();
    let one = lake.write_file(2, "t", "2026-05-28", &mut all).unwrap();
    let (a, b) = (lake.read_all(&bulk).unwrap(), lake.read_all(&one).unwrap());
    assert_eq!(a.len(), all.len());
    assert!(a == b, "the bulk file's rows differ from the records path's");
    let keys: Vec<(&str, i64)> = a.iter().map(|r| (r.host(), r.time())).collect();
    assert!(keys.windows(2).all(|w| w[0] <= w[1]), "rows are in (host, time) order");
    assert_eq!((bulk.rows, bulk.min_time, bulk.max_time), (one.rows, one.min_time, one.max_time));
    let meta = |e: &FileEntry| {
        let file = std::fs::File::open(dir.path().join(&e.path)).unwrap();
        SerializedFileReader::new(file).unwrap().metadata().clone()
    };
    let (m, n) = (meta(&bulk), meta(&one));
    assert_eq!(m.num_row_groups(), n.num_row_groups());
    assert!(sorted::declares_host_time(&m), "the footer declares (host, time)");
    assert!(lake.write_batches(3, "t", "2026-05-28", &[]).is_err(), "no rows, no file");
}
