#![allow(clippy::unwrap_used)]

use std::io::Write;
use std::time::Duration;

use clap::Parser;

use super::*;
use crate::sources::dummy::{CloudSpec, Generate};

fn cli(args: &[&str]) -> Cli {
    Cli::try_parse_from(std::iter::once("site-exporter").chain(args.iter().copied())).unwrap()
}

/// Merges `args` over the YAML `file` and returns the result or the error text.
fn load(args: &[&str], file: &str) -> Result<Config, String> {
    let file = FileConfig::parse(file).map_err(|e| e.to_string())?;
    Config::merge(&cli(args), file, &MigrationEnv::default()).map_err(|e| e.to_string())
}

struct Case {
    name: &'static str,
    args: &'static [&'static str],
    file: &'static str,
    /// `Ok(check)` runs `check` on the config; `Err(text)` expects an error containing `text`.
    want: Result<fn(&Config), &'static str>,
}

#[test]
fn validation_table() {
    let cases = [
        Case {
            name: "--dummy alone: defaults",
            args: &["--dummy"],
            file: "",
            want: Ok(|c| {
                assert_eq!(c.listen_address.to_string(), "0.0.0.0:9184");
                assert_eq!(c.log.filter, "info");
                assert_eq!(c.log.format, LogFormat::Text);
                assert!(c.render.legacy_metrics);
                assert_eq!(c.legacy, LegacyOptions::default());
                let d = c.dummy.as_ref().unwrap();
                assert_eq!(d.cloud, CloudSpec::BuiltIn);
                assert_eq!(d.schedule.interval, Duration::from_secs(15));
                assert_eq!(d.schedule.timeout, Duration::from_secs(15));
            }),
        },
        Case {
            name: "dummy section enables the source",
            args: &[],
            file: "dummy: {interval: 1m30s, timeout: 5s}\nlegacy: {memory_unit: mb}\n",
            want: Ok(|c| {
                let d = c.dummy.as_ref().unwrap();
                assert_eq!(d.schedule.interval, Duration::from_secs(90));
                assert_eq!(d.schedule.timeout, Duration::from_secs(5));
                assert_eq!(c.legacy.memory_unit, MemoryUnit::Mb);
            }),
        },
        Case {
            name: "flags override the file",
            args: &[
                "--web.listen-address",
                "127.0.0.1:1234",
                "--dummy.interval",
                "2s",
                "--log.format",
                "json",
                "--legacy-metrics",
                "false",
            ],
            file:
                "web: {listen_address: '0.0.0.0:1'}\ndummy: {interval: 1h}\nlog: {format: text}\n",
            want: Ok(|c| {
                assert_eq!(c.listen_address.to_string(), "127.0.0.1:1234");
                assert_eq!(
                    c.dummy.as_ref().unwrap().schedule.interval,
                    Duration::from_secs(2)
                );
                assert_eq!(c.log.format, LogFormat::Json);
                assert!(!c.render.legacy_metrics);
            }),
        },
        Case {
            name: "generated cloud with defaults for the unset sizes",
            args: &["--dummy", "--dummy.projects", "10000", "--dummy.seed", "3"],
            file: "",
            want: Ok(|c| {
                let d = c.dummy.as_ref().unwrap();
                assert_eq!(
                    d.cloud,
                    CloudSpec::Generated(Generate {
                        projects: 10_000,
                        servers_per_project: 5,
                        seed: 3
                    })
                );
                assert_eq!(d.guests, None);
            }),
        },
        Case {
            name: "simple_vm section with the default tag",
            args: &["--dummy"],
            file: "simple_vm: {project_id: pool}\n",
            want: Ok(|c| {
                let svm = c.legacy.simple_vm.as_ref().unwrap();
                assert_eq!(
                    (svm.project_id.as_str(), svm.tag.as_str()),
                    ("pool", "project_name")
                );
            }),
        },
        Case {
            name: "simple_vm with an empty project id",
            args: &["--dummy"],
            file: "simple_vm: {project_id: '', tag: x}\n",
            want: Err("simple_vm.project_id: must not be empty"),
        },
        Case {
            name: "simple_vm without a project id",
            args: &["--dummy"],
            file: "simple_vm: {tag: x}\n",
            want: Err("missing field `project_id`"),
        },
        Case {
            name: "weights URL: refreshed every 10 usage intervals by default",
            args: &[
                "--dummy",
                "--weights.url",
                "https://portal.example/api/weights/",
            ],
            file: "",
            want: Ok(|c| {
                let w = c.weights.as_ref().unwrap();
                assert_eq!(
                    w.origin,
                    crate::sources::weights::Origin::Url(
                        "https://portal.example/api/weights/".into()
                    )
                );
                assert_eq!(w.schedule.interval, Duration::from_secs(150));
                assert_eq!(w.schedule.timeout, Duration::from_secs(30));
            }),
        },
        Case {
            name: "weights URL and file together",
            args: &[
                "--dummy",
                "--weights.url",
                "https://portal.example/w",
                "--dummy.weights",
                "/w.toml",
            ],
            file: "",
            want: Err("weights: give a weights URL or a weights file, not both"),
        },
        Case {
            name: "weights URL that is not http",
            args: &["--dummy"],
            file: "weights: {url: 'ftp://user:pw@portal/w'}\n",
            want: Err("weights.url (--weights.url): 'ftp://portal/w' is not an http(s) URL"),
        },
        Case {
            name: "missing weights file",
            args: &["--dummy", "--dummy.weights", "/nonexistent/weights.toml"],
            file: "",
            want: Err(
                "weights.file (--weights.file): cannot read weights file /nonexistent/weights.toml",
            ),
        },
        Case {
            name: "dummy and openstack together",
            args: &[
                "--dummy",
                "--openstack",
                "--openstack.usage-start",
                "2024-01-01",
            ],
            file: "",
            want: Err("openstack (--openstack): the dummy source already exports a whole cloud"),
        },
        Case {
            name: "no source",
            args: &[],
            file: "",
            want: Err("no source is enabled"),
        },
        Case {
            name: "--openstack counts as a source",
            args: &["--openstack", "--openstack.usage-start", "2026-01-01"],
            file: "",
            want: Ok(|c| {
                assert!(c.dummy.is_none());
                let o = c.openstack.as_ref().unwrap();
                assert_eq!(
                    o.usage_start,
                    Some(humantime::parse_rfc3339("2026-01-01T00:00:00Z").unwrap())
                );
            }),
        },
        Case {
            name: "the portal start URL reaches the openstack source and replaces usage_start",
            args: &[
                "--openstack",
                "--usage-start-url",
                "https://portal.example/api/start/",
            ],
            file: "",
            want: Ok(|c| {
                let o = c.openstack.as_ref().unwrap();
                assert_eq!(o.usage_start, None);
                assert_eq!(
                    o.usage_start_url.as_deref(),
                    Some("https://portal.example/api/start/")
                );
            }),
        },
        Case {
            name: "openstack: section enables the source, flags override it",
            args: &["--openstack.state-file", "/tmp/flag.json"],
            file: "openstack:\n  usage_start: 2026-01-01\n  state_file: /tmp/file.json\n",
            want: Ok(|c| {
                let o = c.openstack.as_ref().unwrap();
                assert_eq!(
                    o.state_file.as_deref(),
                    Some(std::path::Path::new("/tmp/flag.json"))
                );
            }),
        },
        Case {
            name: "openstack: unknown key",
            args: &[],
            file: "openstack:\n  usage_start: 2026-01-01\n  quota: true\n",
            want: Err("unknown field `quota`"),
        },
        Case {
            name: "dummy flag without --dummy",
            args: &["--dummy.projects", "5"],
            file: "",
            want: Err("--dummy.projects is set but the dummy source is not enabled"),
        },
        Case {
            name: "unknown top-level key",
            args: &["--dummy"],
            file: "dumy: {}\n",
            want: Err("unknown field `dumy`"),
        },
        Case {
            name: "unknown nested key names its section",
            args: &[],
            file: "dummy: {intervall: 5s}\n",
            want: Err("dummy: unknown field `intervall`"),
        },
        Case {
            name: "bad duration in the file",
            args: &[],
            file: "dummy: {interval: soon}\n",
            want: Err("invalid duration 'soon'"),
        },
        Case {
            name: "zero interval",
            args: &["--dummy", "--dummy.interval", "0s"],
            file: "",
            want: Err("dummy.interval (--dummy.interval): must be greater than zero"),
        },
        Case {
            name: "zero projects",
            args: &["--dummy", "--dummy.projects", "0"],
            file: "",
            want: Err("dummy.projects (--dummy.projects): 0 is out of range"),
        },
        Case {
            name: "file and generated cloud together",
            args: &[
                "--dummy",
                "--dummy.file",
                "/nonexistent.yaml",
                "--dummy.projects",
                "3",
            ],
            file: "",
            want: Err("exclude each other"),
        },
        Case {
            name: "unreadable dummy file",
            args: &["--dummy", "--dummy.file", "/nonexistent/cloud.yaml"],
            file: "",
            want: Err("dummy.file (--dummy.file): cannot read dummy file /nonexistent/cloud.yaml"),
        },
        Case {
            name: "bad log level",
            args: &["--dummy", "--log.level", "loud=verbose=x"],
            file: "",
            want: Err("log.level (--log.level)"),
        },
        Case {
            name: "bad listen address in the file",
            args: &["--dummy"],
            file: "web: {listen_address: 'nowhere'}\n",
            want: Err("web.listen_address"),
        },
        Case {
            name: "bad memory unit",
            args: &["--dummy"],
            file: "legacy: {memory_unit: kb}\n",
            want: Err("unknown variant `kb`"),
        },
    ];
    for case in cases {
        match (load(case.args, case.file), case.want) {
            (Ok(config), Ok(check)) => check(&config),
            (Err(got), Err(want)) => assert!(
                got.contains(want),
                "case {:?}: error {got:?} does not contain {want:?}",
                case.name
            ),
            (got, want) => panic!(
                "case {:?}: got {:?}, want {}",
                case.name,
                got.map(|_| "a config"),
                if want.is_ok() { "a config" } else { "an error" }
            ),
        }
    }
}

