//! Basic authentication against bcrypt hashes, as the exporter-toolkit does it.
//!
//! bcrypt costs tens of milliseconds by design; Prometheus sends the same credentials every
//! scrape. Verified outcomes are therefore cached, keyed by SHA-256 of user, hash and
//! password (so the cache holds no password), at most [`CACHE_SIZE`] entries. An unknown user
//! is checked against a fixed hash of the same cost, so the time of a first attempt does not
//! tell whether the user exists. Only one bcrypt runs at a time, bounding the CPU a guesser
//! can take.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use base64::Engine;
use http::HeaderMap;

use super::parse::Users;

/// Entries kept before an arbitrary one is dropped.
pub const CACHE_SIZE: usize = 100;

/// The exporter-toolkit's stand-in hash for users that do not exist (cost 10).
const UNKNOWN_USER_HASH: &str = "$2y$10$QOauhQNbBCuQDKes6eFzPeMqBSjb7Mr5DUmpZ/VcEd00UAV/LDeSi";

/// The users of one configuration and the outcomes verified for them.
#[derive(Debug, Default)]
pub struct BasicAuth {
    users: Users,
    cache: Mutex<HashMap<[u8; 32], bool>>,
    bcrypt: Mutex<()>,
}

impl BasicAuth {
    pub fn new(users: Users) -> Self {
        Self {
            users,
            ..Self::default()
        }
    }

    /// Whether requests must authenticate at all.
    pub fn required(&self) -> bool {
        !self.users.0.is_empty()
    }

    /// Whether the request's `Authorization` header names a user and the right password.
    /// May run bcrypt: call it off the async workers ([`Self::allows_blocking`]).
    pub fn allows(&self, headers: &HeaderMap) -> bool {
        let Some((user, password)) = credentials(headers) else {
            return false;
        };
        let known = self.users.0.get(&user);
        let hash = known.map_or(UNKNOWN_USER_HASH, String::as_str);
        let key = cache_key(&user, hash, &password);
        let cached = self
            .cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(&key)
            .copied();
        let ok = match cached {
            Some(ok) => ok,
            None => {
                let ok = {
                    let _one = self
                        .bcrypt
                        .lock()
                        .unwrap_or_else(std::sync::PoisonError::into_inner);
                    bcrypt::verify(&password, hash).unwrap_or(false)
                } && known.is_some();
                let mut cache = self
                    .cache
                    .lock()
                    .unwrap_or_else(std::sync::PoisonError::into_inner);
                if cache.len() >= CACHE_SIZE {
                    if let Some(evict) = cache.keys().next().copied() {
                        cache.remove(&evict);
                    }
                }
                cache.insert(key, ok);
                ok
            }
        };
        ok && known.is_some()
    }

    /// [`Self::allows`] on tokio's blocking pool.
    pub async fn allows_blocking(self: Arc<Self>, headers: HeaderMap) -> bool {
        tokio::task::spawn_blocking(move || self.allows(&headers))
            .await
            .unwrap_or(false)
    }

    /// Entries in the cache (for tests).
    pub fn cached(&self) -> usize {
        self.cache
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .len()
    }
}

fn cache_key(user: &str, hash: &str, password: &str) -> [u8; 32] {
    let mut ctx = ring::digest::Context::new(&ring::digest::SHA256);
    for part in [user, hash, password] {
        // Length-prefixed, so ("a:b", "c") and ("a", "b:c") differ.
        ctx.update(&(part.len() as u64).to_be_bytes());
        ctx.update(part.as_bytes());
    }
    let mut key = [0; 32];
    key.copy_from_slice(ctx.finish().as_ref());
    key
}

/// User and password of a `Basic` `Authorization` header, as Go's `Request.BasicAuth` reads it.
fn credentials(headers: &HeaderMap) -> Option<(String, String)> {
    let value = headers.get(http::header::AUTHORIZATION)?.to_str().ok()?;
    let (scheme, encoded) = value.split_once(' ')?;
    if !scheme.eq_ignore_ascii_case("basic") {
        return None;
    }
    let decoded = base64::engine::general_purpose::STANDARD
        .decode(encoded)
        .ok()?;
    let text = String::from_utf8(decoded).ok()?;
    let (user, password) = text.split_once(':')?;
    Some((user.to_owned(), password.to_owned()))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use std::collections::BTreeMap;

    use super::*;

    fn header(value: &str) -> HeaderMap {
        let mut h = HeaderMap::new();
        h.insert(http::header::AUTHORIZATION, value.parse().unwrap());
        h
    }

    fn basic(user: &str, password: &str) -> HeaderMap {
        let encoded =
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        header(&format!("Basic {encoded}"))
    }

    #[test]
    fn checks_credentials_and_caches_outcomes() {
        // Cost 4 keeps the test fast; the cache does not care about the cost.
        let hash = bcrypt::hash("s3cret", 4).unwrap();
        let auth = BasicAuth::new(Users(BTreeMap::from([("alice".to_owned(), hash)])));
        struct Case {
            name: &'static str,
            headers: HeaderMap,
            want: bool,
        }
        let cases = [
            Case {
                name: "right",
                headers: basic("alice", "s3cret"),
                want: true,
            },
            Case {
                name: "again, cached",
                headers: basic("alice", "s3cret"),
                want: true,
            },
            Case {
                name: "wrong password",
                headers: basic("alice", "nope"),
                want: false,
            },
            Case {
                name: "unknown user",
                headers: basic("bob", "s3cret"),
                want: false,
            },
            Case {
                name: "no header",
                headers: HeaderMap::new(),
                want: false,
            },
            Case {
                name: "bearer",
                headers: header("Bearer abc"),
                want: false,
            },
            Case {
                name: "not base64",
                headers: header("Basic ***"),
                want: false,
            },
            Case {
                name: "no colon",
                headers: header("Basic YWxpY2U="),
                want: false,
            },
            Case {
                name: "lowercase scheme",
                headers: header(&format!(
                    "basic {}",
                    base64::engine::general_purpose::STANDARD.encode("alice:s3cret")
                )),
                want: true,
            },
        ];
        for c in cases {
            assert_eq!(auth.allows(&c.headers), c.want, "{}", c.name);
        }
        // right (once, then cached), wrong password, unknown user; the header-less ones never
        // reach bcrypt.
        assert_eq!(auth.cached(), 3);
    }

    #[test]
    fn the_cache_stays_bounded() {
        let hash = bcrypt::hash("pw", 4).unwrap();
        let auth = BasicAuth::new(Users(BTreeMap::from([("u".to_owned(), hash)])));
        for i in 0..(CACHE_SIZE + 5) {
            assert!(!auth.allows(&basic("u", &format!("guess{i}"))));
        }
        assert_eq!(auth.cached(), CACHE_SIZE);
        assert!(auth.allows(&basic("u", "pw")));
    }
}
