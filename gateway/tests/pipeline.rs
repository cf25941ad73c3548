//! End to end against a recording upstream: what is allowed arrives canonical and without the
//! token; everything else — the bypass corpus — is refused and never reaches the upstream.

#![allow(clippy::unwrap_used)]

mod common;

use common::*;

#[tokio::test]
async fn the_original_portal_request_passes_and_arrives_clean() {
    let upstream = Upstream::start().await;
    let gw = start_gateway(upstream.addr, "").await;
    let target = format!("/federate?{ORIGINAL_QUERY}");
    let resp = raw(
        gw.addr,
        &get(
            &target,
            &[
                &bearer(TOKEN),
                "Accept: application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
                "Accept-Encoding: gzip",
                "Cookie: session=abc",
                "X-Forwarded-For: 10.0.0.1",
                "Proxy-Authorization: Basic Zm9vOmJhcg==",
                "Connection: close, X-Custom",
                "X-Custom: 1",
            ],
        ),
    )
    .await;
    assert_eq!(resp.status, 200, "{resp:?}");
    assert_eq!(resp.body, BODY, "the body passes unchanged");
    assert_eq!(
        resp.header("content-type").as_deref(),
        Some("text/plain; version=0.0.4")
    );
    assert_eq!(
        resp.header("x-upstream-secret"),
        None,
        "only Content-Type and Content-Encoding pass back"
    );

    assert_eq!(upstream.count(), 1);
    let seen = upstream.last();
    assert_eq!(seen.method, "GET");
    assert_eq!(
        seen.uri,
        "/federate?match%5B%5D=%7B__name__%3D~%22project_.%2A_usage%22%2Cjob%3D%22project_usages%22%7D"
    );
    let names: Vec<&str> = seen.headers.keys().map(|k| k.as_str()).collect();
    for forbidden in [
        "authorization",
        "cookie",
        "x-forwarded-for",
        "proxy-authorization",
        "x-custom",
    ] {
        assert!(
            !names.contains(&forbidden),
            "upstream saw {forbidden}: {names:?}"
        );
    }
    assert_eq!(seen.headers["accept-encoding"], "gzip");
    assert!(seen.headers["accept"]
        .to_str()
        .unwrap()
        .starts_with("application/openmetrics-text"));
    assert_eq!(seen.headers["host"], upstream.addr.to_string().as_str());
    for v in seen.headers.values() {
        assert!(
            !v.to_str().unwrap_or("").contains(TOKEN),
            "the token reached the upstream"
        );
    }
}

struct Case {
    name: &'static str,
    request: Vec<u8>,
    status: u16,
}

fn case(name: &'static str, request: Vec<u8>, status: u16) -> Case {
    Case {
        name,
        request,
        status,
    }
}

