//! The stacks as sites run them: containers from the images `compose/local-images.sh` builds
//! (compose/Dockerfile's stages, Debian's Prometheus and VictoriaMetrics), started by
//! `docker-compose` from the repository's compose files with only the overrides in
//! `tests/compose/`.
//!
//! These tests need a Docker engine and those images, so they are `#[ignore]`d: `cargo test`
//! lists them as ignored, and `run-tests.sh` runs them with `--ignored` and `DOCKER_E2E=1`
//! once it has an engine and the images (it prints a SKIPPED line when it cannot). Run by
//! hand without `DOCKER_E2E=1` they fail rather than pass.
//!
//! - dev stack: health (Alertmanager's through amtool with its user), uid 10001, each site's
//!   usage at the portal with its own `site` label through its gateway's TLS port, the billing
//!   families (only they) remote-written on to the billing store (VictoriaMetrics), each
//!   gateway with its own token (A's refused at B: 401) and allow-list (a selector A allows
//!   refused at B: 403), the portal and both sites' Prometheus with the Alertmanager active,
//!   gateway reload on SIGHUP (and why an edit by rename needs a restart), no token or
//!   password in the logs;
//! - hypervisor stack: the libvirt test driver on a node file, its web config (TLS + basic
//!   auth, from a directory with the README's owner and modes), health through the netrc
//!   login, uid 10001, the guests only with the password, no password in the logs;
//! - portal stack (without Grafana): health of Prometheus, Alertmanager and the billing store,
//!   the config loads with its secrets mounted as the README says, Prometheus has the
//!   Alertmanager active (TLS, basic auth), which refuses a request without a user, the series
//!   of the portal and of the store survive `down`/`up` on their named volumes.
//!
//! The site stack is in `docker_site.rs`.
//!
//! Every published port is bound to 127.0.0.1; requests go there and to the containers the
//! test started. Waits poll with a deadline.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;
use stack_tests::compose::{query, require_engine, Compose};
use stack_tests::stack::{repo, DEV_TOKEN_A, DEV_TOKEN_B};
use stack_tests::webcfg::{bcrypt_hash, curl, Pki, Request};
use stack_tests::{encode, get, poll};

/// The HTTP status of a federation request with `token` to the gateway on `port`, over TLS
/// verified against the development certificate.
fn federate_status(port: u16, token: &str) -> String {
    federate_status_for(
        port,
        token,
        "{job=\"project_usages\",__name__=~\"project_.*_usage\"}",
    )
}

/// Like [`federate_status`] for `selector`.
fn federate_status_for(port: u16, token: &str, selector: &str) -> String {
    let selector = encode(selector);
    let out = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(repo().join("compose/dev/secrets/dev-tls.crt"))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(format!(
            "https://127.0.0.1:{port}/federate?match[]={selector}"
        ))
        .output()
        .unwrap();
    String::from_utf8(out.stdout).unwrap()
}

/// The `site` labels of `family`'s series at the Prometheus API `url`, once there are two.
fn site_labels(url: &str, family: &str) -> anyhow::Result<Option<BTreeSet<String>>> {
    let got: BTreeSet<String> = query(url, &format!("count by (site) ({family})"))?
        .iter()
        .map(|s| s["metric"]["site"].as_str().unwrap_or("").to_owned())
        .collect();
    Ok((got.len() >= 2).then_some(got))
}

/// The portal stack's services that have local images (Grafana has no Debian package): up,
/// then healthy.
const PORTAL_SERVICES: [&str; 3] = ["prometheus", "alertmanager", "victoria-metrics"];

fn start_portal_services(compose: &Compose) {
    let mut args = vec!["up", "-d", "--no-build"];
    args.extend(PORTAL_SERVICES);
    compose.run(&args).unwrap();
    compose
        .wait_healthy(&PORTAL_SERVICES, Duration::from_secs(60))
        .unwrap();
}

const DEV_SERVICES: [&str; 9] = [
    "exporter-a",
    "prometheus-a",
    "gateway-a",
    "exporter-b",
    "prometheus-b",
    "gateway-b",
    "portal",
    "alertmanager",
    "victoria-metrics",
];

