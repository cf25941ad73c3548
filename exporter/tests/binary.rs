//! The `site-exporter` binary as an operator meets it: exit status 2 and one line naming the
//! problem for bad configuration, `--check-config`, environment variables, graceful shutdown.

#![allow(clippy::unwrap_used)]

mod common;
use common::{free_port, http_get};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

fn exporter() -> Command {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_site-exporter"));
    // Start from a clean slate: the developer's own SITE_EXPORTER_* must not leak in.
    for (key, _) in std::env::vars() {
        if key.starts_with("SITE_EXPORTER_") {
            cmd.env_remove(key);
        }
    }
    cmd
}

fn run(cmd: &mut Command) -> Output {
    cmd.stdin(Stdio::null()).output().unwrap()
}

#[test]
fn invalid_configuration_exits_2_with_one_line_naming_the_problem() {
    let dir = tempfile::tempdir().unwrap();
    let bad_yaml = dir.path().join("bad.yaml");
    std::fs::write(&bad_yaml, "dummy:\n  interval: 15s\n  seeds: 3\n").unwrap();
    struct Case {
        name: &'static str,
        args: Vec<String>,
        env: Vec<(&'static str, &'static str)>,
        want: &'static str,
    }
    let args = |a: &[&str]| a.iter().map(|s| s.to_string()).collect::<Vec<_>>();
    let bad = bad_yaml.display().to_string();
    let cases = [
        Case {
            name: "no source",
            args: vec![],
            env: vec![],
            want: "no source is enabled",
        },
        Case {
            name: "zero interval",
            args: args(&["--dummy", "--dummy.interval", "0s"]),
            env: vec![],
            want: "dummy.interval",
        },
        Case {
            name: "unknown key",
            args: args(&["--config", &bad]),
            env: vec![],
            want: "unknown field `seeds`",
        },
        Case {
            name: "missing file",
            args: args(&["--config", "/nonexistent.yaml"]),
            env: vec![],
            want: "/nonexistent.yaml",
        },
        Case {
            name: "from the environment",
            args: vec![],
            env: vec![
                ("SITE_EXPORTER_DUMMY", "true"),
                ("SITE_EXPORTER_DUMMY_PROJECTS", "0"),
            ],
            want: "dummy.projects",
        },
    ];
    for Case {
        name,
        args,
        env,
        want,
    } in cases
    {
        let out = run(exporter().args(&args).envs(env).arg("--check-config"));
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "case {name}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "case {name}: one line: {stderr}");
        assert!(
            stderr.contains(want),
            "case {name}: {stderr:?} lacks {want:?}"
        );
        assert!(!stderr.contains("panicked"), "case {name}: {stderr}");
    }
    // Flags that do not parse are clap's errors: also status 2, naming the flag.
    let out = run(exporter().args(["--dummy", "--dummy.projects", "many"]));
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--dummy.projects"));
}

#[test]
fn check_config_accepts_a_valid_configuration() {
    let out = run(exporter()
        .env("SITE_EXPORTER_DUMMY", "true")
        .arg("--check-config"));
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(stdout.starts_with("configuration is valid:\n"), "{stdout}");
    for line in [
        "listen address: 0.0.0.0:9184",
        "legacy families: on",
        "source dummy: the built-in cloud, every 15s, timeout 15s",
    ] {
        assert!(stdout.contains(line), "{line} in {stdout}");
    }
}

#[test]
fn serves_then_stops_cleanly_on_sigterm() {
    let addr = format!("127.0.0.1:{}", free_port());
    let mut child = exporter()
        .args([
            "--dummy",
            "--log.format",
            "json",
            "--web.listen-address",
            &addr,
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        if http_get(&addr, "/-/ready").is_some_and(|r| r.starts_with("HTTP/1.1 200")) {
            break;
        }
        assert!(child.try_wait().unwrap().is_none(), "exporter exited early");
        assert!(Instant::now() < deadline, "exporter never became ready");
        std::thread::sleep(Duration::from_millis(50));
    }
    let metrics = http_get(&addr, "/metrics").unwrap();
    assert!(
        metrics.contains("openstack_project_vcpu_seconds_total{"),
        "{metrics}"
    );

    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(15);
    let exit = loop {
        if let Some(exit) = child.try_wait().unwrap() {
            break exit;
        }
        assert!(
            Instant::now() < deadline,
            "exporter did not stop after SIGTERM"
        );
        std::thread::sleep(Duration::from_millis(50));
    };
    assert!(exit.success(), "{exit}");
    let logs = common::stderr_of(&mut child);
    for line in logs.lines() {
        assert!(
            line.starts_with('{') && line.ends_with('}'),
            "not a JSON log line: {line}"
        );
    }
    assert!(logs.contains("shutdown signal received"), "{logs}");
}

/// `--probe` reaches libvirt once (the test driver stands in for a hypervisor) and says so;
/// a socket that is not there fails with status 1, naming the URI.
#[cfg(feature = "libvirt")]
#[test]
fn probe_reaches_libvirt_and_reports_each_backend() {
    let out = run(exporter().args([
        "--libvirt",
        "--libvirt.uri",
        "test:///default",
        "--check-config",
        "--probe",
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("probe libvirt test:///default: ok: 1 domains"),
        "{stdout}"
    );

    let out = run(exporter().args([
        "--libvirt",
        "--libvirt.uri",
        "qemu+unix:///system?socket=/nonexistent/libvirt-sock",
        "--check-config",
        "--probe",
    ]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(
        stdout
            .contains("probe libvirt qemu+unix:///system?socket=/nonexistent/libvirt-sock: FAILED"),
        "{stdout}"
    );
}
