//! The production site stack in containers (see `docker_stacks.rs` for how these tests run):
//! - with no OpenStack reachable: health, uid 10001, secrets with the modes the README gives,
//!   the exporter's own series through Prometheus and the gateway's TLS port, 200/401 by token,
//!   no token or password in the logs, the state volume writable, the portal Alertmanager
//!   active at the site Prometheus (its password and CA from the site's secrets);
//! - with `fake_openstack` in a container: after `down` and `up` the exporter resumes from its
//!   state volume (no total lower, the first window not asked again).
//!
//! Every published port is bound to 127.0.0.1; requests go there and to the containers the
//! test started. Waits poll with a deadline.

#![allow(clippy::unwrap_used)]

use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use stack_tests::compose::{require_engine, Compose};
use stack_tests::stack::repo;
use stack_tests::{encode, poll};

/// Something no log may contain, different for every run.
fn unique_secret(what: &str) -> String {
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_nanos();
    format!("{what}-{}-{nanos:x}", std::process::id())
}

#[test]
#[ignore = "needs a Docker engine and compose/local-images.sh: run-tests.sh runs it"]
fn the_site_stack_serves_the_portal_through_its_gateway() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let site = SiteFiles::new(dir.path());
    let (token, password, cert) = (&site.token, &site.password, &site.cert);
    let compose = Compose::new(
        "sm-e2e-site",
        &[
            "compose/docker-compose.site.yml",
            "tests/compose/site.test.yml",
        ],
        &[
            ("SITE_SECRETS", dir.path().to_str().unwrap()),
            ("OPENRC_ENV", site.openrc.to_str().unwrap()),
            ("GATEWAY_PUBLISH", "127.0.0.1:"),
        ],
    )
    .unwrap();
    compose.run(&["up", "-d", "--no-build"]).unwrap();
    let services = ["exporter", "prometheus", "gateway"];
    compose
        .wait_healthy(&services, Duration::from_secs(120))
        .unwrap();
    for service in ["exporter", "gateway"] {
        assert_eq!(compose.process_uid(service).unwrap(), 10001, "{service}");
    }
    // The site Prometheus sends its alerts to the portal's Alertmanager (the placeholder name
    // points at its own loopback here) with the password and CA from its secrets.
    compose
        .wait_alertmanager_active(
            "prometheus",
            "https://alertmanager.portal.example.org:9093/api/v2/alerts",
        )
        .unwrap();
    // The running totals' volume is the exporter's to write.
    compose
        .exec("exporter", &["test", "-w", "/var/lib/site-exporter"])
        .unwrap();

    // exporter -> site Prometheus -> gateway (TLS, the token from its secret file): the
    // exporter's own series arrive, labelled with the site.
    let port = compose.port("gateway", 9443).unwrap();
    let cafile = dir.path().join("ca.pem");
    std::fs::write(&cafile, cert).unwrap();
    let federate = |token: &str| {
        let selector = encode("{__name__=~\"site_exporter_source_.+\"}");
        let out = Command::new("curl")
            .args(["-s", "-w", "\n%{http_code}", "--cacert"])
            .arg(&cafile)
            .args(["-H", &format!("Authorization: Bearer {token}")])
            .arg(format!(
                "https://127.0.0.1:{port}/federate?match[]={selector}"
            ))
            .output()
            .unwrap();
        let text = String::from_utf8(out.stdout).unwrap();
        let (body, status) = text.rsplit_once('\n').unwrap();
        (status.to_owned(), body.to_owned())
    };
    let body = poll(
        "the exporter's series through the gateway",
        Duration::from_secs(180),
        || {
            let (status, body) = federate(token);
            anyhow::ensure!(status == "200", "HTTP {status}: {body}");
            Ok(body
                .lines()
                .any(|l| l.starts_with("site_exporter_source_up{"))
                .then_some(body))
        },
    )
    .unwrap();
    let up = body
        .lines()
        .find(|l| l.starts_with("site_exporter_source_up{") && l.contains("source=\"openstack\""))
        .unwrap_or_else(|| panic!("{body}"));
    assert!(up.contains("site=\"my-site\""), "{up}");
    assert!(up.contains("job=\"project_usages\""), "{up}");
    assert_eq!(federate("wrong-token-0123456789abcdef").0, "401");

    // Neither the token nor the OpenStack password reaches a log.
    let logs = compose.logs().unwrap();
    assert!(logs.contains("openstack"), "{logs}");
    assert!(
        !logs.contains(token.as_str()),
        "the portal token is in the logs"
    );
    assert!(
        !logs.contains(&format!("{password}-am")),
        "the Alertmanager password is in the logs"
    );
    assert!(
        !logs.contains(password.as_str()),
        "the OpenStack password is in the logs"
    );
}

