//! The wire format agents and shippers publish.
//!
//! One NATS message carries a batch of events (about 100) as NDJSON: one ECS JSON object a line, so any
//! shipper with a NATS output (Vector, Fluent Bit) can send to Cordon. Headers:
//! - `Cordon-Wire: 1`: the format version (absent means 1).
//! - `Content-Encoding: zstd`: the body is zstd-compressed (optional).
//! - `Nats-Msg-Id: <agent>:<boot>:<seq>`: makes publisher retries idempotent; ingest also uses it to
//!   refuse a batch it has already committed, however late the retry.

use serde::{Deserialize, Serialize};
use std::io::Read;

/// The header naming the wire version.
pub const HEADER_WIRE: &str = "Cordon-Wire";
/// The wire version this build writes and reads.
pub const WIRE_VERSION: &str = "1";
/// The header naming the body encoding.
pub const HEADER_ENCODING: &str = "Content-Encoding";
/// The only supported encoding besides identity.
pub const ENCODING_ZSTD: &str = "zstd";

/// Why a message body could not be read.
#[derive(Debug, thiserror::Error)]
pub enum WireError {
    /// The version header names a version this build does not read.
    #[error("unsupported wire version {0:?} (this build reads version 1)")]
    Version(String),
    /// An encoding other than zstd.
    #[error("unsupported content encoding {0:?} (use zstd or none)")]
    Encoding(String),
    /// The body (or its decompressed form) is over the limit.
    #[error("message body is over the {max}-byte limit")]
    TooLarge {
        /// The limit.
        max: usize,
    },
    /// The zstd stream is corrupt.
    #[error("zstd body is corrupt")]
    Corrupt(#[source] std::io::Error),
}

/// Encodes events as an NDJSON body.
pub fn encode_ndjson<'a>(events: impl IntoIterator<Item = &'a serde_json::Value>) -> Vec<u8> {
    let mut out = Vec::new();
    for e in events {
        // Serialising a `Value` into a Vec cannot fail.
        serde_json::to_writer(&mut out, e).expect("serialising a Value into memory cannot fail");
        out.push(b'\n');
    }
    out
}

/// The zstd level bodies are compressed at.
pub const ZSTD_LEVEL: i32 = 3;

/// zstd-compresses a body (level [`ZSTD_LEVEL`]).
pub fn compress(body: &[u8]) -> Vec<u8> {
    zstd::bulk::compress(body, ZSTD_LEVEL).expect("in-memory zstd compression cannot fail")
}

/// [`compress`] with one zstd context kept across bodies, for a sender that compresses a batch
/// every second for as long as it runs (a fresh context per body allocates its tables, and touches
/// fresh pages, each time).
pub struct Compressor(zstd::bulk::Compressor<'static>);

impl Compressor {
    /// A compressor at [`ZSTD_LEVEL`].
    pub fn new() -> Self {
        Self(zstd::bulk::Compressor::new(ZSTD_LEVEL).expect("zstd accepts its own default level"))
    }

    /// The body, compressed as [`compress`] would.
    pub fn compress(&mut self, body: &[u8]) -> Vec<u8> {
        self.0.compress(body).expect("in-memory zstd compression cannot fail")
    }
}

impl Default for Compressor {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Compressor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Compressor")
    }
}

/// Checks the headers and returns the plain body, decompressing with a hard size cap.
pub fn decode_body(
    version: Option<&str>,
    encoding: Option<&str>,
    body: &[u8],
    max: usize,
) -> Result<Vec<u8>, WireError> {
    if let Some(v) = version
        && v != WIRE_VERSION
    {
        return Err(WireError::Version(v.to_owned()));
    }
    if body.len() > max {
        return Err(WireError::TooLarge { max });
    }
    match encoding {
        None | Some("") | Some("identity") => Ok(body.to_vec()),
        Some(ENCODING_ZSTD) => unzstd(body, max),
        Some(other) => Err(WireError::Encoding(other.to_owned())),
    }
}

