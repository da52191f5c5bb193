//! Connections to executors, from the coordinator and from one executor to another: one gRPC
//! channel per executor for the process's life, over TLS when the cluster has a CA.

use datafusion::common::DataFusionError;
use datafusion_distributed::grpc::{BoxCloneSyncChannel, create_worker_client};
use datafusion_distributed::{ChannelResolver, WorkerChannel};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint};
use url::Url;

/// Channels to executors, kept for reuse (tonic reconnects a kept channel by itself).
///
/// The library's default resolver keeps its channels per DataFusion runtime; the coordinator
/// builds a runtime per query (its checked listing is per query), so that would connect afresh
/// for every query and keep up to 256 runtimes' worth of channels.
#[derive(Clone)]
pub struct Channels {
    tls: Option<ClientTlsConfig>,
    open: Arc<Mutex<HashMap<Url, BoxCloneSyncChannel>>>,
}

impl std::fmt::Debug for Channels {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Channels").field("tls", &self.tls.is_some()).finish_non_exhaustive()
    }
}

impl Channels {
    /// Plain HTTP/2, or TLS to executors whose certificates chain to `ca_pem`.
    pub fn new(ca_pem: Option<&[u8]>) -> Self {
        let tls = ca_pem.map(|pem| ClientTlsConfig::new().ca_certificate(Certificate::from_pem(pem)));
        Self { tls, open: Arc::default() }
    }

    /// Whether connections use TLS.
    pub fn tls(&self) -> bool {
        self.tls.is_some()
    }

    async fn channel(&self, url: &Url) -> Result<BoxCloneSyncChannel, DataFusionError> {
        if let Some(open) = self.open.lock().map_err(|_| poisoned())?.get(url) {
            return Ok(open.clone());
        }
        let unreachable = |e: &dyn std::fmt::Display| {
            DataFusionError::Execution(format!(
                "Error connecting to Distributed DataFusion worker on '{url}': {e}"
            ))
        };
        let mut endpoint = Endpoint::from_shared(url.to_string()).map_err(|e| unreachable(&e))?;
        if let Some(tls) = &self.tls {
            endpoint = endpoint.tls_config(tls.clone()).map_err(|e| unreachable(&e))?;
        }
        let channel = endpoint.connect().await.map_err(|e| unreachable(&error_chain(&e)))?;
        let channel = BoxCloneSyncChannel::new(channel);
        self.open.lock().map_err(|_| poisoned())?.insert(url.clone(), channel.clone());
        Ok(channel)
    }
}

/// An error with its causes, `: `-separated (a TLS failure is two or three levels down).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

fn poisoned() -> DataFusionError {
    DataFusionError::Internal("executor channel table poisoned".into())
}

#[async_trait::async_trait]
impl ChannelResolver for Channels {
    async fn get_worker_client_for_url(&self, url: &Url) -> Result<Box<dyn WorkerChannel>, DataFusionError> {
        self.channel(url).await.map(create_worker_client)
    }
}
