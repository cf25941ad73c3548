//! Layers point down only, in both crates: every `crate::`/`super::`/`self::` path in their
//! sources is checked against the short tables below (`stack_tests::layers`). A new module
//! must be placed in its crate's table; a new edge must be one the table allows, and the
//! tables themselves have no cycle.

use std::path::{Path, PathBuf};

use stack_tests::layers::{check, read_crate, Table};

/// `site-exporter`, bottom to top. Domain types; the vocabulary of settings and the source
/// contract; the sources; rendering and the exposition; orchestration; configuration.
const EXPORTER: &[(&str, &[&str])] = &[
    ("allocator", &[]),
    ("dates", &[]),
    ("weights", &[]),
    ("snapshot", &["weights"]),
    ("legacy", &["snapshot", "weights"]),
    ("settings", &[]),
    ("source", &["snapshot"]),
    ("test_support", &[]),
    ("sources", &[]),
    ("sources::portal", &["settings"]),
    ("sources::start_date", &["dates", "sources::portal"]),
    (
        "sources::weights",
        &[
            "settings",
            "snapshot",
            "source",
            "sources::portal",
            "weights",
        ],
    ),
    (
        "sources::weights::tests",
        &[
            "sources::weights",
            "sources::dummy",
            "legacy",
            "settings",
            "snapshot",
            "source",
            "test_support",
            "weights",
        ],
    ),
    (
        "sources::dummy",
        &[
            "dates",
            "settings",
            "snapshot",
            "source",
            "legacy",
            "weights",
            "sources::portal",
            "sources::start_date",
        ],
    ),
    (
        "sources::dummy::tests",
        &[
            "sources::dummy",
            "settings",
            "snapshot",
            "source",
            "legacy",
            "test_support",
            "weights",
        ],
    ),
    // Compact server ids and interned values at the bottom; Nova's JSON and its pure
    // conversion; the server table and Nova's usage arithmetic on it (pure, above the JSON);
    // the source with its I/O on all of them.
    ("sources::openstack::compact", &[]),
    (
        "sources::openstack::nova",
        &["dates", "snapshot", "sources::openstack::compact"],
    ),
    (
        "sources::openstack::servers",
        &["sources::openstack::nova", "sources::openstack::compact"],
    ),
    (
        "sources::openstack",
        &[
            "dates",
            "settings",
            "snapshot",
            "source",
            "legacy",
            "weights",
            "allocator",
            "sources::openstack::compact",
            "sources::openstack::nova",
            "sources::openstack::servers",
            "sources::portal",
            "sources::start_date",
            "sources::weights",
        ],
    ),
    // Its tests drive the source through refresh, hub and render: they sit on top.
    (
        "sources::openstack::tests",
        &[
            "sources::openstack",
            "sources::openstack::compact",
            "sources::openstack::nova",
            "sources::openstack::servers",
            "exposition",
            "hub",
            "refresh",
            "render",
            "settings",
            "snapshot",
            "source",
            "sources::weights",
            "legacy",
            "test_support",
            "weights",
        ],
    ),
    ("sources::libvirt", &["settings", "snapshot", "source"]),
    ("render", &["exposition", "snapshot", "weights"]),
    ("classic", &[]),
    ("exposition", &["classic"]),
    ("hub", &["exposition", "render", "snapshot"]),
    (
        "refresh",
        &[
            "allocator",
            "exposition",
            "hub",
            "render",
            "settings",
            "snapshot",
            "source",
        ],
    ),
    // The web config: a pure parser, then TLS and auth on it, then the live file on top.
    ("webconfig", &[]),
    ("webconfig::parse", &[]),
    ("webconfig::tls", &["webconfig::parse"]),
    ("webconfig::auth", &["webconfig::parse"]),
    (
        "webconfig::live",
        &["webconfig::auth", "webconfig::parse", "webconfig::tls"],
    ),
    ("server", &["exposition", "hub", "webconfig::live"]),
    ("cli", &["settings"]),
    (
        "probe",
        &[
            "config",
            "settings",
            "snapshot",
            "source",
            "sources",
            "sources::libvirt",
            "sources::openstack",
            "sources::portal",
            "sources::start_date",
            "sources::weights",
            "test_support",
            "weights",
            "cli",
        ],
    ),
    (
        "config",
        &[
            "cli",
            "legacy",
            "render",
            "settings",
            "sources",
            "sources::dummy",
            "sources::libvirt",
            "sources::openstack",
            "sources::portal",
            "sources::weights",
        ],
    ),
];

/// `federation-gateway`, bottom to top (its `lib.rs` names the seven layers).
const GATEWAY: &[(&str, &[&str])] = &[
    ("selectors", &[]),
    ("auth", &[]),
    ("ratelimit", &[]),
    ("tls", &[]),
    ("cli", &[]),
    ("intake", &[]),
    ("query", &["selectors"]),
    ("config", &["ratelimit", "selectors", "tls"]),
    ("error", &["auth", "query", "ratelimit"]),
    ("metrics", &["error"]),
    (
        "upstream",
        &["config", "error", "query", "selectors", "tls"],
    ),
    ("state", &["config", "metrics", "upstream"]),
    ("routes", &["auth", "error", "query", "state", "upstream"]),
    ("server", &["intake", "routes", "state"]),
];

