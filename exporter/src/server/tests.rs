#![allow(clippy::unwrap_used)]

use http::HeaderValue;
use http_body_util::BodyExt;

use super::*;

fn headers(pairs: &[(http::HeaderName, &str)]) -> HeaderMap {
    let mut h = HeaderMap::new();
    for (name, value) in pairs {
        h.append(name.clone(), HeaderValue::from_str(value).unwrap());
    }
    h
}

#[test]
fn format_negotiation() {
    struct Case {
        name: &'static str,
        accept: &'static [&'static str],
        want: Format,
    }
    let cases = [
        Case {
            name: "Prometheus 2.x",
            accept: &["application/openmetrics-text;version=1.0.0,application/openmetrics-text;version=0.0.1;q=0.75,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"],
            want: Format::OpenMetrics,
        },
        Case {
            name: "older Prometheus",
            accept: &["application/openmetrics-text; version=0.0.1,text/plain;version=0.0.4;q=0.5,*/*;q=0.1"],
            want: Format::OpenMetrics,
        },
        Case { name: "no Accept (curl)", accept: &[], want: Format::Classic },
        Case { name: "anything", accept: &["*/*"], want: Format::Classic },
        Case { name: "classic only", accept: &["text/plain;version=0.0.4"], want: Format::Classic },
        Case {
            name: "classic preferred",
            accept: &["application/openmetrics-text;q=0.3, text/plain"],
            want: Format::Classic,
        },
        Case {
            name: "openmetrics refused",
            accept: &["application/openmetrics-text;q=0"],
            want: Format::Classic,
        },
        Case {
            name: "two header lines, case-insensitive",
            accept: &["text/plain;q=0.5", "Application/OpenMetrics-Text"],
            want: Format::OpenMetrics,
        },
    ];
    for case in cases {
        let h = headers(&case.accept.iter().map(|v| (ACCEPT, *v)).collect::<Vec<_>>());
        assert_eq!(negotiate_format(&h), case.want, "case {:?}", case.name);
    }
}

#[test]
fn gzip_negotiation() {
    let cases: [(&[&str], bool); 6] = [
        (&[], false),
        (&["gzip"], true),
        (&["br, gzip;q=0.8, identity"], true),
        (&["gzip;q=0"], false),
        (&["deflate"], false),
        (&["identity", "GZIP"], true),
    ];
    for (values, want) in cases {
        let h = headers(
            &values
                .iter()
                .map(|v| (ACCEPT_ENCODING, *v))
                .collect::<Vec<_>>(),
        );
        assert_eq!(accepts_gzip(&h), want, "Accept-Encoding {values:?}");
    }
}

async fn body(resp: Response<Chunks>) -> bytes::Bytes {
    resp.into_body().collect().await.unwrap().to_bytes()
}

#[tokio::test]
async fn routes() {
    let hub = Hub::new("test");
    let none = HeaderMap::new();
    struct Case {
        method: Method,
        path: &'static str,
        status: StatusCode,
    }
    let cases = [
        Case {
            method: Method::GET,
            path: "/metrics",
            status: StatusCode::OK,
        },
        Case {
            method: Method::HEAD,
            path: "/metrics",
            status: StatusCode::OK,
        },
        Case {
            method: Method::GET,
            path: "/-/healthy",
            status: StatusCode::OK,
        },
        Case {
            method: Method::GET,
            path: "/",
            status: StatusCode::OK,
        },
        Case {
            method: Method::GET,
            path: "/metrics/",
            status: StatusCode::NOT_FOUND,
        },
        Case {
            method: Method::GET,
            path: "/Metrics",
            status: StatusCode::NOT_FOUND,
        },
        Case {
            method: Method::GET,
            path: "/federate",
            status: StatusCode::NOT_FOUND,
        },
        Case {
            method: Method::POST,
            path: "/metrics",
            status: StatusCode::METHOD_NOT_ALLOWED,
        },
        Case {
            method: Method::DELETE,
            path: "/-/healthy",
            status: StatusCode::METHOD_NOT_ALLOWED,
        },
        Case {
            method: Method::POST,
            path: "/nowhere",
            status: StatusCode::NOT_FOUND,
        },
    ];
    for case in cases {
        let resp = route_parts(&case.method, case.path, &none, &hub);
        assert_eq!(resp.status(), case.status, "{} {}", case.method, case.path);
        if case.status == StatusCode::METHOD_NOT_ALLOWED {
            assert_eq!(resp.headers()[ALLOW], "GET, HEAD");
        }
        if case.method == Method::HEAD {
            assert!(body(resp).await.is_empty());
        }
    }
}

#[tokio::test]
async fn ready_only_once_every_source_has_data() {
    let hub = Hub::new("test");
    let none = HeaderMap::new();
    let ready = |hub: &Hub| route_parts(&Method::GET, "/-/ready", &none, hub).status();
    assert_eq!(
        ready(&hub),
        StatusCode::OK,
        "no sources: nothing to wait for"
    );
    let a = hub.register("a");
    let b = hub.register("b");
    let resp = route_parts(&Method::GET, "/-/ready", &none, &hub);
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = String::from_utf8(body(resp).await.to_vec()).unwrap();
    assert!(
        text.contains("- a (no refresh finished yet)\n- b (no refresh finished yet)"),
        "{text}"
    );
    let now = std::time::SystemTime::now();
    hub.succeeded(a, Default::default(), now, Duration::ZERO);
    assert_eq!(ready(&hub), StatusCode::SERVICE_UNAVAILABLE);
    hub.failed(b, Duration::ZERO, "portal start date: HTTP 503".into());
    let resp = route_parts(&Method::GET, "/-/ready", &none, &hub);
    assert_eq!(resp.status(), StatusCode::SERVICE_UNAVAILABLE);
    let text = String::from_utf8(body(resp).await.to_vec()).unwrap();
    assert_eq!(
        text,
        "not ready; waiting for the first data of:\n- b (last refresh failed: portal start date: HTTP 503)\n"
    );
    hub.succeeded(b, Default::default(), now, Duration::ZERO);
    assert_eq!(ready(&hub), StatusCode::OK);
    assert_eq!(
        route_parts(&Method::GET, "/-/healthy", &none, &hub).status(),
        StatusCode::OK
    );
}

#[tokio::test]
async fn metrics_headers_follow_the_negotiation() {
    let hub = Hub::new("test");
    let h = headers(&[
        (ACCEPT, "application/openmetrics-text;version=1.0.0"),
        (ACCEPT_ENCODING, "gzip"),
    ]);
    let resp = route_parts(&Method::GET, "/metrics", &h, &hub);
    assert_eq!(resp.headers()[CONTENT_TYPE], OPENMETRICS);
    assert_eq!(resp.headers()[CONTENT_ENCODING], "gzip");
    let gz = body(resp).await;
    assert_eq!(&gz[..2], &[0x1f, 0x8b], "a gzip stream");

    let resp = route_parts(&Method::GET, "/metrics", &HeaderMap::new(), &hub);
    assert_eq!(resp.headers()[CONTENT_TYPE], CLASSIC);
    assert!(resp.headers().get(CONTENT_ENCODING).is_none());
    let plain = body(resp).await;
    let text = std::str::from_utf8(&plain).unwrap();
    assert!(
        text.contains("# TYPE site_exporter_build_info gauge"),
        "{text}"
    );
    assert!(!text.contains("# EOF"));
}

const OPENMETRICS: &str = crate::exposition::OPENMETRICS_CONTENT_TYPE;
const CLASSIC: &str = crate::exposition::CLASSIC_CONTENT_TYPE;