#[test]
fn the_original_variables_apply_where_ours_are_unset() {
    let env = MigrationEnv {
        start_date: Some("2024-01-01".into()),
        dummy_file: None,
        dummy_weights_file: None,
        start_date_url: None,
        weights_url: None,
        weights_laps: None,
        simple_vm_project_id: Some("pool".into()),
        simple_vm_tag: Some("portal_project".into()),
        verbose: true,
    };
    let config = Config::merge(&cli(&["--dummy"]), FileConfig::default(), &env).unwrap();
    assert_eq!(config.log.filter, "debug", "USAGE_EXPORTER_VERBOSE_MODE");
    let svm = config.legacy.simple_vm.unwrap();
    assert_eq!(
        (svm.project_id.as_str(), svm.tag.as_str()),
        ("pool", "portal_project")
    );
    assert_eq!(
        config.dummy.unwrap().usage_start.as_deref(),
        Some("2024-01-01")
    );

    // Ours win: the file's simple_vm section and the flag.
    let file = FileConfig::parse("simple_vm: {project_id: mine, tag: t}\n").unwrap();
    let config =
        Config::merge(&cli(&["--dummy", "--dummy.usage-start", "-1d"]), file, &env).unwrap();
    let svm = config.legacy.simple_vm.unwrap();
    assert_eq!((svm.project_id.as_str(), svm.tag.as_str()), ("mine", "t"));
    assert_eq!(config.dummy.unwrap().usage_start.as_deref(), Some("-1d"));
    let config = Config::merge(
        &cli(&["--dummy", "--log.level", "warn"]),
        FileConfig::default(),
        &env,
    )
    .unwrap();
    assert_eq!(
        config.log.filter, "warn",
        "our flag wins over the verbose mode"
    );

    // USAGE_EXPORTER_DUMMY_FILE alone enables the dummy source; a bad start date is named.
    let dir = tempfile::tempdir().unwrap();
    let cloud = dir.path().join("cloud.toml");
    std::fs::write(&cloud, "[d]\ndomain_id = \"d\"\n").unwrap();
    let env = MigrationEnv {
        dummy_file: Some(cloud.clone()),
        start_date: Some("whenever".into()),
        ..MigrationEnv::default()
    };
    let err = Config::merge(&cli(&[]), FileConfig::default(), &env)
        .unwrap_err()
        .to_string();
    assert!(
        err.starts_with("dummy.usage_start (--dummy.usage-start): "),
        "{err}"
    );
    let env = MigrationEnv {
        dummy_file: Some(cloud.clone()),
        ..MigrationEnv::default()
    };
    let config = Config::merge(&cli(&[]), FileConfig::default(), &env).unwrap();
    assert_eq!(config.dummy.unwrap().cloud, CloudSpec::File(cloud));
}