#[tokio::test]
async fn bypass_corpus_is_refused_and_never_forwarded() {
    let upstream = Upstream::start().await;
    let gw = start_gateway(upstream.addr, "").await;
    let ok = format!("/federate?{ORIGINAL_QUERY}");
    let auth = bearer(TOKEN);
    let long_query = format!("/federate?{ORIGINAL_QUERY}&x={}", "a".repeat(9000));
    let big_header = format!("X-Big: {}", "b".repeat(20_000));
    let cases = vec![
        // Authentication.
        case("no Authorization", get(&ok, &[]), 401),
        case("wrong token", get(&ok, &[&bearer("not-the-token-0123456789")]), 401),
        case("other client's token plus a character", get(&ok, &[&bearer(&format!("{TOKEN}x"))]), 401),
        case("Basic auth with the token", get(&ok, &[&format!("Authorization: Basic {TOKEN}")]), 401),
        case("token in the query", get(&format!("{ok}&access_token={TOKEN}"), &[]), 401),
        case("token in another header", get(&ok, &[&format!("X-Auth-Token: {TOKEN}")]), 401),
        case("two Authorization headers", get(&ok, &[&bearer(TOKEN), &bearer("second-token-0123456789")]), 401),
        case("two identical Authorization headers", get(&ok, &[&bearer(TOKEN), &bearer(TOKEN)]), 401),
        case("Bearer without a space", get(&ok, &[&format!("Authorization: Bearer{TOKEN}")]), 401),
        // Paths.
        case("trailing slash", get(&format!("/federate/?{ORIGINAL_QUERY}"), &[&auth]), 404),
        case("double slash", get(&format!("//federate?{ORIGINAL_QUERY}"), &[&auth]), 404),
        case("dot segment", get(&format!("/./federate?{ORIGINAL_QUERY}"), &[&auth]), 404),
        case("parent segment", get(&format!("/x/../federate?{ORIGINAL_QUERY}"), &[&auth]), 404),
        case("percent-encoded path", get(&format!("/%66ederate?{ORIGINAL_QUERY}"), &[&auth]), 404),
        case("other case", get(&format!("/Federate?{ORIGINAL_QUERY}"), &[&auth]), 404),
        case("query API", get("/api/v1/query?query=up", &[&auth]), 404),
        case("root", get("/", &[&auth]), 404),
        case("absolute-form target", get(&format!("http://{}/federate?{ORIGINAL_QUERY}", gw.addr), &[&auth]), 400),
        // Methods.
        case("POST", format!("POST {ok} HTTP/1.1\r\nHost: g\r\n{auth}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes(), 405),
        case("PUT", format!("PUT {ok} HTTP/1.1\r\nHost: g\r\n{auth}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n").into_bytes(), 405),
        case("OPTIONS", format!("OPTIONS {ok} HTTP/1.1\r\nHost: g\r\n{auth}\r\nConnection: close\r\n\r\n").into_bytes(), 405),
        case("TRACE", format!("TRACE {ok} HTTP/1.1\r\nHost: g\r\n{auth}\r\nConnection: close\r\n\r\n").into_bytes(), 405),
        case("DELETE", format!("DELETE {ok} HTTP/1.1\r\nHost: g\r\n{auth}\r\nConnection: close\r\n\r\n").into_bytes(), 405),
        case("CONNECT", format!("CONNECT {} HTTP/1.1\r\nHost: g\r\n{auth}\r\nConnection: close\r\n\r\n", upstream.addr).into_bytes(), 400),
        // Queries.
        case("no query", get("/federate", &[&auth]), 400),
        case("empty query", get("/federate?", &[&auth]), 400),
        case("second, broader match[]", get(&format!("{ok}&match%5B%5D=%7B__name__%3D~%22.%2B%22%7D"), &[&auth]), 403),
        case("catch-all alone", get("/federate?match[]={__name__=~%22.%2B%22}", &[&auth]), 403),
        case("unlisted metric", get("/federate?match[]=up", &[&auth]), 403),
        case("allowed minus a matcher", get("/federate?match[]={__name__=~%22project_.*_usage%22}", &[&auth]), 403),
        case("semicolon separator", get(&format!("{ok};match[]=up"), &[&auth]), 400),
        case("extra parameter", get(&format!("{ok}&start=0"), &[&auth]), 400),
        case("empty value", get("/federate?match[]=", &[&auth]), 400),
        case("empty pair", get(&format!("{ok}&"), &[&auth]), 400),
        case("key without brackets", get("/federate?match={__name__=%22x%22}", &[&auth]), 400),
        case("unparseable selector", get("/federate?match[]=rate(up%5B5m%5D)", &[&auth]), 400),
        case("bad percent-encoding", get("/federate?match[]=%ff", &[&auth]), 400),
        case("too many match[]", get(&format!("/federate?{}", [ORIGINAL_QUERY; 5].join("&")), &[&auth]), 400),
        // Framing and sizes.
        case(
            "Content-Length and Transfer-Encoding together",
            format!("GET {ok} HTTP/1.1\r\nHost: g\r\n{auth}\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n0\r\n\r\n").into_bytes(),
            400,
        ),
        case(
            "two different Content-Lengths",
            format!("GET {ok} HTTP/1.1\r\nHost: g\r\n{auth}\r\nContent-Length: 1\r\nContent-Length: 2\r\nConnection: close\r\n\r\nab").into_bytes(),
            400,
        ),
        case("request target too long", get(&long_query, &[&auth]), 414),
        case("headers too large", get(&ok, &[&auth, &big_header]), 431),
    ];
    for c in &cases {
        let before = upstream.count();
        let resp = raw(gw.addr, &c.request).await;
        assert_eq!(resp.status, c.status, "case {:?}: {resp:?}", c.name);
        assert_eq!(
            upstream.count(),
            before,
            "case {:?} reached the upstream",
            c.name
        );
        if c.status == 401 {
            assert_eq!(
                resp.header("www-authenticate").as_deref(),
                Some("Bearer"),
                "case {:?}",
                c.name
            );
        }
        assert!(
            !resp.body.contains(TOKEN),
            "case {:?} echoed the token",
            c.name
        );
    }
    // A 403 names the refused selector, canonically.
    let resp = raw(gw.addr, &get("/federate?match[]=up", &[&auth])).await;
    assert!(resp.body.contains(r#"{__name__="up"}"#), "{resp:?}");

    // Control: lower-case header name, encoded key, HTTP/1.0 and a narrower selector all pass.
    let passes: Vec<Vec<u8>> = vec![
        get(&ok, &[&format!("authorization: bearer {TOKEN}")]),
        get(
            &format!(
                "/federate?%6Datch%5B%5D={}",
                &ORIGINAL_QUERY["match%5B%5D=".len()..]
            ),
            &[&auth],
        ),
        format!("GET {ok} HTTP/1.0\r\n{auth}\r\n\r\n").into_bytes(),
        get(
            "/federate?match[]={__name__=~%22openstack_project_.%2B%22,domain_name=%22elixir%22}",
            &[&auth],
        ),
    ];
    for (i, request) in passes.iter().enumerate() {
        let before = upstream.count();
        let resp = raw(gw.addr, request).await;
        assert_eq!(resp.status, 200, "pass {i}: {resp:?}");
        assert_eq!(upstream.count(), before + 1, "pass {i}");
    }

    // Nothing logged or exported ever holds a token.
    let metrics = reqwest_free_get(gw.internal, "/metrics").await;
    assert!(
        metrics
            .contains("federation_gateway_requests_total{client=\"portal\",outcome=\"forbidden\"}"),
        "{metrics}"
    );
    assert!(
        metrics.contains(
            "federation_gateway_requests_total{client=\"unknown\",outcome=\"unauthorized\"}"
        ),
        "{metrics}"
    );
    assert!(!metrics.contains(TOKEN));
    let logs = String::from_utf8(logs().lock().unwrap().clone()).unwrap();
    assert!(
        logs.contains("\"outcome\":\"forbidden\""),
        "request lines are logged"
    );
    assert!(!logs.contains(TOKEN), "a token was logged");
}

/// GET on the internal listener.
async fn reqwest_free_get(addr: std::net::SocketAddr, path: &str) -> String {
    let resp = raw(addr, &get(path, &[])).await;
    assert_eq!(resp.status, 200, "{path}: {resp:?}");
    resp.body
}

#[tokio::test]
async fn http2_requests_get_the_same_answers() {
    use http_body_util::BodyExt;
    let upstream = Upstream::start().await;
    let gw = start_gateway(upstream.addr, "").await;
    let stream = tokio::net::TcpStream::connect(gw.addr).await.unwrap();
    let (mut sender, conn) = hyper::client::conn::http2::handshake(
        hyper_util::rt::TokioExecutor::new(),
        hyper_util::rt::TokioIo::new(stream),
    )
    .await
    .unwrap();
    tokio::spawn(conn);
    let send = |target: String, token: Option<&str>| {
        let mut req = http::Request::get(format!("http://{}{target}", gw.addr));
        if let Some(t) = token {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        req.body(http_body_util::Empty::<bytes::Bytes>::new())
            .unwrap()
    };
    let resp = sender
        .send_request(send(format!("/federate?{ORIGINAL_QUERY}"), Some(TOKEN)))
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(
        resp.into_body().collect().await.unwrap().to_bytes(),
        BODY.as_bytes()
    );
    let before = upstream.count();
    for (target, token, status) in [
        (format!("/federate?{ORIGINAL_QUERY}"), None, 401),
        ("/federate?match[]=up".to_string(), Some(TOKEN), 403),
        (format!("/federate/?{ORIGINAL_QUERY}"), Some(TOKEN), 404),
    ] {
        let resp = sender
            .send_request(send(target.clone(), token))
            .await
            .unwrap();
        assert_eq!(resp.status(), status, "{target}");
    }
    assert_eq!(upstream.count(), before);
}

#[tokio::test]
async fn rate_limited_clients_get_429_with_retry_after() {
    let upstream = Upstream::start().await;
    let limited = "  - name: slow\n    token_file: other.token\n    allow: ['{__name__=\"up\"}']\n    rate_limit: {per_second: 0.01, burst: 2}\n";
    let gw = start_gateway(upstream.addr, limited).await;
    let req = get("/federate?match[]=up", &[&bearer(OTHER_TOKEN)]);
    assert_eq!(raw(gw.addr, &req).await.status, 200);
    assert_eq!(raw(gw.addr, &req).await.status, 200);
    let before = upstream.count();
    let resp = raw(gw.addr, &req).await;
    assert_eq!(resp.status, 429, "{resp:?}");
    let retry: u64 = resp.header("retry-after").unwrap().parse().unwrap();
    assert!(
        (90..=100).contains(&retry),
        "one request per 100 s: {retry}"
    );
    assert_eq!(upstream.count(), before);
    // The other client has no limit and is unaffected.
    let resp = raw(
        gw.addr,
        &get(&format!("/federate?{ORIGINAL_QUERY}"), &[&bearer(TOKEN)]),
    )
    .await;
    assert_eq!(resp.status, 200);
}

#[tokio::test]
async fn upstream_failures_are_502_and_504() {
    // Nothing listens on a port that was just released: connection refused.
    let closed = {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap()
    };
    let gw = start_gateway(closed, "").await;
    let resp = raw(
        gw.addr,
        &get(&format!("/federate?{ORIGINAL_QUERY}"), &[&bearer(TOKEN)]),
    )
    .await;
    assert_eq!(resp.status, 502, "{resp:?}");
    assert!(
        !resp.body.contains("127.0.0.1"),
        "no upstream details to the client: {resp:?}"
    );

    // An upstream that accepts and never answers: the 2 s timeout gives 504.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_addr = silent.local_addr().unwrap();
    tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((s, _)) = silent.accept().await {
            held.push(s);
        }
    });
    let gw = start_gateway(silent_addr, "").await;
    let resp = raw(
        gw.addr,
        &get(&format!("/federate?{ORIGINAL_QUERY}"), &[&bearer(TOKEN)]),
    )
    .await;
    assert_eq!(resp.status, 504, "{resp:?}");
    let metrics = reqwest_free_get(gw.internal, "/metrics").await;
    assert!(
        metrics.contains("outcome=\"upstream_error\"} 1"),
        "{metrics}"
    );
}

#[tokio::test]
async fn reload_swaps_tokens_and_allow_lists_and_keeps_the_old_on_error() {
    let upstream = Upstream::start().await;
    let gw = start_gateway(upstream.addr, "").await;
    let ok = get(&format!("/federate?{ORIGINAL_QUERY}"), &[&bearer(TOKEN)]);
    assert_eq!(raw(gw.addr, &ok).await.status, 200);

    // New token for the portal, and `up` allowed too.
    let new_token = "rotated-token-0123456789abcdef";
    std::fs::write(gw.dir.path().join("portal.token"), new_token).unwrap();
    let path = gw.dir.path().join("gateway.yml");
    let text = std::fs::read_to_string(&path).unwrap();
    std::fs::write(
        &path,
        text.replace("    allow:\n", "    allow:\n      - '{__name__=\"up\"}'\n"),
    )
    .unwrap();
    gw.state.reload().unwrap();
    assert_eq!(
        raw(gw.addr, &ok).await.status,
        401,
        "the old token stops working"
    );
    let new = get("/federate?match[]=up", &[&bearer(new_token)]);
    assert_eq!(
        raw(gw.addr, &new).await.status,
        200,
        "the new token and allow-list work"
    );

    // An invalid file is refused; the previous configuration stays in force.
    std::fs::write(&path, "listen: 127.0.0.1:0\nclients: [}\n").unwrap();
    assert!(gw.state.reload().is_err());
    assert_eq!(raw(gw.addr, &new).await.status, 200);
    let metrics = reqwest_free_get(gw.internal, "/metrics").await;
    assert!(
        metrics.contains("federation_gateway_config_last_reload_success 0"),
        "{metrics}"
    );
}

#[tokio::test]
async fn slow_header_senders_are_cut_off() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let upstream = Upstream::start().await;
    // The default limit is 10 s; this gateway has 1 s.
    let dir = tempfile::tempdir().unwrap();
    let path = write_config(dir.path(), upstream.addr, "", "");
    with_header_read_timeout_1s(&path);
    let config = federation_gateway::config::Config::load(&path).unwrap();
    assert_eq!(
        config.limits.header_read_timeout,
        std::time::Duration::from_secs(1)
    );
    let state = std::sync::Arc::new(federation_gateway::state::State::new(&path, config).unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(federation_gateway::run(
        state,
        listener,
        None,
        std::future::pending(),
    ));

    let mut s = tokio::net::TcpStream::connect(addr).await.unwrap();
    s.write_all(b"GET /federate?match[]=up HTTP/1.1\r\nHost: g\r\n")
        .await
        .unwrap();
    let started = std::time::Instant::now();
    let mut buf = Vec::new();
    let read =
        tokio::time::timeout(std::time::Duration::from_secs(8), s.read_to_end(&mut buf)).await;
    assert!(read.is_ok(), "the connection stayed open");
    assert!(
        started.elapsed() >= std::time::Duration::from_millis(900),
        "cut off before the timeout"
    );
    assert_eq!(upstream.count(), 0);
}
