#![allow(clippy::unwrap_used)]

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

const LIMIT: usize = 16384;

fn head(target: &str, extra: &str) -> String {
    format!("GET {target} HTTP/1.1\r\nHost: g\r\n{extra}\r\n")
}

#[test]
fn scan_table() {
    struct Case {
        name: &'static str,
        input: String,
        want: Result<(&'static str, bool), Scan>,
    }
    let q = r#"/federate?match[]={job="x",a!~"<y>"}"#;
    let cases = [
        Case {
            name: "raw quotes and angle brackets in the query are encoded",
            input: head(q, ""),
            want: Ok(("/federate?match[]={job=%22x%22,a!~%22%3Cy%3E%22}", false)),
        },
        Case {
            name: "an already encoded target is unchanged",
            input: head("/federate?match%5B%5D=%7Bjob%3D%22x%22%7D", ""),
            want: Ok(("/federate?match%5B%5D=%7Bjob%3D%22x%22%7D", false)),
        },
        Case {
            name: "quotes in the path stay (the http crate decides)",
            input: head("/fed\"erate?a=\"", ""),
            want: Ok(("/fed\"erate?a=%22", false)),
        },
        Case {
            name: "a second ? is query text",
            input: head("/f?a=?\"", ""),
            want: Ok(("/f?a=?%22", false)),
        },
        Case {
            name: "nothing after # is touched",
            input: head("/f?a=\"#\"<", ""),
            want: Ok(("/f?a=%22#\"<", false)),
        },
        Case {
            name: "bare LF line endings, as httparse accepts",
            input: "GET /f?a=\" HTTP/1.1\nHost: g\n\n".into(),
            want: Ok(("/f?a=%22", false)),
        },
        Case {
            name: "a body may follow: Content-Length",
            input: head("/f?a=\"", "content-LENGTH: 0\r\n"),
            want: Ok(("/f?a=%22", true)),
        },
        Case {
            name: "a body may follow: Transfer-Encoding",
            input: head("/f", "Transfer-Encoding: chunked\r\n"),
            want: Ok(("/f", true)),
        },
        Case {
            name: "another protocol may follow: Upgrade",
            input: head("/f", "Upgrade: h2c\r\n"),
            want: Ok(("/f", true)),
        },
        Case {
            name: "CONNECT",
            input: "CONNECT 127.0.0.1:1 HTTP/1.1\r\nHost: g\r\n\r\n".into(),
            want: Ok(("127.0.0.1:1", true)),
        },
        Case {
            name: "not yet complete",
            input: "GET /f?a=\" HTTP/1.1\r\nHost: g\r\n".into(),
            want: Err(Scan::Partial),
        },
        Case {
            name: "the HTTP/2 preface",
            input: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n".into(),
            want: Err(Scan::Pass),
        },
        Case {
            name: "a space in the target",
            input: "GET /f?a=\" b HTTP/1.1\r\n\r\n".into(),
            want: Err(Scan::Pass),
        },
        Case {
            name: "a control character in the target",
            input: "GET /f?a=\u{1} HTTP/1.1\r\n\r\n".into(),
            want: Err(Scan::Pass),
        },
        Case {
            name: "an incomplete head past the limit",
            input: format!("GET /f HTTP/1.1\r\nX: {}", "a".repeat(LIMIT)),
            want: Err(Scan::Pass),
        },
    ];
    for case in cases {
        let got = scan(case.input.as_bytes(), LIMIT);
        match (got, case.want) {
            (
                Scan::Head {
                    len,
                    head,
                    body_follows,
                },
                Ok((target, follows)),
            ) => {
                assert_eq!(len, case.input.len(), "case {}", case.name);
                let text = String::from_utf8(head).unwrap();
                let line = text.lines().next().unwrap();
                let got_target = line.split(' ').nth(1).unwrap();
                assert_eq!(got_target, target, "case {}", case.name);
                assert_eq!(body_follows, follows, "case {}", case.name);
                // Only the target changed.
                let original_line = case.input.lines().next().unwrap();
                let original_target = original_line.split(' ').nth(1).unwrap();
                assert_eq!(
                    text,
                    case.input.replacen(original_target, target, 1),
                    "case {}",
                    case.name
                );
            }
            (got, Err(want)) => assert_eq!(got, want, "case {}", case.name),
            (got, want) => panic!("case {}: got {got:?}, want {want:?}", case.name),
        }
    }
}

/// Feeds `chunks` through an `Intake` and returns what hyper would read.
async fn through(chunks: Vec<Vec<u8>>, mode_h2: bool) -> Vec<u8> {
    let (mut client, server) = tokio::io::duplex(64);
    let mut intake = if mode_h2 {
        Intake::http2(server, Duration::from_secs(10))
    } else {
        Intake::new(server, LIMIT, Duration::from_secs(10))
    };
    let writer = tokio::spawn(async move {
        for c in chunks {
            client.write_all(&c).await.unwrap();
            tokio::task::yield_now().await;
        }
    });
    let mut out = Vec::new();
    intake.read_to_end(&mut out).await.unwrap();
    writer.await.unwrap();
    out
}

#[tokio::test]
async fn pipelined_heads_split_anywhere_are_each_encoded() {
    let two = format!("{}{}", head("/f?a=\"1\"", ""), head("/f?b=\"2\"", ""));
    let want = format!("{}{}", head("/f?a=%221%22", ""), head("/f?b=%222%22", ""));
    for split in [1, 7, two.len() / 2, two.len() - 1] {
        let bytes = two.as_bytes();
        let chunks = vec![bytes[..split].to_vec(), bytes[split..].to_vec()];
        assert_eq!(
            String::from_utf8(through(chunks, false).await).unwrap(),
            want,
            "split at {split}"
        );
    }
    // Byte by byte.
    let chunks = two.bytes().map(|b| vec![b]).collect();
    assert_eq!(
        String::from_utf8(through(chunks, false).await).unwrap(),
        want
    );
}

#[tokio::test]
async fn after_a_body_or_garbage_everything_passes_unchanged() {
    struct Case {
        name: &'static str,
        input: String,
        want: String,
    }
    let with_body = head("/f?a=\"", "Content-Length: 5\r\n");
    let cases = [
        Case {
            name: "a body, then what looks like a head",
            input: format!("{with_body}GET /f?x=\" HTTP/1.1\r\n\r\n"),
            want: format!(
                "{}GET /f?x=\" HTTP/1.1\r\n\r\n",
                head("/f?a=%22", "Content-Length: 5\r\n")
            ),
        },
        Case {
            name: "not HTTP/1",
            input: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nGET /f?a=\" HTTP/1.1\r\n\r\n".into(),
            want: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\nGET /f?a=\" HTTP/1.1\r\n\r\n".into(),
        },
        Case {
            name: "an unfinished head at the end",
            input: "GET /f?a=\" HTT".into(),
            want: "GET /f?a=\" HTT".into(),
        },
    ];
    for case in cases {
        let got = through(vec![case.input.into_bytes()], false).await;
        assert_eq!(String::from_utf8(got).unwrap(), case.want, "{}", case.name);
    }
    // A connection known to be HTTP/2 is never rewritten.
    let h1 = head("/f?a=\"", "");
    assert_eq!(
        through(vec![h1.clone().into_bytes()], true).await,
        h1.as_bytes()
    );
}

#[tokio::test(start_paused = true)]
async fn silent_clients_time_out_before_their_first_request() {
    for h2 in [false, true] {
        let (mut client, server) = tokio::io::duplex(64);
        let timeout = Duration::from_secs(10);
        let mut intake = if h2 {
            Intake::http2(server, timeout)
        } else {
            Intake::new(server, LIMIT, timeout)
        };
        // Part of a request, then nothing.
        client.write_all(b"GET /f HTTP/1.1\r\n").await.unwrap();
        let started = tokio::time::Instant::now();
        let mut buf = [0u8; 64];
        let err = loop {
            match intake.read(&mut buf).await {
                Ok(0) => panic!("h2={h2}: EOF instead of a timeout"),
                Ok(_) => continue,
                Err(e) => break e,
            }
        };
        assert_eq!(err.kind(), io::ErrorKind::TimedOut, "h2={h2}");
        assert!(started.elapsed() >= timeout, "h2={h2}");
    }
    // Once the first head is in, the deadline is gone (hyper's own timeout takes over).
    let (mut client, server) = tokio::io::duplex(64);
    let mut intake = Intake::new(server, LIMIT, Duration::from_secs(10));
    client.write_all(head("/f", "").as_bytes()).await.unwrap();
    let mut buf = vec![0u8; 256];
    let n = intake.read(&mut buf).await.unwrap();
    assert_eq!(&buf[..n], head("/f", "").as_bytes());
    let pending = tokio::time::timeout(Duration::from_secs(60), intake.read(&mut buf)).await;
    assert!(pending.is_err(), "no deadline after the first head");
}

/// What `Intake` must produce for `input`: each head rewritten by `scan`, in order, and
/// everything from the first head with a body (or the first non-head) on unchanged.
fn expected(input: &[u8]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut rest = input;
    while let Scan::Head {
        len,
        head,
        body_follows,
    } = scan(rest, LIMIT)
    {
        out.extend_from_slice(&head);
        rest = &rest[len..];
        if body_follows {
            break;
        }
    }
    out.extend_from_slice(rest);
    out
}

proptest::proptest! {
    #![proptest_config(proptest::test_runner::Config { cases: 300, ..Default::default() })]

    /// However the bytes arrive, hyper reads the same rewritten stream.
    #[test]
    fn any_chunking_gives_the_same_stream(
        targets in proptest::collection::vec("/f(\\?[a-z\"<>#?{}=&%]{0,12})?", 1..4),
        body_after in proptest::option::of(0usize..4),
        cuts in proptest::collection::vec(1usize..40, 0..12),
    ) {
        let mut input = String::new();
        for (i, t) in targets.iter().enumerate() {
            let extra = if body_after == Some(i) { "Content-Length: 0\r\n" } else { "" };
            input.push_str(&head(t, extra));
        }
        let input = input.into_bytes();
        let mut chunks = Vec::new();
        let mut at = 0;
        for c in cuts {
            let end = (at + c).min(input.len());
            chunks.push(input[at..end].to_vec());
            at = end;
        }
        chunks.push(input[at..].to_vec());
        let rt = tokio::runtime::Builder::new_current_thread().enable_time().build().unwrap();
        let got = rt.block_on(through(chunks, false));
        proptest::prop_assert_eq!(got, expected(&input));
    }
}
