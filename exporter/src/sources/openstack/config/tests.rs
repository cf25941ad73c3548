#![allow(clippy::unwrap_used)]

use std::collections::BTreeMap;

use super::*;

fn at(rfc3339: &str) -> SystemTime {
    humantime::parse_rfc3339(rfc3339).unwrap()
}

struct Case {
    name: &'static str,
    flags: OpenstackFlags,
    yaml: Option<&'static str>,
    env: &'static [(&'static str, &'static str)],
    /// The top-level `usage_start_url`.
    start_url: Option<&'static str>,
    /// Ok(check) or Err(substring of the error).
    want: Result<fn(&Option<OpenstackConfig>) -> bool, &'static str>,
}

fn on() -> OpenstackFlags {
    OpenstackFlags {
        enabled: true,
        ..Default::default()
    }
}

#[test]
fn openstack_config_cases() {
    let cases = [
        Case {
            name: "not enabled",
            flags: OpenstackFlags::default(),
            yaml: None,
            env: &[("USAGE_EXPORTER_START_DATE", "2026-01-01")],
            start_url: None,
            want: Ok(|c| c.is_none()),
        },
        Case {
            name: "usage_start required",
            flags: on(),
            yaml: None,
            env: &[],
            start_url: None,
            want: Err("openstack.usage_start (--openstack.usage-start): required"),
        },
        Case {
            name: "section enables, defaults",
            flags: OpenstackFlags::default(),
            yaml: Some("usage_start: 2026-01-01"),
            env: &[],
            start_url: None,
            want: Ok(|c| {
                let c = c.as_ref().unwrap();
                c.usage_start == Some(at("2026-01-01T00:00:00Z"))
                    && c.schedule.interval == DEFAULT_INTERVAL
                    && c.limits == Limits::default()
                    && c.filters == Filters::default()
            }),
        },
        Case {
            name: "the state file is on by default",
            flags: on(),
            yaml: Some("usage_start: 2026-01-01"),
            env: &[],
            start_url: None,
            want: Ok(|c| {
                c.as_ref().unwrap().state_file.as_deref()
                    == Some(std::path::Path::new(DEFAULT_STATE_FILE))
            }),
        },
        Case {
            name: "an empty state file keeps the totals in memory only",
            flags: on(),
            yaml: Some("usage_start: 2026-01-01\nstate_file: ''"),
            env: &[],
            start_url: None,
            want: Ok(|c| c.as_ref().unwrap().state_file.is_none()),
        },
        Case {
            name: "an RFC 3339 offset is honoured",
            flags: OpenstackFlags::default(),
            yaml: Some("usage_start: 2024-05-01T00:00:00+02:00"),
            env: &[],
            start_url: None,
            want: Ok(|c| c.as_ref().unwrap().usage_start == Some(at("2024-04-30T22:00:00Z"))),
        },
        Case {
            name: "empty variables of the original count as unset",
            flags: on(),
            yaml: Some("usage_start: 2026-01-01"),
            env: &[
                ("USAGE_EXPORTER_START_DATE", ""),
                ("USAGE_EXPORTER_UPDATE_INTERVAL", " "),
                ("USAGE_EXPORTER_PROJECT_DOMAINS", ""),
                ("USAGE_EXPORTER_PROJECT_DOMAIN_ID", ""),
            ],
            start_url: None,
            want: Ok(|c| {
                let c = c.as_ref().unwrap();
                c.usage_start == Some(at("2026-01-01T00:00:00Z"))
                    && c.schedule.interval == DEFAULT_INTERVAL
                    && c.filters == Filters::default()
            }),
        },
        Case {
            name: "bad date names the key",
            flags: on(),
            yaml: Some("usage_start: yesterday"),
            env: &[],
            start_url: None,
            want: Err("openstack.usage_start (--openstack.usage-start): 'yesterday'"),
        },
        Case {
            name: "future start refused",
            flags: on(),
            yaml: Some("usage_start: 2999-01-01"),
            env: &[],
            start_url: None,
            want: Err("is in the future"),
        },
        Case {
            name: "unknown key",
            flags: on(),
            yaml: Some("usage_start: 2026-01-01\nbogus: 1"),
            env: &[],
            start_url: None,
            want: Err("unknown field `bogus`"),
        },
        Case {
            name: "zero concurrency",
            flags: on(),
            yaml: Some("usage_start: 2026-01-01\nconcurrency: 0"),
            env: &[],
            start_url: None,
            want: Err("openstack.concurrency"),
        },
        Case {
            name: "migration variables",
            flags: on(),
            yaml: None,
            env: &[
                ("USAGE_EXPORTER_START_DATE", "2026-02-03 04:05:06"),
                ("USAGE_EXPORTER_UPDATE_INTERVAL", "90"),
                ("USAGE_EXPORTER_PROJECT_DOMAINS", "alpha, beta"),
                ("USAGE_EXPORTER_PROJECT_DOMAIN_ID", "d-1"),
            ],
            start_url: None,
            want: Ok(|c| {
                let c = c.as_ref().unwrap();
                c.usage_start == Some(at("2026-02-03T04:05:06Z"))
                    && c.schedule.interval == Duration::from_secs(90)
                    && c.filters.domains == ["d-1"]
            }),
        },
        Case {
            name: "domain names alone",
            flags: on(),
            yaml: None,
            env: &[
                ("USAGE_EXPORTER_START_DATE", "2026-02-03"),
                ("USAGE_EXPORTER_PROJECT_DOMAINS", "alpha, beta,"),
            ],
            start_url: None,
            want: Ok(|c| c.as_ref().unwrap().filters.domains == ["alpha", "beta"]),
        },
        Case {
            name: "file beats migration variables",
            flags: on(),
            yaml: Some("usage_start: 2026-01-01\ninterval: 1m\ndomains: [x]"),
            env: &[
                ("USAGE_EXPORTER_START_DATE", "2025-01-01"),
                ("USAGE_EXPORTER_UPDATE_INTERVAL", "90"),
                ("USAGE_EXPORTER_PROJECT_DOMAINS", "alpha"),
            ],
            start_url: None,
            want: Ok(|c| {
                let c = c.as_ref().unwrap();
                c.usage_start == Some(at("2026-01-01T00:00:00Z"))
                    && c.schedule.interval == Duration::from_secs(60)
                    && c.filters.domains == ["x"]
            }),
        },
        Case {
            name: "flags beat the file",
            flags: OpenstackFlags {
                usage_start: Some("2026-03-01T00:00:00Z".into()),
                interval: Some(Duration::from_secs(5)),
                cloud: Some("site".into()),
                ..on()
            },
            yaml: Some("usage_start: 2026-01-01\ncloud: other"),
            env: &[],
            start_url: None,
            want: Ok(|c| {
                let c = c.as_ref().unwrap();
                c.usage_start == Some(at("2026-03-01T00:00:00Z"))
                    && c.schedule.interval == Duration::from_secs(5)
                    && c.cloud.as_deref() == Some("site")
            }),
        },
        Case {
            name: "a portal start URL makes usage_start optional",
            flags: on(),
            yaml: None,
            env: &[],
            start_url: Some("https://portal.example/api/start/"),
            want: Ok(|c| {
                let c = c.as_ref().unwrap();
                c.usage_start.is_none()
                    && c.usage_start_url.as_deref() == Some("https://portal.example/api/start/")
            }),
        },
        Case {
            name: "with a portal start URL a configured start is still validated",
            flags: on(),
            yaml: Some("usage_start: yesterday"),
            env: &[],
            start_url: Some("https://portal.example/api/start/"),
            want: Err("'yesterday' is not a date"),
        },
        Case {
            name: "stopped buckets default to 1d 7d 30d 90d",
            flags: on(),
            yaml: Some("usage_start: 2026-01-01"),
            env: &[],
            start_url: None,
            want: Ok(|c| {
                let days: Vec<u64> = c.as_ref().unwrap().stopped_ages.bounds().iter().map(|d| d.as_secs() / 86_400).collect();
                days == [1, 7, 30, 90]
            }),
        },
        Case {
            name: "stopped buckets from the file",
            flags: on(),
            yaml: Some("usage_start: 2026-01-01\nstopped_older_than: [12h, 14d]"),
            env: &[],
            start_url: None,
            want: Ok(|c| {
                c.as_ref().unwrap().stopped_ages.bounds()
                    == [Duration::from_secs(43_200), Duration::from_secs(14 * 86_400)]
            }),
        },
        Case {
            name: "stopped buckets: the flag beats the file",
            flags: OpenstackFlags {
                stopped_older_than: Some(vec!["2d".into()]),
                ..on()
            },
            yaml: Some("usage_start: 2026-01-01\nstopped_older_than: [12h, 14d]"),
            env: &[],
            start_url: None,
            want: Ok(|c| c.as_ref().unwrap().stopped_ages.bounds() == [Duration::from_secs(2 * 86_400)]),
        },
        Case {
            name: "stopped buckets: not a duration",
            flags: on(),
            yaml: Some("usage_start: 2026-01-01\nstopped_older_than: [1d, a week]"),
            env: &[],
            start_url: None,
            want: Err("openstack.stopped_older_than (--openstack.stopped-older-than): 'a week' is not a duration"),
        },
        Case {
            name: "stopped buckets: not increasing",
            flags: OpenstackFlags {
                stopped_older_than: Some(vec!["7d".into(), "1d".into()]),
                usage_start: Some("2026-01-01".into()),
                ..on()
            },
            yaml: None,
            env: &[],
            start_url: None,
            want: Err("strictly increasing"),
        },
        Case {
            name: "stopped buckets: zero",
            flags: on(),
            yaml: Some("usage_start: 2026-01-01\nstopped_older_than: [0s, 1d]"),
            env: &[],
            start_url: None,
            want: Err("at least one second"),
        },
        Case {
            name: "cadence: defaults",
            flags: on(),
            yaml: Some("usage_start: 2026-01-01"),
            env: &[],
            start_url: None,
            want: Ok(|c| c.as_ref().unwrap().cadence == Cadence::default()),
        },
        Case {
            name: "cadence: keys, and the flag beats the file",
            flags: OpenstackFlags {
                reconcile_interval: Some(Duration::from_secs(7200)),
                ..on()
            },
            yaml: Some("usage_start: 2026-01-01\nincremental: false\nreconcile_interval: 1h\nprojects_interval: 5m\nquotas_interval: 1d"),
            env: &[],
            start_url: None,
            want: Ok(|c| {
                c.as_ref().unwrap().cadence
                    == Cadence {
                        incremental: false,
                        reconcile: Duration::from_secs(7200),
                        projects: Duration::from_secs(300),
                        quotas: Duration::from_secs(86_400),
                    }
            }),
        },
        Case {
            name: "cadence: reconciliation more often than the refresh",
            flags: on(),
            yaml: Some("usage_start: 2026-01-01\ninterval: 10m\nreconcile_interval: 5m"),
            env: &[],
            start_url: None,
            want: Err("openstack.reconcile_interval (--openstack.reconcile-interval): 5m is shorter than the refresh interval 10m; for a full listing at every refresh set openstack.incremental: false"),
        },
        Case {
            name: "cadence: zero quotas interval",
            flags: on(),
            yaml: Some("usage_start: 2026-01-01\nquotas_interval: 0s"),
            env: &[],
            start_url: None,
            want: Err("openstack.quotas_interval: must be at least 1s"),
        },
        Case {
            name: "cadence: not a duration",
            flags: on(),
            yaml: Some("usage_start: 2026-01-01\nprojects_interval: often"),
            env: &[],
            start_url: None,
            want: Err("invalid duration 'often'"),
        },
        Case {
            name: "stopped buckets: empty",
            flags: on(),
            yaml: Some("usage_start: 2026-01-01\nstopped_older_than: []"),
            env: &[],
            start_url: None,
            want: Err("needs at least one age"),
        },
        Case {
            name: "bad legacy interval names the variable",
            flags: on(),
            yaml: None,
            env: &[
                ("USAGE_EXPORTER_START_DATE", "2026-01-01"),
                ("USAGE_EXPORTER_UPDATE_INTERVAL", "5m"),
            ],
            start_url: None,
            want: Err("USAGE_EXPORTER_UPDATE_INTERVAL: '5m'"),
        },
    ];
    for c in cases {
        let env: BTreeMap<&str, &str> = c.env.iter().copied().collect();
        let section = c.yaml.map(serde_yaml::from_str::<OpenstackSection>);
        let got = match section {
            Some(Err(e)) => Err(e.to_string()),
            Some(Ok(s)) => from_parts(&c.flags, Some(s), c.start_url, |k| {
                env.get(k).map(|v| (*v).to_owned())
            })
            .map_err(|e| e.to_string()),
            None => from_parts(&c.flags, None, c.start_url, |k| {
                env.get(k).map(|v| (*v).to_owned())
            })
            .map_err(|e| e.to_string()),
        };
        match (got, c.want) {
            (Ok(cfg), Ok(check)) => assert!(check(&cfg), "{}: {cfg:?}", c.name),
            (Err(e), Err(want)) => assert!(e.contains(want), "{}: {e}", c.name),
            (got, _) => panic!("{}: {got:?}", c.name),
        }
    }
}
