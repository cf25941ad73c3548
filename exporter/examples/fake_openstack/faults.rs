//! Fault injection for the soak (`bench/soak.sh`). Off by default: with `rate` 0 (the
//! default) no request is touched and the fake answers as before.
//!
//! With `rate` p, each API request (not the `/_*` endpoints) draws a fault with probability p,
//! uniformly among the enabled kinds:
//!
//! | kind | what the client sees |
//! |---|---|
//! | `status5xx` | 500, 502 or 503 with a JSON error body |
//! | `status429` | 429 with `Retry-After: 1` |
//! | `reset` | the connection reset (RST) before any answer |
//! | `cut` | 200 whose body stops half-way (shorter than its `Content-Length`), then RST |
//! | `truncated` | 200, a complete HTTP answer whose JSON is cut in half |
//! | `malformed` | 200 with a body that is not JSON (a proxy's HTML error page) |
//! | `slow` | the real answer after `slow_seconds` (longer than the client's timeout) |
//! | `expire_token` | every token issued so far expires now; this request gets 401 |
//! | `keystone_down` | Keystone (`/v3…`, token requests included) resets every connection for `keystone_down_seconds` |
//!
//! `GET /_faults` shows the settings and how many faults of each kind were injected;
//! `POST /_faults?rate=&kinds=&slow_seconds=&keystone_down_seconds=` changes them (kinds
//! comma-separated, or `all`). Neither is itself subject to faults.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use serde_json::{json, Value};

use crate::cloud::Rng;
use crate::nova::{param, Params};

/// Every kind, in the order of the table above.
pub const KINDS: [&str; 9] = [
    "status5xx",
    "status429",
    "reset",
    "cut",
    "truncated",
    "malformed",
    "slow",
    "expire_token",
    "keystone_down",
];

/// One injected fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    Status(u16),
    TooMany,
    Reset,
    Cut,
    Truncated,
    Malformed,
    Slow(Duration),
    ExpireToken,
    KeystoneDown,
}

#[derive(Debug)]
struct Settings {
    rate: f64,
    kinds: Vec<&'static str>,
    slow: Duration,
    keystone_down: Duration,
}

/// The settings, the injected counts and the Keystone outage in progress.
#[derive(Debug)]
pub struct Faults {
    settings: Mutex<Settings>,
    rng: Mutex<Rng>,
    counts: Mutex<BTreeMap<&'static str, u64>>,
    /// Keystone answers nothing until then.
    down_until: Mutex<Option<Instant>>,
}

/// Parses a comma-separated list of kinds (`all` for every kind).
pub fn parse_kinds(text: &str) -> Result<Vec<&'static str>, String> {
    if text.trim() == "all" {
        return Ok(KINDS.to_vec());
    }
    text.split(',')
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(|k| {
            KINDS
                .iter()
                .find(|known| **known == k)
                .copied()
                .ok_or_else(|| format!("unknown fault kind {k:?} (known: {})", KINDS.join(",")))
        })
        .collect()
}

