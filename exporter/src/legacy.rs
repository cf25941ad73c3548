//! The original `os_project_usage_exporter`'s numbers, which portals bill from.
//!
//! Release 3.0.0 sums, over the servers of a project whose hours in the usage window are
//! positive, `hours × vcpus` into `project_vcpu_usage` and `hours × ⌊memory_mb / 1024⌋` into
//! `project_mb_usage` — GiB-hours under the MB name since 2.1.0. `MemoryUnit::Mb` gives the
//! older meaning (`hours × memory_mb`). Credit weights (`weights`) multiply each term, chosen
//! by the server's size and start.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;

use crate::snapshot::{LegacySeries, LegacyUsage, Project};
use crate::weights::{Resource, Weights};

/// How the legacy families are computed: memory unit and the SimpleVM split.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LegacyOptions {
    pub memory_unit: MemoryUnit,
    pub simple_vm: Option<SimpleVm>,
}

/// A shared OpenStack project hosting the servers of many portal projects: in the legacy
/// families it is replaced by one series per value of the servers' metadata `tag`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SimpleVm {
    pub project_id: String,
    /// Metadata key naming the portal project [default: `project_name`].
    pub tag: String,
}

/// Default SimpleVM metadata key, as in the original.
pub const DEFAULT_SIMPLE_VM_TAG: &str = "project_name";

/// One server of a project, as the legacy families need it.
#[derive(Debug, Clone, Copy)]
pub struct LegacyServer<'a> {
    pub hours: ServerHours,
    /// Unix seconds; selects the weights set.
    pub started_at: f64,
    pub metadata: &'a BTreeMap<String, String>,
}

/// The legacy series of one project: one series, or for the SimpleVM project one per tag
/// value (sorted), with servers lacking the tag left out.
pub fn project_series<'a>(
    project: &Arc<Project>,
    servers: impl IntoIterator<Item = LegacyServer<'a>>,
    options: &LegacyOptions,
    weights: &Weights,
) -> Vec<LegacySeries> {
    let usage = |s: &LegacyServer<'_>| {
        weighted_server_usage(s.hours, s.started_at, options.memory_unit, weights)
    };
    match &options.simple_vm {
        Some(svm) if svm.project_id == project.id => {
            let mut by_tag: BTreeMap<&str, LegacyUsage> = BTreeMap::new();
            for s in servers {
                if let Some(tag) = s.metadata.get(&svm.tag) {
                    *by_tag.entry(tag.as_str()).or_default() += usage(&s);
                }
            }
            by_tag
                .into_iter()
                .map(|(tag, usage)| LegacySeries {
                    project: Arc::new(Project {
                        name: tag.to_string(),
                        ..Project::clone(project)
                    }),
                    usage,
                })
                .collect()
        }
        _ => {
            let mut total = LegacyUsage::default();
            for s in servers {
                total += usage(&s);
            }
            vec![LegacySeries {
                project: Arc::clone(project),
                usage: total,
            }]
        }
    }
}

/// What `project_mb_usage` counts per hour of a server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum MemoryUnit {
    /// Whole GiB (`⌊memory_mb / 1024⌋`), as releases 2.1.0 to 3.0.0 compute.
    #[default]
    Gib,
    /// Megabytes, as releases before 2.1.0 compute.
    Mb,
}

/// One server's share of the usage window.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct ServerHours {
    pub hours: f64,
    pub vcpus: u64,
    pub memory_mb: u64,
}

/// The unweighted legacy contribution of one server; servers with no positive hours add
/// nothing.
pub fn server_usage(server: ServerHours, unit: MemoryUnit) -> LegacyUsage {
    weighted_server_usage(server, 0.0, unit, &Weights::default())
}

