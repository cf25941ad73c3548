//! A real Prometheus (Debian's package) scrapes the dummy exporter: every family arrives with
//! its labels, counters grow between scrapes, and the scrape used OpenMetrics.

#![allow(clippy::unwrap_used)]

use std::collections::BTreeSet;
use std::time::Duration;

use serde_json::Value;
use stack_tests::{poll, Exporter, Prometheus};

/// Families (sample names) the dummy exporter must deliver, with the labels every series has.
const PROJECT_LABELS: &[&str] = &["project_id", "project_name", "domain_id", "domain_name"];
const FAMILIES: &[(&str, &[&str])] = &[
    ("openstack_project_vcpu_seconds_total", PROJECT_LABELS),
    (
        "openstack_project_memory_byte_seconds_total",
        PROJECT_LABELS,
    ),
    ("openstack_project_disk_byte_seconds_total", PROJECT_LABELS),
    ("openstack_project_instance_seconds_total", PROJECT_LABELS),
    (
        "openstack_project_instances",
        &[
            "project_id",
            "project_name",
            "domain_id",
            "domain_name",
            "status",
        ],
    ),
    ("openstack_project_vcpus", PROJECT_LABELS),
    ("openstack_project_memory_bytes", PROJECT_LABELS),
    ("openstack_project_disk_bytes", PROJECT_LABELS),
    (
        "openstack_project_info",
        &[
            "project_id",
            "project_name",
            "domain_id",
            "domain_name",
            "enabled",
        ],
    ),
    ("project_vcpu_usage", PROJECT_LABELS),
    ("project_mb_usage", PROJECT_LABELS),
    ("libvirt_up", &[]),
    ("libvirt_domains", &[]),
    ("libvirt_domain_state_code", &["domain"]),
    (
        "libvirt_domain_openstack_info",
        &[
            "domain",
            "instance_id",
            "instance_name",
            "flavor_name",
            "project_id",
            "project_name",
            "user_id",
            "user_name",
        ],
    ),
    (
        "libvirt_domain_lifecycle_events_total",
        &["domain", "event", "reason"],
    ),
    ("libvirt_event_stream_up", &[]),
    ("libvirt_event_stream_reconnects_total", &[]),
    ("libvirt_domain_info_virtual_cpus", &["domain"]),
    ("libvirt_domain_info_maximum_memory_bytes", &["domain"]),
    ("libvirt_domain_info_memory_usage_bytes", &["domain"]),
    ("libvirt_domain_info_cpu_time_seconds_total", &["domain"]),
    (
        "libvirt_domain_vcpu_time_seconds_total",
        &["domain", "vcpu"],
    ),
    (
        "libvirt_domain_memory_stats_actual_balloon_bytes",
        &["domain"],
    ),
    ("libvirt_domain_memory_stats_available_bytes", &["domain"]),
    ("libvirt_domain_memory_stats_unused_bytes", &["domain"]),
    ("libvirt_domain_memory_stats_usable_bytes", &["domain"]),
    ("libvirt_domain_memory_stats_rss_bytes", &["domain"]),
    (
        "libvirt_domain_block_stats_read_bytes_total",
        &["domain", "target_device"],
    ),
    (
        "libvirt_domain_block_stats_write_bytes_total",
        &["domain", "target_device"],
    ),
    (
        "libvirt_domain_block_stats_read_requests_total",
        &["domain", "target_device"],
    ),
    (
        "libvirt_domain_block_stats_write_requests_total",
        &["domain", "target_device"],
    ),
    (
        "libvirt_domain_block_stats_read_time_seconds_total",
        &["domain", "target_device"],
    ),
    (
        "libvirt_domain_block_stats_write_time_seconds_total",
        &["domain", "target_device"],
    ),
    (
        "libvirt_domain_block_stats_capacity_bytes",
        &["domain", "target_device"],
    ),
    (
        "libvirt_domain_interface_stats_receive_bytes_total",
        &["domain", "target_device"],
    ),
    (
        "libvirt_domain_interface_stats_receive_packets_total",
        &["domain", "target_device"],
    ),
    (
        "libvirt_domain_interface_stats_receive_errors_total",
        &["domain", "target_device"],
    ),
    (
        "libvirt_domain_interface_stats_receive_drops_total",
        &["domain", "target_device"],
    ),
    (
        "libvirt_domain_interface_stats_transmit_bytes_total",
        &["domain", "target_device"],
    ),
    (
        "libvirt_domain_interface_stats_transmit_packets_total",
        &["domain", "target_device"],
    ),
    (
        "libvirt_domain_interface_stats_transmit_errors_total",
        &["domain", "target_device"],
    ),
    (
        "libvirt_domain_interface_stats_transmit_drops_total",
        &["domain", "target_device"],
    ),
    ("site_exporter_build_info", &["version"]),
    ("site_exporter_source_up", &["source"]),
    (
        "site_exporter_source_last_success_timestamp_seconds",
        &["source"],
    ),
    ("site_exporter_source_refresh_duration_seconds", &["source"]),
    ("site_exporter_source_refresh_errors_total", &["source"]),
];

