//! Generated clouds of any size, the same for the same seed: for load tests and benchmarks.
//!
//! Projects are spread over the domains `default` and `elixir`; servers get de.NBI-like
//! flavors, mostly `active` with some stopped, paused, in error, deleted in the past, and a few
//! created after the exporter started, so series appear while it runs.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use super::cloud::{Cloud, CloudProject, Domain, Flavor, Server};
use super::file::{derived_domain_id, derived_id};

/// Size and seed of a generated cloud.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Generate {
    pub projects: u64,
    pub servers_per_project: u64,
    pub seed: u64,
}

const DAY: u64 = 86_400;

/// (name, vcpus, ram_mb, root_gb, ephemeral_gb)
const FLAVORS: &[(&str, u64, u64, u64, u64)] = &[
    ("de.NBI tiny", 1, 2048, 20, 0),
    ("de.NBI small", 2, 4096, 20, 0),
    ("de.NBI medium", 4, 8192, 20, 0),
    ("de.NBI default", 8, 16384, 20, 50),
    ("de.NBI large", 16, 32768, 20, 150),
    ("de.NBI highmem large", 28, 245760, 50, 250),
    ("de.NBI GPU medium", 14, 65536, 50, 0),
];

/// SplitMix64: small, fast and good enough for fake data; fixed here so a seed means the same
/// cloud in every version.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0).
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
}

/// Builds the cloud; times count from `anchor` (the exporter's start).
pub fn generate(spec: Generate, anchor: SystemTime) -> Cloud {
    let mut rng = Rng(spec.seed);
    let usage_start = anchor - Duration::from_secs(90 * DAY);
    let mut domains: Vec<Domain> = ["default", "elixir"]
        .iter()
        .map(|name| Domain {
            id: derived_domain_id(name),
            name: (*name).to_string(),
            projects: Vec::new(),
        })
        .collect();
    for i in 0..spec.projects {
        let domain = usize::from(rng.below(10) >= 6);
        let name = format!("project-{i:05}");
        let domain_name = domains[domain].name.clone();
        let mut servers = Vec::with_capacity(spec.servers_per_project as usize);
        for j in 0..spec.servers_per_project {
            servers.push(server(&mut rng, &domain_name, &name, j, anchor));
        }
        domains[domain].projects.push(CloudProject {
            id: derived_id(&["project", &domain_name, &name]),
            enabled: rng.below(50) != 0,
            name,
            servers,
        });
    }
    Cloud {
        usage_start,
        domains,
    }
}

fn server(rng: &mut Rng, domain: &str, project: &str, j: u64, anchor: SystemTime) -> Server {
    let (fname, vcpus, ram_mb, root_gb, ephemeral_gb) =
        FLAVORS[rng.below(FLAVORS.len() as u64) as usize];
    let status = match rng.below(100) {
        0..=79 => "active",
        80..=89 => "shutoff",
        90..=93 => "paused",
        94..=96 => "suspended",
        _ => "error",
    };
    // Most servers were created in the last 120 days; one in fifty appears during the first
    // hour after start.
    let created = if rng.below(50) == 0 {
        anchor + Duration::from_secs(60 + rng.below(3600))
    } else {
        anchor - Duration::from_secs(rng.below(120 * DAY))
    };
    let deleted = (rng.below(5) == 0).then(|| {
        let lifetime = anchor
            .duration_since(created)
            .map_or(0, |d| d.as_secs())
            .max(1);
        created + Duration::from_secs(1 + rng.below(lifetime))
    });
    let name = format!("{project}-vm{j}");
    let mut metadata = BTreeMap::new();
    metadata.insert("project_name".to_string(), project.to_string());
    Server {
        id: uuid::Uuid::new_v5(
            &uuid::Uuid::NAMESPACE_OID,
            format!("server/{domain}/{project}/{name}").as_bytes(),
        )
        .hyphenated()
        .to_string(),
        name,
        flavor: Flavor {
            name: fname.to_string(),
            vcpus,
            ram_mb,
            root_gb,
            ephemeral_gb,
        },
        status: status.to_string(),
        created,
        deleted,
        user: format!("{project}-user"),
        metadata,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn same_seed_same_cloud_other_seed_other_cloud() {
        let anchor = SystemTime::UNIX_EPOCH + Duration::from_secs(1_700_000_000);
        let spec = Generate {
            projects: 50,
            servers_per_project: 4,
            seed: 7,
        };
        let a = generate(spec, anchor);
        assert_eq!(a, generate(spec, anchor));
        assert_ne!(a, generate(Generate { seed: 8, ..spec }, anchor));
        let projects: usize = a.domains.iter().map(|d| d.projects.len()).sum();
        assert_eq!(projects, 50);
        let servers: usize = a
            .domains
            .iter()
            .flat_map(|d| &d.projects)
            .map(|p| p.servers.len())
            .sum();
        assert_eq!(servers, 200);
        // Both domains are used, and the statuses vary.
        assert!(a.domains.iter().all(|d| !d.projects.is_empty()));
        let statuses: std::collections::BTreeSet<&str> = a
            .domains
            .iter()
            .flat_map(|d| &d.projects)
            .flat_map(|p| &p.servers)
            .map(|s| s.status.as_str())
            .collect();
        assert!(statuses.len() >= 4, "{statuses:?}");
    }
}
