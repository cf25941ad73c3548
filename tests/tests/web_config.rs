//! `--web.config.file` against its oracle, Debian's node_exporter 1.5 (exporter-toolkit):
//! every web config in the table is served by both, and every client request (curl, so
//! neither side's TLS library is the client) gets the same outcome from both: the same HTTP
//! status or the same refused handshake, and the same security headers. Configs that
//! node_exporter refuses are refused here too; the exceptions rustls cannot serve are accepted
//! by node_exporter and refused here with an error saying why. Edits take effect without a
//! restart, and a bad edit keeps the last good config.

#![allow(clippy::unwrap_used)]

use std::path::Path;
use std::time::Duration;

use site_exporter::webconfig::live::LiveWebConfig;
use stack_tests::webcfg::{bcrypt_hash, curl, NodeExporter, Outcome, Pki, Request};
use stack_tests::{poll, Exporter};

const PASSWORD: &str = "correct horse";

/// The requests every config is probed with.
fn requests() -> Vec<(&'static str, Request)> {
    let r = Request::default();
    vec![
        ("anonymous", r),
        (
            "anonymous, another path",
            Request {
                path: "/-/healthy",
                ..r
            },
        ),
        (
            "right password",
            Request {
                user: Some(("alice", PASSWORD)),
                ..r
            },
        ),
        (
            "wrong password",
            Request {
                user: Some(("alice", "battery staple")),
                ..r
            },
        ),
        (
            "unknown user",
            Request {
                user: Some(("mallory", PASSWORD)),
                ..r
            },
        ),
        (
            "client certificate from the CA",
            Request {
                cert: Some("client"),
                ..r
            },
        ),
        (
            "self-signed client certificate",
            Request {
                cert: Some("rogue"),
                ..r
            },
        ),
        (
            "client certificate and password",
            Request {
                cert: Some("client"),
                user: Some(("alice", PASSWORD)),
                ..r
            },
        ),
        (
            "TLS 1.2 at most",
            Request {
                tls_max: Some("1.2"),
                ..r
            },
        ),
        ("TLS 1.3 only", Request { tls13: true, ..r }),
        (
            "TLS 1.2 with AES-256 only",
            Request {
                tls_max: Some("1.2"),
                ciphers: Some("ECDHE-ECDSA-AES256-GCM-SHA384"),
                ..r
            },
        ),
        (
            "TLS 1.2, client certificate",
            Request {
                tls_max: Some("1.2"),
                cert: Some("client"),
                ..r
            },
        ),
    ]
}

const TLS: &str = "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\n";

fn with_ca(auth: &str) -> String {
    format!("{TLS}  client_ca_file: ca.crt\n  client_auth_type: {auth}\n")
}

/// `(name, web config, served over TLS)`; `HASH` stands for alice's bcrypt hash.
fn served_configs() -> Vec<(&'static str, String, bool)> {
    let users = "basic_auth_users:\n  alice: HASH\n";
    let headers = "http_server_config:\n  headers:\n    X-Frame-Options: deny\n    X-Content-Type-Options: nosniff\n    Strict-Transport-Security: max-age=31536000; includeSubDomains\n    X-XSS-Protection: 1; mode=block\n    Content-Security-Policy: default-src 'self'\n";
    vec![
        ("empty file", String::new(), false),
        ("TLS", TLS.into(), true),
        ("TLS, NoClientCert", format!("{TLS}  client_auth_type: NoClientCert\n"), true),
        ("TLS, RequestClientCert", with_ca("RequestClientCert"), true),
        ("TLS, RequireAnyClientCert", with_ca("RequireAnyClientCert"), true),
        ("TLS, VerifyClientCertIfGiven", with_ca("VerifyClientCertIfGiven"), true),
        ("TLS, RequireAndVerifyClientCert", with_ca("RequireAndVerifyClientCert"), true),
        (
            "TLS, RequestClientCert without CA",
            format!("{TLS}  client_auth_type: RequestClientCert\n"),
            true,
        ),
        (
            "TLS, RequireAnyClientCert without CA",
            format!("{TLS}  client_auth_type: RequireAnyClientCert\n"),
            true,
        ),
        ("basic auth", users.into(), false),
        ("headers", headers.into(), false),
        (
            "TLS, client CA, basic auth and headers",
            format!("{}{users}{headers}", with_ca("RequireAndVerifyClientCert")),
            true,
        ),
        ("TLS 1.3 minimum", format!("{TLS}  min_version: TLS13\n"), true),
        ("TLS 1.2 maximum", format!("{TLS}  max_version: TLS12\n"), true),
        (
            "one TLS 1.2 cipher suite",
            format!("{TLS}  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"),
            true,
        ),
        (
            "curves, server order off, no HTTP/2",
            format!("{TLS}  curve_preferences: [CurveP256, X25519]\n  prefer_server_cipher_suites: false\nhttp_server_config:\n  http2: false\n"),
            true,
        ),
    ]
}

