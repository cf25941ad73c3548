//! What the OpenStack state costs at scale, without Nova: an accounting of `SERVERS` servers
//! (default 200,000) in `PROJECTS` projects (10,000), `LIVE` of them (50,000) in every later
//! window, saved through `state::Store` after each of `REFRESHES` (80) windows: long enough
//! for the log to reach the checkpoint's size and a checkpoint to be written in parts. Prints,
//! per save: bytes written (of which checkpoint parts), whether it wrote a whole checkpoint,
//! the saving thread's CPU time (`/proc/thread-self/schedstat`: time on CPU, so waits in fsync
//! are not counted), and the process RSS; then the median and largest save after the first,
//! and the load time. Release build:
//!
//! ```sh
//! cargo run --release -p site-exporter --example state_cost
//! ```

use std::time::{Duration, Instant, UNIX_EPOCH};

use site_exporter::sources::openstack::accounting::Accounting;
use site_exporter::sources::openstack::compact::ServerId;
use site_exporter::sources::openstack::nova::{compact_usage, ServerUsage, TenantUsage};
use site_exporter::sources::openstack::state;
use site_exporter::sources::openstack::stopped::{Since, Stopped};

fn env(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// This thread's time on CPU.
fn thread_cpu() -> Duration {
    let text = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
    let ns = text
        .split_whitespace()
        .next()
        .and_then(|v| v.parse().ok())
        .unwrap_or(0);
    Duration::from_nanos(ns)
}

fn rss_mib() -> (u64, u64) {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |name: &str| {
        status
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<u64>().ok())
            .map_or(0, |kb| kb / 1024)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

fn uuid(n: usize) -> String {
    format!(
        "{:08x}-1111-4a2b-9c3d-{:012x}",
        n.wrapping_mul(2_654_435_761) as u32,
        n
    )
}

/// The usage of `servers` (indexes) in a window of `secs`, grouped by project as Nova pages.
fn window(servers: &[usize], projects: usize, secs: u64, first: bool) -> Vec<TenantUsage> {
    let mut by_project: Vec<Vec<ServerUsage>> = vec![Vec::new(); projects];
    for &n in servers {
        // The first window: each server's own share of a long window; later ones: whole.
        let hours = if first {
            (n % 9000) as f64 / 3.7
        } else {
            secs as f64 / 3600.0
        };
        by_project[n % projects].push(ServerUsage {
            instance_id: uuid(n),
            name: format!("vm-{n}"),
            hours,
            vcpus: 1 + (n % 8) as u64,
            memory_mb: 2048 * (1 + (n % 8) as u64),
            local_gb: 20,
            flavor: Some("de.NBI default".into()),
            started_at: Some(format!("2025-{:02}-14T10:11:12.000000", 1 + n % 12)),
            ended_at: None,
            state: Some("active".into()),
        });
    }
    by_project
        .into_iter()
        .enumerate()
        .filter(|(_, s)| !s.is_empty())
        .map(|(p, server_usages)| TenantUsage {
            tenant_id: format!("{:032x}", p.wrapping_mul(0x9e37_79b9_7f4a_7c15)),
            server_usages,
        })
        .collect()
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let servers = env("SERVERS", 200_000);
    let projects = env("PROJECTS", 10_000);
    let live = env("LIVE", 50_000).min(servers);
    let refreshes = env("REFRESHES", 80);
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("state");
    let cloud = "http://127.0.0.1:5000/v3";
    let start = UNIX_EPOCH + Duration::from_secs(1_735_689_600);
    let (rss0, _) = rss_mib();
    let mut acc = Accounting::new(start);
    let all: Vec<usize> = (0..servers).collect();
    let mut end = start + Duration::from_secs(365 * 86_400);
    acc.apply_window(end, &compact_usage(window(&all, projects, 0, true)))?;
    let metadata = std::sync::Arc::new(std::collections::BTreeMap::from([(
        "project_name".to_owned(),
        "x".to_owned(),
    )]));
    let live_ids: Vec<String> = (servers - live..servers).map(uuid).collect();
    let live_keys: Vec<ServerId> = live_ids.iter().map(|id| ServerId::new(id)).collect();
    acc.note_metadata(live_keys.iter().map(|id| (id, &metadata)));
    let (rss1, hwm1) = rss_mib();
    println!(
        "accounting of {servers} servers, {projects} projects: RSS {rss0} -> {rss1} MiB (peak {hwm1} MiB, decoded window included)"
    );
    let (_, mut store) = state::open(&path, cloud)?;
    let mut stopped = Stopped::default();
    let live_idx: Vec<usize> = (servers - live..servers).collect();
    let mut saves = Vec::new();
    println!("save | bytes | of which checkpoint | whole checkpoint | thread CPU | RSS MiB");
    for r in 0..=refreshes {
        if r > 0 {
            end += Duration::from_secs(300);
            acc.apply_window(end, &compact_usage(window(&live_idx, projects, 300, false)))?;
            acc.note_metadata(live_keys.iter().map(|id| (id, &metadata)));
        }
        // A quarter of the live servers stopped since the start; 1 % of them start again
        // and as many others stop at each refresh.
        let now = end.duration_since(UNIX_EPOCH)?.as_secs();
        stopped.seen_at = Some(now);
        let churn = live / 100;
        for (i, id) in live_ids.iter().enumerate() {
            if i % 4 == 0 && !(r * churn..(r + 1) * churn).contains(&(i / 4 * 4 % live)) {
                stopped.servers.entry(id.clone()).or_insert_with(|| Since {
                    status: "shutoff".into(),
                    since: now,
                });
            } else {
                stopped.servers.remove(id);
            }
        }
        let cpu = thread_cpu();
        let saved = store.save(&mut acc, &stopped)?;
        let cpu = thread_cpu() - cpu;
        println!(
            "{r} | {} | {} | {} | {:.2} ms | {}",
            saved.bytes,
            saved.checkpoint_bytes,
            saved.compacted,
            cpu.as_secs_f64() * 1000.0,
            rss_mib().0
        );
        if r > 0 {
            saves.push((saved, cpu));
        }
    }
    let with_parts = saves
        .iter()
        .filter(|(s, _)| s.checkpoint_bytes > 0 && !s.compacted)
        .count();
    let whole = saves.iter().filter(|(s, _)| s.compacted).count();
    let mut cpus: Vec<Duration> = saves.iter().map(|s| s.1).collect();
    cpus.sort_unstable();
    let mut bytes: Vec<u64> = saves.iter().map(|s| s.0.bytes).collect();
    bytes.sort_unstable();
    let ms = |d: Option<&Duration>| d.copied().unwrap_or_default().as_secs_f64() * 1000.0;
    println!(
        "saves after the first: {} ({with_parts} with checkpoint parts, {whole} whole checkpoints); bytes median {} max {}; thread CPU median {:.2} ms max {:.2} ms",
        saves.len(),
        bytes.get(bytes.len() / 2).copied().unwrap_or(0),
        bytes.last().copied().unwrap_or(0),
        ms(cpus.get(cpus.len() / 2)),
        ms(cpus.last()),
    );
    let sizes = (
        std::fs::metadata(&path)?.len(),
        std::fs::metadata(state::log_path(&path))?.len(),
    );
    let t = Instant::now();
    let loaded = state::load(&path, cloud)?;
    let took = t.elapsed();
    let ok = loaded == state::Loaded::Resumed(acc.clone(), stopped.clone());
    println!(
        "snapshot {} bytes, log {} bytes; load {:.0} ms, resumed exactly: {ok}",
        sizes.0,
        sizes.1,
        took.as_secs_f64() * 1000.0
    );
    Ok(())
}