/// The operator's files of the site stack, made as compose/site/secrets/README.md and
/// openrc.env.example say: the gateway's secrets owned by uid 10001 and Prometheus's by 65534,
/// with mode 0400, an env file naming `fake-openstack` as Keystone: the fake's container on the
/// site network with site-openstack.test.yml, a name nothing answers to without it (nothing
/// leaves the machine).
struct SiteFiles {
    token: String,
    password: String,
    /// The gateway's certificate (PEM), its own CA.
    cert: String,
    openrc: std::path::PathBuf,
}

impl SiteFiles {
    fn new(dir: &std::path::Path) -> Self {
        use std::os::unix::fs::PermissionsExt;

        let token = unique_secret("portal-token");
        let password = unique_secret("os-password");
        let cert = rcgen::generate_simple_self_signed(vec!["localhost".into(), "127.0.0.1".into()])
            .unwrap();
        for (name, content, uid) in [
            ("portal.token", format!("{token}\n"), 10001),
            ("tls.crt", cert.cert.pem(), 10001),
            ("tls.key", cert.signing_key.serialize_pem(), 10001),
            ("alertmanager.password", format!("{password}-am\n"), 65534),
            ("alertmanager-ca.pem", cert.cert.pem(), 65534),
        ] {
            let path = dir.join(name);
            std::fs::write(&path, content).unwrap();
            std::os::unix::fs::chown(&path, Some(uid), Some(uid)).unwrap();
            std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o400)).unwrap();
        }
        let example =
            std::fs::read_to_string(repo().join("compose/site/openrc.env.example")).unwrap();
        let text = example
            .replace(
                "OS_AUTH_URL=https://keystone.example.org:5000/v3",
                "OS_AUTH_URL=http://fake-openstack:5000/v3",
            )
            .replace("OS_PASSWORD=change-me", &format!("OS_PASSWORD={password}"));
        assert!(text.contains(&password) && text.contains("fake-openstack:5000"));
        let openrc = dir.join("openrc.env");
        std::fs::write(&openrc, text).unwrap();
        Self {
            token,
            password,
            cert: cert.cert.pem(),
            openrc,
        }
    }
}

/// `openstack_project_vcpu_seconds_total` per label set, from an exposition.
fn vcpu_seconds(exposition: &str) -> std::collections::BTreeMap<String, f64> {
    exposition
        .lines()
        .filter_map(|l| l.strip_prefix("openstack_project_vcpu_seconds_total{"))
        .filter_map(|l| {
            let (labels, value) = l.rsplit_once("} ")?;
            Some((labels.to_owned(), value.trim().parse().ok()?))
        })
        .collect()
}

/// The start of every usage window the fake was asked for, from its `/_stats`.
fn windows_asked(compose: &Compose) -> anyhow::Result<Vec<String>> {
    let stats: Value = serde_json::from_str(&compose.exec(
        "exporter",
        &["curl", "-fsS", "http://fake-openstack:5000/_stats"],
    )?)?;
    Ok(stats["windows"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|w| w["start"].as_str().map(str::to_owned))
        .collect())
}

