//! A peer's detections over the same EVTX files, scored as Cordon's are: a timeline in JSON lines
//! with the file each detection came from (`EvtxFile`) and its ATT&CK tags (`MitreTags`), as
//! Hayabusa's `dfir-timeline -t jsonl` writes it with its `verbose` profile. Tags are read wherever they
//! stand in the value (a list, or text such as `T1059.001: Exec`), so other peers' JSON lines with
//! the same two fields score too.

use std::collections::HashMap;
use std::path::Path;

/// Per EVTX file (its path as the peer wrote it, `\` made `/`), the technique ids of each of its
/// detections.
pub type Detections = HashMap<String, Vec<Vec<String>>>;

/// Reads a peer's timeline; lines that are not JSON objects (a banner, a summary) are skipped.
pub fn read_timeline(path: &Path) -> anyhow::Result<Detections> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| anyhow::anyhow!("reading the peer's timeline {}: {e}", path.display()))?;
    let mut out = Detections::new();
    for line in text.lines() {
        let Ok(serde_json::Value::Object(o)) = serde_json::from_str(line) else { continue };
        let Some(file) = o.get("EvtxFile").and_then(|f| f.as_str()) else { continue };
        let mut ids = Vec::new();
        if let Some(tags) = o.get("MitreTags") {
            technique_ids(&tags.to_string(), &mut ids);
        }
        out.entry(file.replace('\\', "/")).or_default().push(ids);
    }
    Ok(out)
}

/// The technique ids (`T1003`, `T1003.001`) in `text`, upper-cased, in order.
pub fn technique_ids(text: &str, out: &mut Vec<String>) {
    let b = text.as_bytes();
    let digits =
        |from: usize, n: usize| b.len() >= from + n && b[from..from + n].iter().all(u8::is_ascii_digit);
    let mut i = 0;
    while i < b.len() {
        let apart = i == 0 || !b[i - 1].is_ascii_alphanumeric();
        if apart && b[i].eq_ignore_ascii_case(&b'T') && digits(i + 1, 4) {
            let mut end = i + 5;
            if b.get(end) == Some(&b'.') && digits(end + 1, 3) {
                end += 4;
            }
            if b.get(end).is_none_or(|c| !c.is_ascii_alphanumeric()) {
                out.push(text[i..end].to_ascii_uppercase());
            }
            i = end;
        } else {
            i += 1;
        }
    }
}

/// The peer's detections of the file at `rel` (corpus-relative): those of every path that ends with
/// it.
pub fn detections_of<'d>(d: &'d Detections, rel: &str) -> Vec<&'d [String]> {
    let rel = rel.strip_prefix("evtx/").unwrap_or(rel);
    d.iter().filter(|(k, _)| k.ends_with(rel)).flat_map(|(_, v)| v.iter().map(Vec::as_slice)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_read_from_lists_and_text_and_files_by_their_ending() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("t.jsonl");
        std::fs::write(
            &p,
            "banner\n\
             {\"EvtxFile\":\"C:\\\\data\\\\EVTX-to-MITRE-Attack\\\\TA0006\\\\T1003-x\\\\a.evtx\",\"MitreTags\":[\"T1003.001\",\"Cred\"]}\n\
             {\"EvtxFile\":\"/data/EVTX-to-MITRE-Attack/TA0006/T1003-x/a.evtx\",\"MitreTags\":\"T1059: Exec\"}\n\
             {\"EvtxFile\":\"/data/b.evtx\"}\n",
        )
        .unwrap();
        let d = read_timeline(&p).unwrap();
        let a = detections_of(&d, "evtx/EVTX-to-MITRE-Attack/TA0006/T1003-x/a.evtx");
        let mut all: Vec<&String> = a.iter().copied().flatten().collect();
        all.sort();
        assert_eq!(all, ["T1003.001", "T1059"], "a Windows path and a Unix one both count: {d:?}");
        assert_eq!(detections_of(&d, "evtx/b.evtx"), vec![&[] as &[String]]);
        assert!(detections_of(&d, "evtx/c.evtx").is_empty());
        let mut ids = Vec::new();
        technique_ids("T1003.001, t1059 xT1111 T10590", &mut ids);
        assert_eq!(ids, ["T1003.001", "T1059"]);
    }
}
