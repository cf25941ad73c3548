//! What one refresh reads: Keystone's projects and domains, Nova's usage window, servers,
//! flavors and quotas, every list followed page by page. A list that does not end, or that
//! Keystone cut without a next link, is an error, never a silently shorter list.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::SystemTime;

use super::client::{RequestError, Service};
use super::keystone::{self, DomainsPage, ProjectsPage};
use super::nova::{self, FlavorsPage, ServersPage, UsagePage};
use super::servers::ServerTable;
use super::{OpenstackError, OpenstackSource};
use crate::snapshot::{Project, Quota};

/// Flavor sizes by flavor id.
pub(super) type FlavorSizes = BTreeMap<String, nova::Sizes>;

/// Page size asked of Nova.
const PAGE: usize = 1000;
/// Microversion for paginated usage.
const USAGE_MICROVERSION: (u16, u16) = (2, 40);
/// Microversion with the flavor embedded in servers.
const SERVERS_MICROVERSION: (u16, u16) = (2, 47);

impl OpenstackSource {
    pub(super) async fn projects(&self) -> Result<Vec<Project>, OpenstackError> {
        let projects = self
            .keystone_pages("identity /projects", "projects", |p: ProjectsPage| {
                (p.projects, p.links, p.truncated)
            })
            .await?;
        let domains = self
            .keystone_pages("identity /domains", "domains", |p: DomainsPage| {
                (p.domains, p.links, p.truncated)
            })
            .await?;
        Ok(keystone::projects(
            &projects,
            &domains,
            &self.settings.filters,
        ))
    }

    /// Every item of a Keystone list, following `links.next`. A list Keystone cut at its
    /// `list_limit` without a next link (releases before marker pagination) is an error, not a
    /// silently shorter list.
    async fn keystone_pages<P, T>(
        &self,
        endpoint: &'static str,
        collection: &str,
        split: impl Fn(P) -> (Vec<T>, keystone::PageLinks, bool),
    ) -> Result<Vec<T>, OpenstackError>
    where
        P: serde::de::DeserializeOwned,
    {
        let mut items = Vec::new();
        let mut query: Vec<(&str, String)> = Vec::new();
        for page in 0.. {
            if page >= 10_000 {
                return Err(OpenstackError::Pagination {
                    endpoint,
                    pages: page,
                });
            }
            let p: P = self
                .client
                .get_json(Service::Identity, &[collection], &query, None)
                .await?;
            let (page_items, links, truncated) = split(p);
            let empty = page_items.is_empty();
            items.extend(page_items);
            match links.next.as_deref().and_then(keystone_marker) {
                Some(marker) if !empty => query = vec![("marker", marker)],
                _ if truncated => return Err(OpenstackError::Truncated { endpoint }),
                _ => break,
            }
        }
        Ok(items)
    }

    pub(super) async fn usage(
        &self,
        start: SystemTime,
        end: SystemTime,
    ) -> Result<Vec<nova::ProjectWindow>, OpenstackError> {
        let query = [
            ("detailed", "1".to_owned()),
            ("start", nova::query_time(start)),
            ("end", nova::query_time(end)),
        ];
        let mut usage = Vec::new();
        self.pages(
            "compute /os-simple-tenant-usage",
            &["os-simple-tenant-usage"],
            &query,
            Some(USAGE_MICROVERSION),
            // Each page in the accounting's form as it arrives: its strings die with it.
            |p: UsagePage| (nova::compact_usage(p.tenant_usages), p.tenant_usages_links),
            |page| usage.extend(page),
        )
        .await?;
        Ok(usage)
    }

    /// Whether Nova embeds flavors in servers (microversion 2.47), asked once.
    pub(super) async fn embeds_flavors(&mut self) -> Result<bool, OpenstackError> {
        if let Some(e) = self.embeds_flavors {
            return Ok(e);
        }
        let e = self.client.compute_supports(SERVERS_MICROVERSION).await?;
        if !e {
            tracing::info!(
                "Nova is older than microversion 2.47: server sizes come from the flavors list, every refresh lists every server"
            );
        }
        self.embeds_flavors = Some(e);
        Ok(e)
    }

    /// `/servers/detail` of every project: the existing servers, or with `changes_since`
    /// (seconds since 1970) those updated since then, deleted ones included.
    pub(super) async fn servers(
        &mut self,
        changes_since: Option<i64>,
    ) -> Result<Vec<nova::Listed>, OpenstackError> {
        let mut servers = Vec::new();
        self.server_pages(changes_since, |page| servers.extend(page))
            .await?;
        Ok(servers)
    }

