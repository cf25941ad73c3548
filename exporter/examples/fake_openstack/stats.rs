//! What the fake served: requests, response bytes, status codes, microversions and the time
//! spent building answers, per endpoint; and per usage window, its pages and servers.

use std::collections::{BTreeMap, VecDeque};

use serde_json::{json, Value};

/// Usage windows kept (oldest dropped first).
const WINDOWS: usize = 256;

#[derive(Debug, Default)]
struct Counter {
    requests: u64,
    bytes: u64,
    busy_seconds: f64,
    /// Unix time of the last request.
    last_at: f64,
    statuses: BTreeMap<u16, u64>,
    microversions: BTreeMap<String, u64>,
}

/// One usage window as asked (`start`, `end` as sent; `now` when absent).
#[derive(Debug)]
struct Window {
    endpoint: &'static str,
    start: String,
    end: String,
    requests: u64,
    servers: u64,
    bytes: u64,
}

/// One served request.
#[derive(Debug)]
pub struct Served<'a> {
    pub endpoint: &'static str,
    pub status: u16,
    pub bytes: u64,
    pub busy_seconds: f64,
    /// Unix time the request was answered.
    pub at: f64,
    pub microversion: Option<&'a str>,
    /// For usage answers: (start, end, servers listed).
    pub window: Option<(String, String, u64)>,
}

#[derive(Debug, Default)]
pub struct Stats {
    endpoints: BTreeMap<&'static str, Counter>,
    windows: VecDeque<Window>,
}

impl Stats {
    pub fn record(&mut self, s: Served<'_>) {
        let c = self.endpoints.entry(s.endpoint).or_default();
        c.requests += 1;
        c.bytes += s.bytes;
        c.busy_seconds += s.busy_seconds;
        c.last_at = s.at;
        *c.statuses.entry(s.status).or_default() += 1;
        if let Some(mv) = s.microversion {
            *c.microversions.entry(mv.to_owned()).or_default() += 1;
        }
        if let Some((start, end, servers)) = s.window {
            let same = self
                .windows
                .back_mut()
                .filter(|w| w.endpoint == s.endpoint && w.start == start && w.end == end);
            match same {
                Some(w) => {
                    w.requests += 1;
                    w.servers += servers;
                    w.bytes += s.bytes;
                }
                None => {
                    if self.windows.len() == WINDOWS {
                        self.windows.pop_front();
                    }
                    self.windows.push_back(Window {
                        endpoint: s.endpoint,
                        start,
                        end,
                        requests: 1,
                        servers,
                        bytes: s.bytes,
                    });
                }
            }
        }
    }

    pub fn to_json(&self) -> Value {
        let endpoints: serde_json::Map<String, Value> = self
            .endpoints
            .iter()
            .map(|(name, c)| {
                (
                    (*name).to_owned(),
                    json!({
                        "requests": c.requests,
                        "bytes": c.bytes,
                        "busy_seconds": c.busy_seconds,
                        "last_at": c.last_at,
                        "status": c.statuses,
                        "microversion": c.microversions,
                    }),
                )
            })
            .collect();
        let windows: Vec<Value> = self
            .windows
            .iter()
            .map(|w| {
                json!({
                    "endpoint": w.endpoint, "start": w.start, "end": w.end,
                    "requests": w.requests, "servers": w.servers, "bytes": w.bytes,
                })
            })
            .collect();
        json!({
            "requests": self.endpoints.values().map(|c| c.requests).sum::<u64>(),
            "bytes": self.endpoints.values().map(|c| c.bytes).sum::<u64>(),
            "busy_seconds": self.endpoints.values().map(|c| c.busy_seconds).sum::<f64>(),
            "endpoints": endpoints,
            "windows": windows,
        })
    }
}
