//! Nova's answers for the generated cloud: `os-simple-tenant-usage` (all tenants, paged over
//! servers; one tenant), and `/servers/detail` (paged), in the recorded shapes.
//!
//! Windows behave as Nova's: a server is in `[start, end)` when it launched before `end` and
//! was not deleted by `start`; its hours are clipped to `[start, min(end, now))`. Pages follow
//! Nova's orders (usage: project id, server id; servers: launch time and id, newest first) and
//! its `next` links (the request's parameters sorted, `marker` set to the last id).
//!
//! `/servers/detail?changes-since=T` behaves as Nova's: the servers whose `updated` is at or
//! after `T` (whole seconds), deleted ones included (`status: DELETED`, `vm_state: deleted`,
//! `terminated_at` and `updated` at the deletion), in the same order and pages. A live
//! server's `updated` is its launch plus one second, as listed without the filter.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use serde_json::{json, Value};

use crate::cloud::{Cloud, Server, STATUSES};
use crate::templates::Templates;

/// A request Nova would refuse.
#[derive(Debug)]
pub struct BadRequest(pub String);

impl BadRequest {
    pub fn body(&self) -> String {
        json!({"badRequest": {"code": 400, "message": self.0}}).to_string()
    }
}

/// Parsed query parameters, in request order.
pub type Params = Vec<(String, String)>;

pub fn param<'a>(params: &'a Params, key: &str) -> Option<&'a str> {
    params
        .iter()
        .find(|(k, _)| k == key)
        .map(|(_, v)| v.as_str())
}

/// Unix seconds from Nova's time formats (`2026-11-21T00:00:00`, with `.%f` or a space).
pub fn parse_time(text: &str) -> Result<f64, BadRequest> {
    humantime::parse_rfc3339_weak(text.trim())
        .ok()
        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
        .map(|d| d.as_secs_f64())
        .ok_or_else(|| BadRequest(format!("Invalid time format: {text}")))
}

fn at(secs: f64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs_f64(secs.max(0.0))
}

/// `2026-11-22T14:45:42.000000`: Nova's `started_at`, `start`, `stop`.
pub fn fmt_micros(secs: f64) -> String {
    let mut s = humantime::format_rfc3339_micros(at(secs)).to_string();
    s.pop();
    s
}

/// `2026-11-22T14:45:42Z`: a server's `created` and `updated`.
pub fn fmt_seconds(secs: i64) -> String {
    humantime::format_rfc3339_seconds(at(secs as f64)).to_string()
}

/// Request microversion (`X-OpenStack-Nova-API-Version` or `OpenStack-API-Version: compute
/// X`), as (major, minor); 2.1 when absent, as Nova.
pub fn microversion(header: Option<&str>) -> (u32, u32) {
    let v = header
        .map(|h| h.trim().trim_start_matches("compute").trim())
        .unwrap_or("2.1");
    let mut parts = v.split('.').map(|p| p.parse::<u32>().ok());
    match (parts.next().flatten(), parts.next().flatten()) {
        (Some(a), Some(b)) => (a, b),
        // "latest" and anything unparsable: Nova's maximum here is far above what we serve.
        _ => (2, 104),
    }
}

/// The hours `s` counts in `[start, stop)` at `now`, or `None` when Nova would not list it.
pub fn hours(s: &Server, start: f64, end: f64, now: f64) -> Option<f64> {
    let launched = s.launched as f64;
    let stop = end.min(now);
    if launched >= stop {
        return None;
    }
    let deleted = s.deleted_by(now.floor() as i64).map(|d| d as f64);
    if deleted.is_some_and(|d| d <= start) {
        return None;
    }
    let to = deleted.map_or(stop, |d| d.min(stop));
    Some(((to - launched.max(start)) / 3600.0).max(0.0))
}

