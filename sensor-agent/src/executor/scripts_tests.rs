//! Downloaded programs over real HTTPS (a server of the test's own, with its own CA) and started
//! processes, each behind the agent's allow-list.

use super::super::{ActionResult, Config, Outcome};
use super::sha256_hex;
use serde_json::json;
use std::io::{Read, Write};
use std::sync::Arc;

fn act(action: serde_json::Value, c: &Config) -> ActionResult {
    let rule = schemas::response::parse(&json!({"name": "t", "kind": "cleanup", "actions": [action]}))
        .expect("a valid rule");
    super::super::carry_out(&rule, c).remove(0)
}

/// An HTTPS server on 127.0.0.1 that answers every request with `body`; its port and its CA (PEM).
fn https_server(body: Vec<u8>) -> (u16, String) {
    use rcgen::{BasicConstraints, CertificateParams, IsCa, KeyPair};
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = ca_params.self_signed(&ca_key).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert =
        CertificateParams::new(vec!["127.0.0.1".to_owned()]).unwrap().signed_by(&key, &ca, &ca_key).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let der = rustls::pki_types::PrivateKeyDer::Pkcs8(key.serialize_der().into());
    let cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_no_client_auth()
        .with_single_cert(vec![cert.der().clone()], der)
        .unwrap();
    let cfg = Arc::new(cfg);
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    std::thread::spawn(move || {
        for tcp in listener.incoming().flatten() {
            let Ok(conn) = rustls::ServerConnection::new(Arc::clone(&cfg)) else { continue };
            let mut tls = rustls::StreamOwned::new(conn, tcp);
            let mut req = Vec::new();
            let mut buf = [0u8; 1024];
            while !req.windows(4).any(|w| w == b"\r\n\r\n") {
                match tls.read(&mut buf) {
                    Ok(0) | Err(_) => break,
                    Ok(n) => req.extend_from_slice(&buf[..n]),
                }
            }
            let head =
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", body.len());
            let _ = tls.write_all(head.as_bytes()).and_then(|()| tls.write_all(&body));
            let _ = tls.flush();
            tls.conn.send_close_notify();
            let _ = tls.flush();
        }
    });
    (port, ca.pem())
}

#[test]
fn a_downloaded_program_runs_only_with_the_allowed_hash_over_trusted_https() {
    let dir = tempfile::tempdir().unwrap();
    let marker = dir.path().join("ran");
    let program = format!("#!/bin/sh\necho collected \"$1\"\ntouch {}\n", marker.display());
    let sha = sha256_hex(program.as_bytes());
    let (port, ca_pem) = https_server(program.clone().into_bytes());
    let ca = dir.path().join("ca.pem");
    std::fs::write(&ca, ca_pem).unwrap();
    let url = format!("https://127.0.0.1:{port}/collector.sh");
    let action = json!({"action": "Script_File", "url": url, "sha256": sha, "args": "memory"});

    let off = act(action.clone(), &Config { ca: Some(ca.clone()), ..Config::for_host(dir.path()) });
    assert_eq!(off.outcome, Outcome::Refused, "{off:?}");
    let untrusted =
        act(action.clone(), &Config { scripts: vec![sha.clone()], ..Config::for_host(dir.path()) });
    assert_eq!(untrusted.outcome, Outcome::Failed, "a server the agent does not trust: {untrusted:?}");
    assert!(!marker.exists());

    let allowed = Config { scripts: vec![sha.clone()], ca: Some(ca.clone()), ..Config::for_host(dir.path()) };
    let r = act(action, &allowed);
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert_eq!(r.detail, "exit 0; output: collected memory");
    assert!(marker.exists());

    // The hash declared and allowed is not what the server sends: nothing runs.
    let (port, ca_pem) = https_server(b"#!/bin/sh\nrm -rf /tmp/x\n".to_vec());
    std::fs::write(&ca, ca_pem).unwrap();
    std::fs::remove_file(&marker).unwrap();
    let swapped =
        json!({"action": "Script_File", "url": format!("https://127.0.0.1:{port}/c.sh"), "sha256": sha});
    let r = act(swapped, &allowed);
    assert_eq!(r.outcome, Outcome::Refused, "{r:?}");
    assert!(r.detail.contains("not run"), "{r:?}");
}

#[test]
fn processes_start_as_the_named_user_only_when_allowed() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("whoami");
    let command = format!("id -u > {}; sleep 30", out.display());
    let sha = sha256_hex(command.as_bytes());
    let action = json!({"action": "Proc_Create", "command": command, "user": "nobody"});
    assert_eq!(act(action.clone(), &Config::for_host(dir.path())).outcome, Outcome::Refused);
    let allowed = Config { scripts: vec![sha], ..Config::for_host(dir.path()) };
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let r = act(action, &allowed);
    assert_eq!(r.outcome, Outcome::Done, "{r:?}");
    assert!(r.detail.contains("running as uid 65534"), "{r:?}");
    let pid: i32 = r.detail.split_whitespace().nth(1).unwrap().parse().unwrap();
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !out.exists() && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    assert_eq!(std::fs::read_to_string(&out).unwrap().trim(), "65534", "it runs as nobody");
    let _ = rustix::process::kill_process_group(
        rustix::process::Pid::from_raw(pid).unwrap(),
        rustix::process::Signal::KILL,
    );
    let stranger = json!({"action": "Proc_Create", "command": "true", "user": "no-such-user-here"});
    assert!(act(stranger, &allowed).detail.contains("no account"));
}
