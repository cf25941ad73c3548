//! The generated cloud: projects and servers with launch and deletion times, the same for the
//! same seed, held in the two orders Nova lists them in.
//!
//! Invariants: every server belongs to a generated project; times are whole seconds; a server
//! exists at `t` when it was launched at or before `t` and not yet deleted (deletions in the
//! future have not happened yet, launches in the future neither).

use std::collections::HashMap;
use std::ops::Range;

/// splitmix64: small, fast, and enough for a reproducible cloud (no crate needed).
#[derive(Debug)]
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed ^ 0x5851_f42d_4c95_7f2d)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, n)`.
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n.max(1)
    }

    /// Uniform in `[0, 1)`.
    pub fn unit(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }

    /// 32 lower-case hex digits, the shape of Keystone ids.
    pub fn hex32(&mut self) -> String {
        format!("{:016x}{:016x}", self.next_u64(), self.next_u64())
    }

    /// A version-4 UUID, the shape of Nova server ids.
    pub fn uuid(&mut self) -> String {
        let (a, b) = (self.next_u64(), self.next_u64());
        format!(
            "{:08x}-{:04x}-4{:03x}-{:04x}-{:012x}",
            a >> 32,
            (a >> 16) & 0xffff,
            a & 0xfff,
            0x8000 | (b >> 48) & 0x3fff,
            b & 0xffff_ffff_ffff
        )
    }
}

/// The size of the cloud and how it changes.
#[derive(Debug, Clone)]
pub struct Params {
    pub projects: usize,
    pub servers: usize,
    /// Share of servers that still exist at start-up; the others were deleted before.
    pub live_fraction: f64,
    /// Servers were launched uniformly over this many seconds before start-up.
    pub history: i64,
    /// Share of servers launched, and the same share of live servers deleted, during
    /// `churn_window` after start-up (so incremental windows see new and deleted servers).
    pub churn_fraction: f64,
    pub churn_window: i64,
    pub seed: u64,
    /// Start-up, Unix seconds.
    pub now0: i64,
}

/// Live statuses as recorded: (Nova status, vm_state, power_state, share in percent).
pub const STATUSES: [(&str, &str, u64, u64); 4] = [
    ("ACTIVE", "active", 1, 88),
    ("SHUTOFF", "stopped", 4, 8),
    ("PAUSED", "paused", 3, 2),
    ("SUSPENDED", "suspended", 7, 2),
];

#[derive(Debug)]
pub struct Project {
    pub id: String,
    pub name: String,
    /// Index into [`Cloud::domains`].
    pub domain: usize,
    pub user_id: String,
}

#[derive(Debug)]
pub struct Domain {
    pub id: String,
    pub name: String,
    pub description: String,
}

#[derive(Debug)]
pub struct Server {
    pub id: String,
    pub name: String,
    pub project: u32,
    /// Index into the recorded flavors.
    pub flavor: u8,
    /// Index into [`STATUSES`] (while it exists).
    pub status: u8,
    pub host: u8,
    pub launched: i64,
    pub deleted: Option<i64>,
}

impl Server {
    /// Whether the server exists at `now`.
    pub fn exists_at(&self, now: i64) -> bool {
        self.launched <= now && self.deleted_by(now).is_none()
    }

    /// The deletion time if it has happened by `now`.
    pub fn deleted_by(&self, now: i64) -> Option<i64> {
        self.deleted.filter(|d| *d <= now)
    }
}

#[derive(Debug)]
pub struct Cloud {
    pub now0: i64,
    pub domains: Vec<Domain>,
    pub projects: Vec<Project>,
    pub servers: Vec<Server>,
    /// Server indices by (project id, server id): the order of `os-simple-tenant-usage`.
    pub usage_order: Vec<u32>,
    /// Server indices by (launch, id) descending: the default order of `/servers/detail`.
    pub detail_order: Vec<u32>,
    /// Server index -> position in `usage_order` / `detail_order`.
    pub usage_pos: Vec<u32>,
    pub detail_pos: Vec<u32>,
    pub by_id: HashMap<String, u32>,
    /// Project id -> its servers' range in `usage_order`.
    pub project_servers: HashMap<String, Range<usize>>,
}

impl Cloud {
    /// Generates the cloud; `flavors` is the number of recorded flavors to choose from
    /// (weights favour the small ones).
    pub fn generate(p: &Params, flavors: usize) -> Cloud {
        let mut rng = Rng::new(p.seed);
        // "Default" exists as recorded but holds no generated project; the site's projects
        // live in "elixir", the domain the original exporter reads by default.
        let domains = vec![
            Domain {
                id: "default".into(),
                name: "Default".into(),
                description: "The default domain".into(),
            },
            Domain {
                id: rng.hex32(),
                name: "elixir".into(),
                description: "ELIXIR projects (generated by fake_openstack)".into(),
            },
        ];
        let projects: Vec<Project> = (0..p.projects)
            .map(|i| Project {
                id: rng.hex32(),
                name: format!("project-{i:05}"),
                domain: 1,
                user_id: rng.hex32(),
            })
            .collect();
        let churn = (p.servers as f64 * p.churn_fraction) as usize;
        let mut servers = Vec::with_capacity(p.servers);
        for i in 0..p.servers {
            let project = rng.below(p.projects as u64) as u32;
            let flavor = pick_flavor(&mut rng, flavors);
            let status = pick_status(&mut rng);
            let new = i < churn;
            let launched = if new {
                p.now0 + 1 + rng.below(p.churn_window.max(1) as u64) as i64
            } else {
                p.now0 - 1 - rng.below(p.history.max(1) as u64) as i64
            };
            let deleted = if new || rng.unit() < p.live_fraction {
                None
            } else {
                Some(launched + 1 + rng.below((p.now0 - launched) as u64) as i64)
            };
            servers.push(Server {
                id: rng.uuid(),
                name: format!("vm-{i:06}"),
                project,
                flavor,
                status,
                host: rng.below(8) as u8,
                launched,
                deleted,
            });
        }
        // Deletions during the run: as many live old servers as new ones arrive.
        let mut deleting = 0;
        for s in servers.iter_mut().skip(churn) {
            if deleting == churn {
                break;
            }
            if s.deleted.is_none() {
                s.deleted = Some(p.now0 + 1 + rng.below(p.churn_window.max(1) as u64) as i64);
                deleting += 1;
            }
        }
        Self::index(p.now0, domains, projects, servers)
    }

    fn index(
        now0: i64,
        domains: Vec<Domain>,
        projects: Vec<Project>,
        servers: Vec<Server>,
    ) -> Cloud {
        let n = servers.len();
        let mut usage_order: Vec<u32> = (0..n as u32).collect();
        usage_order.sort_by(|a, b| {
            let (a, b) = (&servers[*a as usize], &servers[*b as usize]);
            (&projects[a.project as usize].id, &a.id)
                .cmp(&(&projects[b.project as usize].id, &b.id))
        });
        let mut detail_order: Vec<u32> = (0..n as u32).collect();
        detail_order.sort_by(|a, b| {
            let (a, b) = (&servers[*a as usize], &servers[*b as usize]);
            (b.launched, &b.id).cmp(&(a.launched, &a.id))
        });
        let mut usage_pos = vec![0; n];
        let mut detail_pos = vec![0; n];
        for (pos, i) in usage_order.iter().enumerate() {
            usage_pos[*i as usize] = pos as u32;
        }
        for (pos, i) in detail_order.iter().enumerate() {
            detail_pos[*i as usize] = pos as u32;
        }
        let mut project_servers: HashMap<String, Range<usize>> = HashMap::new();
        for (pos, i) in usage_order.iter().enumerate() {
            let id = &projects[servers[*i as usize].project as usize].id;
            project_servers
                .entry(id.clone())
                .and_modify(|r| r.end = pos + 1)
                .or_insert(pos..pos + 1);
        }
        let by_id = servers
            .iter()
            .enumerate()
            .map(|(i, s)| (s.id.clone(), i as u32))
            .collect();
        Cloud {
            now0,
            domains,
            projects,
            servers,
            usage_order,
            detail_order,
            usage_pos,
            detail_pos,
            by_id,
            project_servers,
        }
    }

    /// Servers that exist at `now`.
    pub fn live_at(&self, now: i64) -> usize {
        self.servers.iter().filter(|s| s.exists_at(now)).count()
    }
}

/// m1.tiny, m1.small and m1.medium most of the time, large and GPU flavors rarely.
fn pick_flavor(rng: &mut Rng, flavors: usize) -> u8 {
    // Indices follow the recorded order of distinct flavors (see `api::Templates`).
    const WEIGHTS: [u64; 5] = [10, 2, 25, 35, 28];
    let n = flavors.min(WEIGHTS.len());
    let total: u64 = WEIGHTS[..n].iter().sum();
    let mut r = rng.below(total);
    for (i, w) in WEIGHTS[..n].iter().enumerate() {
        if r < *w {
            return i as u8;
        }
        r -= w;
    }
    0
}

fn pick_status(rng: &mut Rng) -> u8 {
    let mut r = rng.below(100);
    for (i, s) in STATUSES.iter().enumerate() {
        if r < s.3 {
            return i as u8;
        }
        r -= s.3;
    }
    0
}

#[cfg(test)]
mod tests {
    use super::*;

    fn params() -> Params {
        Params {
            projects: 50,
            servers: 2_000,
            live_fraction: 0.25,
            history: 400 * 86_400,
            churn_fraction: 0.01,
            churn_window: 7_200,
            seed: 7,
            now0: 1_800_000_000,
        }
    }

    #[test]
    fn same_seed_same_cloud_and_orders_hold() {
        let a = Cloud::generate(&params(), 5);
        let b = Cloud::generate(&params(), 5);
        assert_eq!(
            a.servers.iter().map(|s| &s.id).collect::<Vec<_>>(),
            b.servers.iter().map(|s| &s.id).collect::<Vec<_>>()
        );
        let key = |i: &u32| {
            let s = &a.servers[*i as usize];
            (a.projects[s.project as usize].id.clone(), s.id.clone())
        };
        assert!(a.usage_order.windows(2).all(|w| key(&w[0]) < key(&w[1])));
        let live = a.live_at(a.now0) as f64 / 2_000.0;
        assert!((0.2..0.3).contains(&live), "live share {live}");
        // 20 arrive and 20 leave during the churn window.
        assert_eq!(a.servers.iter().filter(|s| s.launched > a.now0).count(), 20);
        let gone = |s: &&Server| s.deleted.is_some_and(|d| d > a.now0);
        assert_eq!(a.servers.iter().filter(gone).count(), 20);
    }
}
