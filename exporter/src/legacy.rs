//! The original `os_project_usage_exporter`'s numbers, which portals bill from.
//!
//! Release 3.0.0 sums, over the servers of a project whose hours in the usage window are
//! positive, `hours × vcpus` into `project_vcpu_usage` and `hours × ⌊memory_mb / 1024⌋` into
//! `project_mb_usage` — GiB-hours under the MB name since 2.1.0. `MemoryUnit::Mb` gives the
//! older meaning (`hours × memory_mb`). Credit weights (a later issue) multiply each term.

use serde::Deserialize;

use crate::snapshot::LegacyUsage;

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

/// The legacy contribution of one server; servers with no positive hours add nothing.
pub fn server_usage(server: ServerHours, unit: MemoryUnit) -> LegacyUsage {
    if server.hours <= 0.0 {
        return LegacyUsage::default();
    }
    let memory = match unit {
        MemoryUnit::Gib => server.memory_mb / 1024,
        MemoryUnit::Mb => server.memory_mb,
    };
    LegacyUsage {
        vcpu_hours: server.hours * server.vcpus as f64,
        memory_hours: server.hours * memory as f64,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Case {
        name: &'static str,
        server: ServerHours,
        unit: MemoryUnit,
        want: (f64, f64),
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