#[test]
fn weights_frequency_in_laps_from_the_original_variable() {
    let env = MigrationEnv {
        weights_url: Some("http://portal.example/w".into()),
        weights_laps: Some("4".into()),
        ..MigrationEnv::default()
    };
    let config = Config::merge(
        &cli(&["--dummy", "--dummy.interval", "30s"]),
        FileConfig::default(),
        &env,
    )
    .unwrap();
    assert_eq!(
        config.weights.unwrap().schedule.interval,
        Duration::from_secs(120)
    );
    let env = MigrationEnv {
        weights_laps: Some("often".into()),
        ..env
    };
    let err = Config::merge(&cli(&["--dummy"]), FileConfig::default(), &env)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("USAGE_EXPORTER_WEIGHT_UPDATE_FREQUENCY: 'often'"),
        "{err}"
    );
}

#[test]
fn dummy_file_is_checked_at_load() {
    let mut f = tempfile::NamedTempFile::new().unwrap();
    writeln!(f, "domains:\n  - name: d\n    projects:\n      - name: p\n        servers:\n          - {{name: s, flavor: nope}}").unwrap();
    let err = load(&["--dummy", "--dummy.file", f.path().to_str().unwrap()], "").unwrap_err();
    assert!(
        err.contains("flavor 'nope' is not in the flavors table"),
        "{err}"
    );
    assert!(err.contains("servers[0] (s)"), "{err}");
}

