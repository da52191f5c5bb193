//! Configuration: flags (each with a `CORDON_*` environment twin), then an optional TOML file
//! (`deny_unknown_fields`), then defaults — resolved once into a validated [`ServerConfig`].

use anyhow::{Context, bail};
use clap::Args;
use schemas::subject::Subjects;
use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Flags of `cordon serve` (and the server half of `cordon demo`).
#[derive(Debug, Clone, Args, Default)]
pub struct ServeArgs {
    /// TOML configuration file.
    #[arg(long, env = "CORDON_CONFIG")]
    pub config: Option<PathBuf>,
    /// Data directory (lake, index, and the SQLite catalog by default).
    #[arg(long, env = "CORDON_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
    /// Metadata database: sqlite://PATH or postgres://...
    #[arg(long, env = "CORDON_METADATA_URL")]
    pub metadata_url: Option<String>,
    /// NATS server URL.
    #[arg(long, env = "CORDON_NATS_URL")]
    pub nats_url: Option<String>,
    /// Subject prefix agents publish under.
    #[arg(long, env = "CORDON_SUBJECT_PREFIX")]
    pub subject_prefix: Option<String>,
    /// API listen address (port 0 picks a free port; the address is written to server.json).
    #[arg(long, env = "CORDON_LISTEN")]
    pub listen: Option<String>,
    /// Largest accepted message, bytes.
    #[arg(long, env = "CORDON_MAX_MESSAGE_BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Query memory budget, MiB.
    #[arg(long, env = "CORDON_QUERY_MEMORY_MIB")]
    pub query_memory_mib: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    #[serde(default)]
    server: FileServer,
    #[serde(default)]
    nats: FileNats,
    #[serde(default)]
    ingest: FileIngest,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileServer {
    data_dir: Option<PathBuf>,
    metadata_url: Option<String>,
    listen: Option<String>,
    query_memory_mib: Option<usize>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileNats {
    url: Option<String>,
    subject_prefix: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileIngest {
    max_message_bytes: Option<usize>,
}

/// Validated server settings.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Data directory.
    pub data_dir: PathBuf,
    /// Metadata URL.
    pub metadata_url: String,
    /// NATS URL.
    pub nats_url: String,
    /// Subjects.
    pub subjects: Subjects,
    /// API address.
    pub listen: SocketAddr,
    /// Message size cap.
    pub max_message_bytes: usize,
    /// Query memory, bytes.
    pub query_memory_bytes: usize,
}

impl ServeArgs {
    /// Merges flags, file and defaults, and validates.
    pub fn resolve(&self) -> anyhow::Result<ServerConfig> {
        let file: FileConfig = match &self.config {
            Some(p) => {
                let text = std::fs::read_to_string(p).with_context(|| format!("reading {}", p.display()))?;
                toml::from_str(&text)
                    .with_context(|| format!("invalid configuration file {}", p.display()))?
            }
            None => FileConfig::default(),
        };
        let data_dir =
            self.data_dir.clone().or(file.server.data_dir).unwrap_or_else(|| PathBuf::from("./cordon-data"));
        let metadata_url = self
            .metadata_url
            .clone()
            .or(file.server.metadata_url)
            .unwrap_or_else(|| default_metadata_url(&data_dir));
        let listen_text =
            self.listen.clone().or(file.server.listen).unwrap_or_else(|| "127.0.0.1:8088".to_owned());
        let listen: SocketAddr =
            listen_text.parse().with_context(|| format!("--listen {listen_text:?} is not host:port"))?;
        let prefix =
            self.subject_prefix.clone().or(file.nats.subject_prefix).unwrap_or_else(|| "cordon".to_owned());
        let subjects = Subjects::new(&prefix).with_context(|| format!("--subject-prefix {prefix:?}"))?;
        let max_message_bytes =
            self.max_message_bytes.or(file.ingest.max_message_bytes).unwrap_or(8 * 1024 * 1024);
        if !(1024..=64 * 1024 * 1024).contains(&max_message_bytes) {
            bail!("--max-message-bytes must be from 1 KiB to 64 MiB");
        }
        let mib = self.query_memory_mib.or(file.server.query_memory_mib).unwrap_or(1024);
        Ok(ServerConfig {
            data_dir,
            metadata_url,
            nats_url: self
                .nats_url
                .clone()
                .or(file.nats.url)
                .unwrap_or_else(|| "nats://127.0.0.1:4222".to_owned()),
            subjects,
            listen,
            max_message_bytes,
            query_memory_bytes: mib * 1024 * 1024,
        })
    }
}

/// SQLite inside the data directory.
pub fn default_metadata_url(data_dir: &Path) -> String {
    format!("sqlite://{}", data_dir.join("meta.db").display())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_then_defaults_and_unknown_keys_refused() {
        let dir = tempfile_dir();
        let path = dir.join("c.toml");
        std::fs::write(&path, "[server]\nlisten = \"127.0.0.1:9999\"\n[nats]\nurl = \"nats://x:1\"\n")
            .unwrap();
        let args = ServeArgs {
            config: Some(path.clone()),
            nats_url: Some("nats://flag:2".into()),
            ..Default::default()
        };
        let cfg = args.resolve().unwrap();
        assert_eq!(cfg.listen.port(), 9999);
        assert_eq!(cfg.nats_url, "nats://flag:2", "flags win over the file");
        std::fs::write(&path, "[server]\nlisen = \"x\"\n").unwrap();
        let err = format!("{:#}", args.resolve().unwrap_err());
        assert!(err.contains("unknown field"), "{err}");
    }

    fn tempfile_dir() -> PathBuf {
        let d = std::env::temp_dir().join(format!("cordon-cfg-{}", std::process::id()));
        std::fs::create_dir_all(&d).unwrap();
        d
    }
}
