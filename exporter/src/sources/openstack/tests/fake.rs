//! A local Keystone + Nova on 127.0.0.1:0 serving the recorded response shapes, with faults
//! injected per path prefix and every request recorded.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response};
use tokio::net::TcpListener;

use crate::sources::openstack::nova::tests::fixture;
use crate::sources::openstack::nova::{next_marker, UsagePage};

pub const PASSWORD: &str = "s3cr3t-Pa55word";

/// A fault served instead of the normal answer, once.
#[derive(Debug, Clone)]
pub enum Fault {
    /// Serve normally (lets a later fault hit a later request).
    Pass,
    Status(u16, Option<u64>),
    Malformed,
    Delay(Duration),
}

/// One request as it arrived.
#[derive(Debug, Clone)]
pub struct Seen {
    #[allow(dead_code)]
    pub method: String,
    pub path: String,
    pub query: BTreeMap<String, String>,
    pub token: Option<String>,
    pub microversion: Option<String>,
    pub body: String,
}

#[derive(Debug, Default)]
pub struct State {
    pub seen: Vec<Seen>,
    pub faults: VecDeque<(String, Fault)>,
    pub tokens_issued: u32,
    pub hidden_projects: Vec<String>,
    pub reject_auth: bool,
    /// The compute API's highest microversion, when not the recorded 2.104.
    pub max_microversion: Option<&'static str>,
    /// Keystone's `list_limit`: projects come in pages of this size.
    pub list_limit: Option<usize>,
    /// With `list_limit`: a Keystone before marker pagination (`truncated`, no next link).
    pub no_next_link: bool,
}

#[derive(Debug, Clone)]
pub struct Fake {
    pub addr: std::net::SocketAddr,
    pub state: Arc<Mutex<State>>,
}

impl Fake {
    pub async fn start() -> Fake {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let state: Arc<Mutex<State>> = Arc::default();
        let fake = Fake { addr, state };
        let f = fake.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    return;
                };
                let f = f.clone();
                tokio::spawn(async move {
                    let svc = hyper::service::service_fn(move |req| {
                        let f = f.clone();
                        async move { Ok::<_, Infallible>(f.handle(req).await) }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(stream), svc)
                        .await;
                });
            }
        });
        fake
    }

    pub fn auth_url(&self) -> String {
        format!("http://{}/v3", self.addr)
    }

    pub fn fault(&self, prefix: &str, fault: Fault) {
        self.state
            .lock()
            .unwrap()
            .faults
            .push_back((prefix.into(), fault));
    }

    pub fn seen(&self, path: &str) -> Vec<Seen> {
        self.state
            .lock()
            .unwrap()
            .seen
            .iter()
            .filter(|s| s.path == path)
            .cloned()
            .collect()
    }

    fn rewrite(&self, text: &str) -> String {
        text.replace("127.0.0.1:5000", &self.addr.to_string())
            .replace("127.0.0.1:8774", &self.addr.to_string())
    }

    async fn handle(&self, req: Request<hyper::body::Incoming>) -> Response<Full<Bytes>> {
        let method = req.method().to_string();
        let path = req.uri().path().trim_end_matches('/').to_owned();
        let query: BTreeMap<String, String> = req
            .uri()
            .query()
            .unwrap_or("")
            .split('&')
            .filter_map(|p| p.split_once('='))
            .map(|(k, v)| (k.to_owned(), percent_decode(v)))
            .collect();
        let header = |name: &str| {
            req.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
        };
        let token = header("x-auth-token");
        let microversion = header("x-openstack-nova-api-version");
        let seen_microversion = microversion.clone();
        let body = String::from_utf8_lossy(&req.into_body().collect().await.unwrap().to_bytes())
            .into_owned();
        let fault = {
            let mut st = self.state.lock().unwrap();
            st.seen.push(Seen {
                method: method.clone(),
                path: path.clone(),
                query: query.clone(),
                token: token.clone(),
                microversion,
                body,
            });
            let i = st
                .faults
                .iter()
                .position(|(p, _)| path.starts_with(p.as_str()));
            i.and_then(|i| st.faults.remove(i)).map(|(_, f)| f)
        };
        match fault {
            Some(Fault::Status(code, retry_after)) => {
                let mut r = Response::builder().status(code);
                if let Some(s) = retry_after {
                    r = r.header("retry-after", s.to_string());
                }
                return r
                    .body(Full::new(Bytes::from_static(b"{\"error\": \"injected\"}")))
                    .unwrap();
            }
            Some(Fault::Malformed) => return json("{\"tenant_usages\": [{\"tenant_id\": ".into()),
            Some(Fault::Delay(d)) => tokio::time::sleep(d).await,
            Some(Fault::Pass) | None => {}
        }
        if method == "POST" && path == "/v3/auth/tokens" {
            return self.issue_token();
        }
        let valid = {
            let st = self.state.lock().unwrap();
            token
                .as_deref()
                .is_some_and(|t| t == format!("tok-{}", st.tokens_issued))
        };
        let text = match path.as_str() {
            "/v3" => fixture("keystone_versions.json"),
            "" => fixture("nova_versions.json"),
            "/v2.1" => {
                let text = fixture("nova_version_v2.1.json");
                match self.state.lock().unwrap().max_microversion {
                    Some(max) => text.replace("\"2.104\"", &format!("\"{max}\"")),
                    None => text,
                }
            }
            _ if !valid => return status(401),
            "/v3/projects" => self.projects(query.get("marker")),
            "/v3/domains" => fixture("keystone_domains.json"),
            "/v2.1/os-simple-tenant-usage" => usage_page(query.get("marker")),
            "/v2.1/servers/detail" if embeds_flavor(seen_microversion.as_deref()) => {
                fixture("nova_servers_detail_all_tenants_mv2.47.json")
            }
            "/v2.1/servers/detail" => fixture("nova_servers_detail_all_tenants_mv2.1.json"),
            "/v2.1/flavors/detail" => fixture("nova_flavors_detail_all_mv2.1.json"),
            q if q.starts_with("/v2.1/os-quota-sets/") && q.ends_with("/detail") => {
                let id = q
                    .trim_start_matches("/v2.1/os-quota-sets/")
                    .trim_end_matches("/detail");
                fixture(&quota_fixture(&project_name(id)))
            }
            _ => return status(404),
        };
        json(self.rewrite(&text))
    }

    fn issue_token(&self) -> Response<Full<Bytes>> {
        let mut st = self.state.lock().unwrap();
        if st.reject_auth {
            return status(401);
        }
        st.tokens_issued += 1;
        let expires = humantime::format_rfc3339_seconds(
            std::time::SystemTime::now() + Duration::from_secs(3600),
        );
        let mut doc: serde_json::Value =
            serde_json::from_str(&self.rewrite(&fixture("keystone_POST_auth_tokens_admin.json")))
                .unwrap();
        doc["token"]["expires_at"] = serde_json::Value::String(expires.to_string());
        Response::builder()
            .status(201)
            .header("content-type", "application/json")
            .header("x-subject-token", format!("tok-{}", st.tokens_issued))
            .body(Full::new(Bytes::from(doc.to_string())))
            .unwrap()
    }

    /// The recorded projects; with `list_limit`, the page after `marker` as Keystone pages
    /// (sorted by id, `next` carries `marker` and `limit` while a page is full, `truncated`).
    fn projects(&self, marker: Option<&String>) -> String {
        let (hidden, limit, no_next) = {
            let st = self.state.lock().unwrap();
            (st.hidden_projects.clone(), st.list_limit, st.no_next_link)
        };
        let mut doc: serde_json::Value =
            serde_json::from_str(&fixture("keystone_projects.json")).unwrap();
        let Some(list) = doc["projects"].as_array_mut() else {
            return doc.to_string();
        };
        list.retain(|p| !hidden.iter().any(|h| p["id"] == h.as_str()));
        let Some(limit) = limit else {
            return doc.to_string();
        };
        list.sort_by(|a, b| a["id"].as_str().cmp(&b["id"].as_str()));
        if let Some(m) = marker {
            list.retain(|p| p["id"].as_str().is_some_and(|id| id > m.as_str()));
        }
        let full = list.len() >= limit;
        list.truncate(limit);
        let last = list
            .last()
            .and_then(|p| p["id"].as_str())
            .map(str::to_owned);
        if full {
            doc["truncated"] = serde_json::Value::Bool(true);
            if let (Some(last), false) = (last, no_next) {
                doc["links"]["next"] = serde_json::Value::String(format!(
                    "http://127.0.0.1:5000/v3/projects?marker={last}&limit={limit}"
                ));
            }
        }
        self.rewrite(&doc.to_string())
    }
}