fn write_config(dir: &Path, name: &str, text: &str, hash: &str) -> std::path::PathBuf {
    let path = dir.join(format!(
        "{}.yml",
        name.replace(|c: char| !c.is_ascii_alphanumeric(), "_")
    ));
    std::fs::write(&path, text.replace("HASH", &format!("'{hash}'"))).unwrap();
    path
}

fn check_tools() {
    for tool in [stack_tests::webcfg::NODE_EXPORTER, "/usr/bin/curl"] {
        assert!(
            Path::new(tool).exists(),
            "{tool} is missing: install Debian's prometheus-node-exporter and curl (run-tests.sh does)"
        );
    }
}

#[test]
fn every_served_config_behaves_like_node_exporter() {
    check_tools();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path()).unwrap();
    let hash = bcrypt_hash(PASSWORD);
    let mut mismatches = Vec::new();
    let mut seen = Vec::new();
    for (name, text, tls) in served_configs() {
        let path = write_config(dir.path(), name, &text, &hash);
        let oracle = NodeExporter::start(&path)
            .unwrap_or_else(|e| panic!("{name}: node_exporter refused the config: {e:#}"));
        let ours = Exporter::start_with(dummy(), Some(path.clone()));
        for (what, req) in requests() {
            let want = curl(oracle.port, tls, &pki, &req).unwrap();
            let got = curl(ours.addr.port(), tls, &pki, &req).unwrap();
            seen.push(want.clone());
            if got != want {
                mismatches.push(format!(
                    "{name} / {what}: node_exporter {want:?}, ours {got:?}"
                ));
            }
        }
    }
    assert!(mismatches.is_empty(), "{}", mismatches.join("\n"));
    // The table proves little unless it reaches every kind of outcome.
    for status in [Some(200), Some(401), None] {
        assert!(
            seen.iter().any(|o: &Outcome| o.status == status),
            "no request got {status:?}"
        );
    }
    assert!(seen
        .iter()
        .any(|o| o.headers.contains_key("x-frame-options")));
}

#[test]
fn configs_node_exporter_refuses_are_refused() {
    check_tools();
    let dir = tempfile::tempdir().unwrap();
    Pki::generate(dir.path()).unwrap();
    let cases: &[(&str, String, &str)] = &[
        (
            "unknown key",
            "tls_config: {}\n".into(),
            "unknown field `tls_config`",
        ),
        (
            "unknown TLS key",
            format!("{TLS}  certfile: x\n"),
            "unknown field `certfile`",
        ),
        (
            "no key file",
            "tls_server_config:\n  cert_file: server.crt\n".into(),
            "key_file: missing",
        ),
        (
            "CA without client auth",
            format!("{TLS}  client_ca_file: ca.crt\n"),
            "client_ca_file",
        ),
        (
            "unknown client auth",
            format!("{TLS}  client_auth_type: Sometimes\n"),
            "client_auth_type",
        ),
        (
            "unknown version",
            format!("{TLS}  min_version: TLS14\n"),
            "unknown TLS version",
        ),
        (
            "unknown suite",
            format!("{TLS}  cipher_suites: [TLS_FAST]\n"),
            "unknown cipher suite",
        ),
        (
            "unknown curve",
            format!("{TLS}  curve_preferences: [P999]\n"),
            "unknown curve",
        ),
        (
            "header that cannot be set",
            "http_server_config:\n  headers:\n    Server: mine\n".into(),
            "cannot be configured",
        ),
        (
            "header value not allowed",
            "http_server_config:\n  headers:\n    X-Frame-Options: allow-from\n".into(),
            "is not allowed",
        ),
        (
            "not a bcrypt hash",
            "basic_auth_users:\n  alice: secret-in-clear\n".into(),
            "is not a bcrypt hash",
        ),
        (
            "cert file missing",
            "tls_server_config:\n  cert_file: nope.crt\n  key_file: server.key\n".into(),
            "nope.crt",
        ),
    ];
    for (name, text, want) in cases {
        let path = write_config(dir.path(), name, text, "");
        assert!(
            NodeExporter::start(&path).is_err(),
            "{name}: node_exporter accepted it; the table is wrong"
        );
        let err = LiveWebConfig::load(&path)
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        assert!(err.to_string().contains(want), "{name}: {err}");
        assert!(
            !err.to_string().contains("secret-in-clear"),
            "{name}: the error shows the value: {err}"
        );
    }
}