fn seconds(text: &str) -> Result<Duration, String> {
    text.parse::<f64>()
        .ok()
        .filter(|s| s.is_finite() && *s >= 0.0 && *s < 3600.0)
        .map(Duration::from_secs_f64)
        .ok_or_else(|| format!("{text:?} is not a number of seconds below 3600"))
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl Faults {
    pub fn new(rate: f64, kinds: Vec<&'static str>, slow: Duration, seed: u64) -> Self {
        Self {
            settings: Mutex::new(Settings {
                rate,
                kinds,
                slow,
                keystone_down: Duration::from_secs(2),
            }),
            rng: Mutex::new(Rng::new(seed ^ 0xfa17)),
            counts: Mutex::default(),
            down_until: Mutex::default(),
        }
    }

    /// Whether any kind can ever cut a connection (the listener then closes with RST).
    pub fn enabled(&self) -> bool {
        lock(&self.settings).rate > 0.0
    }

    /// The fault for one request to `path`, if any. A Keystone outage in progress answers
    /// every Keystone request with a reset and is not counted again.
    pub fn draw(&self, path: &str) -> Option<Fault> {
        let keystone = path == "/v3" || path.starts_with("/v3/");
        if keystone {
            let mut down = lock(&self.down_until);
            match *down {
                Some(until) if Instant::now() < until => {
                    *lock(&self.counts)
                        .entry("keystone_down_refused")
                        .or_default() += 1;
                    return Some(Fault::Reset);
                }
                Some(_) => *down = None,
                None => {}
            }
        }
        let s = lock(&self.settings);
        if s.rate <= 0.0 || s.kinds.is_empty() {
            return None;
        }
        let mut rng = lock(&self.rng);
        if rng.unit() >= s.rate {
            return None;
        }
        let kind = s.kinds[rng.below(s.kinds.len() as u64) as usize];
        let fault = match kind {
            "status5xx" => Fault::Status([500, 502, 503][rng.below(3) as usize]),
            "status429" => Fault::TooMany,
            "reset" => Fault::Reset,
            "cut" => Fault::Cut,
            "truncated" => Fault::Truncated,
            "malformed" => Fault::Malformed,
            "slow" => Fault::Slow(s.slow),
            "expire_token" => Fault::ExpireToken,
            _ => {
                *lock(&self.down_until) = Some(Instant::now() + s.keystone_down);
                Fault::KeystoneDown
            }
        };
        *lock(&self.counts).entry(kind).or_default() += 1;
        Some(fault)
    }

    /// `POST /_faults?…`: changes the settings given.
    pub fn set(&self, params: &Params) -> Result<(), String> {
        let mut s = lock(&self.settings);
        if let Some(r) = param(params, "rate") {
            s.rate = r
                .parse::<f64>()
                .ok()
                .filter(|r| (0.0..=1.0).contains(r))
                .ok_or_else(|| format!("rate {r:?} is not in [0, 1]"))?;
        }
        if let Some(k) = param(params, "kinds") {
            s.kinds = parse_kinds(k)?;
        }
        if let Some(v) = param(params, "slow_seconds") {
            s.slow = seconds(v)?;
        }
        if let Some(v) = param(params, "keystone_down_seconds") {
            s.keystone_down = seconds(v)?;
        }
        Ok(())
    }

    /// `GET /_faults`: the settings and the faults injected so far, by kind.
    pub fn to_json(&self) -> Value {
        let s = lock(&self.settings);
        json!({
            "rate": s.rate,
            "kinds": s.kinds,
            "slow_seconds": s.slow.as_secs_f64(),
            "keystone_down_seconds": s.keystone_down.as_secs_f64(),
            "injected": *lock(&self.counts),
        })
    }
}

/// The first half of `body`, cut at a byte (not necessarily a character) boundary.
pub fn half(body: &[u8]) -> Vec<u8> {
    body[..body.len() / 2].to_vec()
}

/// A proxy's error page answered with status 200.
pub const MALFORMED: &str =
    "<html><body><h1>502 Bad Gateway</h1>The upstream is unavailable.</body></html>\n";

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn off_by_default_and_settable() {
        let f = Faults::new(0.0, KINDS.to_vec(), Duration::from_secs(3), 1);
        assert!((0..1000).all(|_| f.draw("/v2.1/servers/detail").is_none()));
        let params = vec![
            ("rate".to_owned(), "1".to_owned()),
            ("kinds".to_owned(), "status429,slow".to_owned()),
            ("slow_seconds".to_owned(), "0.5".to_owned()),
        ];
        f.set(&params).unwrap();
        for _ in 0..100 {
            let d = f.draw("/v3/projects").unwrap();
            let slow = Fault::Slow(Duration::from_millis(500));
            assert!(d == Fault::TooMany || d == slow, "{d:?}");
        }
        assert_eq!(f.to_json()["injected"].as_object().unwrap().len(), 2);
        assert!(f.set(&vec![("kinds".into(), "nope".into())]).is_err());
        assert!(f.set(&vec![("rate".into(), "2".into())]).is_err());
    }

    #[test]
    fn keystone_down_refuses_keystone_only_for_a_while() {
        let f = Faults::new(1.0, vec!["keystone_down"], Duration::ZERO, 1);
        f.set(&vec![("keystone_down_seconds".into(), "0.2".into())])
            .unwrap();
        assert_eq!(f.draw("/v2.1/servers/detail"), Some(Fault::KeystoneDown));
        f.set(&vec![("rate".into(), "0".into())]).unwrap();
        assert_eq!(f.draw("/v3/auth/tokens"), Some(Fault::Reset));
        assert_eq!(f.draw("/v2.1/servers/detail"), None);
        let deadline = Instant::now() + Duration::from_secs(5);
        while f.draw("/v3/projects").is_some() {
            assert!(Instant::now() < deadline, "keystone never came back");
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(f.to_json()["injected"]["keystone_down"], 1);
    }
}
