#![allow(clippy::unwrap_used)]

use super::*;

const HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

fn run(text: &str) -> Result<WebConfig, WebConfigError> {
    parse(text, Path::new("/etc/exp"), Path::new("/etc/exp/web.yml"))
}

#[test]
fn valid_files() {
    struct Case {
        name: &'static str,
        input: String,
        check: fn(&WebConfig) -> bool,
    }
    let cases = [
        Case {
            name: "empty file: plain HTTP, no auth",
            input: String::new(),
            check: |c| c.tls.is_none() && c.users.0.is_empty() && c.http2,
        },
        Case {
            name: "empty tls section serves plain HTTP",
            input: "tls_server_config: {}\n".into(),
            check: |c| c.tls.is_none(),
        },
        Case {
            name: "TLS with defaults; relative paths from the file's directory",
            input: "tls_server_config:\n  cert_file: a.crt\n  key_file: /k/a.key\n".into(),
            check: |c| {
                let t = c.tls.as_ref().unwrap();
                t.cert_file == Path::new("/etc/exp/a.crt")
                    && t.key_file == Path::new("/k/a.key")
                    && t.client_auth == ClientAuth::NoClientCert
                    && t.min_version == TlsVersion::Tls12
                    && t.max_version == TlsVersion::Tls13
                    && t.cipher_suites.is_none()
                    && t.prefer_server_cipher_suites
            },
        },
        Case {
            name: "client CA with each verifying type",
            input: "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_ca_file: ca\n  client_auth_type: VerifyClientCertIfGiven\n".into(),
            check: |c| c.tls.as_ref().unwrap().client_auth == ClientAuth::VerifyClientCertIfGiven,
        },
        Case {
            name: "the old RequireClientCert name",
            input: "tls_server_config:\n  cert_file: a\n  key_file: b\n  client_auth_type: RequireClientCert\n".into(),
            check: |c| c.tls.as_ref().unwrap().client_auth == ClientAuth::RequireAnyClientCert,
        },
        Case {
            name: "TLS 1.3 only, suites with a TLS 1.3 name ignored",
            input: "tls_server_config:\n  cert_file: a\n  key_file: b\n  min_version: TLS13\n  cipher_suites: [TLS_AES_128_GCM_SHA256, TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256]\n".into(),
            check: |c| {
                let t = c.tls.as_ref().unwrap();
                t.min_version == TlsVersion::Tls13
                    && t.cipher_suites == Some(vec![Tls12Suite::EcdheRsaAes128Gcm])
            },
        },
        Case {
            name: "users, headers, http2 off",
            input: format!("basic_auth_users:\n  alice: '{HASH}'\nhttp_server_config:\n  http2: false\n  headers:\n    X-Frame-Options: deny\n    Strict-Transport-Security: max-age=31536000\n"),
            check: |c| c.users.0.len() == 1 && c.headers.len() == 2 && !c.http2,
        },
    ];
    for c in cases {
        let got = run(&c.input).unwrap_or_else(|e| panic!("{}: {e}", c.name));
        assert!((c.check)(&got), "{}: {got:?}", c.name);
    }
}