fn violations(src: &str, table: &[(&str, &[&str])], plant: Option<(&str, &str)>) -> Vec<String> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("..").join(src);
    let mut files = read_crate(&dir).expect("the crate's sources are readable");
    assert!(
        files.len() > 10,
        "{} holds the crate's sources",
        dir.display()
    );
    if let Some((file, line)) = plant {
        let (_, text) = files
            .iter_mut()
            .find(|(p, _)| p == &PathBuf::from(file))
            .expect("the file to plant into exists");
        text.push_str(line);
    }
    let table = Table::new(table);
    assert_eq!(table.cycle(), None, "the table itself has no cycle");
    match check(&files, &table) {
        Ok(_) => Vec::new(),
        Err(v) => v.iter().map(ToString::to_string).collect(),
    }
}

#[test]
fn exporter_layers_point_down() {
    let found = violations("exporter/src", EXPORTER, None);
    assert!(found.is_empty(), "{found:#?}");
}

struct Planted {
    name: &'static str,
    file: &'static str,
    line: &'static str,
    want: &'static [&'static str],
}

/// The back edges this layering removed, planted again: each must fail the check.
#[test]
fn exporter_back_edges_are_caught() {
    let cases = [
        Planted {
            name: "cli reading the log format from config, as it did",
            file: "cli.rs",
            line: "\nfn planted(_: crate::config::LogFormat) {}\n",
            want: &[
                "cli -> config is not an allowed edge (cli.rs: config::LogFormat)",
                "cycle: cli -> config -> cli",
            ],
        },
        Planted {
            name: "render reaching into a source, as it did",
            file: "render/openstack.rs",
            line: "\nuse crate::sources::openstack::UsageStart as Planted;\n",
            want: &["render -> sources::openstack is not an allowed edge"],
        },
        Planted {
            name: "a source using the refresh task, as they did",
            file: "sources/libvirt/config.rs",
            line: "\nuse crate::refresh::spawn as planted;\n",
            want: &["sources::libvirt -> refresh is not an allowed edge"],
        },
        Planted {
            name: "a serde attribute naming config from a source section",
            file: "sources/dummy/config.rs",
            line: "\n#[derive(serde::Deserialize)] struct P { #[serde(deserialize_with = \"crate::config::planted\")] x: u8 }\n",
            want: &["sources::dummy -> config is not an allowed edge"],
        },
    ];
    assert_caught("exporter/src", EXPORTER, &cases);
}

#[test]
fn gateway_layers_point_down() {
    let found = violations("gateway/src", GATEWAY, None);
    assert!(found.is_empty(), "{found:#?}");
}

/// The gateway's back edges as they were before the layering, planted again.
#[test]
fn gateway_back_edges_are_caught() {
    let cases = [
        Planted {
            name: "tls taking config's error, as it did",
            file: "tls.rs",
            line: "\nuse crate::config::ConfigError as Planted;\n",
            want: &[
                "tls -> config is not an allowed edge (tls.rs: config::ConfigError)",
                "cycle: config -> tls -> config",
            ],
        },
        Planted {
            name: "a phase reaching up to the routes",
            file: "selectors.rs",
            line: "\nfn planted() { let _ = crate::routes::handle; }\n",
            want: &["selectors -> routes is not an allowed edge"],
        },
    ];
    assert_caught("gateway/src", GATEWAY, &cases);
}

/// Each planted line must produce every violation its case wants.
fn assert_caught(src: &str, table: &[(&str, &[&str])], cases: &[Planted]) {
    for case in cases {
        let found = violations(src, table, Some((case.file, case.line)));
        for want in case.want {
            assert!(
                found.iter().any(|f| f.starts_with(want)),
                "{}: want {want:?} in {found:#?}",
                case.name
            );
        }
    }
}

/// Each crate's `lib.rs` is its map: it names every top-level module it declares.
#[test]
fn both_maps_name_every_module() {
    for src in ["exporter/src", "gateway/src"] {
        let lib = std::fs::read_to_string(
            Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("..")
                .join(src)
                .join("lib.rs"),
        )
        .expect("lib.rs is readable");
        let docs: String = lib
            .lines()
            .filter_map(|l| l.trim_start().strip_prefix("//!"))
            .collect::<Vec<_>>()
            .join("\n");
        let modules: Vec<&str> = lib
            .lines()
            .filter_map(|l| {
                l.trim()
                    .strip_prefix("pub mod ")
                    .or_else(|| l.trim().strip_prefix("mod "))
            })
            .filter_map(|rest| rest.strip_suffix(';'))
            .filter(|m| *m != "test_support")
            .collect();
        assert!(modules.len() > 5, "{src}: {modules:?}");
        for m in modules {
            assert!(
                docs.contains(&format!("`{m}`")),
                "{src}/lib.rs declares {m} but its map does not name it"
            );
        }
    }
}
