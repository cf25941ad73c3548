//! The source end to end against a local Keystone + Nova serving recorded shapes.
#![allow(clippy::unwrap_used)]

mod fake;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use fake::{Fake, Fault, PASSWORD};
use osauth::common::IdOrName;

use super::*;
use crate::sources::openstack::client::Limits;

const START: &str = "2026-11-21T00:00:00Z";

fn at(rfc3339: &str) -> SystemTime {
    humantime::parse_rfc3339(rfc3339).unwrap()
}

fn fast() -> Limits {
    Limits {
        concurrency: 2,
        request_timeout: Duration::from_secs(10),
        retries: 2,
        backoff: Duration::from_millis(10),
    }
}

async fn session(fake: &Fake) -> Result<osauth::Session, osauth::Error> {
    let auth = osauth::identity::Password::new(fake.auth_url(), "admin", PASSWORD, "Default")?
        .with_project_scope(
            IdOrName::Name("admin".into()),
            IdOrName::Name("Default".into()),
        );
    osauth::Session::new(auth).await
}

async fn source(fake: &Fake, state_file: Option<PathBuf>, limits: Limits) -> OpenstackSource {
    source_with(fake, state_file, limits, false).await
}

async fn source_with(
    fake: &Fake,
    state_file: Option<PathBuf>,
    limits: Limits,
    quotas: bool,
) -> OpenstackSource {
    let f = fake.clone();
    let connect: client::Connect = std::sync::Arc::new(move || {
        let f = f.clone();
        Box::pin(async move { session(&f).await })
    });
    let client = Client::connect(connect, limits).await.unwrap();
    OpenstackSource::new(
        client,
        Settings {
            usage_start: at(START),
            state_file,
            cloud: fake.auth_url(),
            filters: Filters::default(),
            memory_unit: MemoryUnit::Gib,
            quotas,
        },
    )
    .unwrap()
}

/// vCPU-seconds per tenant over the four recorded pages, computed from the fixtures.
fn recorded_vcpu_seconds() -> BTreeMap<String, f64> {
    let mut want = BTreeMap::new();
    for p in 1..=4 {
        let text = nova::tests::fixture(&format!(
            "nova_os-simple-tenant-usage_detailed_mv2.40_limit3_page{p}.json"
        ));
        for t in serde_json::from_str::<UsagePage>(&text)
            .unwrap()
            .tenant_usages
        {
            for s in t.server_usages {
                *want.entry(t.tenant_id.clone()).or_insert(0.0) +=
                    s.hours * s.vcpus as f64 * 3600.0;
            }
        }
    }
    want
}

fn vcpu_seconds(snap: &ProjectsSnapshot) -> BTreeMap<String, f64> {
    snap.projects
        .iter()
        .filter(|p| p.totals.vcpu_seconds > 0.0)
        .map(|p| (p.project.id.clone(), p.totals.vcpu_seconds))
        .collect()
}

fn close(a: &BTreeMap<String, f64>, b: &BTreeMap<String, f64>) -> bool {
    a.len() == b.len()
        && a.iter()
            .all(|(k, v)| b.get(k).is_some_and(|w| (v - w).abs() < 1e-6))
}