fn value(sample: &Value) -> f64 {
    sample["value"][1].as_str().unwrap().parse().unwrap()
}

#[test]
fn prometheus_scrapes_every_family_over_openmetrics() {
    let exporter = Exporter::start_dummy(Duration::from_millis(500));
    let config = format!(
        "global: {{scrape_interval: 1s, scrape_timeout: 1s}}\n\
         scrape_configs:\n  - job_name: project_usages\n    static_configs: [{{targets: ['{}']}}]\n",
        exporter.addr
    );
    let prom = Prometheus::start(&config, &[]).unwrap();

    // Every family arrives, each series with exactly the documented labels (plus job, instance).
    let all = poll(
        "every family to be scraped",
        Duration::from_secs(60),
        || {
            let got = prom.query("count by (__name__) ({job=\"project_usages\"})")?;
            let names: BTreeSet<String> = got
                .iter()
                .filter_map(|s| s["metric"]["__name__"].as_str().map(str::to_owned))
                .collect();
            Ok(FAMILIES
                .iter()
                .all(|(f, _)| names.contains(*f))
                .then_some(names))
        },
    )
    .unwrap_or_else(|e| panic!("{e:#}\n{}", prom.log()));
    assert!(all.contains("up"));
    for (family, labels) in FAMILIES {
        let series = prom
            .query(&format!("{family}{{job=\"project_usages\"}}"))
            .unwrap();
        assert!(!series.is_empty(), "{family}");
        for s in &series {
            let mut got: BTreeSet<&str> = s["metric"]
                .as_object()
                .unwrap()
                .keys()
                .map(String::as_str)
                .collect();
            for fixed in ["__name__", "job", "instance"] {
                assert!(got.remove(fixed), "{family} lacks {fixed}");
            }
            let want: BTreeSet<&str> = labels.iter().copied().collect();
            assert_eq!(got, want, "labels of {family}");
        }
    }
    let domains = prom
        .query("count by (domain_name) (openstack_project_info)")
        .unwrap();
    assert_eq!(domains.len(), 2, "both dummy domains arrive: {domains:?}");

    // Counters grow between scrapes.
    let query = "sum(openstack_project_vcpu_seconds_total)";
    let first = value(&prom.query(query).unwrap()[0]);
    poll("the vCPU counter to grow", Duration::from_secs(30), || {
        Ok((value(&prom.query(query)?[0]) > first).then_some(()))
    })
    .unwrap();
    let q = "libvirt_domain_info_cpu_time_seconds_total";
    let rates = prom.query(&format!("rate({q}[5s]) > 0")).unwrap();
    assert!(!rates.is_empty(), "a running guest's CPU time grows");

    // The scrape used OpenMetrics: only that format carries units and the info type, and
    // Prometheus keeps them as target metadata under the family name.
    let meta = prom
        .api("/api/v1/targets/metadata?match_target=%7Bjob%3D%22project_usages%22%7D")
        .unwrap();
    let meta = meta.as_array().unwrap();
    let find = |metric: &str| {
        meta.iter()
            .find(|m| m["metric"] == metric)
            .unwrap_or_else(|| panic!("no metadata for {metric}: {meta:?}"))
    };
    assert_eq!(find("openstack_project_vcpu_seconds")["type"], "counter");
    assert_eq!(find("openstack_project_vcpu_seconds")["unit"], "seconds");
    assert_eq!(
        find("openstack_project_memory_byte_seconds")["unit"],
        "byte_seconds"
    );
    assert_eq!(find("openstack_project")["type"], "info");
    assert_eq!(find("project_vcpu_usage")["help"], "Total vcpu usage");
}
