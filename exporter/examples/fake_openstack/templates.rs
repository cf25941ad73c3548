//! The recorded responses (`exporter/tests/fixtures/openstack`, copies of
//! `shared/openstack/samples`) that every answer is built from, so no field is invented: a
//! generated project, domain or server is a recorded one with its values replaced.

use serde_json::Value;

macro_rules! fixture {
    ($name:literal) => {
        include_str!(concat!("../../tests/fixtures/openstack/", $name))
    };
}

pub const TOKEN: &str = fixture!("keystone_POST_auth_tokens_admin.json");
pub const KEYSTONE_VERSIONS: &str = fixture!("keystone_versions.json");
pub const NOVA_VERSIONS: &str = fixture!("nova_versions.json");
pub const NOVA_VERSION: &str = fixture!("nova_version_v2.1.json");
pub const PROJECTS: &str = fixture!("keystone_projects.json");
pub const DOMAINS: &str = fixture!("keystone_domains.json");
pub const SERVERS: &str = fixture!("nova_servers_detail_all_tenants_mv2.47.json");
/// Used by the shape tests only.
#[cfg(test)]
pub const USAGE_PAGE: &str =
    fixture!("nova_os-simple-tenant-usage_detailed_mv2.40_limit3_page1.json");
#[cfg(test)]
pub const USAGE_LAST_PAGE: &str =
    fixture!("nova_os-simple-tenant-usage_detailed_mv2.40_limit3_page4.json");
#[cfg(test)]
pub const USAGE_ONE: &str = fixture!("nova_os-simple-tenant-usage_alpha-data_mv2.40.json");

/// A flavor as embedded in the recorded servers.
#[derive(Debug, Clone)]
pub struct Flavor {
    pub name: String,
    pub vcpus: u64,
    pub ram: u64,
    pub disk: u64,
    pub ephemeral: u64,
    /// The recorded `flavor` object.
    pub embedded: Value,
}

/// Parsed templates and the addresses to put into them.
#[derive(Debug)]
pub struct Templates {
    /// `http://127.0.0.1:PORT`: Keystone and Nova both answer here.
    pub base: String,
    pub project: Value,
    pub domain: Value,
    /// The first recorded server of each status (an ACTIVE server has `progress`, others
    /// do not): generated servers copy the one of their status.
    pub servers: Vec<(String, Value)>,
    /// Distinct flavors of the recorded servers, in recorded order.
    pub flavors: Vec<Flavor>,
    /// Nova's `[api] max_limit`: the largest page.
    pub max_limit: usize,
}

fn parse(text: &str) -> Value {
    serde_json::from_str(text).expect("the recorded fixtures are JSON")
}

impl Templates {
    pub fn new(base: String, max_limit: usize) -> Templates {
        let servers = parse(SERVERS);
        let list = servers["servers"].as_array().cloned().unwrap_or_default();
        let mut flavors: Vec<Flavor> = Vec::new();
        let mut by_status: Vec<(String, Value)> = Vec::new();
        for s in &list {
            let status = s["status"].as_str().unwrap_or_default().to_owned();
            let empty = s["os-extended-volumes:volumes_attached"]
                .as_array()
                .is_some_and(Vec::is_empty);
            if empty && by_status.iter().all(|(known, _)| *known != status) {
                by_status.push((status, s.clone()));
            }
            let f = &s["flavor"];
            let name = f["original_name"].as_str().unwrap_or_default().to_owned();
            if flavors.iter().all(|known| known.name != name) {
                let n = |k: &str| f[k].as_u64().unwrap_or(0);
                flavors.push(Flavor {
                    name,
                    vcpus: n("vcpus"),
                    ram: n("ram"),
                    disk: n("disk"),
                    ephemeral: n("ephemeral"),
                    embedded: f.clone(),
                });
            }
        }
        Templates {
            project: parse(PROJECTS)["projects"][0].clone(),
            domain: parse(DOMAINS)["domains"][0].clone(),
            servers: by_status,
            flavors,
            max_limit,
            base,
        }
    }

    /// The recorded server of `status` (the first recorded one if none has it).
    pub fn server(&self, status: &str) -> &Value {
        self.servers
            .iter()
            .find(|(s, _)| s == status)
            .or(self.servers.first())
            .map(|(_, v)| v)
            .expect("the recorded servers are not empty")
    }

    /// A recorded document with the recorded addresses of Keystone and Nova replaced by ours.
    pub fn rewrite(&self, text: &str) -> String {
        let host = self.base.trim_start_matches("http://");
        text.replace("127.0.0.1:5000", host)
            .replace("127.0.0.1:8774", host)
    }
}