#[tokio::test]
async fn first_refresh_follows_every_page_then_only_the_new_window() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let mut src = source(&fake, Some(dir.path().join("state.json")), fast()).await;

    let snap = src.refresh(at("2026-11-22T14:48:46.750Z")).await.unwrap();
    let want = recorded_vcpu_seconds();
    assert!(
        close(&vcpu_seconds(&snap), &want),
        "{:?} != {want:?}",
        vcpu_seconds(&snap)
    );
    let usage = fake.seen("/v2.1/os-simple-tenant-usage");
    assert_eq!(usage.len(), 4, "one request per recorded page");
    for u in &usage {
        assert_eq!(u.query["start"], "2026-11-21T00:00:00");
        assert_eq!(u.query["end"], "2026-11-22T14:48:46");
        assert_eq!(u.query["detailed"], "1");
        assert_eq!(u.microversion.as_deref(), Some("2.40"));
    }
    assert!(!usage[0].query.contains_key("marker"));
    assert!(usage[1..].iter().all(|u| u.query.contains_key("marker")));
    // Names and domains from Keystone, allocation and statuses from the servers list.
    assert!(snap
        .projects
        .iter()
        .all(|p| !p.project.name.is_empty() && !p.project.domain_name.is_empty()));
    let instances: u64 = snap
        .projects
        .iter()
        .flat_map(|p| p.instances.values())
        .sum();
    assert_eq!(instances, 10);
    let servers = fake.seen("/v2.1/servers/detail");
    assert_eq!(servers[0].microversion.as_deref(), Some("2.47"));
    assert_eq!(servers[0].query["all_tenants"], "1");

    // The next refresh asks only for [previous end, now) and adds it.
    let snap2 = src.refresh(at("2026-11-22T15:00:00Z")).await.unwrap();
    let usage = fake.seen("/v2.1/os-simple-tenant-usage");
    assert_eq!(usage.len(), 8);
    assert_eq!(usage[4].query["start"], "2026-11-22T14:48:46");
    assert_eq!(usage[4].query["end"], "2026-11-22T15:00:00");
    let doubled: BTreeMap<_, _> = want.iter().map(|(k, v)| (k.clone(), 2.0 * v)).collect();
    assert!(close(&vcpu_seconds(&snap2), &doubled));

    // A new process resumes from the state file: the window continues, totals are kept.
    let mut resumed = source(&fake, Some(dir.path().join("state.json")), fast()).await;
    assert_eq!(resumed.accounting(), src.accounting());
    resumed.refresh(at("2026-11-22T15:10:00Z")).await.unwrap();
    assert_eq!(
        fake.seen("/v2.1/os-simple-tenant-usage")[8].query["start"],
        "2026-11-22T15:00:00"
    );
}