/// The legacy contribution of one server that started at `started_at` (Unix seconds), each
/// term multiplied by the weight in force for its size.
pub fn weighted_server_usage(
    server: ServerHours,
    started_at: f64,
    unit: MemoryUnit,
    weights: &Weights,
) -> LegacyUsage {
    if server.hours <= 0.0 {
        return LegacyUsage::default();
    }
    let vcpus = server.vcpus as f64;
    let memory = match unit {
        MemoryUnit::Gib => server.memory_mb / 1024,
        MemoryUnit::Mb => server.memory_mb,
    } as f64;
    LegacyUsage {
        vcpu_hours: server.hours * vcpus * weights.weight(Resource::Vcpus, vcpus, started_at),
        memory_hours: server.hours * memory * weights.weight(Resource::Memory, memory, started_at),
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    struct Case {
        name: &'static str,
        server: ServerHours,
        unit: MemoryUnit,
        want: (f64, f64),
    }

    #[test]
    fn weights_multiply_each_term_by_size_and_start() {
        let weights = Weights::from_json(
            br#"[{"resource_set_timestamp": 100, "vcpus": [{"value": 2, "weight": 1.5}, {"value": 8, "weight": 3}],
                  "memory_mb": [{"value": 4, "weight": 0.5}, {"value": 64, "weight": 2}]},
                 {"resource_set_timestamp": 200, "vcpus": [{"value": 8, "weight": 10}], "memory_mb": []}]"#,
        )
        .unwrap();
        let server = ServerHours {
            hours: 10.0,
            vcpus: 4,
            memory_mb: 4096,
        };
        // Started under the first set: 4 vCPUs take the weight of 8 (3), 4 GiB that of 4 (0.5).
        let got = weighted_server_usage(server, 150.0, MemoryUnit::Gib, &weights);
        assert_eq!(
            (got.vcpu_hours, got.memory_hours),
            (10.0 * 4.0 * 3.0, 10.0 * 4.0 * 0.5)
        );
        // Under the second set: vCPU weight 10, no memory list means weight 1.
        let got = weighted_server_usage(server, 250.0, MemoryUnit::Gib, &weights);
        assert_eq!((got.vcpu_hours, got.memory_hours), (400.0, 40.0));
        // The MB unit compares megabytes with the memory values: 4096 is above 64.
        let got = weighted_server_usage(server, 150.0, MemoryUnit::Mb, &weights);
        assert_eq!(got.memory_hours, 10.0 * 4096.0 * 2.0);
    }

    #[test]
    fn simple_vm_project_splits_by_tag() {
        let project = Arc::new(Project {
            id: "svm".into(),
            name: "simplevm".into(),
            domain_id: "d".into(),
            domain_name: "elixir".into(),
            enabled: true,
        });
        let tagged = |v: &str| BTreeMap::from([("project_name".to_string(), v.to_string())]);
        let (a, b, none) = (tagged("genomics"), tagged("teaching"), BTreeMap::new());
        let server = |hours, metadata| LegacyServer {
            hours: ServerHours {
                hours,
                vcpus: 2,
                memory_mb: 2048,
            },
            started_at: 0.0,
            metadata,
        };
        let servers = [
            server(10.0, &a),
            server(5.0, &b),
            server(1.0, &a),
            server(7.0, &none),
        ];
        let options = LegacyOptions {
            memory_unit: MemoryUnit::Gib,
            simple_vm: Some(SimpleVm {
                project_id: "svm".into(),
                tag: DEFAULT_SIMPLE_VM_TAG.into(),
            }),
        };
        let split = project_series(&project, servers, &options, &Weights::default());
        let got: Vec<(&str, &str, f64, f64)> = split
            .iter()
            .map(|s| {
                (
                    s.project.id.as_str(),
                    s.project.name.as_str(),
                    s.usage.vcpu_hours,
                    s.usage.memory_hours,
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                ("svm", "genomics", 22.0, 22.0),
                ("svm", "teaching", 10.0, 10.0)
            ]
        );
        assert!(split.iter().all(|s| s.project.domain_name == "elixir"));
        // Any other project: one series over all its servers.
        let other = Arc::new(Project {
            id: "other".into(),
            ..Project::clone(&project)
        });
        let whole = project_series(&other, servers, &options, &Weights::default());
        assert_eq!(whole.len(), 1);
        assert_eq!(whole[0].usage.vcpu_hours, 46.0);
        assert_eq!(whole[0].project, other);
    }

    #[test]
    fn per_server_terms() {
        let s = |hours, vcpus, memory_mb| ServerHours {
            hours,
            vcpus,
            memory_mb,
        };
        let cases = [
            Case {
                name: "whole GiB",
                server: s(10.0, 2, 4096),
                unit: MemoryUnit::Gib,
                want: (20.0, 40.0),
            },
            Case {
                name: "GiB rounds down",
                server: s(2.0, 1, 1536),
                unit: MemoryUnit::Gib,
                want: (2.0, 2.0),
            },
            Case {
                name: "below one GiB counts nothing",
                server: s(3.0, 1, 512),
                unit: MemoryUnit::Gib,
                want: (3.0, 0.0),
            },
            Case {
                name: "MB unit",
                server: s(1.5, 4, 2048),
                unit: MemoryUnit::Mb,
                want: (6.0, 3072.0),
            },
            Case {
                name: "no hours",
                server: s(0.0, 8, 8192),
                unit: MemoryUnit::Gib,
                want: (0.0, 0.0),
            },
        ];
        for case in cases {
            let got = server_usage(case.server, case.unit);
            assert_eq!(
                (got.vcpu_hours, got.memory_hours),
                case.want,
                "case: {}",
                case.name
            );
        }
    }
}
