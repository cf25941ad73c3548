//! Configuration of the libvirt source: flags, the `libvirt:` file section, and what a build
//! without the `libvirt` feature says. Runs with and without the feature.

use site_exporter::cli::Cli;
use site_exporter::config::{Config, ConfigError, FileConfig};
use site_exporter::sources::libvirt::LibvirtConfig;

fn file(yaml: &str) -> Result<FileConfig, ConfigError> {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("config.yaml");
    std::fs::write(&path, yaml).expect("write config");
    FileConfig::read(&path)
}

fn load(cli: Cli, yaml: &str) -> Result<Config, String> {
    let file = file(yaml).map_err(|e| e.to_string())?;
    Config::merge(&cli, file, &site_exporter::config::MigrationEnv::default())
        .map_err(|e| e.to_string())
}

#[cfg(feature = "libvirt")]
fn libvirt(uri: &str, interval: u64, timeout: u64) -> Option<LibvirtConfig> {
    use site_exporter::settings::Schedule;
    use std::time::Duration;
    Some(LibvirtConfig {
        uri: uri.to_string(),
        schedule: Schedule {
            interval: Duration::from_secs(interval),
            timeout: Duration::from_secs(timeout),
        },
        event_grace: Duration::from_secs(3600),
    })
}

/// What a case expects: the libvirt settings, or an error containing every given piece.
enum Want {
    Libvirt(Option<LibvirtConfig>),
    Error(&'static [&'static str]),
}

struct Case {
    name: &'static str,
    cli: Cli,
    yaml: &'static str,
    want: Want,
}

fn enabled() -> Cli {
    Cli {
        libvirt: true,
        ..Cli::default()
    }
}

fn check(cases: Vec<Case>) {
    for case in cases {
        let got = load(case.cli, case.yaml);
        match (case.want, got) {
            (Want::Libvirt(want), Ok(config)) => assert_eq!(config.libvirt, want, "{}", case.name),
            (Want::Error(pieces), Err(e)) => {
                for p in pieces {
                    assert!(e.contains(p), "{}: '{e}' lacks '{p}'", case.name);
                }
            }
            (Want::Libvirt(_), Err(e)) => panic!("{}: unexpected error {e}", case.name),
            (Want::Error(_), Ok(c)) => {
                panic!("{}: expected an error, got {:?}", case.name, c.libvirt)
            }
        }
    }
}

#[test]
fn settings_that_do_not_depend_on_the_feature() {
    check(vec![
        Case {
            name: "no source at all names both",
            cli: Cli::default(),
            yaml: "",
            want: Want::Error(&["sources", "--dummy", "--libvirt"]),
        },
        Case {
            name: "a libvirt flag without --libvirt",
            cli: Cli {
                dummy: true,
                libvirt_uri: Some("test:///x".into()),
                ..Cli::default()
            },
            yaml: "",
            want: Want::Error(&["--libvirt.uri", "not enabled"]),
        },
        Case {
            name: "the event grace without --libvirt",
            cli: Cli {
                dummy: true,
                libvirt_event_grace: Some(std::time::Duration::from_secs(60).into()),
                ..Cli::default()
            },
            yaml: "",
            want: Want::Error(&["--libvirt.event-grace", "not enabled"]),
        },
        Case {
            name: "dummy only: no libvirt",
            cli: Cli {
                dummy: true,
                ..Cli::default()
            },
            yaml: "",
            want: Want::Libvirt(None),
        },
        Case {
            name: "an unknown key in the libvirt section",
            cli: Cli::default(),
            yaml: "libvirt:\n  url: qemu:///system\n",
            want: Want::Error(&["unknown field `url`"]),
        },
    ]);
}

#[cfg(feature = "libvirt")]
#[test]
fn settings_with_the_feature() {
    use std::time::Duration;
    check(vec![
        Case {
            name: "defaults",
            cli: enabled(),
            yaml: "",
            want: Want::Libvirt(libvirt("qemu:///system", 15, 15)),
        },
        Case {
            name: "the section alone enables it",
            cli: Cli::default(),
            yaml: "libvirt:\n  uri: test:///default\n  interval: 30s\n  timeout: 5s\n",
            want: Want::Libvirt(libvirt("test:///default", 30, 5)),
        },
        Case {
            name: "flags override the file; timeout follows the interval",
            cli: Cli {
                libvirt_uri: Some("qemu+ssh://h/system".into()),
                libvirt_interval: Some(Duration::from_secs(60).into()),
                ..enabled()
            },
            yaml: "libvirt:\n  uri: test:///default\n  interval: 30s\n",
            want: Want::Libvirt(libvirt("qemu+ssh://h/system", 60, 60)),
        },
        Case {
            name: "dummy and libvirt would both export libvirt_*",
            cli: Cli {
                dummy: true,
                ..enabled()
            },
            yaml: "",
            want: Want::Error(&["--libvirt", "not both"]),
        },
        Case {
            name: "zero interval",
            cli: Cli {
                libvirt_interval: Some(Duration::ZERO.into()),
                ..enabled()
            },
            yaml: "",
            want: Want::Error(&[
                "libvirt.interval",
                "--libvirt.interval",
                "greater than zero",
            ]),
        },
        Case {
            name: "zero timeout",
            cli: enabled(),
            yaml: "libvirt:\n  timeout: 0s\n",
            want: Want::Error(&["libvirt.timeout", "greater than zero"]),
        },
        Case {
            name: "the event grace from the file",
            cli: enabled(),
            yaml: "libvirt:\n  event_grace: 20m\n",
            want: Want::Libvirt(libvirt("qemu:///system", 15, 15).map(|c| LibvirtConfig {
                event_grace: Duration::from_secs(1200),
                ..c
            })),
        },
        Case {
            name: "the event grace flag wins",
            cli: Cli {
                libvirt_event_grace: Some(Duration::from_secs(7200).into()),
                ..enabled()
            },
            yaml: "libvirt:\n  event_grace: 20m\n",
            want: Want::Libvirt(libvirt("qemu:///system", 15, 15).map(|c| LibvirtConfig {
                event_grace: Duration::from_secs(7200),
                ..c
            })),
        },
        Case {
            name: "zero event grace",
            cli: enabled(),
            yaml: "libvirt:\n  event_grace: 0s\n",
            want: Want::Error(&[
                "libvirt.event_grace",
                "--libvirt.event-grace",
                "greater than zero",
            ]),
        },
        Case {
            name: "empty uri",
            cli: Cli {
                libvirt_uri: Some(" ".into()),
                ..enabled()
            },
            yaml: "",
            want: Want::Error(&["libvirt.uri", "empty"]),
        },
    ]);
}

#[cfg(not(feature = "libvirt"))]
#[test]
fn without_the_feature_asking_for_libvirt_is_a_clear_error() {
    check(vec![
        Case {
            name: "flag",
            cli: enabled(),
            yaml: "",
            want: Want::Error(&["--libvirt", "built without the libvirt feature"]),
        },
        Case {
            name: "section",
            cli: Cli::default(),
            yaml: "libvirt: {}\n",
            want: Want::Error(&["libvirt", "built without the libvirt feature"]),
        },
    ]);
}