#[test]
fn invalid_files_name_the_key() {
    struct Case {
        name: &'static str,
        input: String,
        want: &'static str,
    }
    let tls = |extra: &str| format!("tls_server_config:\n  cert_file: a\n  key_file: b\n{extra}");
    let cases = [
        Case {
            name: "unknown top-level key",
            input: "tls_config: {}\n".into(),
            want: "unknown field `tls_config`",
        },
        Case {
            name: "unknown tls key",
            input: tls("  certfile: x\n"),
            want: "unknown field `certfile`",
        },
        Case {
            name: "unknown http key",
            input: "http_server_config:\n  header: {}\n".into(),
            want: "unknown field `header`",
        },
        Case {
            name: "no key file",
            input: "tls_server_config:\n  cert_file: a\n".into(),
            want: "tls_server_config.key_file: missing",
        },
        Case {
            name: "no cert file",
            input: "tls_server_config:\n  key_file: a\n".into(),
            want: "tls_server_config.cert_file: missing",
        },
        Case {
            name: "bad client auth",
            input: tls("  client_auth_type: Always\n"),
            want: "tls_server_config.client_auth_type: unknown value 'Always'",
        },
        Case {
            name: "CA without client auth",
            input: tls("  client_ca_file: ca\n"),
            want: "tls_server_config.client_ca_file: a client CA is configured without",
        },
        Case {
            name: "verify without CA",
            input: tls("  client_auth_type: RequireAndVerifyClientCert\n"),
            want: "tls_server_config.client_ca_file: required",
        },
        Case {
            name: "TLS 1.0",
            input: tls("  min_version: TLS10\n"),
            want: "tls_server_config.min_version: TLS10: rustls does not serve TLS 1.0 or 1.1",
        },
        Case {
            name: "TLS 1.1 max",
            input: tls("  max_version: TLS11\n"),
            want: "tls_server_config.max_version: TLS11: rustls does not serve",
        },
        Case {
            name: "unknown version",
            input: tls("  min_version: SSL3\n"),
            want: "unknown TLS version 'SSL3'",
        },
        Case {
            name: "min above max",
            input: tls("  min_version: TLS13\n  max_version: TLS12\n"),
            want: "min_version: is above max_version",
        },
        Case {
            name: "CBC suite",
            input: tls("  cipher_suites: [TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA]\n"),
            want: "TLS_ECDHE_RSA_WITH_AES_128_CBC_SHA: rustls does not implement it",
        },
        Case {
            name: "RSA key exchange",
            input: tls("  cipher_suites: [TLS_RSA_WITH_AES_128_GCM_SHA256]\n"),
            want: "TLS_RSA_WITH_AES_128_GCM_SHA256: rustls does not implement it",
        },
        Case {
            name: "unknown suite",
            input: tls("  cipher_suites: [FAST]\n"),
            want: "unknown cipher suite 'FAST'",
        },
        Case {
            name: "TLS 1.2 only without a 1.2 suite",
            input: tls("  max_version: TLS12\n  cipher_suites: [TLS_AES_128_GCM_SHA256]\n"),
            want: "names no TLS 1.2 suite",
        },
        Case {
            name: "P-521",
            input: tls("  curve_preferences: [CurveP521]\n"),
            want: "CurveP521: rustls does not implement it",
        },
        Case {
            name: "not a bcrypt hash",
            input: "basic_auth_users:\n  alice: plaintext\n".into(),
            want: "basic_auth_users.alice: is not a bcrypt hash",
        },
        Case {
            name: "header not allowed",
            input: "http_server_config:\n  headers:\n    Server: x\n".into(),
            want: "http_server_config.headers.Server: this header cannot be configured",
        },
        Case {
            name: "header value not allowed",
            input: "http_server_config:\n  headers:\n    X-Frame-Options: allow\n".into(),
            want: "'allow' is not allowed; use one of: deny, sameorigin",
        },
        Case {
            name: "not YAML",
            input: "tls_server_config: [\n".into(),
            want: "/etc/exp/web.yml",
        },
    ];
    for c in cases {
        let err = run(&c.input)
            .err()
            .unwrap_or_else(|| panic!("{}: accepted", c.name));
        let text = err.to_string();
        assert!(text.contains(c.want), "{}: {text}", c.name);
    }
}

#[test]
fn yaml_errors_name_the_key_but_not_the_value() {
    for text in [
        "basic_auth_users: hunter2-in-clear\n",
        "tls_server_config:\n  cert_file: [hunter2-in-clear]\n",
        "http_server_config:\n  http2: hunter2-in-clear\n",
    ] {
        let err = run(text).unwrap_err().to_string();
        assert!(!err.contains("hunter2"), "{err}");
        assert!(err.contains("/etc/exp/web.yml"), "{err}");
    }
    let err = run("basic_auth_user: {}\n").unwrap_err().to_string();
    assert!(err.contains("unknown field `basic_auth_user`"), "{err}");
}

#[test]
fn errors_and_debug_never_show_the_hash() {
    let err = run("basic_auth_users:\n  alice: $2y$10$short\n").unwrap_err();
    assert!(!err.to_string().contains("short"), "{err}");
    let ok = run(&format!("basic_auth_users:\n  alice: '{HASH}'\n")).unwrap();
    let debug = format!("{ok:?}");
    assert!(
        debug.contains("alice") && !debug.contains("QOauh"),
        "{debug}"
    );
}