#[tokio::test]
async fn a_refresh_failing_part_way_adds_nothing_and_the_next_covers_the_gap() {
    struct Case {
        name: &'static str,
        input: Vec<(&'static str, Fault)>,
        want_error: &'static str,
    }
    let cases = [
        Case {
            name: "malformed second usage page",
            input: vec![
                ("/v2.1/os-simple-tenant-usage", Fault::Pass),
                ("/v2.1/os-simple-tenant-usage", Fault::Malformed),
            ],
            want_error: "compute /os-simple-tenant-usage: malformed response",
        },
        Case {
            name: "unexpected JSON shape on usage",
            input: vec![("/v2.1/os-simple-tenant-usage", Fault::Status(200, None))],
            want_error: "compute /os-simple-tenant-usage: malformed response",
        },
        Case {
            name: "403 on usage names the policy",
            input: vec![("/v2.1/os-simple-tenant-usage", Fault::Status(403, None))],
            want_error: "os_compute_api:os-simple-tenant-usage:list",
        },
        Case {
            name: "500 until retries run out",
            input: vec![("/v2.1/servers", Fault::Status(500, None)); 3],
            want_error: "compute /servers/detail: giving up after 2 retries",
        },
    ];
    for c in cases {
        let fake = Fake::start().await;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("state.json");
        let mut src = source(&fake, Some(path.clone()), fast()).await;
        src.refresh(at("2026-11-22T00:00:00Z")).await.unwrap();
        let before = src.accounting().clone();
        let saved = std::fs::read(&path).unwrap();
        for (prefix, fault) in &c.input {
            fake.fault(prefix, fault.clone());
        }
        let err = src
            .refresh(at("2026-11-22T01:00:00Z"))
            .await
            .unwrap_err()
            .to_string();
        assert!(err.contains(c.want_error), "{}: {err}", c.name);
        assert_eq!(src.accounting(), &before, "{}", c.name);
        assert_eq!(
            std::fs::read(&path).unwrap(),
            saved,
            "{}: state untouched",
            c.name
        );
        src.refresh(at("2026-11-22T02:00:00Z")).await.unwrap();
        let last = fake.seen("/v2.1/os-simple-tenant-usage").pop().unwrap();
        assert_eq!(last.query["start"], "2026-11-22T00:00:00", "{}", c.name);
        assert_eq!(last.query["end"], "2026-11-22T02:00:00", "{}", c.name);
    }
}

#[tokio::test]
async fn transient_faults_are_retried() {
    struct Case {
        name: &'static str,
        input: Fault,
        want_status: &'static str,
    }
    let cases = [
        Case {
            name: "500 then success",
            input: Fault::Status(500, None),
            want_status: "500",
        },
        Case {
            name: "503 then success",
            input: Fault::Status(503, None),
            want_status: "503",
        },
        Case {
            name: "429 with Retry-After",
            input: Fault::Status(429, Some(1)),
            want_status: "429",
        },
    ];
    for c in cases {
        let fake = Fake::start().await;
        let mut src = source(&fake, None, fast()).await;
        fake.fault("/v2.1/os-simple-tenant-usage", c.input.clone());
        let started = std::time::Instant::now();
        src.refresh(at("2026-11-22T00:00:00Z")).await.unwrap();
        if let Fault::Status(_, Some(secs)) = c.input {
            assert!(
                started.elapsed() >= Duration::from_secs(secs),
                "{}: Retry-After honoured",
                c.name
            );
        }
        let stats = src.client().stats();
        assert_eq!(
            stats
                .requests
                .get(&(Service::Compute, c.want_status.to_owned())),
            Some(&1),
            "{}: {stats:?}",
            c.name
        );
        assert_eq!(
            stats.requests.get(&(Service::Compute, "200".to_owned())),
            Some(&5),
            "{}",
            c.name
        );
    }
}

#[tokio::test]
async fn a_401_re_authenticates_once_and_retries() {
    let fake = Fake::start().await;
    let mut src = source(&fake, None, fast()).await;
    src.refresh(at("2026-11-22T00:00:00Z")).await.unwrap();
    let tokens = fake.state.lock().unwrap().tokens_issued;
    // The token is reused across refreshes until the server rejects it.
    src.refresh(at("2026-11-22T01:00:00Z")).await.unwrap();
    assert_eq!(fake.state.lock().unwrap().tokens_issued, tokens);
    fake.fault("/v3/projects", Fault::Status(401, None));
    src.refresh(at("2026-11-22T02:00:00Z")).await.unwrap();
    assert_eq!(fake.state.lock().unwrap().tokens_issued, tokens + 1);
    let last = fake.seen("/v3/projects").pop().unwrap();
    assert_eq!(last.token, Some(format!("tok-{}", tokens + 1)));
}

#[tokio::test]
async fn a_request_that_times_out_fails_the_refresh() {
    let fake = Fake::start().await;
    let limits = Limits {
        request_timeout: Duration::from_millis(300),
        retries: 0,
        ..fast()
    };
    let mut src = source(&fake, None, limits).await;
    fake.fault("/v2.1/servers", Fault::Delay(Duration::from_secs(5)));
    let err = src
        .refresh(at("2026-11-22T00:00:00Z"))
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("compute /servers/detail"), "{err}");
    assert_eq!(src.accounting().window_end, src.accounting().usage_start);
}

#[tokio::test]
async fn a_deleted_project_disappears_without_lowering_the_others() {
    let fake = Fake::start().await;
    let mut src = source(&fake, None, fast()).await;
    let first = vcpu_seconds(&src.refresh(at("2026-11-22T00:00:00Z")).await.unwrap());
    let gone = first.keys().next().unwrap().clone();
    fake.state
        .lock()
        .unwrap()
        .hidden_projects
        .push(gone.clone());
    let second = vcpu_seconds(&src.refresh(at("2026-11-22T01:00:00Z")).await.unwrap());
    assert!(!second.contains_key(&gone));
    for (id, v) in &second {
        assert!(*v >= first[id], "{id} went backwards");
    }
    assert!(
        src.accounting().projects.contains_key(&gone),
        "its totals stay in the state"
    );
}