#[test]
fn exceptions_node_exporter_accepts_are_refused_with_the_reason() {
    check_tools();
    let dir = tempfile::tempdir().unwrap();
    Pki::generate(dir.path()).unwrap();
    let cases: &[(&str, String, &str)] = &[
        (
            "TLS 1.0",
            format!("{TLS}  min_version: TLS10\n"),
            "rustls does not serve TLS 1.0 or 1.1",
        ),
        (
            "TLS 1.1",
            format!("{TLS}  min_version: TLS11\n  max_version: TLS11\n"),
            "rustls does not serve TLS 1.0 or 1.1",
        ),
        (
            "CBC suite",
            format!("{TLS}  cipher_suites: [TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"),
            "rustls does not implement it",
        ),
        (
            "RSA key exchange",
            format!("{TLS}  cipher_suites: [TLS_RSA_WITH_AES_128_GCM_SHA256, TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256]\n"),
            "rustls does not implement it",
        ),
        (
            "P-521",
            format!("{TLS}  curve_preferences: [CurveP521]\n"),
            "CurveP521: rustls does not implement it",
        ),
        (
            "verification without a CA",
            format!("{TLS}  client_auth_type: RequireAndVerifyClientCert\n"),
            "client_ca_file: required",
        ),
    ];
    for (name, text, want) in cases {
        let path = write_config(dir.path(), name, text, "");
        if let Err(e) = NodeExporter::start(&path) {
            panic!("{name}: node_exporter refused it, so it is no exception: {e:#}");
        }
        let err = LiveWebConfig::load(&path)
            .err()
            .unwrap_or_else(|| panic!("{name}: accepted"));
        let text = err.to_string();
        assert!(text.contains(want), "{name}: {text}");
    }
}

#[test]
fn edits_apply_without_a_restart_and_a_bad_edit_keeps_the_last_good_config() {
    check_tools();
    let dir = tempfile::tempdir().unwrap();
    let pki = Pki::generate(dir.path()).unwrap();
    let path = dir.path().join("web.yml");
    std::fs::write(
        &path,
        "http_server_config:\n  headers:\n    X-Frame-Options: deny\n",
    )
    .unwrap();
    let exporter = Exporter::start_with(dummy(), Some(path.clone()));
    let port = exporter.addr.port();
    let anonymous = Request::default();
    let alice = Request {
        user: Some(("alice", PASSWORD)),
        ..anonymous
    };
    let status = |req: &Request| curl(port, false, &pki, req).unwrap().status;
    assert_eq!(status(&anonymous), Some(200));

    let hash = bcrypt_hash(PASSWORD);
    std::fs::write(&path, format!("basic_auth_users:\n  alice: '{hash}'\n")).unwrap();
    poll("the added user to count", Duration::from_secs(10), || {
        Ok((status(&anonymous) == Some(401)).then_some(()))
    })
    .unwrap();
    assert_eq!(status(&alice), Some(200));

    // A bad edit: the users stay in force, nothing is opened up.
    std::fs::write(&path, "basic_auth_users: [this is not a mapping\n").unwrap();
    for req in [&anonymous, &alice] {
        let want = if req.user.is_some() { 200 } else { 401 };
        assert_eq!(status(req), Some(want), "after a bad edit");
    }

    // Fixed again, with another password: the new file counts.
    let other = bcrypt_hash("another password");
    std::fs::write(
        &path,
        format!("basic_auth_users:\n  alice: '{other}'\n  bob: '{hash}'\n"),
    )
    .unwrap();
    let bob = Request {
        user: Some(("bob", PASSWORD)),
        ..anonymous
    };
    poll("the fixed file to count", Duration::from_secs(10), || {
        Ok((status(&bob) == Some(200)).then_some(()))
    })
    .unwrap();
    assert_eq!(status(&alice), Some(401));
}