    /// The table of a full `/servers/detail` listing, each page merged into it as it arrives
    /// (no list of every server beside the table).
    pub(super) async fn listing(&mut self) -> Result<ServerTable, OpenstackError> {
        let mut table = ServerTable::default();
        self.server_pages(None, |page| table.merge(page)).await?;
        Ok(table)
    }

    /// `/servers/detail` page by page, each page made compact as it arrives (its strings die
    /// with it) and handed to `take`.
    async fn server_pages(
        &mut self,
        changes_since: Option<i64>,
        take: impl FnMut(Vec<nova::Listed>),
    ) -> Result<(), OpenstackError> {
        let microversion = self.embeds_flavors().await?.then_some(SERVERS_MICROVERSION);
        let mut query = vec![("all_tenants", "1".to_owned())];
        query.extend(changes_since.map(|t| ("changes-since", nova::changes_since_time(t))));
        let mut values = nova::ListedValues::default();
        self.pages(
            "compute /servers/detail",
            &["servers", "detail"],
            &query,
            microversion,
            |p: ServersPage| {
                let servers = p.servers.into_iter();
                let listed = servers.map(|s| nova::Listed::new(s, &mut values)).collect();
                (listed, p.servers_links)
            },
            take,
        )
        .await
    }

    /// The flavor sizes servers reference when Nova is older than microversion 2.47 (empty
    /// otherwise: the sizes are embedded).
    pub(super) async fn flavors(&mut self) -> Result<FlavorSizes, OpenstackError> {
        if self.embeds_flavors().await? {
            return Ok(FlavorSizes::default());
        }
        let mut flavors = Vec::new();
        self.pages(
            "compute /flavors/detail",
            &["flavors", "detail"],
            &[("is_public", "None".to_owned())],
            None,
            |p: FlavorsPage| (p.flavors, p.flavors_links),
            |page| flavors.extend(page),
        )
        .await?;
        Ok(nova::flavor_sizes(&flavors))
    }

    /// Every item of a Nova list paginated with `limit` and `marker`, handed to `take` a page
    /// at a time.
    async fn pages<P, T>(
        &self,
        endpoint: &'static str,
        path: &[&str],
        query: &[(&str, String)],
        microversion: Option<(u16, u16)>,
        mut split: impl FnMut(P) -> (Vec<T>, Vec<nova::Link>),
        mut take: impl FnMut(Vec<T>),
    ) -> Result<(), OpenstackError>
    where
        P: serde::de::DeserializeOwned,
    {
        let mut marker: Option<String> = None;
        for page in 0.. {
            if page >= 100_000 {
                return Err(OpenstackError::Pagination {
                    endpoint,
                    pages: page,
                });
            }
            let mut q = query.to_vec();
            q.push(("limit", PAGE.to_string()));
            q.extend(marker.take().map(|m| ("marker", m)));
            let p: P = self
                .client
                .get_json(Service::Compute, path, &q, microversion)
                .await?;
            let (page_items, links) = split(p);
            let empty = page_items.is_empty();
            take(page_items);
            marker = nova::next_marker(&links);
            if marker.is_none() || empty {
                break;
            }
        }
        Ok(())
    }

    /// Quota limits of `projects`, fetched concurrently (the client bounds requests in flight).
    pub(super) async fn quotas(
        &self,
        projects: &[Arc<Project>],
    ) -> Result<BTreeMap<String, Quota>, OpenstackError> {
        let mut tasks = tokio::task::JoinSet::new();
        for p in projects {
            let client = self.client.clone();
            let id = p.id.clone();
            tasks.spawn(async move {
                let d: Result<nova::QuotaDetail, _> = client
                    .get_json(
                        Service::Compute,
                        &["os-quota-sets", &id, "detail"],
                        &[],
                        None,
                    )
                    .await;
                d.map(|d| (id, nova::quota(&d.quota_set)))
            });
        }
        let mut out = std::collections::BTreeMap::new();
        while let Some(joined) = tasks.join_next().await {
            // A panicked task is a bug; treat it like a failed request rather than crash.
            let (id, q) = joined.map_err(|e| RequestError::Transport {
                service: "compute",
                path: "/os-quota-sets".into(),
                kind: e.to_string(),
            })??;
            out.insert(id, q);
        }
        Ok(out)
    }
}

/// The `marker` of a Keystone `next` link.
fn keystone_marker(href: &str) -> Option<String> {
    nova::next_marker(&[nova::Link {
        rel: "next".into(),
        href: href.into(),
    }])
}
