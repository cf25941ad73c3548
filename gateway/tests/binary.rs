//! The `federation-gateway` binary as an operator meets it: exit status 2 with one line naming
//! the key, `--check-config`, SIGHUP reloading, SIGTERM stopping cleanly.

#![allow(clippy::unwrap_used)]

use std::io::Read;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

mod common;

fn gateway() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_federation-gateway"));
    cmd.env_remove("FEDERATION_GATEWAY_CONFIG")
        .stdin(Stdio::null());
    cmd
}

#[test]
fn invalid_configuration_exits_2_naming_the_key() {
    let dir = tempfile::tempdir().unwrap();
    let upstream = "127.0.0.1:9".parse().unwrap();
    let good = common::write_config(dir.path(), upstream, "", "");
    let out = gateway()
        .args(["--check-config", "--config"])
        .arg(&good)
        .output()
        .unwrap();
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "configuration is valid\n"
    );

    let text = std::fs::read_to_string(&good).unwrap();
    let cases = [
        (
            "unknown key",
            text.replace("listen:", "lissen:"),
            "unknown field `lissen`",
        ),
        (
            "missing token file",
            text.replace("portal.token", "gone.token"),
            "clients[0].token_file: cannot read",
        ),
        (
            "bad selector",
            text.replace("project_usages\"", "project_usages"),
            "clients[0].allow[0]",
        ),
    ];
    for (name, yaml, want) in cases {
        let path = dir.path().join("bad.yml");
        std::fs::write(&path, yaml).unwrap();
        let out = gateway().arg("--config").arg(&path).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{name}: one line: {stderr}");
        assert!(stderr.contains(want), "{name}: {stderr:?} lacks {want:?}");
        assert!(!stderr.contains(common::TOKEN), "{name}: the token leaked");
    }
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn status_of(port: u16, token: &str) -> Option<u16> {
    use std::io::Write;
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(s, "GET /federate?match[]=up HTTP/1.1\r\nHost: g\r\nAuthorization: Bearer {token}\r\nConnection: close\r\n\r\n").ok()?;
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out.split_whitespace().nth(1)?.parse().ok()
}

fn metrics(port: u16) -> String {
    use std::io::Write;
    let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) else {
        return String::new();
    };
    let _ = s.set_read_timeout(Some(Duration::from_secs(5)));
    let _ = write!(
        s,
        "GET /metrics HTTP/1.1\r\nHost: g\r\nConnection: close\r\n\r\n"
    );
    let mut out = String::new();
    let _ = s.read_to_string(&mut out);
    out
}

fn wait_for(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(15);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn sighup_reloads_and_sigterm_stops() {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let internal = free_port();
    let old = "old-token-0123456789abcdef";
    let new = "new-token-0123456789abcdef";
    std::fs::write(dir.path().join("t.token"), old).unwrap();
    let config = |token_file: &str| {
        format!(
            "listen: 127.0.0.1:{port}\ninternal_listen: 127.0.0.1:{internal}\nupstream: {{url: 'http://127.0.0.1:9', timeout: 1s}}\nclients:\n  - name: portal\n    token_file: {token_file}\n    allow: ['{{__name__=\"x\"}}']\n"
        )
    };
    let path = dir.path().join("gateway.yml");
    std::fs::write(&path, config("t.token")).unwrap();
    let mut child = gateway()
        .args(["--log.format", "json", "--config"])
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // `up` is not in the allow-list: 403 for the right token, 401 for a wrong one.
    wait_for("the gateway to answer", || {
        status_of(port, old) == Some(403)
    });
    assert_eq!(status_of(port, new), Some(401));

    let signal = |sig: &str| {
        assert!(Command::new("kill")
            .args([sig, &child.id().to_string()])
            .status()
            .unwrap()
            .success());
    };
    std::fs::write(dir.path().join("n.token"), new).unwrap();
    std::fs::write(&path, config("n.token")).unwrap();
    signal("-HUP");
    wait_for("the new token to work", || {
        status_of(port, new) == Some(403)
    });
    assert_eq!(
        status_of(port, old),
        Some(401),
        "the old token stops working"
    );

    std::fs::write(&path, "clients: [").unwrap();
    signal("-HUP");
    wait_for("the failed reload to show", || {
        metrics(internal).contains("federation_gateway_config_last_reload_success 0")
    });
    assert_eq!(
        status_of(port, new),
        Some(403),
        "still serving with the last good configuration"
    );

    signal("-TERM");
    let deadline = Instant::now() + Duration::from_secs(40);
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        assert!(Instant::now() < deadline, "did not stop on SIGTERM");
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(status.success(), "{status}");
    let mut logs = String::new();
    child
        .stderr
        .take()
        .unwrap()
        .read_to_string(&mut logs)
        .unwrap();
    assert!(logs.contains("configuration reloaded"), "{logs}");
    assert!(logs.contains("reload failed"), "{logs}");
    assert!(
        !logs.contains(old) && !logs.contains(new),
        "a token was logged"
    );
}
