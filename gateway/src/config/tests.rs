#![allow(clippy::unwrap_used)]

use super::*;

/// Writes token files next to the config and parses `yaml` as if read from that directory.
fn load(yaml: &str) -> Result<Config, String> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("a.token"), "token-aaaaaaaaaaaaaaaa\n").unwrap();
    std::fs::write(dir.path().join("b.token"), "token-bbbbbbbbbbbbbbbb").unwrap();
    std::fs::write(dir.path().join("short.token"), "short").unwrap();
    std::fs::write(dir.path().join("spaced.token"), "token with spaces inside").unwrap();
    Config::parse(yaml, &dir.path().join("gateway.yml")).map_err(|e| e.to_string())
}

const HEAD: &str = "listen: 127.0.0.1:0\nupstream: {url: 'http://prometheus:9090'}\n";

fn with_clients(clients: &str) -> String {
    format!("{HEAD}clients:\n{clients}")
}

const PORTAL: &str =
    "  - name: portal\n    token_file: a.token\n    allow: ['{__name__=\"up\"}']\n";

/// What a case expects: a check on the config, or text the error must contain.
type Want = Result<fn(&Config), &'static str>;

#[test]
fn validation_table() {
    let cases: Vec<(&str, String, Want)> = vec![
        ("minimal", with_clients(PORTAL), Ok(|c| {
            assert_eq!(c.upstream.timeout, DEFAULT_UPSTREAM_TIMEOUT);
            assert_eq!(c.limits, Limits::default());
            assert!(c.tls.is_none() && c.internal_listen.is_none());
            assert_eq!(c.clients[0].token, b"token-aaaaaaaaaaaaaaaa", "trailing newline trimmed");
            assert!(c.clients[0].limiter.is_none());
        })),
        ("the perf script's shape", String::from(
            "listen: 127.0.0.1:9\ninternal_listen: 127.0.0.1:10\nupstream: {url: http://127.0.0.1:1, timeout: 20s}\nclients:\n  - name: portal\n    token_file: a.token\n    allow:\n      - '{job=\"project_usages\",__name__=~\"project_.*_usage\"}'\n    rate_limit: {per_second: 1000000, burst: 1000000}\n"
        ), Ok(|c| {
            assert_eq!(c.upstream.timeout, Duration::from_secs(20));
            assert!(c.clients[0].limiter.is_some());
        })),
        ("unknown key", format!("{HEAD}extra: 1\nclients:\n{PORTAL}"), Err("unknown field `extra`")),
        ("unknown client key", with_clients("  - name: p\n    token: inline-secret-token-xyz\n    allow: [up]\n"), Err("unknown field `token`")),
        ("no clients", format!("{HEAD}clients: []\n"), Err("clients: at least one client is needed")),
        ("no token source", with_clients("  - name: p\n    allow: [up]\n"), Err("clients[0]: give exactly one of token_file and token_env")),
        ("both token sources", with_clients("  - name: p\n    token_file: a.token\n    token_env: X\n    allow: [up]\n"), Err("exactly one of")),
        ("missing token file", with_clients("  - name: p\n    token_file: nope.token\n    allow: [up]\n"), Err("clients[0].token_file: cannot read")),
        ("unset token variable", with_clients("  - name: p\n    token_env: FEDERATION_GATEWAY_TEST_UNSET_VAR\n    allow: [up]\n"), Err("variable FEDERATION_GATEWAY_TEST_UNSET_VAR is not set")),
        ("short token", with_clients("  - name: p\n    token_file: short.token\n    allow: [up]\n"), Err("at least 16 characters")),
        ("token with spaces", with_clients("  - name: p\n    token_file: spaced.token\n    allow: [up]\n"), Err("must not contain spaces")),
        ("same token twice", with_clients(&format!("{PORTAL}  - name: q\n    token_file: a.token\n    allow: [up]\n")), Err("clients[1]: the token is the same as another client's")),
        ("same name twice", with_clients(&format!("{PORTAL}  - name: portal\n    token_file: b.token\n    allow: [up]\n")), Err("clients[1].name: 'portal' is used twice")),
        ("reserved name", with_clients("  - name: unknown\n    token_file: a.token\n    allow: [up]\n"), Err("clients[0].name")),
        ("empty allow-list", with_clients("  - name: p\n    token_file: a.token\n    allow: []\n"), Err("clients[0].allow: at least one selector")),
        ("bad selector", with_clients("  - name: p\n    token_file: a.token\n    allow: ['{job=~}']\n"), Err("clients[0].allow[0]: invalid series selector")),
        ("bad rate limit", with_clients("  - name: p\n    token_file: a.token\n    allow: [up]\n    rate_limit: {per_second: 0, burst: 1}\n"), Err("clients[0].rate_limit: per_second must be a positive number")),
        ("relative upstream", format!("listen: 127.0.0.1:0\nupstream: {{url: /prom}}\nclients:\n{PORTAL}"), Err("upstream.url: must be an absolute")),
        ("ftp upstream", format!("listen: 127.0.0.1:0\nupstream: {{url: 'ftp://x'}}\nclients:\n{PORTAL}"), Err("upstream.url")),
        ("bad timeout", format!("listen: 127.0.0.1:0\nupstream: {{url: 'http://x', timeout: soon}}\nclients:\n{PORTAL}"), Err("invalid duration 'soon'")),
        ("missing CA", format!("listen: 127.0.0.1:0\nupstream: {{url: 'https://x', ca_file: none.pem}}\nclients:\n{PORTAL}"), Err("upstream.ca_file: cannot read")),
        ("missing certificate", format!("{HEAD}tls: {{cert_file: none.crt, key_file: none.key}}\nclients:\n{PORTAL}"), Err("tls.cert_file: cannot read")),
        ("bad listen", format!("listen: everywhere\nupstream: {{url: 'http://x'}}\nclients:\n{PORTAL}"), Err("listen")),
        ("zero max_match", format!("{HEAD}limits: {{max_match: 0}}\nclients:\n{PORTAL}"), Err("limits.max_match: must be greater than zero")),
        ("tiny header limit", format!("{HEAD}limits: {{max_header_bytes: 100}}\nclients:\n{PORTAL}"), Err("limits.max_header_bytes: must be at least 8192")),
    ];
    for (name, yaml, want) in cases {
        match (load(&yaml), want) {
            (Ok(c), Ok(check)) => check(&c),
            (Err(got), Err(want)) => {
                assert!(got.contains(want), "case {name:?}: {got:?} lacks {want:?}")
            }
            (got, _) => panic!("case {name:?}: unexpected {:?}", got.map(|_| "a config")),
        }
    }
}

#[test]
fn tokens_are_redacted_in_debug_output() {
    let c = load(&with_clients(PORTAL)).unwrap();
    let debug = format!("{c:?}");
    assert!(!debug.contains("token-aaaaaaaaaaaaaaaa"), "{debug}");
    assert!(debug.contains("<redacted>"));
}
