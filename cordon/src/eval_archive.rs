//! Dataset files in the forms public datasets are published in (Mordor's and others'): zips, tars
//! (`.tar.gz`, `.tgz`, `.tar`), one gzip-compressed file, or plain JSON lines, read to their JSON
//! lines; members that do not read (macOS resource forks, damaged members) are skipped and counted.

use anyhow::Context;
use std::path::Path;

/// The JSON lines of every `.json` member of a zip (Mordor's datasets).
pub fn zip_json_lines(path: &Path) -> anyhow::Result<(String, usize)> {
    use std::io::Read;
    let file = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let mut zip = zip::ZipArchive::new(file).with_context(|| format!("reading {}", path.display()))?;
    let mut text = String::new();
    let mut skipped = 0;
    for i in 0..zip.len() {
        let Ok(mut f) = zip.by_index(i) else {
            skipped += 1;
            continue;
        };
        let name = f.name().to_owned();
        let base = name.rsplit('/').next().unwrap_or_default();
        if !(name.ends_with(".json") || name.ends_with(".jsonl")) {
            continue;
        }
        // macOS resource forks (`__MACOSX/._x.json`) and members that do not read as text are
        // skipped and counted, never the end of the run.
        let mut member = String::new();
        if name.starts_with("__MACOSX/") || base.starts_with("._") || f.read_to_string(&mut member).is_err() {
            skipped += 1;
            continue;
        }
        text.push_str(&member);
        text.push('\n');
    }
    Ok((text, skipped))
}

/// `bytes` (gzip, possibly several members, as `path` holds them) decompressed, at most `limit`
/// bytes of it.
pub fn gunzip(bytes: &[u8], path: &Path, limit: u64) -> anyhow::Result<Vec<u8>> {
    use std::io::Read;
    let mut out = Vec::new();
    flate2::read::MultiGzDecoder::new(bytes)
        .take(limit)
        .read_to_end(&mut out)
        .with_context(|| format!("decompressing {}", path.display()))?;
    Ok(out)
}

/// The JSON lines of a dataset file in any of the forms datasets are published in: a zip, a tar
/// (`.tar.gz`, `.tgz`, `.tar`), one gzip-compressed file, or plain JSON lines; with the members
/// skipped as unreadable.
pub fn archive_json_lines(path: &Path) -> anyhow::Result<(String, usize)> {
    let name = path.file_name().map(|n| n.to_string_lossy().to_ascii_lowercase()).unwrap_or_default();
    let read = || std::fs::read(path).with_context(|| format!("reading {}", path.display()));
    if name.ends_with(".zip") {
        return zip_json_lines(path);
    }
    let gunzip = |bytes: Vec<u8>| gunzip(&bytes, path, u64::MAX);
    if name.ends_with(".tar.gz") || name.ends_with(".tgz") {
        return Ok(tar_json_lines(&gunzip(read()?)?));
    }
    if name.ends_with(".tar") {
        return Ok(tar_json_lines(&read()?));
    }
    let bytes = if name.ends_with(".gz") { gunzip(read()?)? } else { read()? };
    Ok((String::from_utf8_lossy(&bytes).into_owned(), 0))
}

/// The `.json`/`.jsonl` members of a tar archive (ustar or plain), with the members skipped (macOS
/// resource forks, members that are not UTF-8 text).
fn tar_json_lines(tar: &[u8]) -> (String, usize) {
    let (mut text, mut skipped, mut at) = (String::new(), 0, 0);
    while at + 512 <= tar.len() {
        let h = &tar[at..at + 512];
        if h.iter().all(|&b| b == 0) {
            break;
        }
        let field = |r: std::ops::Range<usize>| {
            String::from_utf8_lossy(&h[r]).trim_end_matches('\0').trim().to_owned()
        };
        let size = usize::from_str_radix(&field(124..136), 8).unwrap_or(0);
        let name = match field(345..500) {
            prefix if !prefix.is_empty() && &h[257..262] == b"ustar" => format!("{prefix}/{}", field(0..100)),
            _ => field(0..100),
        };
        let body = &tar[(at + 512).min(tar.len())..(at + 512 + size).min(tar.len())];
        let base = name.rsplit('/').next().unwrap_or_default();
        let regular = matches!(h[156], b'0' | 0);
        if regular && (name.ends_with(".json") || name.ends_with(".jsonl")) {
            match std::str::from_utf8(body) {
                Ok(t) if !base.starts_with("._") && !name.contains("__MACOSX/") => {
                    text.push_str(t);
                    text.push('\n');
                }
                _ => skipped += 1,
            }
        }
        at += 512 + size.div_ceil(512) * 512;
    }
    (text, skipped)
}

#[cfg(test)]
mod tests {
    /// One unreadable member (a macOS resource fork, a member that is not text) is skipped and
    /// counted; the others are read.
    #[test]
    fn unreadable_members_are_skipped_and_counted() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("set.zip");
        let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
        let opts = zip::write::SimpleFileOptions::default();
        z.start_file("__MACOSX/._set.json", opts).unwrap();
        z.write_all(&[0, 5, 22, 7, 0xff, 0xfe]).unwrap();
        z.start_file("set.json", opts).unwrap();
        z.write_all(b"{\"EventID\": 1}\n").unwrap();
        z.start_file("broken.json", opts).unwrap();
        z.write_all(&[0xff, 0xfe, 0xfd]).unwrap();
        z.finish().unwrap();
        let (text, skipped) = super::zip_json_lines(&path).unwrap();
        assert_eq!(text.trim(), "{\"EventID\": 1}");
        assert_eq!(skipped, 2);
    }

    /// A dataset published as a tar.gz reads like its zip; so does a gzip-compressed file.
    #[test]
    fn tar_gz_and_gz_datasets_read_their_json_lines() {
        use std::io::Write;
        let dir = tempfile::tempdir().unwrap();
        let mut tar = Vec::new();
        for (name, body) in
            [("host/events.json", "{\"EventID\": 4624}\n"), ("._events.json", "\u{0}\u{1}"), ("README", "x")]
        {
            let mut h = [0u8; 512];
            h[..name.len()].copy_from_slice(name.as_bytes());
            let size = format!("{:011o}\0", body.len());
            h[124..136].copy_from_slice(size.as_bytes());
            h[156] = b'0';
            tar.extend_from_slice(&h);
            tar.extend_from_slice(body.as_bytes());
            tar.resize(tar.len().div_ceil(512) * 512, 0);
        }
        tar.extend_from_slice(&[0u8; 1024]);
        let gz = |bytes: &[u8]| {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
            e.write_all(bytes).unwrap();
            e.finish().unwrap()
        };
        let p = dir.path().join("d.TAR.GZ");
        std::fs::write(&p, gz(&tar)).unwrap();
        let (text, skipped) = super::archive_json_lines(&p).unwrap();
        assert_eq!((text.trim(), skipped), ("{\"EventID\": 4624}", 1));
        let p = dir.path().join("d.json.gz");
        std::fs::write(&p, gz(b"{\"EventID\": 1}\n")).unwrap();
        assert_eq!(super::archive_json_lines(&p).unwrap().0.trim(), "{\"EventID\": 1}");
    }
}
