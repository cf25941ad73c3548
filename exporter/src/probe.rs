//! `--check-config --probe`: reaches every backend the configuration names once — the portal's
//! start-date and weights URLs, Keystone and Nova, libvirt — and reports each, so an operator
//! sees a wrong password, URL or socket before the exporter runs. Nothing is written; errors
//! are the sources' own, which never carry secrets.

use std::time::Duration;

use crate::config::Config;
use crate::sources::weights::Origin;
use crate::sources::{portal, start_date};
use crate::weights::Weights;

/// How long one probe may take.
const TIMEOUT: Duration = Duration::from_secs(30);

/// One backend reached, or not.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    /// What was probed (`portal start date https://portal.example/start`).
    pub what: String,
    /// What it answered, or why it could not be reached.
    pub result: Result<String, String>,
}

/// Probes every backend of `config`, in a fixed order.
pub async fn run(config: &Config) -> Vec<Outcome> {
    let mut out = Vec::new();
    let client = portal::client(TIMEOUT);
    let start_url = config
        .openstack
        .as_ref()
        .and_then(|o| o.usage_start_url.clone())
        .or_else(|| {
            config
                .dummy
                .as_ref()
                .and_then(|d| d.usage_start_url.clone())
        });
    if let Some(url) = start_url {
        let result = start_date::fetch(&client, &url)
            .await
            .map(|t| format!("start date {}", humantime::format_rfc3339_seconds(t)))
            .map_err(|e| e.to_string());
        out.push(Outcome {
            what: format!("portal start date {}", portal::redact(&url)),
            result,
        });
    }
    if let Some(Origin::Url(url)) = config.weights.as_ref().map(|w| &w.origin) {
        let result = match portal::get(&client, url).await {
            Ok(body) => Weights::from_json(&body)
                .map(|w| format!("{} weight sets", w.sets().len()))
                .map_err(|e| format!("malformed weights: {e}")),
            Err(e) => Err(e.to_string()),
        };
        out.push(Outcome {
            what: format!("portal weights {}", portal::redact(url)),
            result,
        });
    }
    if let Some(o) = &config.openstack {
        let source = crate::sources::openstack::OpenstackSource::from_config(
            o,
            config.legacy.clone(),
            crate::weights::WeightsInput::None,
        );
        // Authenticates with Keystone, then reads Nova's version document from the catalog.
        let result =
            match tokio::time::timeout(TIMEOUT, source.client().compute_supports((2, 47))).await {
                Ok(Ok(embeds)) => Ok(format!(
                    "Keystone authenticated, Nova reached (microversion 2.47 {})",
                    if embeds {
                        "supported"
                    } else {
                        "not supported: flavors are listed"
                    }
                )),
                Ok(Err(e)) => Err(e.to_string()),
                Err(_) => Err(format!("no answer within {TIMEOUT:?}")),
            };
        out.push(Outcome {
            what: "openstack".to_owned(),
            result,
        });
    }
    #[cfg(feature = "libvirt")]
    if let Some(l) = &config.libvirt {
        use crate::snapshot::SourceData;
        use crate::source::Source;

        let mut source = crate::sources::libvirt::LibvirtSource::new(l);
        let now = std::time::SystemTime::now();
        let result = match tokio::time::timeout(TIMEOUT, source.collect(now)).await {
            Ok(Ok(SourceData::Guests(g))) if g.up => Ok(format!("{} domains", g.guests.len())),
            Ok(Ok(_)) => Err("not reached".to_owned()),
            Ok(Err(e)) => Err(e.to_string()),
            Err(_) => Err(format!("no answer within {TIMEOUT:?}")),
        };
        out.push(Outcome {
            what: format!("libvirt {}", l.uri),
            result,
        });
    }
    out
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use crate::settings::MigrationEnv;

    fn config(args: &[&str]) -> Config {
        use clap::Parser;
        let cli = crate::cli::Cli::try_parse_from(
            std::iter::once("site-exporter").chain(args.iter().copied()),
        )
        .unwrap();
        Config::merge(
            &cli,
            crate::config::FileConfig::default(),
            &MigrationEnv::default(),
        )
        .unwrap()
    }

    #[tokio::test]
    async fn each_portal_url_is_reached_once_and_reported() {
        let portal = crate::test_support::scripted_http(vec![
            (200, r#"[{"start_date": "2026-01-01"}]"#),
            (
                200,
                r#"[{"resource_set_timestamp": 0, "vcpus": [], "memory_mb": []}]"#,
            ),
        ])
        .await;
        let start = format!("{portal}/start?token=s3cret");
        let weights = format!("{portal}/weights");
        let got = run(&config(&[
            "--dummy",
            "--usage-start-url",
            &start,
            "--weights.url",
            &weights,
        ]))
        .await;
        assert_eq!(
            got,
            [
                Outcome {
                    what: format!("portal start date {portal}/start"),
                    result: Ok("start date 2026-01-01T00:00:00Z".into()),
                },
                Outcome {
                    what: format!("portal weights {portal}/weights"),
                    result: Ok("1 weight sets".into()),
                },
            ]
        );
    }

    #[tokio::test]
    async fn an_unreachable_backend_is_an_error_naming_it() {
        let closed = {
            let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
            l.local_addr().unwrap()
        };
        let url = format!("http://{closed}/start");
        let got = run(&config(&["--dummy", "--usage-start-url", &url])).await;
        assert_eq!(got.len(), 1);
        let err = got[0].result.clone().unwrap_err();
        assert!(err.contains(&url), "{err}");
    }
}