fn dummy() -> site_exporter::sources::dummy::DummyConfig {
    site_exporter::sources::dummy::DummyConfig {
        cloud: site_exporter::sources::dummy::CloudSpec::BuiltIn,
        guests: None,
        usage_start: None,
        usage_start_url: None,
        schedule: site_exporter::settings::Schedule {
            interval: Duration::from_secs(3600),
            timeout: Duration::from_secs(60),
        },
    }
}

#[test]
fn the_site_prometheus_scrapes_a_secured_exporter_with_the_shipped_libvirt_job() {
    check_tools();
    let dir = tempfile::tempdir().unwrap();
    Pki::generate(dir.path()).unwrap();
    let web = dir.path().join("web.yml");
    std::fs::write(
        &web,
        format!(
            "{TLS}basic_auth_users:\n  prometheus: '{}'\n",
            bcrypt_hash(PASSWORD)
        ),
    )
    .unwrap();
    let exporter = Exporter::start_with(dummy(), Some(web));

    // The shipped site config's `libvirt` job as it is, but for the interval; a copy with a
    // wrong password must fail, or the first proves nothing.
    let shipped: serde_yaml::Value = serde_yaml::from_str(
        &std::fs::read_to_string(stack_tests::stack::repo().join("prometheus/site/prometheus.yml"))
            .unwrap(),
    )
    .unwrap();
    let job = shipped["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "libvirt")
        .unwrap()
        .clone();
    let mut wrong = job.clone();
    wrong["job_name"] = "libvirt-wrong-password".into();
    wrong["basic_auth"]["password_file"] = "secrets/wrong.password".into();
    let mut config = serde_yaml::Mapping::new();
    config.insert(
        "global".into(),
        serde_yaml::from_str("{scrape_interval: 1s, scrape_timeout: 1s}").unwrap(),
    );
    config.insert("scrape_configs".into(), vec![job, wrong].into());
    let ca = std::fs::read_to_string(dir.path().join("ca.crt")).unwrap();
    let target = format!("- targets: ['127.0.0.1:{}']\n", exporter.addr.port());
    let prometheus = stack_tests::Prometheus::start(
        &serde_yaml::to_string(&config).unwrap(),
        &[
            ("secrets/hypervisors-ca.pem", &ca),
            ("secrets/hypervisors.password", &format!("{PASSWORD}\n")),
            ("secrets/wrong.password", "not it\n"),
            ("hypervisors/hypervisors.yml", &target),
        ],
    )
    .unwrap();
    let up = |job: &str| -> anyhow::Result<Option<String>> {
        let r = prometheus.query(&format!("up{{job=\"{job}\"}}"))?;
        Ok(r.first()
            .and_then(|s| s["value"][1].as_str().map(str::to_owned)))
    };
    poll("the libvirt job to scrape", Duration::from_secs(60), || {
        Ok((up("libvirt")?.as_deref() == Some("1")).then_some(()))
    })
    .unwrap();
    poll(
        "the wrong password to be refused",
        Duration::from_secs(60),
        || Ok((up("libvirt-wrong-password")?.as_deref() == Some("0")).then_some(())),
    )
    .unwrap();
    let domains = prometheus
        .query("libvirt_domains{job=\"libvirt\"}")
        .unwrap();
    assert_eq!(domains.len(), 1, "{domains:?}");
}