#[test]
#[ignore = "needs a Docker engine and compose/local-images.sh: run-tests.sh runs it"]
fn the_dev_stack_federates_both_sites_through_their_gateways() {
    require_engine();
    // Grafana has no Debian package, so no local image: everything else of the dev stack.
    let tmp = tempfile::tempdir().unwrap();
    let gateway_a_config = tmp.path().join("gateway-a.yml");
    std::fs::copy(repo().join("compose/dev/gateway-a.yml"), &gateway_a_config).unwrap();
    let compose = Compose::new(
        "sm-e2e-dev",
        &[
            "compose/docker-compose.dev.yml",
            "tests/compose/dev.test.yml",
        ],
        &[
            ("PORTAL_PORT", ""),
            ("STORE_PORT", ""),
            ("GATEWAY_A_CONFIG", gateway_a_config.to_str().unwrap()),
        ],
    )
    .unwrap();
    let mut up = vec!["up", "-d", "--no-build"];
    up.extend(DEV_SERVICES);
    compose.run(&up).unwrap();

    // Every health check passes: the tools they run exist in the images, the services answer.
    compose
        .wait_healthy(&DEV_SERVICES, Duration::from_secs(120))
        .unwrap();

    // Our processes run as the images' user, and the gateways read the development secrets
    // with the modes they have in git.
    for service in ["exporter-a", "exporter-b", "gateway-a", "gateway-b"] {
        assert_eq!(compose.process_uid(service).unwrap(), 10001, "{service}");
    }

    // The portal holds each site's usage, federated through that site's gateway over TLS with
    // the token from its secret file; each site carries its own `site` label.
    let portal = format!("http://127.0.0.1:{}", compose.port("portal", 9090).unwrap());
    let pairs = poll(
        "both sites' project_vcpu_usage at the portal",
        Duration::from_secs(180),
        || site_labels(&portal, "project_vcpu_usage"),
    )
    .unwrap();
    assert_eq!(
        pairs,
        BTreeSet::from(["site-a".to_owned(), "site-b".to_owned()])
    );
    // The portal's federation jobs name the same sites with the same label.
    let jobs: BTreeSet<(String, String)> = query(&portal, "up{job=~\"federate_.+\"}")
        .unwrap()
        .iter()
        .map(|s| {
            let label = |l: &str| s["metric"][l].as_str().unwrap_or("").to_owned();
            (label("job"), label("site"))
        })
        .collect();
    assert_eq!(
        jobs,
        BTreeSet::from([
            ("federate_site-a".to_owned(), "site-a".to_owned()),
            ("federate_site-b".to_owned(), "site-b".to_owned()),
        ])
    );
    // Our own families travel the same path.
    let sites = poll(
        "both sites' openstack_project_vcpu_seconds_total at the portal",
        Duration::from_secs(180),
        || {
            let got: BTreeSet<String> = query(
                &portal,
                "count by (site) (openstack_project_vcpu_seconds_total)",
            )?
            .iter()
            .map(|s| s["metric"]["site"].as_str().unwrap_or("").to_owned())
            .collect();
            Ok((got.len() >= 2).then_some(got))
        },
    )
    .unwrap();
    assert_eq!(
        sites,
        BTreeSet::from(["site-a".to_owned(), "site-b".to_owned()])
    );
    // The portal remote-writes the billing families, and only them, to the billing store
    // (VictoriaMetrics), where each site's series arrive with their labels.
    let store = format!(
        "http://127.0.0.1:{}",
        compose.port("victoria-metrics", 8428).unwrap()
    );
    for family in ["project_vcpu_usage", "openstack_project_vcpu_seconds_total"] {
        let stored = poll(
            &format!("both sites' {family} in the store"),
            Duration::from_secs(120),
            || site_labels(&store, family),
        )
        .unwrap_or_else(|e| panic!("{e:#}\n{}", compose.logs().unwrap_or_default()));
        assert_eq!(stored, pairs, "{family}");
    }
    // The sites' recording rules' outputs too (project:libvirt_*), and no other family.
    let names: Vec<String> = poll(
        "a project:libvirt_ family in the store",
        Duration::from_secs(120),
        || {
            let (status, body) = get(&format!("{store}/api/v1/label/__name__/values"))?;
            anyhow::ensure!(status == 200, "{body}");
            let names: Value = serde_json::from_str(&body)?;
            let names: Vec<String> = names["data"]
                .as_array()
                .into_iter()
                .flatten()
                .filter_map(|n| n.as_str().map(str::to_owned))
                .collect();
            Ok(names
                .iter()
                .any(|n| n.starts_with("project:libvirt_"))
                .then_some(names))
        },
    )
    .unwrap();
    assert!(
        names.iter().all(|n| n.starts_with("project_")
            || n.starts_with("openstack_project_")
            || n.starts_with("project:libvirt_")),
        "non-billing series in the store: {names:?}"
    );

    let (status, body) = get(&format!("{portal}/api/v1/targets?state=active")).unwrap();
    assert_eq!(status, 200, "{body}");
    let targets: Value = serde_json::from_str(&body).unwrap();
    let mut federated = Vec::new();
    for t in targets["data"]["activeTargets"].as_array().unwrap() {
        let job = t["labels"]["job"].as_str().unwrap();
        if job.starts_with("federate_") {
            assert_eq!(t["health"], "up", "{t}");
            federated.push(t["scrapeUrl"].as_str().unwrap().to_owned());
        }
    }
    federated.sort();
    assert_eq!(federated.len(), 2, "{federated:?}");
    for (url, gateway) in federated.iter().zip(["gateway-a", "gateway-b"]) {
        assert!(
            url.starts_with(&format!("https://{gateway}:9443/federate?")),
            "{url}"
        );
    }

    // At each gateway's published TLS port: that site's development token is let through,
    // a wrong one and the other site's get 401; a selector site A allows and site B does not
    // gets 403 at B.
    let wrong = "wrong-token-0123456789abcdef";
    let (port_a, port_b) = (
        compose.port("gateway-a", 9443).unwrap(),
        compose.port("gateway-b", 9443).unwrap(),
    );
    for (gateway, port, token, other) in [
        ("gateway-a", port_a, DEV_TOKEN_A, DEV_TOKEN_B),
        ("gateway-b", port_b, DEV_TOKEN_B, DEV_TOKEN_A),
    ] {
        assert_eq!(federate_status(port, token), "200", "{gateway}");
        assert_eq!(federate_status(port, wrong), "401", "{gateway}");
        assert_eq!(
            federate_status(port, other),
            "401",
            "{gateway}: the other site's token"
        );
    }
    let gateway_metrics = "{__name__=~\"federation_gateway_.+\"}";
    assert_eq!(
        federate_status_for(port_a, DEV_TOKEN_A, gateway_metrics),
        "200"
    );
    assert_eq!(
        federate_status_for(port_b, DEV_TOKEN_B, gateway_metrics),
        "403",
        "a selector of site A's allow-list at site B"
    );

    // The portal and both sites send their alerts to the portal's Alertmanager (TLS, basic
    // auth): each Prometheus has it active; its health check (amtool with the healthcheck
    // user) passed above.
    for service in ["portal", "prometheus-a", "prometheus-b"] {
        compose
            .wait_alertmanager_active(service, "https://alertmanager:9093/api/v2/alerts")
            .unwrap();
    }

    // SIGHUP (`docker-compose kill -s HUP`) reloads the gateway's config edited in place: the
    // file keeps its inode, which is what a single-file bind mount shows the container.
    // Dropping the legacy selector from site-a's allow-list makes gateway-a refuse it.
    let original = std::fs::read_to_string(&gateway_a_config).unwrap();
    let legacy = "      - '{job=\"project_usages\",__name__=~\"project_.*_usage\"}'\n";
    assert!(original.contains(legacy), "{original}");
    let reloads = || {
        compose
            .run(&["logs", "--no-color", "gateway-a"])
            .unwrap()
            .matches("configuration reloaded")
            .count()
    };
    let before = reloads();
    // `write` truncates the file it opens: same inode.
    std::fs::write(&gateway_a_config, original.replace(legacy, "")).unwrap();
    compose.run(&["kill", "-s", "HUP", "gateway-a"]).unwrap();
    poll("gateway-a to reload", Duration::from_secs(30), || {
        Ok((reloads() > before).then_some(()))
    })
    .unwrap();
    assert_eq!(
        federate_status(port_a, DEV_TOKEN_A),
        "403",
        "gateway-a after the reload"
    );
    assert_eq!(federate_status(port_b, DEV_TOKEN_B), "200", "gateway-b");
    let metrics = compose
        .exec(
            "gateway-a",
            &["curl", "-fsS", "http://127.0.0.1:9444/metrics"],
        )
        .unwrap();
    assert!(
        metrics.contains("\nfederation_gateway_config_last_reload_success 1\n"),
        "{metrics}"
    );

    // An edit by rename (sed -i, editors that write a new file) gives the path a new inode that
    // the running container never sees: SIGHUP reloads the old file. Restarting the container
    // mounts the new one (README, "Site stack (Docker)").
    let renamed = gateway_a_config.with_extension("new");
    std::fs::write(&renamed, &original).unwrap();
    std::fs::rename(&renamed, &gateway_a_config).unwrap();
    let before = reloads();
    compose.run(&["kill", "-s", "HUP", "gateway-a"]).unwrap();
    poll("gateway-a to reload", Duration::from_secs(30), || {
        Ok((reloads() > before).then_some(()))
    })
    .unwrap();
    assert_eq!(
        federate_status(port_a, DEV_TOKEN_A),
        "403",
        "a renamed file reached the running container"
    );
    compose.run(&["restart", "gateway-a"]).unwrap();
    compose
        .wait_healthy(&["gateway-a"], Duration::from_secs(60))
        .unwrap();
    let port_a = compose.port("gateway-a", 9443).unwrap();
    assert_eq!(
        federate_status(port_a, DEV_TOKEN_A),
        "200",
        "after the restart"
    );

    // No token or password ever reaches a log.
    let logs = compose.logs().unwrap();
    assert!(!logs.is_empty());
    let mut secrets = vec![
        DEV_TOKEN_A.to_owned(),
        DEV_TOKEN_B.to_owned(),
        wrong.to_owned(),
    ];
    for user in ["portal", "site", "healthcheck"] {
        let file = format!("compose/dev/secrets/dev-alertmanager-{user}.password");
        secrets.push(std::fs::read_to_string(repo().join(file)).unwrap());
    }
    for secret in &secrets {
        assert!(
            !logs.contains(secret.trim()),
            "a token or password is in docker-compose logs"
        );
    }
}