#[test]
#[ignore = "needs a Docker engine and compose/local-images.sh: run-tests.sh runs it"]
fn the_site_exporter_resumes_from_its_state_volume_after_down_and_up() {
    require_engine();
    let dir = tempfile::tempdir().unwrap();
    let site = SiteFiles::new(dir.path());
    let shipped = std::fs::read_to_string(repo().join("compose/site/exporter.yml")).unwrap();
    assert!(shipped.contains("\n  interval: 5m\n") && shipped.contains("\n  quotas: true "));
    let config = dir.path().join("exporter.yml");
    std::fs::write(
        &config,
        shipped
            .replace("\n  interval: 5m\n", "\n  interval: 5s\n")
            .replace("\n  quotas: true ", "\n  quotas: false "),
    )
    .unwrap();
    let usage_start = yaml_usage_start(&shipped);
    let compose = Compose::new(
        "sm-e2e-site-state",
        &[
            "compose/docker-compose.site.yml",
            "tests/compose/site.test.yml",
            "tests/compose/site-openstack.test.yml",
        ],
        &[
            ("SITE_SECRETS", dir.path().to_str().unwrap()),
            ("OPENRC_ENV", site.openrc.to_str().unwrap()),
            ("GATEWAY_PUBLISH", "127.0.0.1:"),
            ("EXPORTER_CONFIG", config.to_str().unwrap()),
        ],
    )
    .unwrap();
    let services = ["exporter", "prometheus", "gateway"];
    let ready_totals = || {
        poll(
            "the exporter's OpenStack totals",
            Duration::from_secs(120),
            || {
                let metrics = compose.exec(
                    "exporter",
                    &["curl", "-fsS", "http://127.0.0.1:9184/metrics"],
                )?;
                let totals = vcpu_seconds(&metrics);
                Ok((!totals.is_empty()).then_some(totals))
            },
        )
        .unwrap()
    };

    compose.run(&["up", "-d", "--no-build"]).unwrap();
    compose
        .wait_healthy(&services, Duration::from_secs(120))
        .unwrap();
    let before = ready_totals();
    let first = windows_asked(&compose).unwrap();
    assert!(
        first.first().is_some_and(|w| w.starts_with(&usage_start)),
        "the first refresh asks for the whole window from {usage_start}: {first:?}"
    );
    compose
        .exec(
            "exporter",
            &["test", "-s", "/var/lib/site-exporter/openstack-state.json"],
        )
        .unwrap();

    // `down` keeps the named volumes; after `up` the exporter reads its state file: no total
    // is lower, and the whole window is not asked for again.
    compose.run(&["down", "--timeout", "10"]).unwrap();
    compose.run(&["up", "-d", "--no-build"]).unwrap();
    compose
        .wait_healthy(&services, Duration::from_secs(120))
        .unwrap();
    let after = ready_totals();
    for (labels, value) in &before {
        let now = after
            .get(labels)
            .unwrap_or_else(|| panic!("{labels} is gone after down/up"));
        assert!(now >= value, "{labels}: {value} before, {now} after");
    }
    let asked = windows_asked(&compose).unwrap();
    assert!(!asked.is_empty(), "no usage asked after up");
    assert!(
        asked.iter().all(|w| !w.starts_with(&usage_start)),
        "the whole window from {usage_start} was read again: {asked:?}"
    );
    let logs = compose.logs().unwrap();
    assert!(
        !logs.contains(site.password.as_str()),
        "the password is in the logs"
    );
}

/// `openstack.usage_start` of an exporter config.
fn yaml_usage_start(config: &str) -> String {
    let doc: serde_yaml::Value = serde_yaml::from_str(config).unwrap();
    match &doc["openstack"]["usage_start"] {
        serde_yaml::Value::String(s) => s.clone(),
        other => panic!("usage_start: {other:?}"),
    }
}