/// Whether a server list asked with this microversion embeds flavors (2.47 and later).
fn embeds_flavor(microversion: Option<&str>) -> bool {
    microversion
        .and_then(|v| v.split_once('.'))
        .and_then(|(a, b)| Some((a.parse::<u16>().ok()?, b.parse::<u16>().ok()?)))
        .is_some_and(|v| v >= (2, 47))
}

/// The recorded page that follows the page whose next link carries `marker`.
fn usage_page(marker: Option<&String>) -> String {
    let mut page = 1;
    if let Some(m) = marker {
        for p in 1..=4 {
            let text = fixture(&format!(
                "nova_os-simple-tenant-usage_detailed_mv2.40_limit3_page{p}.json"
            ));
            let parsed: UsagePage = serde_json::from_str(&text).unwrap();
            if next_marker(&parsed.tenant_usages_links).as_ref() == Some(m) {
                page = p + 1;
            }
        }
    }
    fixture(&format!(
        "nova_os-simple-tenant-usage_detailed_mv2.40_limit3_page{page}.json"
    ))
}

fn percent_decode(v: &str) -> String {
    v.replace("%3A", ":").replace("%3a", ":")
}

fn json(text: String) -> Response<Full<Bytes>> {
    Response::builder()
        .status(200)
        .header("content-type", "application/json")
        .body(Full::new(Bytes::from(text)))
        .unwrap()
}

fn status(code: u16) -> Response<Full<Bytes>> {
    Response::builder()
        .status(code)
        .body(Full::new(Bytes::new()))
        .unwrap()
}

fn project_name(id: &str) -> String {
    let doc: serde_json::Value = serde_json::from_str(&fixture("keystone_projects.json")).unwrap();
    doc["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["id"] == id)
        .map(|p| p["name"].as_str().unwrap().to_owned())
        .unwrap_or_default()
}

/// The recorded quota detail of a project, by name; projects without a recording get admin's.
pub fn quota_fixture(name: &str) -> String {
    let file = format!("nova_os-quota-sets_{name}_detail.json");
    let path = format!(
        "{}/tests/fixtures/openstack/{file}",
        env!("CARGO_MANIFEST_DIR")
    );
    if std::path::Path::new(&path).exists() {
        file
    } else {
        "nova_os-quota-sets_admin_detail.json".into()
    }
}