#[test]
#[ignore = "needs a Docker engine and compose/local-images.sh: run-tests.sh runs it"]
fn the_hypervisor_stack_exports_the_guests_of_a_libvirt_node() {
    require_engine();
    // The operator's secrets directory, as compose/hypervisor/secrets/README.md describes it:
    // web.yml (TLS, users prometheus and healthcheck), the certificate and key, the
    // healthcheck's netrc; owned by uid 10001, directory 0500, files 0400.
    let secrets = tempfile::tempdir().unwrap();
    let dir = secrets.path().join("web");
    std::fs::create_dir(&dir).unwrap();
    let pki = Pki::generate(&dir).unwrap();
    let (password, check_password) = ("scrape-password-7Kq", "health-password-3Zx");
    std::fs::write(
        dir.join("web.yml"),
        format!(
            "tls_server_config:\n  cert_file: server.crt\n  key_file: server.key\nbasic_auth_users:\n  prometheus: '{}'\n  healthcheck: '{}'\n",
            bcrypt_hash(password),
            bcrypt_hash(check_password)
        ),
    )
    .unwrap();
    std::fs::write(
        dir.join("healthcheck.netrc"),
        format!("machine 127.0.0.1 login healthcheck password {check_password}\n"),
    )
    .unwrap();
    let status = Command::new("sh")
        .arg("-c")
        .arg("chown -R 10001 \"$0\" && chmod 0400 \"$0\"/* && chmod 0500 \"$0\"")
        .arg(&dir)
        .status()
        .unwrap();
    assert!(status.success());
    let compose = Compose::new(
        "sm-e2e-hypervisor",
        &[
            "compose/docker-compose.hypervisor.yml",
            "tests/compose/hypervisor.test.yml",
        ],
        &[
            ("EXPORTER_PUBLISH", "127.0.0.1:"),
            ("HYPERVISOR_SECRETS", dir.to_str().unwrap()),
        ],
    )
    .unwrap();
    compose.run(&["up", "-d", "--no-build"]).unwrap();
    // Healthy means the healthcheck logged in with its netrc over TLS.
    compose
        .wait_healthy(&["exporter"], Duration::from_secs(60))
        .unwrap();
    assert_eq!(compose.process_uid("exporter").unwrap(), 10001);

    // The guests of the mounted node file (four, as the libvirt source's own tests count),
    // through libvirt0 of the image, on the port published on 127.0.0.1: over TLS verified
    // against the CA, with the scrape user's password.
    let port = compose.port("exporter", 9184).unwrap();
    let scrape = |user: Option<(&'static str, &'static str)>| {
        let req = Request {
            user,
            ..Request::default()
        };
        curl(port, true, &pki, &req).unwrap().status
    };
    let body = poll("the node's guests", Duration::from_secs(60), || {
        let out = Command::new("curl")
            .args(["-sS", "--cacert"])
            .arg(dir.join("ca.crt"))
            .args(["-u", &format!("prometheus:{password}")])
            .arg(format!("https://127.0.0.1:{port}/metrics"))
            .output()?;
        let body = String::from_utf8_lossy(&out.stdout).into_owned();
        Ok(body.contains("\nlibvirt_up ").then_some(body))
    })
    .unwrap();
    assert!(body.contains("\nlibvirt_up 1\n"), "{body}");
    assert!(body.contains("\nlibvirt_domains 4\n"), "{body}");
    assert_eq!(scrape(None), Some(401), "without credentials");
    assert_eq!(
        scrape(Some(("prometheus", "wrong"))),
        Some(401),
        "wrong password"
    );
    // Plain HTTP gets no metrics.
    assert!(get(&format!("http://127.0.0.1:{port}/metrics")).map_or(true, |(s, _)| s != 200));
    let logs = compose.logs().unwrap();
    for secret in [password, check_password] {
        assert!(!logs.contains(secret), "the logs show a password:\n{logs}");
    }
}