#[test]
fn config_file_errors_name_the_file() {
    let err = Config::load(&cli(&["--config", "/nonexistent/site.yaml"])).unwrap_err();
    assert!(
        err.to_string()
            .contains("cannot read config file /nonexistent/site.yaml"),
        "{err}"
    );
}

#[test]
fn environment_variables_set_flags() {
    // Every flag must read SITE_EXPORTER_<FLAG>, dots and dashes as underscores. (The binary
    // tests set a variable for real.)
    let cmd = <Cli as clap::CommandFactory>::command();
    for arg in cmd.get_arguments() {
        let Some(long) = arg.get_long() else { continue };
        if long == "help" || long == "version" || long == "check-config" || long == "probe" {
            continue;
        }
        let want = format!(
            "SITE_EXPORTER_{}",
            long.replace(['.', '-'], "_").to_ascii_uppercase()
        );
        let got = arg.get_env().map(|e| e.to_string_lossy().into_owned());
        assert_eq!(got.as_deref(), Some(want.as_str()), "flag --{long}");
    }
}

#[test]
fn the_summary_names_every_source_without_secrets() {
    let config = load(
        &["--openstack"],
        "usage_start_url: https://user:secret@portal.example/start?token=t0ps3cret\nopenstack:\n  quotas: true\n  state_file: /var/lib/site-exporter/state.json\nweights:\n  url: https://portal.example/weights?key=k3y\n",
    )
    .unwrap();
    let text = config.summary();
    for want in [
        "source openstack: OS_* variables, start from the portal (https://portal.example/start), state file /var/lib/site-exporter/state.json, quotas on, every 300s",
        "credit weights: URL https://portal.example/weights,",
    ] {
        assert!(text.contains(want), "{want} in {text}");
    }
    for secret in ["secret", "t0ps3cret", "k3y", "user"] {
        assert!(!text.contains(secret), "{secret} in {text}");
    }
}

#[test]
fn an_empty_state_file_flag_keeps_the_totals_in_memory() {
    let config = load(
        &[
            "--openstack",
            "--openstack.usage-start",
            "2026-01-01",
            "--openstack.state-file",
            "",
        ],
        "",
    )
    .unwrap();
    assert_eq!(config.openstack.unwrap().state_file, None);
    let config = load(
        &["--openstack", "--openstack.usage-start", "2026-01-01"],
        "",
    )
    .unwrap();
    assert_eq!(
        config.openstack.unwrap().state_file.as_deref(),
        Some(std::path::Path::new("data/openstack-state.json"))
    );
}