/// One server usage entry (the keys of the recorded `server_usages`).
fn server_usage(cloud: &Cloud, t: &Templates, s: &Server, h: f64, now: f64) -> Value {
    let f = &t.flavors[s.flavor as usize];
    let deleted = s.deleted_by(now.floor() as i64);
    let state = match deleted {
        Some(_) => "terminated",
        None => STATUSES[s.status as usize].1,
    };
    let uptime = deleted.map_or(now - s.launched as f64, |d| (d - s.launched) as f64) as i64;
    json!({
        "hours": h,
        "flavor": f.name,
        "instance_id": s.id,
        "name": s.name,
        "tenant_id": cloud.projects[s.project as usize].id,
        "memory_mb": f.ram,
        "local_gb": f.disk + f.ephemeral,
        "vcpus": f.vcpus,
        "started_at": fmt_micros(s.launched as f64),
        "ended_at": deleted.map(|d| fmt_micros(d as f64)),
        "state": state,
        "uptime": uptime,
    })
}

/// Groups consecutive entries of one tenant, with Nova's per-tenant totals.
fn tenants(
    entries: Vec<(String, f64, Value)>,
    start: f64,
    stop: f64,
    detailed: bool,
) -> Vec<Value> {
    let mut out: Vec<Value> = Vec::new();
    let mut current: Option<(String, Vec<Value>, [f64; 4])> = None;
    let flush = |cur: Option<(String, Vec<Value>, [f64; 4])>, out: &mut Vec<Value>| {
        if let Some((id, servers, [gb, vcpus, mb, h])) = cur {
            let mut t = json!({
                "tenant_id": id,
                "total_local_gb_usage": gb,
                "total_vcpus_usage": vcpus,
                "total_memory_mb_usage": mb,
                "total_hours": h,
                "start": fmt_micros(start),
                "stop": fmt_micros(stop),
            });
            if detailed {
                t["server_usages"] = Value::Array(servers);
            }
            out.push(t);
        }
    };
    for (tenant, h, entry) in entries {
        if current.as_ref().is_none_or(|(id, _, _)| *id != tenant) {
            flush(current.take(), &mut out);
            current = Some((tenant, Vec::new(), [0.0; 4]));
        }
        if let Some((_, servers, sums)) = current.as_mut() {
            let n = |k: &str| entry[k].as_f64().unwrap_or(0.0);
            sums[0] += n("local_gb") * h;
            sums[1] += n("vcpus") * h;
            sums[2] += n("memory_mb") * h;
            sums[3] += h;
            servers.push(entry);
        }
    }
    flush(current, &mut out);
    out
}

/// Nova's `next` link: the request's parameters sorted by name, `marker` set to `last`.
pub fn next_link(base: &str, collection: &str, params: &Params, last: &str) -> Value {
    let mut sorted: Vec<(String, String)> = params.clone();
    sorted.sort();
    match sorted.iter_mut().find(|(k, _)| k == "marker") {
        Some((_, v)) => *v = last.to_owned(),
        None => sorted.push(("marker".into(), last.to_owned())),
    }
    let query: Vec<String> = sorted
        .iter()
        .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
        .collect();
    json!([{"rel": "next", "href": format!("{base}/v2.1/{collection}?{}", query.join("&"))}])
}

/// Python's `urlencode` (quote_plus) for the characters our parameters contain.
fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'_' | b'.' | b'-' | b'~' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// `GET /os-simple-tenant-usage`: every tenant's usage in the window, paged over servers
/// from microversion 2.40 on (all of it in one answer before, as Nova).
pub fn usage_all(
    cloud: &Cloud,
    t: &Templates,
    base: &str,
    params: &Params,
    mv: (u32, u32),
    now: f64,
) -> Result<(Value, u64), BadRequest> {
    let start = param(params, "start").map_or(Ok(now), parse_time)?;
    let end = param(params, "end").map_or(Ok(now), parse_time)?;
    let detailed = param(params, "detailed") == Some("1");
    let paged = mv >= (2, 40);
    let limit = if paged {
        param(params, "limit")
            .map(|l| {
                l.parse::<usize>()
                    .map_err(|_| BadRequest(format!("limit {l}")))
            })
            .transpose()?
            .unwrap_or(t.max_limit)
            .min(t.max_limit)
    } else {
        usize::MAX
    };
    let from = match param(params, "marker").filter(|_| paged) {
        None => 0,
        Some(m) => match cloud.by_id.get(m) {
            Some(i) => cloud.usage_pos[*i as usize] as usize + 1,
            None => return Err(BadRequest(format!("marker [{m}] not found"))),
        },
    };
    let mut entries = Vec::new();
    let mut last = None;
    for i in &cloud.usage_order[from..] {
        if entries.len() == limit {
            break;
        }
        let s = &cloud.servers[*i as usize];
        if let Some(h) = hours(s, start, end, now) {
            let tenant = cloud.projects[s.project as usize].id.clone();
            entries.push((tenant, h, server_usage(cloud, t, s, h, now)));
            last = Some(s.id.as_str());
        }
    }
    let n = entries.len() as u64;
    let full = entries.len() == limit;
    let mut doc = json!({"tenant_usages": tenants(entries, start, end.min(now), detailed)});
    if let (true, Some(last)) = (full, last) {
        doc["tenant_usages_links"] = next_link(base, "os-simple-tenant-usage", params, last);
    }
    Ok((doc, n))
}

