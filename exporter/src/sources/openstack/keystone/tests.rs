#![allow(clippy::unwrap_used)]

use super::*;
use crate::sources::openstack::nova::tests::fixture;

fn recorded() -> (Vec<KeystoneProject>, Vec<Domain>) {
    let p: ProjectsPage = serde_json::from_str(&fixture("keystone_projects.json")).unwrap();
    let d: DomainsPage = serde_json::from_str(&fixture("keystone_domains.json")).unwrap();
    assert_eq!(p.links.next, None);
    (p.projects, d.domains)
}

#[test]
fn filters_on_recorded_projects() {
    struct Case {
        name: &'static str,
        input: Filters,
        want: fn(&KeystoneProject, &str) -> bool,
    }
    let s = |v: &[&str]| v.iter().map(|x| (*x).to_owned()).collect::<Vec<_>>();
    let cases = [
        Case {
            name: "no filter keeps every project",
            input: Filters::default(),
            want: |_, _| true,
        },
        Case {
            name: "domain by name",
            input: Filters {
                domains: s(&["alpha"]),
                ..Default::default()
            },
            want: |_, d| d == "alpha",
        },
        Case {
            name: "domain by id",
            input: Filters {
                domains: s(&["default"]),
                ..Default::default()
            },
            want: |p, _| p.domain_id == "default",
        },
        Case {
            name: "exclude a domain by name",
            input: Filters {
                exclude_domains: s(&["beta"]),
                ..Default::default()
            },
            want: |_, d| d != "beta",
        },
        Case {
            name: "exclude a project id",
            input: Filters {
                exclude_projects: s(&["5f5a396977cb4b7b87e4b70238a0ff6b"]),
                ..Default::default()
            },
            want: |p, _| p.id != "5f5a396977cb4b7b87e4b70238a0ff6b",
        },
        Case {
            name: "keep one project id",
            input: Filters {
                projects: s(&["5f5a396977cb4b7b87e4b70238a0ff6b"]),
                ..Default::default()
            },
            want: |p, _| p.id == "5f5a396977cb4b7b87e4b70238a0ff6b",
        },
    ];
    let (list, domains) = recorded();
    let name_of = |p: &KeystoneProject| {
        domains
            .iter()
            .find(|d| d.id == p.domain_id)
            .map(|d| d.name.clone())
            .unwrap_or_default()
    };
    for c in cases {
        let got: Vec<String> = projects(&list, &domains, &c.input)
            .into_iter()
            .map(|p| p.id)
            .collect();
        let mut want: Vec<String> = list
            .iter()
            .filter(|p| !p.is_domain && (c.want)(p, &name_of(p)))
            .map(|p| p.id.clone())
            .collect();
        want.sort();
        assert_eq!(got, want, "{}", c.name);
        assert!(!got.is_empty(), "{}: the recorded data has a match", c.name);
    }
}

#[test]
fn every_recorded_project_gets_its_domain_name() {
    let (list, domains) = recorded();
    let all = projects(&list, &domains, &Filters::default());
    assert!(all.iter().all(|p| !p.domain_name.is_empty()), "{all:?}");
}

#[test]
fn malformed_pages_are_errors() {
    for text in [
        "[]",
        r#"{"projects": [{"id": 1}]}"#,
        "{",
        r#"{"links": {}}"#,
    ] {
        assert!(
            serde_json::from_str::<ProjectsPage>(text).is_err(),
            "{text}"
        );
    }
}
