//! TLS (issue 15, item 3): the API over HTTPS (rustls) and NATS over TLS, configured by certificate
//! paths, with certificates from the test's own CA. An agent enrolls over HTTPS and ships over TLS;
//! plain HTTP, plain NATS and clients that do not trust the CA get nothing.

use super::bin;
use std::path::{Path, PathBuf};
use std::time::Duration;
use tests::{ServerOptions, eventually, sql};

/// A CA and a server certificate for localhost and 127.0.0.1 it signed, as PEM files in `dir`;
/// (CA, certificate, key).
pub(crate) fn certificates(dir: &Path, name: &str) -> anyhow::Result<(PathBuf, PathBuf, PathBuf)> {
    use rcgen::{BasicConstraints, CertificateParams, DnType, IsCa, KeyPair};
    let ca_key = KeyPair::generate()?;
    let mut ca_params = CertificateParams::new(Vec::<String>::new())?;
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params.distinguished_name.push(DnType::CommonName, format!("{name} CA"));
    let ca = ca_params.self_signed(&ca_key)?;
    let key = KeyPair::generate()?;
    let cert = CertificateParams::new(vec!["localhost".to_owned(), "127.0.0.1".to_owned()])?
        .signed_by(&key, &ca, &ca_key)?;
    let paths = (
        dir.join(format!("{name}-ca.pem")),
        dir.join(format!("{name}.pem")),
        dir.join(format!("{name}.key")),
    );
    std::fs::write(&paths.0, ca.pem())?;
    std::fs::write(&paths.1, cert.pem())?;
    std::fs::write(&paths.2, key.serialize_pem())?;
    Ok(paths)
}

#[test]
fn the_api_and_the_bus_speak_tls_only() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let (ca, cert, key) = certificates(dir.path(), "cordon")?;
    let (stranger_ca, _, _) = certificates(dir.path(), "stranger")?;
    let nats = tests::start_nats_with(
        &dir.path().join("nats"),
        &cordon::nats::NatsOptions { tls: Some((cert.clone(), key.clone())), ..Default::default() },
    )?;
    tests::trust_ca(&ca)?;
    let path = |p: &Path| p.display().to_string();
    let opts = ServerOptions {
        args: vec![
            "--tls-cert".into(),
            path(&cert),
            "--tls-key".into(),
            path(&key),
            "--nats-ca".into(),
            path(&ca),
        ],
        ..Default::default()
    };
    let data = dir.path().join("data");
    let server = tests::Server::start(&bin(), &data, &nats.url, &opts)?;
    assert!(server.api.starts_with("https://"), "{}", server.api);
    let token = tests::token(&bin(), &data, None)?;

    // An agent that trusts the CA enrolls over HTTPS and ships over TLS: everything is stored.
    let sent = tests::agent(
        &bin(),
        &nats.url,
        &dir.path().join("spool"),
        &["--ca", &path(&ca), "replay", "builtin:log4j-conti"],
    )?;
    let acked = sent["events_acked"].as_i64().unwrap();
    assert_eq!(acked, fixtures::scenario::log4j_conti().events.len() as i64);
    eventually(Duration::from_secs(60), || {
        Ok((sql(&server.api, &token, "SELECT count(*) FROM events")?[0][0] == acked).then_some(()))
    })?;

    // Plain HTTP to the HTTPS port, and HTTPS from a client that trusts another CA: nothing.
    let plain = server.api.replacen("https://", "http://", 1);
    assert!(ureq::get(&format!("{plain}/healthz")).call().is_err(), "plain HTTP is not served");
    let stranger = sensor_agent::enroll::http_agent(Some(&stranger_ca))?;
    assert!(
        stranger.get(&format!("{}/healthz", server.api)).call().is_err(),
        "a certificate from another CA"
    );
    let rt = tokio::runtime::Runtime::new()?;
    let (no_ca, wrong_ca) = rt.block_on(async {
        let attempt = |ca: Option<PathBuf>| {
            let url = nats.url.clone();
            async move {
                let mut opts = async_nats::ConnectOptions::new().connection_timeout(Duration::from_secs(5));
                if let Some(ca) = ca {
                    opts = opts.add_root_certificates(ca).require_tls(true);
                }
                opts.connect(&url).await.is_err()
            }
        };
        (attempt(None).await, attempt(Some(stranger_ca.clone())).await)
    });
    assert!(no_ca && wrong_ca, "NATS without the CA: refused {no_ca}; with another CA: refused {wrong_ca}");
    // The agent's own check: without --ca it cannot even enroll.
    let (code, out) = tests::agent_summary(tests::spawn_agent(
        &bin(),
        &nats.url,
        &dir.path().join("spool-2"),
        &["--drain-secs", "1", "replay", "builtin:log4j-conti"],
    )?)
    .unwrap_or((2, serde_json::Value::Null));
    assert_ne!(code, 0, "{out}");
    // Outbound webhooks speak TLS and verify the certificate (against Mozilla's roots, which do not
    // include this test's CA): the call fails on the certificate, not on the protocol.
    let hook = rt.block_on(async {
        let tcp = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        cordon::tls::TlsListener::new(tcp, cordon::tls::server_config(&cert, &key)?)
            .map_err(anyhow::Error::from)
    })?;
    let port = hook.addr().port();
    let err =
        cordon::outbound::agent(true).post(&format!("https://127.0.0.1:{port}/hook")).send("{}").unwrap_err();
    assert!(err.to_string().contains("UnknownIssuer"), "{err}");
    drop(server);
    Ok(())
}