/// `GET /os-simple-tenant-usage/{tenant}`: one tenant, always with its servers; `{}` when it
/// used nothing in the window. (Not paged: no generated project comes near `max_limit`
/// servers, and the recorded answer has no links.)
pub fn usage_one(
    cloud: &Cloud,
    t: &Templates,
    tenant: &str,
    params: &Params,
    now: f64,
) -> Result<(Value, u64), BadRequest> {
    let start = param(params, "start").map_or(Ok(now), parse_time)?;
    let end = param(params, "end").map_or(Ok(now), parse_time)?;
    let range = cloud.project_servers.get(tenant).cloned().unwrap_or(0..0);
    let mut entries = Vec::new();
    for i in &cloud.usage_order[range] {
        let s = &cloud.servers[*i as usize];
        if let Some(h) = hours(s, start, end, now) {
            entries.push((tenant.to_owned(), h, server_usage(cloud, t, s, h, now)));
        }
    }
    let n = entries.len() as u64;
    let usage = tenants(entries, start, end.min(now), true)
        .pop()
        .unwrap_or_else(|| json!({}));
    Ok((json!({ "tenant_usage": usage }), n))
}

/// One server of `/servers/detail` (microversion 2.47 shape): the recorded server with this
/// server's values.
fn server_detail(cloud: &Cloud, t: &Templates, base: &str, s: &Server, now: i64) -> Value {
    let p = &cloud.projects[s.project as usize];
    let deleted = s.deleted_by(now);
    let (status, vm_state, power, _) = match deleted {
        Some(_) => ("DELETED", "deleted", 0, 0),
        None => STATUSES[s.status as usize],
    };
    let host = format!("compute{}", s.host + 1);
    // A deleted server keeps the shape of the live one it was (the recorded deleted server
    // has the live fields, with these values).
    let mut v = t.server(STATUSES[s.status as usize].0).clone();
    v["id"] = json!(s.id);
    v["name"] = json!(s.name);
    v["tenant_id"] = json!(p.id);
    v["user_id"] = json!(p.user_id);
    v["status"] = json!(status);
    v["created"] = json!(fmt_seconds(s.launched - 1));
    v["updated"] = json!(fmt_seconds(updated(s, now)));
    v["flavor"] = t.flavors[s.flavor as usize].embedded.clone();
    v["metadata"] = json!({"seeded-by": "fake_openstack", "role": "web"});
    v["hostId"] = json!(format!("{:056x}", s.host as u64 + 1));
    v["links"] = json!([
        {"rel": "self", "href": format!("{base}/v2.1/servers/{}", s.id)},
        {"rel": "bookmark", "href": format!("{base}/servers/{}", s.id)},
    ]);
    v["OS-SRV-USG:launched_at"] = json!(fmt_micros(s.launched as f64));
    v["OS-SRV-USG:terminated_at"] = json!(deleted.map(|d| fmt_micros(d as f64)));
    v["OS-EXT-SRV-ATTR:host"] = json!(host);
    v["OS-EXT-SRV-ATTR:hypervisor_hostname"] = json!(host);
    v["OS-EXT-SRV-ATTR:instance_name"] = json!(format!("instance-{:08x}", s.launched));
    v["OS-EXT-SRV-ATTR:hostname"] = json!(s.name);
    v["OS-EXT-SRV-ATTR:reservation_id"] = json!(format!("r-{:08x}", s.launched));
    v["OS-EXT-STS:vm_state"] = json!(vm_state);
    v["OS-EXT-STS:power_state"] = json!(power);
    v
}