#[tokio::test]
async fn the_password_never_reaches_errors_or_requests_other_than_auth() {
    let fake = Fake::start().await;
    fake.state.lock().unwrap().reject_auth = true;
    let err = session(&fake).await.unwrap_err();
    assert!(!format!("{err} {err:?}").contains(PASSWORD), "{err:?}");
    fake.state.lock().unwrap().reject_auth = false;
    let mut src = source(&fake, None, fast()).await;
    fake.fault("/v2.1/os-simple-tenant-usage", Fault::Status(403, None));
    let err = src.refresh(at("2026-11-22T00:00:00Z")).await.unwrap_err();
    assert!(!format!("{err} {err:?} {:?}", src.client().stats()).contains(PASSWORD));
    assert!(!format!("{err}").contains("tok-"), "no token in the error");
    let st = fake.state.lock().unwrap();
    assert!(st
        .seen
        .iter()
        .filter(|s| s.path != "/v3/auth/tokens")
        .all(|s| !s.body.contains(PASSWORD)));
}

#[tokio::test]
async fn request_metrics_are_published_after_a_failed_refresh_too() {
    use crate::exposition::Format;
    use crate::hub::Hub;
    use crate::refresh::{refresh_once, Schedule};
    use crate::render::RenderOptions;

    let fake = Fake::start().await;
    let mut src = source(&fake, None, fast()).await;
    let hub = std::sync::Arc::new(Hub::new("test"));
    let slot = hub.register("openstack");
    let schedule = Schedule {
        interval: Duration::from_secs(60),
        timeout: Duration::from_secs(30),
    };
    let body = |hub: &Hub| {
        String::from_utf8(
            hub.exposition()
                .body(Format::Classic, false)
                .to_bytes()
                .to_vec(),
        )
        .unwrap()
    };

    assert!(refresh_once(&mut src, schedule, &hub, slot, RenderOptions::default()).await);
    let ok = body(&hub);
    assert!(
        ok.contains("site_exporter_openstack_requests_total{service=\"compute\",code=\"200\"} 5"),
        "{ok}"
    );
    assert!(
        ok.contains(
            "site_exporter_openstack_request_duration_seconds_count{service=\"identity\"} 2"
        ),
        "{ok}"
    );

    // The projects list is read on every refresh (usage only when a second has passed).
    fake.fault("/v3/projects", Fault::Status(403, None));
    assert!(!refresh_once(&mut src, schedule, &hub, slot, RenderOptions::default()).await);
    let failed = body(&hub);
    assert!(
        failed.contains(
            "site_exporter_openstack_requests_total{service=\"identity\",code=\"403\"} 1"
        ),
        "{failed}"
    );
    assert!(failed.contains("site_exporter_source_up{source=\"openstack\"} 0"));
    assert!(
        failed.contains("openstack_project_vcpu_seconds_total{"),
        "last good data stays"
    );
    assert!(!failed.contains(PASSWORD) && !failed.contains("tok-"));
}

#[tokio::test]
async fn quotas_are_read_per_project_with_unlimited_left_out() {
    let fake = Fake::start().await;
    let mut src = source_with(&fake, None, fast(), true).await;
    let snap = src.refresh(at("2026-11-22T00:00:00Z")).await.unwrap();
    let projects: ProjectsPage =
        serde_json::from_str(&nova::tests::fixture("keystone_projects.json")).unwrap();
    for p in &snap.projects {
        let name = &projects
            .projects
            .iter()
            .find(|k| k.id == p.project.id)
            .unwrap()
            .name;
        let file = fake::quota_fixture(name);
        let doc: serde_json::Value = serde_json::from_str(&nova::tests::fixture(&file)).unwrap();
        let limit = |k: &str| u64::try_from(doc["quota_set"][k]["limit"].as_i64().unwrap()).ok();
        let q = p.quota.unwrap();
        assert_eq!(q.vcpus, limit("cores"), "{name}");
        assert_eq!(q.instances, limit("instances"), "{name}");
        assert_eq!(q.memory_bytes, limit("ram").map(|m| m << 20), "{name}");
    }
    let asked = fake
        .state
        .lock()
        .unwrap()
        .seen
        .iter()
        .filter(|s| s.path.starts_with("/v2.1/os-quota-sets/"))
        .count();
    assert_eq!(asked, snap.projects.len());
    let text = crate::render::projects(
        std::sync::Arc::new(snap),
        crate::render::RenderOptions::default(),
    );
    assert!(
        text.contains("# TYPE openstack_project_quota_vcpus gauge"),
        "{text}"
    );
}
