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
            want: Ok(|c| c.is_none()),
        },
        Case {
            name: "usage_start required",
            flags: on(),
            yaml: None,
            env: &[],
            want: Err("openstack.usage_start (--openstack.usage-start): required"),
        },
        Case {
            name: "section enables, defaults",
            flags: OpenstackFlags::default(),
            yaml: Some("usage_start: 2026-01-01"),
            env: &[],
            want: Ok(|c| {
                let c = c.as_ref().unwrap();
                c.usage_start == at("2026-01-01T00:00:00Z")
                    && c.schedule.interval == DEFAULT_INTERVAL
                    && c.limits == Limits::default()
                    && c.filters == Filters::default()
            }),
        },
        Case {
            name: "bad date names the key",
            flags: on(),
            yaml: Some("usage_start: yesterday"),
            env: &[],
            want: Err("openstack.usage_start (--openstack.usage-start): 'yesterday'"),
        },
        Case {
            name: "future start refused",
            flags: on(),
            yaml: Some("usage_start: 2999-01-01"),
            env: &[],
            want: Err("is in the future"),
        },
        Case {
            name: "unknown key",
            flags: on(),
            yaml: Some("usage_start: 2026-01-01\nbogus: 1"),
            env: &[],
            want: Err("unknown field `bogus`"),
        },
        Case {
            name: "zero concurrency",
            flags: on(),
            yaml: Some("usage_start: 2026-01-01\nconcurrency: 0"),
            env: &[],
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
            want: Ok(|c| {
                let c = c.as_ref().unwrap();
                c.usage_start == at("2026-02-03T04:05:06Z")
                    && c.schedule.interval == Duration::from_secs(90)
                    && c.filters.domains == ["alpha", "beta", "d-1"]
            }),
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
            want: Ok(|c| {
                let c = c.as_ref().unwrap();
                c.usage_start == at("2026-01-01T00:00:00Z")
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
            want: Ok(|c| {
                let c = c.as_ref().unwrap();
                c.usage_start == at("2026-03-01T00:00:00Z")
                    && c.schedule.interval == Duration::from_secs(5)
                    && c.cloud.as_deref() == Some("site")
            }),
        },
        Case {
            name: "bad legacy interval names the variable",
            flags: on(),
            yaml: None,
            env: &[
                ("USAGE_EXPORTER_START_DATE", "2026-01-01"),
                ("USAGE_EXPORTER_UPDATE_INTERVAL", "5m"),
            ],
            want: Err("USAGE_EXPORTER_UPDATE_INTERVAL: '5m'"),
        },
    ];
    for c in cases {
        let env: BTreeMap<&str, &str> = c.env.iter().copied().collect();
        let section = c.yaml.map(serde_yaml::from_str::<OpenstackSection>);
        let got = match section {
            Some(Err(e)) => Err(e.to_string()),
            Some(Ok(s)) => from_parts(&c.flags, Some(s), |k| env.get(k).map(|v| (*v).to_owned()))
                .map_err(|e| e.to_string()),
            None => from_parts(&c.flags, None, |k| env.get(k).map(|v| (*v).to_owned()))
                .map_err(|e| e.to_string()),
        };
        match (got, c.want) {
            (Ok(cfg), Ok(check)) => assert!(check(&cfg), "{}: {cfg:?}", c.name),
            (Err(e), Err(want)) => assert!(e.contains(want), "{}: {e}", c.name),
            (got, _) => panic!("{}: {got:?}", c.name),
        }
    }
}
