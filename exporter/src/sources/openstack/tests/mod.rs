//! The source end to end against a local Keystone + Nova serving recorded shapes.
#![allow(clippy::unwrap_used)]

mod fake;
mod stopped;

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use fake::{Fake, Fault, PASSWORD};
use osauth::common::IdOrName;

use super::*;
use crate::sources::openstack::client::{Limits, Service};
use crate::sources::openstack::keystone::ProjectsPage;
use crate::sources::openstack::nova::UsagePage;

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
    let settings = Settings {
        state_file,
        quotas,
        ..settings(fake)
    };
    source_from(fake, limits, settings).await
}

/// The settings of most tests: accounting from `START`, no state file, no weights.
fn settings(fake: &Fake) -> Settings {
    Settings {
        usage_start: Some(at(START)),
        start_url: None,
        state_file: None,
        cloud: fake.auth_url(),
        filters: Filters::default(),
        legacy: LegacyOptions::default(),
        weights: WeightsInput::None,
        quotas: false,
        stopped_ages: Default::default(),
        cadence: full_every_refresh(),
    }
}

/// The cadence of the tests written for the full refresh: every refresh lists every server,
/// asks Nova for the window and reads projects and quotas again.
fn full_every_refresh() -> super::config::Cadence {
    let second = std::time::Duration::from_secs(1);
    super::config::Cadence {
        incremental: false,
        reconcile: second,
        projects: second,
        quotas: second,
    }
}

async fn source_from(fake: &Fake, limits: Limits, settings: Settings) -> OpenstackSource {
    let f = fake.clone();
    let connect: client::Connect = std::sync::Arc::new(move || {
        let f = f.clone();
        Box::pin(async move { session(&f).await })
    });
    let client = Client::connect(connect, limits).await.unwrap();
    OpenstackSource::new(client, settings)
}