#[test]
#[ignore = "needs a Docker engine and compose/local-images.sh: run-tests.sh runs it"]
fn the_portal_stack_loads_its_config_and_keeps_its_series() {
    require_engine();
    // Stand-ins for the operator's per-site secrets, with the modes its README gives.
    let secrets = tempfile::tempdir().unwrap();
    std::fs::write(
        secrets.path().join("site-a.token"),
        "0123456789abcdef0123456789abcdef\n",
    )
    .unwrap();
    std::fs::copy(
        repo().join("compose/dev/secrets/dev-tls.crt"),
        secrets.path().join("site-a-ca.pem"),
    )
    .unwrap();
    // The Alertmanager's, as compose/portal/secrets/README.md lists them: the development
    // certificate and users (portal, healthcheck) stand in for the operator's.
    let dev = repo().join("compose/dev");
    let web = std::fs::read_to_string(dev.join("alertmanager-web.yml")).unwrap();
    assert!(web.contains("/run/secrets/alertmanager_tls_cert"), "{web}");
    std::fs::write(secrets.path().join("alertmanager-web.yml"), web).unwrap();
    for (from, to) in [
        ("dev-alertmanager.crt", "alertmanager.crt"),
        ("dev-alertmanager.key", "alertmanager.key"),
        ("dev-alertmanager.crt", "alertmanager-ca.pem"),
        ("dev-alertmanager-portal.password", "alertmanager.password"),
        (
            "dev-alertmanager-healthcheck.password",
            "alertmanager-healthcheck.password",
        ),
        ("dev-smtp.password", "smtp.password"),
        ("dev-oncall-webhook.token", "oncall-webhook.token"),
        ("dev-grafana-admin.password", "grafana-admin.password"),
    ] {
        std::fs::copy(dev.join("secrets").join(from), secrets.path().join(to)).unwrap();
    }
    let status = Command::new("chmod")
        .arg("-R")
        .arg("a+rX")
        .arg(secrets.path())
        .status()
        .unwrap();
    assert!(status.success());
    let compose = Compose::new(
        "sm-e2e-portal",
        &[
            "compose/docker-compose.portal.yml",
            "tests/compose/portal.test.yml",
        ],
        &[
            ("PORTAL_PORT", ""),
            ("STORE_PORT", ""),
            ("PORTAL_SECRETS", secrets.path().to_str().unwrap()),
            ("ALERTMANAGER_PUBLISH", "127.0.0.1:"),
        ],
    )
    .unwrap();
    // Grafana has no Debian package, so no local image.
    start_portal_services(&compose);
    // Prometheus sends to the Alertmanager over TLS with its user; nothing is open.
    compose
        .wait_alertmanager_active("prometheus", "https://alertmanager:9093/api/v2/alerts")
        .unwrap();
    let am_port = compose.port("alertmanager", 9093).unwrap();
    let anonymous = Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--cacert"])
        .arg(dev.join("secrets/dev-alertmanager.crt"))
        .arg(format!("https://127.0.0.1:{am_port}/api/v2/status"))
        .output()
        .unwrap();
    assert_eq!(String::from_utf8_lossy(&anonymous.stdout), "401");
    let url = format!(
        "http://127.0.0.1:{}",
        compose.port("prometheus", 9090).unwrap()
    );

    // prometheus/portal/ loads as it is (rules included) in this Prometheus, and the federation
    // job is there (its example gateway does not answer here).
    let jobs = poll("both scrape jobs", Duration::from_secs(60), || {
        let got: BTreeSet<String> = query(&url, "up")?
            .iter()
            .filter_map(|s| s["metric"]["job"].as_str().map(str::to_owned))
            .collect();
        Ok((got.len() >= 2).then_some(got))
    })
    .unwrap();
    assert_eq!(
        jobs,
        BTreeSet::from(["federate_site-a".to_owned(), "prometheus".to_owned()])
    );
    let loaded = query(&url, "prometheus_config_last_reload_successful").unwrap();
    assert_eq!(loaded.len(), 1);
    assert_eq!(loaded[0]["value"][1], "1", "{loaded:?}");
    let (status, rules) = get(&format!("{url}/api/v1/rules")).unwrap();
    assert_eq!(status, 200);
    assert!(rules.contains("\"type\":\"alerting\""), "{rules}");

    // The series live on the named volume, which the image's user can write: after `down`
    // (without -v) and `up`, the samples from before are still there.
    let before = query(&url, "up{job=\"prometheus\"}").unwrap()[0]["value"][0]
        .as_f64()
        .unwrap();
    // The billing store's data lives on its named volume too: a sample imported now (the
    // sites of this test do not answer, so nothing is remote-written) is there after `up`.
    let store = format!(
        "http://127.0.0.1:{}",
        compose.port("victoria-metrics", 8428).unwrap()
    );
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .build()
        .into();
    let sample = format!(
        "volume_check{{site=\"test\"}} 42 {}",
        (before * 1000.0) as i64
    );
    let response = agent
        .post(&format!("{store}/api/v1/import/prometheus"))
        .send(sample.as_str())
        .unwrap();
    assert_eq!(response.status().as_u16(), 204);
    let exported = |store: &str| -> anyhow::Result<Option<()>> {
        let (status, body) = get(&format!(
            "{store}/api/v1/export?match[]={}",
            encode("volume_check")
        ))?;
        anyhow::ensure!(status == 200, "{body}");
        Ok(body.contains("\"values\":[42]").then_some(()))
    };
    poll(
        "the imported sample in the store",
        Duration::from_secs(30),
        || exported(&store),
    )
    .unwrap();

    compose.run(&["down", "--timeout", "10"]).unwrap();
    start_portal_services(&compose);
    let url = format!(
        "http://127.0.0.1:{}",
        compose.port("prometheus", 9090).unwrap()
    );
    let (status, body) = get(&format!(
        "{url}/api/v1/query?query={}&time={before}",
        encode("up{job=\"prometheus\"}")
    ))
    .unwrap();
    assert_eq!(status, 200, "{body}");
    let v: Value = serde_json::from_str(&body).unwrap();
    assert_eq!(
        v["data"]["result"].as_array().map(Vec::len),
        Some(1),
        "the series from before `down` are gone: {body}"
    );
    let store = format!(
        "http://127.0.0.1:{}",
        compose.port("victoria-metrics", 8428).unwrap()
    );
    exported(&store)
        .unwrap()
        .expect("the store's sample from before `down` is gone");
}