thread_local! {
    /// One zstd decompression context per thread, kept across bodies: a streaming decoder per
    /// message made a context and its window buffers each time (`ZSTD_createDCtx` and the page
    /// faults after it were about 3% of the server's samples on the whole path).
    static DCTX: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// A zstd body, at most `max` bytes once decompressed. A frame that states its size (what
/// [`compress`] and [`Compressor`] write) under the cap is decompressed in one call into a buffer of
/// that size with the thread's context; anything else (no size, several frames, a corrupt one) is
/// streamed with the cap enforced as it is read.
fn unzstd(body: &[u8], max: usize) -> Result<Vec<u8>, WireError> {
    match zstd::zstd_safe::get_frame_content_size(body) {
        Ok(Some(size)) if size > max as u64 => return Err(WireError::TooLarge { max }),
        Ok(Some(size)) => {
            let whole = DCTX.with(|d| {
                let mut d = d.try_borrow_mut().ok()?;
                if d.is_none() {
                    *d = Some(zstd::bulk::Decompressor::new().ok()?);
                }
                d.as_mut()?.decompress(body, size as usize).ok()
            });
            if let Some(out) = whole {
                return Ok(out);
            }
        }
        Ok(None) | Err(_) => {}
    }
    let mut out = Vec::new();
    let decoder = zstd::stream::read::Decoder::new(body).map_err(WireError::Corrupt)?;
    // Read one byte past the cap so that "exactly at the cap" and "over it" differ.
    decoder.take(max as u64 + 1).read_to_end(&mut out).map_err(WireError::Corrupt)?;
    if out.len() > max {
        return Err(WireError::TooLarge { max });
    }
    Ok(out)
}

/// Splits an NDJSON body into lines, skipping blank ones; yields (line number, bytes).
pub fn lines(body: &[u8]) -> impl Iterator<Item = (usize, &[u8])> {
    let mut start = 0;
    let ends = memchr::memchr_iter(b'\n', body).chain(std::iter::once(body.len()));
    let split = ends.map(move |end| {
        let line = &body[start..end];
        start = end + 1;
        line
    });
    split.enumerate().filter_map(|(i, l)| {
        let l = l.strip_suffix(b"\r").unwrap_or(l);
        (!l.iter().all(u8::is_ascii_whitespace)).then_some((i, l))
    })
}

/// A batch's identity: `<agent>:<boot>:<seq>`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct MsgKey {
    /// The agent.
    pub agent: String,
    /// Boot counter of the agent when the batch was made.
    pub boot: u64,
    /// The batch's sequence number within that boot.
    pub seq: u64,
}

impl MsgKey {
    /// Parses `<agent>:<boot>:<seq>`.
    pub fn parse(s: &str) -> Option<Self> {
        let mut it = s.rsplitn(3, ':');
        let seq = it.next()?.parse().ok()?;
        let boot = it.next()?.parse().ok()?;
        let agent = it.next()?.to_owned();
        Some(Self { agent, boot, seq })
    }
}

impl std::fmt::Display for MsgKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}:{}", self.agent, self.boot, self.seq)
    }
}

/// An agent's heartbeat: counters since its boot, so the server can tell silent from dead.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Heartbeat {
    /// The boot counter.
    pub boot: u64,
    /// The next batch sequence number.
    pub next_seq: u64,
    /// Events handed to the agent since boot.
    pub events_in: u64,
    /// Events acknowledged by JetStream since boot.
    pub events_acked: u64,
    /// Events waiting in the spool.
    pub events_spooled: u64,
    /// Events dropped because the spool was full, since boot.
    pub events_dropped: u64,
    /// Bytes in the spool.
    pub spool_bytes: u64,
    /// Host name (a hint).
    pub host: String,
    /// Send time, microseconds.
    pub time: i64,
    /// Every batch of this boot up to this sequence number was acknowledged by JetStream (so the
    /// server, once it has committed what the stream held then, must have them all).
    #[serde(default)]
    pub acked_through: u64,
    /// The agent's last heartbeat before a deliberate stop.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub stopping: bool,
    /// A live agent's own CPU and memory against its budget.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<AgentUsage>,
    /// A live agent's sources and how each fares (empty for replays and simulations).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sources: Vec<SourceHealth>,
    /// Sequence numbers of this boot that will never arrive under this agent's name: their batches
    /// went out again under a new id because someone else sent the ids first (the latest 256).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reissued: Vec<u64>,
}

/// A live agent's own use of the endpoint.
#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct AgentUsage {
    /// CPU over the last seconds, as a share of one core.
    pub cpu_share: f64,
    /// Resident memory, bytes.
    pub rss_bytes: u64,
    /// Over its CPU budget: hashing from caches only, polling less.
    pub degraded: bool,
}

/// One collection source of a live agent, as its heartbeat reports it.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
pub struct SourceHealth {
    /// `process`, `file`, `network`, `login`, `persistence`, `inventory`.
    pub name: String,
    /// The kernel facility it reads (`netlink`, `procfs`, `inotify`, `sock_diag`, ...).
    pub facility: String,
    /// Whether it is running; a source that failed says why in `error`.
    pub running: bool,
    /// Whether it produces events steadily on any live host (processes do, file changes need not),
    /// so that its silence alone is suspicious.
    #[serde(default)]
    pub steady: bool,
    /// Events it produced since the agent started.
    pub events: u64,
    /// Events it dropped since the agent started (queue full, kernel overrun).
    pub dropped: u64,
    /// Events per second over the last heartbeat interval.
    #[serde(default)]
    pub rate: f64,
    /// Its latest event, microseconds (agent clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_event: Option<i64>,
    /// Why it is not running, or why it runs on a fallback facility.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    /// The capabilities its thread kept (`CAP_SYS_PTRACE`...), or why it could not drop the others;
    /// empty where it holds none.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub capabilities: Vec<String>,
}

