//! Keystone projects and domains: API JSON and the pure join + filter into [`Project`]s.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::snapshot::Project;

/// One page of `GET /v3/projects`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct ProjectsPage {
    pub projects: Vec<KeystoneProject>,
    #[serde(default)]
    pub links: PageLinks,
    /// Set when Keystone cut the list at its `list_limit`.
    #[serde(default)]
    pub truncated: bool,
}

/// One page of `GET /v3/domains`.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct DomainsPage {
    pub domains: Vec<Domain>,
    #[serde(default)]
    pub links: PageLinks,
    /// Set when Keystone cut the list at its `list_limit`.
    #[serde(default)]
    pub truncated: bool,
}

/// Keystone's collection links; `next` is an absolute URL or null on the last page.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct PageLinks {
    #[serde(default)]
    pub next: Option<String>,
}

/// A project as Keystone lists it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct KeystoneProject {
    pub id: String,
    pub name: String,
    pub domain_id: String,
    #[serde(default = "yes")]
    pub enabled: bool,
    #[serde(default)]
    pub is_domain: bool,
}

/// A domain as Keystone lists it.
#[derive(Debug, Clone, Default, Deserialize, PartialEq)]
pub struct Domain {
    pub id: String,
    pub name: String,
}

fn yes() -> bool {
    true
}

/// Which projects are exported. Empty `domains`/`projects` mean all.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Filters {
    /// Domain names or ids to keep.
    pub domains: Vec<String>,
    /// Domain names or ids to drop (e.g. heat's stack domain).
    pub exclude_domains: Vec<String>,
    /// Project ids to keep.
    pub projects: Vec<String>,
    /// Project ids to drop.
    pub exclude_projects: Vec<String>,
}

impl Filters {
    fn keeps(&self, p: &KeystoneProject, domain_name: &str) -> bool {
        let in_domains =
            |list: &[String]| list.iter().any(|d| d == &p.domain_id || d == domain_name);
        (self.domains.is_empty() || in_domains(&self.domains))
            && !in_domains(&self.exclude_domains)
            && (self.projects.is_empty() || self.projects.contains(&p.id))
            && !self.exclude_projects.contains(&p.id)
    }
}

/// Joins projects with their domain names and applies `filters`; sorted by id. Domains
/// themselves (`is_domain`) are not projects to export.
pub fn projects(list: &[KeystoneProject], domains: &[Domain], filters: &Filters) -> Vec<Project> {
    let names: BTreeMap<&str, &str> = domains
        .iter()
        .map(|d| (d.id.as_str(), d.name.as_str()))
        .collect();
    let mut out: Vec<Project> = list
        .iter()
        .filter(|p| !p.is_domain)
        .filter_map(|p| {
            let domain_name = names.get(p.domain_id.as_str()).copied().unwrap_or_default();
            filters.keeps(p, domain_name).then(|| Project {
                id: p.id.clone(),
                name: p.name.clone(),
                domain_id: p.domain_id.clone(),
                domain_name: domain_name.to_owned(),
                enabled: p.enabled,
            })
        })
        .collect();
    out.sort();
    out
}

#[cfg(test)]
#[path = "keystone/tests.rs"]
mod tests;