/// A server's `updated` at `now`: its deletion once deleted, else its launch plus one second.
fn updated(s: &Server, now: i64) -> i64 {
    s.deleted_by(now).unwrap_or(s.launched + 1)
}

/// `GET /servers/detail?all_tenants=1`: servers that exist now, newest first, paged; with
/// `changes-since`, those updated since, deleted ones included.
pub fn servers(
    cloud: &Cloud,
    t: &Templates,
    base: &str,
    params: &Params,
    now: f64,
) -> Result<(Value, u64), BadRequest> {
    let limit = param(params, "limit")
        .map(|l| {
            l.parse::<usize>()
                .map_err(|_| BadRequest(format!("limit {l}")))
        })
        .transpose()?
        .unwrap_or(t.max_limit)
        .min(t.max_limit);
    let from = match param(params, "marker") {
        None => 0,
        Some(m) => match cloud.by_id.get(m) {
            Some(i) => cloud.detail_pos[*i as usize] as usize + 1,
            None => return Err(BadRequest(format!("marker [{m}] not found"))),
        },
    };
    let since = param(params, "changes-since")
        .map(|t| parse_time(t).map(|s| s.ceil() as i64))
        .transpose()?;
    let now_s = now.floor() as i64;
    let listed = |s: &Server| match since {
        None => s.exists_at(now_s),
        Some(since) => s.launched <= now_s && updated(s, now_s) >= since,
    };
    let mut list = Vec::new();
    let mut last = None;
    for i in &cloud.detail_order[from..] {
        if list.len() == limit {
            break;
        }
        let s = &cloud.servers[*i as usize];
        if listed(s) {
            list.push(server_detail(cloud, t, base, s, now_s));
            last = Some(s.id.as_str());
        }
    }
    let n = list.len() as u64;
    let full = list.len() == limit;
    let mut doc = json!({ "servers": list });
    if let (true, Some(last)) = (full, last) {
        doc["servers_links"] = next_link(base, "servers/detail", params, last);
    }
    Ok((doc, n))
}

/// The fake's own answer for a window (not Nova's): vCPU-hours and servers, to check what an
/// exporter accumulated; with `per_project`, also each project's totals as the exporter's
/// counters define them (`openstack_project_*_total`: seconds × vCPUs, × RAM bytes (MiB), ×
/// root + ephemeral disk bytes (GiB), and seconds), for every project that used anything.
pub fn totals(
    cloud: &Cloud,
    t: &Templates,
    start: f64,
    end: f64,
    now: f64,
    per_project: bool,
) -> Value {
    const MIB: f64 = 1024.0 * 1024.0;
    const GIB: f64 = MIB * 1024.0;
    let (mut vcpu_hours, mut servers) = (0.0, 0u64);
    let mut projects: std::collections::BTreeMap<&str, [f64; 4]> = Default::default();
    for s in &cloud.servers {
        if let Some(h) = hours(s, start, end, now) {
            let f = &t.flavors[s.flavor as usize];
            vcpu_hours += h * f.vcpus as f64;
            servers += 1;
            if per_project {
                let seconds = h * 3600.0;
                let p = projects
                    .entry(&cloud.projects[s.project as usize].id)
                    .or_default();
                p[0] += seconds * f.vcpus as f64;
                p[1] += seconds * (f.ram as f64 * MIB);
                p[2] += seconds * ((f.disk + f.ephemeral) as f64 * GIB);
                p[3] += seconds;
            }
        }
    }
    let mut doc = json!({"start": fmt_micros(start), "end": fmt_micros(end), "vcpu_hours": vcpu_hours, "servers": servers});
    if per_project {
        let by_id: serde_json::Map<String, Value> = projects
            .into_iter()
            .map(|(id, [v, m, d, i])| {
                let totals = json!({"vcpu_seconds": v, "memory_byte_seconds": m,
                    "disk_byte_seconds": d, "instance_seconds": i});
                (id.to_owned(), totals)
            })
            .collect();
        doc["projects"] = Value::Object(by_id);
    }
    doc
}