/// A command from the server to an agent: today, terminating a process the policy blocks. The
/// target is bound to its identity (pid and executable, and the entity id of the event), so a reused
/// pid is not killed, and the command expires.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Command {
    /// Command id.
    pub id: String,
    /// `terminate`.
    pub kind: String,
    /// The process id.
    pub pid: i64,
    /// Its executable, as the event reported it.
    pub executable: String,
    /// The process entity id from the event.
    pub entity_id: Option<String>,
    /// The event that made the decision.
    pub event_id: String,
    /// The rule and the policy setting behind it.
    pub reason: String,
    /// Issued, microseconds.
    pub issued_at: i64,
    /// Not to be carried out after this, microseconds.
    pub expires_at: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn zstd_round_trip_and_cap() {
        let body = encode_ndjson(&[serde_json::json!({"a": 1}), serde_json::json!({"b": 2})]);
        let z = compress(&body);
        assert_eq!(decode_body(Some("1"), Some("zstd"), &z, 1024).unwrap(), body);
        let bomb = compress(&vec![b'a'; 1 << 20]);
        assert!(matches!(decode_body(None, Some("zstd"), &bomb, 4096), Err(WireError::TooLarge { .. })));
        assert!(matches!(decode_body(Some("2"), None, &body, 1024), Err(WireError::Version(_))));
        assert!(matches!(decode_body(None, Some("gzip"), &body, 1024), Err(WireError::Encoding(_))));
        assert!(matches!(decode_body(None, Some("zstd"), b"nope", 1024), Err(WireError::Corrupt(_))));
        // A kept context compresses each body on its own, as a fresh one would.
        let mut c = Compressor::new();
        let other = encode_ndjson(&[serde_json::json!({"c": "x".repeat(300)})]);
        for b in [&body, &other, &body] {
            let z = c.compress(b);
            assert_eq!((&decode_body(None, Some("zstd"), &z, 4096).unwrap(), &z), (b, &compress(b)));
        }
    }

    /// Bodies the one-call path does not take are streamed, with the same answers: several frames,
    /// a frame without its size, one cut short, and sizes on either side of the cap.
    #[test]
    fn zstd_bodies_off_the_one_call_path_are_streamed() {
        let (a, b) = (b"{\"a\":1}\n".to_vec(), b"{\"b\":2}\n".repeat(50));
        let two = [compress(&a), compress(&b)].concat();
        assert_eq!(decode_body(None, Some("zstd"), &two, 4096).unwrap(), [a.clone(), b.clone()].concat());
        // The first frame says 8 bytes; the body holds more, under the cap and over it.
        assert!(matches!(decode_body(None, Some("zstd"), &two, 100), Err(WireError::TooLarge { max: 100 })));
        let mut unsized_frame = Vec::new();
        let mut enc = zstd::stream::write::Encoder::new(&mut unsized_frame, ZSTD_LEVEL).unwrap();
        enc.include_contentsize(false).unwrap();
        std::io::Write::write_all(&mut enc, &b).unwrap();
        enc.finish().unwrap();
        assert_eq!(zstd::zstd_safe::get_frame_content_size(&unsized_frame).ok(), Some(None));
        assert_eq!(decode_body(None, Some("zstd"), &unsized_frame, 4096).unwrap(), b);
        assert!(matches!(
            decode_body(None, Some("zstd"), &unsized_frame, 10),
            Err(WireError::TooLarge { .. })
        ));
        let z = compress(&b);
        assert!(matches!(
            decode_body(None, Some("zstd"), &z[..z.len() - 4], 4096),
            Err(WireError::Corrupt(_))
        ));
        // Exactly at the cap passes; one byte under it is too large, on the one-call path too.
        assert_eq!(decode_body(None, Some("zstd"), &z, b.len()).unwrap(), b);
        assert!(matches!(decode_body(None, Some("zstd"), &z, b.len() - 1), Err(WireError::TooLarge { .. })));
    }

    #[test]
    fn lines_skip_blanks_and_keep_numbers() {
        let got: Vec<_> = lines(b"a\n\n b\r\n").collect();
        assert_eq!(got, vec![(0, &b"a"[..]), (2, &b" b"[..])]);
    }

    #[test]
    fn msg_key_round_trip() {
        let k = MsgKey { agent: "web-01".into(), boot: 3, seq: 99 };
        assert_eq!(MsgKey::parse(&k.to_string()), Some(k));
        assert_eq!(MsgKey::parse("x:1"), None);
    }
}