/// vCPU-seconds per tenant over the four recorded pages, computed from the fixtures.
fn recorded_vcpu_seconds() -> BTreeMap<String, f64> {
    let mut want = BTreeMap::new();
    for (tenant, s) in recorded_server_usages() {
        *want.entry(tenant).or_insert(0.0) += s.hours * s.vcpus as f64 * 3600.0;
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
    assert_eq!(
        resumed.accounting(),
        None,
        "nothing is read before the first refresh"
    );
    let snap3 = resumed.refresh(at("2026-11-22T15:10:00Z")).await.unwrap();
    assert_eq!(
        fake.seen("/v2.1/os-simple-tenant-usage")[8].query["start"],
        "2026-11-22T15:00:00"
    );
    let tripled: BTreeMap<_, _> = want.iter().map(|(k, v)| (k.clone(), 3.0 * v)).collect();
    assert!(close(&vcpu_seconds(&snap3), &tripled));
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
        let before = src.accounting().cloned();
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
        assert_eq!(src.accounting().cloned(), before, "{}", c.name);
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

/// A reconciliation that fails at any of its reads, or after them (quotas), keeps the server
/// table it merges into in place: the next refresh reconciles against it (the table's
/// changes, Nova's answer, the listing, the changes again) and ends where a source that never
/// failed ends, disagreements included.
#[tokio::test]
async fn a_reconciliation_failing_part_way_keeps_the_table_for_the_next() {
    struct Case {
        name: &'static str,
        input: Vec<(&'static str, Fault)>,
        want_error: &'static str,
    }
    let servers = "/v2.1/servers";
    let cases = [
        Case {
            name: "changes before",
            input: vec![(servers, Fault::Malformed)],
            want_error: "compute /servers/detail: malformed response",
        },
        Case {
            name: "usage",
            input: vec![("/v2.1/os-simple-tenant-usage", Fault::Malformed)],
            want_error: "compute /os-simple-tenant-usage: malformed response",
        },
        Case {
            name: "listing",
            input: vec![(servers, Fault::Pass), (servers, Fault::Malformed)],
            want_error: "compute /servers/detail: malformed response",
        },
        Case {
            name: "changes after",
            input: vec![
                (servers, Fault::Pass),
                (servers, Fault::Pass),
                (servers, Fault::Malformed),
            ],
            want_error: "compute /servers/detail: malformed response",
        },
        Case {
            name: "quotas, after the servers were read",
            input: vec![("/v2.1/os-quota-sets/", Fault::Status(403, None))],
            want_error: "os-quota-sets",
        },
    ];
    let reconciling = |fake: &Fake| Settings {
        quotas: true,
        cadence: super::config::Cadence {
            incremental: true,
            ..full_every_refresh()
        },
        ..settings(fake)
    };
    for c in cases {
        let (fake, twin_fake) = (Fake::start().await, Fake::start().await);
        let mut src = source_from(&fake, fast(), reconciling(&fake)).await;
        let mut twin = source_from(&twin_fake, fast(), reconciling(&twin_fake)).await;
        for s in [&mut src, &mut twin] {
            s.refresh(at("2026-11-22T00:00:00Z")).await.unwrap();
        }
        for (prefix, fault) in &c.input {
            fake.fault(prefix, fault.clone());
        }
        let err = refresh_error(&mut src, "2026-11-22T01:00:00Z").await;
        assert!(err.contains(c.want_error), "{}: {err}", c.name);
        let listed_before = fake.seen("/v2.1/servers/detail").len();
        for s in [&mut src, &mut twin] {
            s.refresh(at("2026-11-22T02:00:00Z")).await.unwrap();
        }
        assert_eq!(
            fake.seen("/v2.1/servers/detail").len() - listed_before,
            3,
            "{}: changes, listing, changes",
            c.name
        );
        let found = src.client().stats().reconcile_disagreements;
        assert_eq!(found.len(), 3, "{}: compared: {found:?}", c.name);
        assert_eq!(
            found,
            twin.client().stats().reconcile_disagreements,
            "{}",
            c.name
        );
        assert_eq!(src.accounting(), twin.accounting(), "{}", c.name);
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
    let acc = src.accounting().unwrap();
    assert_eq!(acc.window_end, acc.usage_start);
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
        src.accounting().unwrap().project_totals(&gone).is_some(),
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
    use crate::refresh::refresh_once;
    use crate::render::RenderOptions;
    use crate::settings::Schedule;

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

    // The servers list is read on every refresh (usage only when a second has passed, the
    // projects list when its interval has).
    fake.fault("/v2.1/servers/detail", Fault::Status(403, None));
    assert!(!refresh_once(&mut src, schedule, &hub, slot, RenderOptions::default()).await);
    let failed = body(&hub);
    assert!(
        failed
            .contains("site_exporter_openstack_requests_total{service=\"compute\",code=\"403\"} 1"),
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

/// The error of a refresh at `when` that must fail.
async fn refresh_error(src: &mut OpenstackSource, when: &str) -> String {
    src.refresh(at(when)).await.unwrap_err().to_string()
}

/// The recorded usage the fake serves for every window: (tenant, server usage).
fn recorded_server_usages() -> Vec<(String, nova::ServerUsage)> {
    let mut out = Vec::new();
    for p in 1..=4 {
        let text = nova::tests::fixture(&format!(
            "nova_os-simple-tenant-usage_detailed_mv2.40_limit3_page{p}.json"
        ));
        for t in serde_json::from_str::<UsagePage>(&text)
            .unwrap()
            .tenant_usages
        {
            out.extend(
                t.server_usages
                    .into_iter()
                    .map(|s| (t.tenant_id.clone(), s)),
            );
        }
    }
    out
}

/// Σ hours × vcpus × weight(vcpus) of one tenant in the recorded usage (one window).
fn recorded_legacy_vcpu_hours(tenant_prefix: &str, weight: impl Fn(u64) -> f64) -> f64 {
    recorded_server_usages()
        .iter()
        .filter(|(t, _)| t.starts_with(tenant_prefix))
        .map(|(_, s)| s.hours * s.vcpus as f64 * weight(s.vcpus))
        .sum()
}

fn legacy_vcpu(snap: &ProjectsSnapshot, id_prefix: &str) -> Vec<(String, f64)> {
    snap.legacy
        .iter()
        .filter(|l| l.project.id.starts_with(id_prefix))
        .map(|l| (l.project.name.clone(), l.usage.vcpu_hours))
        .collect()
}

#[tokio::test]
async fn legacy_families_wait_for_weights_then_recompute_all_hours_with_the_set_in_force() {
    use crate::settings::Schedule;
    use crate::source::Source;
    use crate::sources::weights::{Origin, WeightsConfig, WeightsSource};
    use crate::weights::WeightsCell;

    let fake = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("weights.json");
    let cell = std::sync::Arc::new(WeightsCell::default());
    let settings = Settings {
        weights: WeightsInput::Shared(std::sync::Arc::clone(&cell)),
        ..settings(&fake)
    };
    let mut src = source_from(&fake, fast(), settings).await;
    let mut weights = WeightsSource::new(
        &WeightsConfig {
            origin: Origin::File(file.clone()),
            schedule: Schedule {
                interval: Duration::from_secs(60),
                timeout: Duration::from_secs(5),
            },
        },
        std::sync::Arc::clone(&cell),
    );

    // Not loaded yet: the base-unit families are there, the legacy ones withheld.
    let snap = src.refresh(at("2026-11-22T00:00:00Z")).await.unwrap();
    assert!(snap.projects.iter().any(|p| p.totals.vcpu_seconds > 0.0));
    assert!(snap.legacy.is_empty(), "{:?}", snap.legacy);

    // beta-ml (a70768b2) runs one 8-vCPU and two 4-vCPU servers.
    std::fs::write(
        &file,
        r#"[{"resource_set_timestamp": 0, "vcpus": [{"value": 4, "weight": 2}, {"value": 8, "weight": 3}], "memory_mb": []}]"#,
    )
    .unwrap();
    weights.collect(SystemTime::now()).await.unwrap();
    let snap = src.refresh(at("2026-11-22T01:00:00Z")).await.unwrap();
    let one_window = |w: fn(u64) -> f64| recorded_legacy_vcpu_hours("a70768b2", w);
    let got = legacy_vcpu(&snap, "a70768b2");
    let want = 2.0 * one_window(|v| if v <= 4 { 2.0 } else { 3.0 });
    assert_eq!(got.len(), 1, "{got:?}");
    assert!((got[0].1 - want).abs() < 1e-9, "{got:?} != {want}");

    // A new set applies to the hours already counted, as the original recomputes them.
    std::fs::write(
        &file,
        r#"[{"resource_set_timestamp": 0, "vcpus": [{"value": 64, "weight": 10}], "memory_mb": []}]"#,
    )
    .unwrap();
    weights.collect(SystemTime::now()).await.unwrap();
    let snap = src.refresh(at("2026-11-22T02:00:00Z")).await.unwrap();
    let got = legacy_vcpu(&snap, "a70768b2");
    let want = 3.0 * one_window(|_| 10.0);
    assert!((got[0].1 - want).abs() < 1e-9, "{got:?} != {want}");
}

#[tokio::test]
async fn the_simple_vm_project_is_split_by_the_servers_metadata_tag() {
    let fake = Fake::start().await;
    let probe = source(&fake, None, fast())
        .await
        .refresh(at("2026-11-22T00:00:00Z"))
        .await
        .unwrap();
    let svm = probe
        .projects
        .iter()
        .find(|p| p.project.id.starts_with("a70768b2"))
        .unwrap()
        .project
        .clone();
    let settings = Settings {
        legacy: LegacyOptions {
            simple_vm: Some(crate::legacy::SimpleVm {
                project_id: svm.id.clone(),
                // The recorded servers carry `role` metadata: infer, infer, train.
                tag: "role".into(),
            }),
            ..LegacyOptions::default()
        },
        ..settings(&fake)
    };
    let mut src = source_from(&fake, fast(), settings).await;
    // The first refresh learns the metadata from the servers list after the window.
    let snap = src.refresh(at("2026-11-22T00:00:00Z")).await.unwrap();
    let got = legacy_vcpu(&snap, &svm.id);
    let hours = |id: &str| {
        recorded_server_usages()
            .iter()
            .filter(|(_, s)| s.instance_id.starts_with(id))
            .map(|(_, s)| s.hours * s.vcpus as f64)
            .sum::<f64>()
    };
    let want = [
        ("infer", hours("ca3de5ea") + hours("dbdae7cd")),
        ("train", hours("0020e271")),
    ];
    assert_eq!(got.len(), 2, "{got:?}");
    for ((name, v), (want_name, want_v)) in got.iter().zip(want) {
        assert_eq!(name, want_name);
        assert!((v - want_v).abs() < 1e-12, "{name}: {v} != {want_v}");
    }
    let series = snap.legacy.iter().find(|l| l.project.id == svm.id).unwrap();
    assert_eq!(series.project.domain_name, svm.domain_name);
    // Other projects keep one series under their own name.
    assert!(snap
        .legacy
        .iter()
        .filter(|l| l.project.id != svm.id)
        .all(|l| probe.projects.iter().any(|p| p.project == l.project)));
}

#[tokio::test]
async fn a_state_from_another_start_is_kept_served_and_both_dates_reported() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("state.json");
    let mut first = source(&fake, Some(path.clone()), fast()).await;
    let before = vcpu_seconds(&first.refresh(at("2026-11-22T00:00:00Z")).await.unwrap());

    // The start is changed (configuration or portal) while a state exists.
    let settings = Settings {
        usage_start: Some(at("2026-06-01T00:00:00Z")),
        state_file: Some(path.clone()),
        ..settings(&fake)
    };
    let mut src = source_from(&fake, fast(), settings).await;
    let after = vcpu_seconds(&src.refresh(at("2026-11-22T01:00:00Z")).await.unwrap());
    // The state continues: the next window starts where it ended, nothing restarts.
    let last = fake.seen("/v2.1/os-simple-tenant-usage").pop().unwrap();
    assert_eq!(last.query["start"], "2026-11-22T00:00:00");
    assert!(after.iter().all(|(k, v)| *v > before[k]), "{after:?}");
    let epoch = |s: &str| {
        at(s)
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs()
    };
    assert_eq!(
        src.usage_start(),
        Some(UsageStart {
            requested: epoch("2026-06-01T00:00:00Z"),
            accounting: epoch(START),
        })
    );
    let files: Vec<_> = std::fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        !files.iter().any(|f| f.contains("set-aside")),
        "nothing set aside: {files:?}"
    );
    // Both dates reach the self-metrics (rendered in `render::openstack`).
    let Some(SourceMetrics::Openstack { start, .. }) = crate::source::Source::self_metrics(&src)
    else {
        panic!("the OpenStack source has self-metrics");
    };
    assert_eq!(start, src.usage_start());
}

#[tokio::test]
async fn the_portal_start_date_comes_first_and_until_it_answers_nothing_is_read() {
    let url = crate::test_support::scripted_http(vec![
        (503, "maintenance"),
        (200, r#"[{"start_date": "2026-11-20"}]"#),
    ])
    .await;
    let fake = Fake::start().await;
    let settings = Settings {
        usage_start: None,
        start_url: Some(format!("{url}/api/start/")),
        ..settings(&fake)
    };
    let mut src = source_from(&fake, fast(), settings).await;
    let err = refresh_error(&mut src, "2026-11-22T00:00:00Z").await;
    assert!(
        err.contains("start date URL") && err.contains("503"),
        "{err}"
    );
    assert!(fake.seen("/v3/projects").is_empty());
    assert!(fake.seen("/v2.1/os-simple-tenant-usage").is_empty());
    assert_eq!(src.accounting(), None);

    src.refresh(at("2026-11-22T00:00:00Z")).await.unwrap();
    let usage = fake.seen("/v2.1/os-simple-tenant-usage");
    assert_eq!(usage[0].query["start"], "2026-11-20T00:00:00");
}

#[tokio::test]
async fn before_microversion_2_47_sizes_come_from_the_flavors_list() {
    let current =
        |snap: &ProjectsSnapshot| -> BTreeMap<String, (crate::snapshot::Allocation, u64)> {
            snap.projects
                .iter()
                .map(|p| {
                    (
                        p.project.id.clone(),
                        (p.allocation, p.instances.values().sum()),
                    )
                })
                .collect()
        };
    let modern = Fake::start().await;
    let want = current(
        &source(&modern, None, fast())
            .await
            .refresh(at("2026-11-22T00:00:00Z"))
            .await
            .unwrap(),
    );
    assert!(modern.seen("/v2.1/flavors/detail").is_empty());

    let old = Fake::start().await;
    old.state.lock().unwrap().max_microversion = Some("2.46");
    let mut src = source(&old, None, fast()).await;
    let got = current(&src.refresh(at("2026-11-22T00:00:00Z")).await.unwrap());
    assert_eq!(got, want);
    assert!(want.values().any(|(a, _)| a.vcpus > 0));
    let servers = old.seen("/v2.1/servers/detail");
    assert_eq!(
        servers[0].microversion, None,
        "no microversion Nova would refuse"
    );
    let flavors = old.seen("/v2.1/flavors/detail");
    assert_eq!(flavors[0].query["is_public"], "None", "private flavors too");
    // The version document is read once.
    src.refresh(at("2026-11-22T01:00:00Z")).await.unwrap();
    assert_eq!(old.seen("/v2.1").len(), 1);
}

/// The project ids a fresh source exports after one refresh against `fake`.
async fn exported_ids(fake: &Fake) -> Vec<String> {
    source(fake, None, fast())
        .await
        .refresh(at("2026-11-22T00:00:00Z"))
        .await
        .unwrap()
        .projects
        .iter()
        .map(|p| p.project.id.clone())
        .collect()
}

#[tokio::test]
async fn keystone_pages_are_followed_and_a_cut_list_is_an_error() {
    let all = Fake::start().await;
    let want = exported_ids(&all).await;
    assert!(want.len() > 3, "{want:?}");

    // Keystone with list_limit 3 and marker pagination: every page is read.
    let paged = Fake::start().await;
    paged.state.lock().unwrap().list_limit = Some(3);
    let got = exported_ids(&paged).await;
    assert_eq!(got, want);
    let seen = paged.seen("/v3/projects");
    assert!(seen.len() >= 3, "{} requests", seen.len());
    assert!(!seen[0].query.contains_key("marker"));
    assert!(seen[1..].iter().all(|s| s.query.contains_key("marker")));

    // An older Keystone cuts the list without a next link: the refresh fails, saying why.
    let cut = Fake::start().await;
    {
        let mut st = cut.state.lock().unwrap();
        st.list_limit = Some(3);
        st.no_next_link = true;
    }
    let mut src = source(&cut, None, fast()).await;
    let err = refresh_error(&mut src, "2026-11-22T00:00:00Z").await;
    assert!(
        err.contains("identity /projects") && err.contains("list_limit"),
        "{err}"
    );
    assert!(cut.seen("/v2.1/os-simple-tenant-usage").is_empty());
}

#[tokio::test]
async fn a_state_file_that_cannot_be_written_is_counted_and_counting_goes_on() {
    let fake = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("state");
    let path = sub.join("state.json");
    let mut src = source(&fake, Some(path.clone()), fast()).await;
    // The directory is created when missing.
    src.refresh(at("2026-11-22T00:00:00Z")).await.unwrap();
    assert!(path.exists());
    assert_eq!(src.client().stats().state_write_errors, 0);

    // A file where the directory should be: the write fails, the refresh does not.
    std::fs::remove_dir_all(&sub).unwrap();
    std::fs::write(&sub, "in the way").unwrap();
    let snap = src.refresh(at("2026-11-22T01:00:00Z")).await.unwrap();
    let doubled: BTreeMap<_, _> = recorded_vcpu_seconds()
        .into_iter()
        .map(|(k, v)| (k, 2.0 * v))
        .collect();
    assert!(
        close(&vcpu_seconds(&snap), &doubled),
        "published all the same"
    );
    assert_eq!(src.client().stats().state_write_errors, 1);
    // The window was added in memory; the next refresh continues from it and writes the file.
    let acc = src.accounting().unwrap();
    assert_eq!(acc.next_window_start(), at("2026-11-22T01:00:00Z"));

    std::fs::remove_file(&sub).unwrap();
    src.refresh(at("2026-11-22T02:00:00Z")).await.unwrap();
    assert_eq!(src.client().stats().state_write_errors, 1);
    let last = fake.seen("/v2.1/os-simple-tenant-usage").pop().unwrap();
    assert_eq!(last.query["start"], "2026-11-22T01:00:00");
    let mut resumed = source(&fake, Some(path), fast()).await;
    resumed.refresh(at("2026-11-22T03:00:00Z")).await.unwrap();
    let last = fake.seen("/v2.1/os-simple-tenant-usage").pop().unwrap();
    assert_eq!(last.query["start"], "2026-11-22T02:00:00");
}

/// `openstack_project_vcpu_seconds_total` per project id, as scraped.
fn scraped_vcpu_seconds(hub: &crate::hub::Hub) -> BTreeMap<String, f64> {
    let body = hub
        .exposition()
        .body(crate::exposition::Format::Classic, false)
        .to_bytes();
    String::from_utf8_lossy(&body)
        .lines()
        .filter_map(|l| l.strip_prefix("openstack_project_vcpu_seconds_total{project_id=\""))
        .filter_map(|rest| {
            let (id, rest) = rest.split_once('"')?;
            let value: f64 = rest.rsplit_once(' ')?.1.parse().ok()?;
            (value > 0.0).then(|| (id.to_owned(), value))
        })
        .collect()
}

#[tokio::test]
async fn a_panic_mid_refresh_is_answered_by_a_source_rebuilt_from_the_state_file() {
    use crate::hub::Hub;
    use crate::settings::Schedule;

    let fake = Fake::start().await;
    let dir = tempfile::tempdir().unwrap();
    let settings = Settings {
        state_file: Some(dir.path().join("state.json")),
        ..settings(&fake)
    };
    let cloud = settings.cloud.clone();
    let f = fake.clone();
    let connect: client::Connect = std::sync::Arc::new(move || {
        let f = f.clone();
        Box::pin(async move { session(&f).await })
    });
    let hub = std::sync::Arc::new(Hub::new("test"));
    let task = crate::refresh::spawn(
        "openstack",
        move || {
            Ok::<_, std::convert::Infallible>(OpenstackSource::new(
                Client::new(connect.clone(), fast()),
                settings.clone(),
            ))
        },
        Schedule {
            interval: Duration::from_secs(4),
            timeout: Duration::from_secs(30),
        },
        std::sync::Arc::clone(&hub),
        crate::render::RenderOptions::default(),
        &tokio::runtime::Handle::current(),
    );
    let status = |hub: &Hub| hub.statuses()[0].clone();
    // The first window: counted and saved.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while status(&hub).last_success.is_none() {
        assert!(std::time::Instant::now() < deadline, "no first refresh");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let want = recorded_vcpu_seconds();
    let first = scraped_vcpu_seconds(&hub);
    assert!(close(&first, &want), "{first:?} != {want:?}");
    let first_success = status(&hub).last_success;

    // The next refresh applies its window, then panics before saving it.
    PANIC_BEFORE_SAVE.lock().unwrap().insert(cloud.clone());
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    loop {
        let s = status(&hub);
        if s.panics == 1 && s.up && s.last_success > first_success {
            break;
        }
        assert!(std::time::Instant::now() < deadline, "no rebuild: {s:?}");
        // Never lower than before, at any scrape.
        let now = scraped_vcpu_seconds(&hub);
        assert!(
            now.iter().all(|(k, v)| *v >= first[k] - 1e-6),
            "{now:?} < {first:?}"
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    task.abort();
    assert!(
        !PANIC_BEFORE_SAVE.lock().unwrap().contains(&cloud),
        "the panic happened"
    );

    // The rebuilt source resumed from the state file and asked for the lost window again: two
    // distinct windows, each counted once (three applications would be 3x).
    let starts: std::collections::BTreeSet<String> = fake
        .seen("/v2.1/os-simple-tenant-usage")
        .iter()
        .filter(|u| !u.query.contains_key("marker"))
        .map(|u| u.query["start"].clone())
        .collect();
    assert_eq!(starts.len(), 2, "{starts:?}");
    let twice: BTreeMap<_, _> = want.iter().map(|(k, v)| (k.clone(), 2.0 * v)).collect();
    let after = scraped_vcpu_seconds(&hub);
    assert!(close(&after, &twice), "{after:?} != {twice:?}");
    let body = hub
        .exposition()
        .body(crate::exposition::Format::Classic, false)
        .to_bytes();
    assert!(String::from_utf8_lossy(&body)
        .contains("site_exporter_source_panics_total{source=\"openstack\"} 1\n"));
}
