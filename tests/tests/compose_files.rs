//! The compose files are valid (`docker-compose config -q`; no Docker engine runs here), every
//! file they mount is shipped or is an operator's file that is documented and kept out of git
//! and image builds, the development stack's own configs pass their checks, the production
//! site stack is wired together and accepted by the real configuration loaders of both binaries,
//! and each portal Prometheus remote-writes only the billing families to a billing store it
//! reaches (named volume, retention in years, health check, 127.0.0.1 only).

#![allow(clippy::unwrap_used)]

use std::path::{Component, Path, PathBuf};
use std::process::Command;

use clap::Parser;
use serde_yaml::Value;
use stack_tests::compose::resolves;
use stack_tests::stack::{self, repo};

/// A YAML list of strings (a command, a health check's test), as `&str`s.
fn strings(list: &Value) -> Vec<&str> {
    list.as_sequence()
        .unwrap_or_else(|| panic!("not a list: {list:?}"))
        .iter()
        .map(|v| v.as_str().unwrap_or_else(|| panic!("not a string: {v:?}")))
        .collect()
}

fn compose_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(repo().join("compose"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            p.file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("docker-compose.")
        })
        .collect();
    files.sort();
    files
}

/// `promtool check config prometheus.yml` in `dir` passes.
fn promtool_check_config(dir: &Path) {
    let out = Command::new("promtool")
        .args(["check", "config", "prometheus.yml"])
        .current_dir(dir)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}: {}{}",
        dir.display(),
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// A YAML file with its merge keys (`<<: *anchor`) applied, as compose reads it.
fn yaml(path: &Path) -> Value {
    let text = std::fs::read_to_string(path).unwrap();
    let mut doc: Value =
        serde_yaml::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    doc.apply_merge()
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    doc
}

/// Copies the compose directory `from` to `to` as an operator would have it for `docker-compose
/// config`: each `X.example` becomes `X`. Directories named `secrets` and files that have an
/// example are left out: compose does not open secret files, and an operator's real
/// credentials are copied nowhere.
fn copy_for_config(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).unwrap();
    for entry in std::fs::read_dir(from).unwrap() {
        let path = entry.unwrap().path();
        let name = path.file_name().unwrap().to_str().unwrap().to_owned();
        if path.is_dir() {
            if name != "secrets" {
                copy_for_config(&path, &to.join(&name));
            }
        } else if let Some(real) = name.strip_suffix(".example") {
            std::fs::copy(&path, to.join(real)).unwrap();
        } else if !from.join(format!("{name}.example")).exists() {
            std::fs::copy(&path, to.join(&name)).unwrap();
        }
    }
}

#[test]
fn compose_files_are_valid() {
    // `docker-compose config` fails on a missing env_file, and the site's (site/openrc.env) is
    // the operator's: check a copy of compose/ with the examples in place. The build contexts
    // (`..`) are the copy's parent, which exists; bind-mount sources are not opened.
    let tmp = tempfile::tempdir().unwrap();
    let copy = tmp.path().join("compose");
    copy_for_config(&repo().join("compose"), &copy);
    let files = compose_files();
    let names: Vec<String> = files
        .iter()
        .map(|f| f.file_name().unwrap().to_string_lossy().into_owned())
        .collect();
    for stack in ["dev", "hypervisor", "portal", "site"] {
        assert!(
            names.contains(&format!("docker-compose.{stack}.yml")),
            "{names:?}"
        );
    }
    for name in names {
        let out = Command::new("docker-compose")
            .arg("-f")
            .arg(copy.join(&name))
            .args(["config", "-q"])
            .output()
            .expect("docker-compose not found: install Debian's docker-compose (the README's test command does)");
        assert!(
            out.status.success(),
            "{name}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}

/// `path` without `.` and `..` components (the path need not exist).
fn normal(path: &Path) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

/// Bind-mount sources, env files, secret files and Dockerfiles named by a compose file,
/// absolute and normalised.
fn mounted(file: &Path) -> Vec<PathBuf> {
    let dir = file.parent().unwrap().canonicalize().unwrap();
    let doc = yaml(file);
    let mut out = Vec::new();
    for (_, service) in doc["services"].as_mapping().unwrap() {
        for v in service["volumes"].as_sequence().into_iter().flatten() {
            let src = v.as_str().unwrap().split(':').next().unwrap();
            if src.starts_with('.') {
                out.push(normal(&dir.join(src)));
            }
        }
        // A single file or a list.
        let env_files = match &service["env_file"] {
            Value::String(s) => vec![s.as_str()],
            v => v
                .as_sequence()
                .into_iter()
                .flatten()
                .map(|e| e.as_str().unwrap())
                .collect(),
        };
        for e in env_files {
            out.push(normal(&dir.join(variable_default(e))));
        }
        if let Some(build) = service["build"].as_mapping() {
            let context = dir.join(build[&Value::from("context")].as_str().unwrap());
            out.push(normal(
                &context.join(build[&Value::from("dockerfile")].as_str().unwrap()),
            ));
        }
    }
    for (_, secret) in doc["secrets"].as_mapping().into_iter().flatten() {
        out.push(normal(&dir.join(secret["file"].as_str().unwrap())));
    }
    out
}

/// `path` relative to the repository, with `/` separators.
fn relative(path: &Path) -> String {
    let root = repo().canonicalize().unwrap();
    let rel = path
        .strip_prefix(&root)
        .unwrap_or_else(|_| panic!("{} is outside the repository", path.display()));
    rel.to_string_lossy().replace('\\', "/")
}

/// Whether git ignores `rel`, i.e. it is a file an operator creates (tracked files never count).
fn git_ignored(rel: &str) -> bool {
    let status = Command::new("git")
        .arg("-C")
        .arg(repo())
        .args(["check-ignore", "-q", "--", rel])
        .status()
        .expect("git not found");
    match status.code() {
        Some(0) => true,
        Some(1) => false,
        _ => panic!("git check-ignore {rel}: {status} (not a git checkout?)"),
    }
}

/// Whether `.dockerignore` keeps `rel` out of image builds. Only literal entries count (a file,
/// or a directory with an optional `/`, `/*` or `/**`): the ones this repository writes.
fn docker_ignored(rel: &str) -> bool {
    std::fs::read_to_string(repo().join(".dockerignore"))
        .unwrap()
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#') && !l.starts_with('!'))
        .map(|l| {
            l.trim_end_matches("/**")
                .trim_end_matches("/*")
                .trim_end_matches('/')
        })
        .any(|l| rel == l || rel.starts_with(&format!("{l}/")))
}

/// Whether an operator finds out how to create `path`: an `X.example` beside it, or the
/// `README.md` of its directory naming it in backticks.
fn documented(path: &Path) -> bool {
    let name = path.file_name().unwrap().to_string_lossy();
    let readme = std::fs::read_to_string(path.with_file_name("README.md")).unwrap_or_default();
    path.with_file_name(format!("{name}.example")).exists() || readme.contains(&format!("`{name}`"))
}

#[test]
fn every_mounted_file_is_shipped_or_documented() {
    for file in compose_files() {
        let paths = mounted(&file);
        assert!(!paths.is_empty(), "{}", file.display());
        let compose = file.file_name().unwrap().to_string_lossy();
        for p in paths {
            let rel = relative(&p);
            if git_ignored(&rel) {
                // The operator creates it: say how, and never commit it or send it to a build.
                assert!(
                    documented(&p),
                    "{compose} mounts {rel}, which the operator creates, but there is neither {rel}.example nor a README.md beside it naming it"
                );
                assert!(
                    docker_ignored(&rel),
                    "{compose} mounts {rel}, which the operator creates, but .dockerignore does not keep it out of image builds"
                );
            } else {
                assert!(p.exists(), "{compose} mounts {rel} which does not exist");
            }
        }
    }
}

#[test]
fn the_dev_stack_configs_pass_their_checks() {
    let dev = repo().join("compose/dev");
    // Each site's gateway config loads with the development secrets in place of /run/secrets,
    // with its own token.
    let mut allow_lists = Vec::new();
    let mut tokens = Vec::new();
    for site in ["a", "b"] {
        let file = dev.join(format!("gateway-{site}.yml"));
        let gw = std::fs::read_to_string(&file)
            .unwrap()
            .replace(
                "/run/secrets/dev_tls_cert",
                &dev.join("secrets/dev-tls.crt").display().to_string(),
            )
            .replace(
                "/run/secrets/dev_tls_key",
                &dev.join("secrets/dev-tls.key").display().to_string(),
            )
            .replace(
                &format!("/run/secrets/dev_portal_token_{site}"),
                &dev.join(format!("secrets/dev-portal-{site}.token"))
                    .display()
                    .to_string(),
            );
        let config = federation_gateway::config::Config::parse(&gw, &file).unwrap();
        assert!(config.tls.is_some());
        assert_eq!(config.clients.len(), 1);
        tokens.push(
            std::fs::read_to_string(dev.join(format!("secrets/dev-portal-{site}.token"))).unwrap(),
        );
        let allow: Vec<String> = serde_yaml::from_str::<Value>(&gw).unwrap()["clients"][0]["allow"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_string())
            .collect();
        allow_lists.push((format!("federate_site-{site}"), allow));
    }
    assert_ne!(tokens[0], tokens[1], "the development sites share a token");
    assert_eq!(
        [tokens[0].trim(), tokens[1].trim()],
        [stack::DEV_TOKEN_A, stack::DEV_TOKEN_B],
        "the tests' constants differ from compose/dev/secrets/"
    );
    assert_ne!(
        allow_lists[0].1, allow_lists[1].1,
        "the development sites share an allow-list"
    );

    // The portal config passes promtool with its secrets and rules where it mounts them.
    let tmp = tempfile::tempdir().unwrap();
    let portal = std::fs::read_to_string(dev.join("portal/prometheus.yml"))
        .unwrap()
        .replace(
            "/etc/prometheus/secrets/",
            &format!("{}/", dev.join("secrets").display()),
        )
        .replace(
            "/etc/prometheus/rules/",
            &format!("{}/", repo().join("prometheus/portal/rules").display()),
        );
    std::fs::write(tmp.path().join("prometheus.yml"), portal).unwrap();
    promtool_check_config(tmp.path());

    // Each federation job asks exactly for what its site's gateway allows.
    let doc: Value =
        serde_yaml::from_str(&std::fs::read_to_string(dev.join("portal/prometheus.yml")).unwrap())
            .unwrap();
    let mut checked = 0;
    for job in doc["scrape_configs"].as_sequence().unwrap() {
        if let Some(params) = job["params"]["match[]"].as_sequence() {
            let asked: Vec<String> = params
                .iter()
                .map(|v| v.as_str().unwrap().to_string())
                .collect();
            let name = job["job_name"].as_str().unwrap();
            let (_, allow) = allow_lists
                .iter()
                .find(|(job, _)| job == name)
                .unwrap_or_else(|| panic!("no development gateway for job {name}"));
            assert_eq!(&asked, allow, "job {name}");
            checked += 1;
        }
    }
    assert_eq!(checked, 2);
}

// The production site stack: docker-compose.site.yml with compose/site/.

fn site() -> Value {
    yaml(&repo().join("compose/docker-compose.site.yml"))
}

/// Where `service` mounts `source` (a bind-mount source or a named volume, as written).
fn mount_target(service: &Value, source: &str) -> String {
    service["volumes"]
        .as_sequence()
        .unwrap()
        .iter()
        .find_map(|v| {
            let mut parts = v.as_str().unwrap().split(':');
            (parts.next() == Some(source)).then(|| parts.next().unwrap().to_owned())
        })
        .unwrap_or_else(|| panic!("nothing mounts {source}"))
}

/// The argv of `binary` as `service`'s `command` runs it, with the container path `from`
/// replaced by `to`, plus `--check-config`.
fn check_argv(binary: &str, service: &Value, from: &str, to: &Path) -> Vec<String> {
    let mut argv = vec![binary.to_owned()];
    for arg in service["command"].as_sequence().unwrap() {
        let arg = arg.as_str().unwrap();
        argv.push(if arg == from {
            to.display().to_string()
        } else {
            arg.to_owned()
        });
    }
    assert!(
        argv.contains(&to.display().to_string()),
        "the command does not name {from}: {argv:?}"
    );
    argv.push("--check-config".into());
    argv
}

/// `host` and `port` of `host:port` or `scheme://host:port/...`.
fn host_port(address: &str) -> (String, u16) {
    let rest = address.split_once("://").map_or(address, |(_, r)| r);
    let authority = rest.split('/').next().unwrap();
    let (host, port) = authority.rsplit_once(':').unwrap();
    (host.to_owned(), port.parse().unwrap())
}

/// The port a service's health check asks.
fn health_port(service: &Value) -> u16 {
    let test = service["healthcheck"]["test"].as_sequence().unwrap();
    host_port(test.last().unwrap().as_str().unwrap()).1
}

#[test]
fn the_site_stack_publishes_only_the_gateway_and_runs_unattended() {
    let site = site();
    let services = site["services"].as_mapping().unwrap();
    let names: Vec<&str> = services.keys().map(|k| k.as_str().unwrap()).collect();
    assert_eq!(names, ["exporter", "prometheus", "gateway"]);
    let dockerfile = std::fs::read_to_string(repo().join("compose/Dockerfile")).unwrap();
    for (name, s) in services {
        let name = name.as_str().unwrap();
        assert_eq!(s["restart"], "unless-stopped", "{name}");
        assert_eq!(s["logging"]["driver"], "json-file", "{name}");
        for option in ["max-size", "max-file"] {
            assert!(
                s["logging"]["options"][option].is_string(),
                "{name}: logging.options.{option}"
            );
        }
        // The check runs a tool the image has: curl in ours (the Dockerfile installs it),
        // wget (busybox) in Prometheus's.
        let test: Vec<&str> = s["healthcheck"]["test"]
            .as_sequence()
            .unwrap_or_else(|| panic!("{name}: no healthcheck"))
            .iter()
            .map(|v| v.as_str().unwrap())
            .collect();
        assert_eq!(test[0], "CMD", "{name}");
        let tool = if s["build"].is_mapping() {
            assert!(
                dockerfile.contains(" curl "),
                "the runtime image has no curl"
            );
            "curl"
        } else {
            "wget"
        };
        assert_eq!(test[1], tool, "{name}");
        assert!(
            test.last().unwrap().starts_with("http://127.0.0.1:"),
            "{name}: {test:?}"
        );
        assert!(s["network_mode"].is_null(), "{name}");
        if name == "gateway" {
            let ports = s["ports"].as_sequence().unwrap();
            assert_eq!(ports.len(), 1, "{ports:?}");
            assert_eq!(ports[0], "${GATEWAY_PUBLISH:-9443}:9443");
        } else {
            assert!(s["ports"].is_null(), "{name} publishes {:?}", s["ports"]);
        }
    }
    assert!(site["services"]["prometheus"]["healthcheck"]["test"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|v| v.as_str().unwrap().ends_with("/-/ready")));

    // The same Prometheus as every other stack.
    let image = site["services"]["prometheus"]["image"].as_str().unwrap();
    assert!(
        variable_default(image).starts_with("prom/prometheus:v"),
        "{image}"
    );
    for file in compose_files() {
        for (_, s) in yaml(&file)["services"].as_mapping().unwrap() {
            if let Some(other) = s["image"].as_str() {
                if variable_default(other).starts_with("prom/prometheus") {
                    assert_eq!(other, image, "{}", file.display());
                }
            }
        }
    }

    // Data survives `docker-compose down` (without -v): named volumes.
    for (service, volume) in [
        ("exporter", "exporter-state"),
        ("prometheus", "prometheus-data"),
    ] {
        mount_target(&site["services"][service], volume);
        assert!(site["volumes"][volume].is_mapping(), "{volume}");
    }
    let command = strings(&site["services"]["prometheus"]["command"]);
    assert!(
        command.contains(&"--storage.tsdb.path=/prometheus")
            && mount_target(&site["services"]["prometheus"], "prometheus-data") == "/prometheus",
        "{command:?}"
    );
    assert!(
        command
            .iter()
            .any(|a| a.starts_with("--storage.tsdb.retention.time=")),
        "{command:?}"
    );
}

#[test]
fn the_site_services_find_each_other() {
    let site = site();
    let services = &site["services"];
    let dir = repo().join("compose/site");
    let exporter_port = yaml(&dir.join("exporter.yml"))["web"]["listen_address"]
        .as_str()
        .unwrap()
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .port();
    let gateway = yaml(&dir.join("gateway.yml"));
    let addr = |key: &str| {
        gateway[key]
            .as_str()
            .unwrap()
            .parse::<std::net::SocketAddr>()
            .unwrap()
            .port()
    };
    let (gateway_port, internal_port) = (addr("listen"), addr("internal_listen"));

    // Health checks ask the ports the services listen on; the gateway's public port is the
    // published one.
    assert_eq!(health_port(&services["exporter"]), exporter_port);
    assert_eq!(health_port(&services["gateway"]), internal_port);
    assert_eq!(health_port(&services["prometheus"]), 9090);
    let published = services["gateway"]["ports"][0].as_str().unwrap();
    assert_eq!(
        published
            .rsplit(':')
            .next()
            .unwrap()
            .parse::<u16>()
            .unwrap(),
        gateway_port
    );

    // The gateway forwards to the Prometheus service on its default port.
    let (host, port) = host_port(gateway["upstream"]["url"].as_str().unwrap());
    assert!(services[host.as_str()].is_mapping(), "upstream {host}");
    assert_eq!((host.as_str(), port), ("prometheus", 9090));

    // prometheus/site/prometheus.yml scrapes the exporter and the gateway by service name.
    let prometheus = yaml(&repo().join("prometheus/site/prometheus.yml"));
    let mut scraped = Vec::new();
    for job in prometheus["scrape_configs"].as_sequence().unwrap() {
        for sc in job["static_configs"].as_sequence().into_iter().flatten() {
            for t in sc["targets"].as_sequence().unwrap() {
                let (host, port) = host_port(t.as_str().unwrap());
                if host != "localhost" {
                    scraped.push((host, port));
                }
            }
        }
        // File-based targets (the hypervisors) are relative to the config, which the service
        // mounts with its directory.
        for sd in job["file_sd_configs"].as_sequence().into_iter().flatten() {
            for f in sd["files"].as_sequence().unwrap() {
                let f = f.as_str().unwrap();
                assert!(!f.starts_with('/'), "{f}");
                let listed = f.split('/').next().unwrap();
                assert!(repo().join("prometheus/site").join(listed).is_dir(), "{f}");
            }
        }
    }
    scraped.sort();
    assert_eq!(
        scraped,
        [
            ("exporter".to_owned(), exporter_port),
            ("gateway".to_owned(), internal_port)
        ]
    );
    let config_dir = mount_target(&services["prometheus"], "../prometheus/site");
    assert!(services["prometheus"]["command"]
        .as_sequence()
        .unwrap()
        .iter()
        .any(|a| a.as_str().unwrap() == format!("--config.file={config_dir}/prometheus.yml")));
}

/// `text` with every optional setting (`#key: value`, `#` followed by no space) enabled.
fn uncomment(text: &str) -> String {
    text.lines()
        .map(|l| {
            let body = l.trim_start();
            let indent = &l[..l.len() - body.len()];
            match body.strip_prefix('#') {
                Some(rest) if !rest.is_empty() && !rest.starts_with([' ', '#']) => {
                    format!("{indent}{rest}\n")
                }
                _ => format!("{l}\n"),
            }
        })
        .collect()
}

#[test]
fn the_site_exporter_config_passes_check_config() {
    let site = site();
    let exporter = &site["services"]["exporter"];
    let file = repo().join("compose/site/exporter.yml");
    let target = mount_target(exporter, "./site/exporter.yml");
    // What `site-exporter <the compose command> --check-config` runs: the same flags through
    // the same parser and loader as the binary.
    let check = |path: &Path| {
        let argv = check_argv("site-exporter", exporter, &target, path);
        let cli = site_exporter::cli::Cli::try_parse_from(&argv)
            .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
        assert!(cli.check_config);
        site_exporter::config::Config::load(&cli)
    };
    let config = check(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert!(config.dummy.is_none() && config.libvirt.is_none());
    let openstack = config.openstack.expect("the OpenStack source is enabled");
    assert!(openstack.quotas);
    // The state file is on the named volume, not in the container's throw-away layer.
    let state = openstack.state_file.expect("openstack.state_file is set");
    let volume = mount_target(exporter, "exporter-state");
    assert!(
        state.starts_with(&volume),
        "{} outside {volume}",
        state.display()
    );

    // Every optional setting is valid too (they are the examples an operator enables).
    let text = std::fs::read_to_string(&file).unwrap();
    let all = uncomment(&text);
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("exporter.yml");
    std::fs::write(&path, &all).unwrap();
    let config =
        check(&path).unwrap_or_else(|e| panic!("{} with every setting: {e}", file.display()));
    assert!(config.weights.is_some(), "weights reach the config");
    assert!(
        config.legacy.simple_vm.is_some(),
        "simple_vm reaches the config"
    );
    let openstack = config.openstack.unwrap();
    assert_eq!(openstack.filters.exclude_domains, ["heat"]);
    assert!(
        openstack.usage_start_url.is_some(),
        "the portal start date reaches the OpenStack source"
    );

    // A wrong key is refused: the file really goes through the validation.
    std::fs::write(&path, format!("{text}openstack_typo: true\n")).unwrap();
    assert!(check(&path).is_err());
}

#[test]
fn the_site_gateway_config_loads_with_its_secrets() {
    let site = site();
    let gateway = &site["services"]["gateway"];
    let file = repo().join("compose/site/gateway.yml");
    let target = mount_target(gateway, "./site/gateway.yml");

    // Stand-ins for the operator's secrets, where compose mounts each: /run/secrets/<name>.
    let tmp = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["gateway.site.example.org".into()]).unwrap();
    let mut text = std::fs::read_to_string(&file).unwrap();
    for name in gateway["secrets"].as_sequence().unwrap() {
        let name = name.as_str().unwrap();
        let content = match site["secrets"][name]["file"].as_str().unwrap() {
            f if f.ends_with(".crt") => cert.cert.pem(),
            f if f.ends_with(".key") => cert.signing_key.serialize_pem(),
            f if f.ends_with(".token") => "0123456789abcdef0123456789abcdef\n".to_owned(),
            f => panic!("no stand-in for {f}"),
        };
        let path = tmp.path().join(name);
        std::fs::write(&path, content).unwrap();
        text = text.replace(&format!("/run/secrets/{name}"), &path.display().to_string());
    }
    assert!(
        !text.contains("/run/secrets/"),
        "gateway.yml reads a secret the gateway service is not given:\n{text}"
    );
    let path = tmp.path().join("gateway.yml");
    std::fs::write(&path, &text).unwrap();

    // What `federation-gateway <the compose command> --check-config` runs.
    let argv = check_argv("federation-gateway", gateway, &target, &path);
    let cli = federation_gateway::cli::Cli::try_parse_from(&argv)
        .unwrap_or_else(|e| panic!("{argv:?}: {e}"));
    let config = federation_gateway::config::Config::load(&cli.config)
        .unwrap_or_else(|e| panic!("{}: {e}", file.display()));
    assert!(config.tls.is_some(), "the site gateway serves TLS");
    assert_eq!(config.clients.len(), 1);
    assert_eq!(config.clients[0].name, "portal");

    // It allows exactly what the portal's federation jobs ask for.
    let allow: Vec<String> = yaml(&file)["clients"][0]["allow"]
        .as_sequence()
        .unwrap()
        .iter()
        .map(|v| v.as_str().unwrap().to_owned())
        .collect();
    let portal = yaml(&repo().join("prometheus/portal/prometheus.yml"));
    let mut jobs = 0;
    for job in portal["scrape_configs"].as_sequence().unwrap() {
        if let Some(params) = job["params"]["match[]"].as_sequence() {
            let asked: Vec<String> = params
                .iter()
                .map(|v| v.as_str().unwrap().to_owned())
                .collect();
            assert_eq!(asked, allow, "job {:?}", job["job_name"]);
            jobs += 1;
        }
    }
    assert!(jobs > 0);
}

#[test]
fn the_openrc_example_is_an_env_file_with_every_credential() {
    let text = std::fs::read_to_string(repo().join("compose/site/openrc.env.example")).unwrap();
    // docker-compose takes each `VAR=value` literally: `export` or quotes would break it.
    let vars = |text: &str| -> Vec<(String, String)> {
        text.lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| {
                let (var, value) = l
                    .split_once('=')
                    .unwrap_or_else(|| panic!("not VAR=value: {l}"));
                assert!(
                    var.starts_with("OS_")
                        && var
                            .chars()
                            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_'),
                    "not an OS_* variable: {l}"
                );
                assert!(
                    !value.is_empty() && !value.starts_with(['"', '\'']) && !value.contains(' '),
                    "value must be bare: {l}"
                );
                (var.to_owned(), value.to_owned())
            })
            .collect()
    };
    let password = vars(&text);
    let names: Vec<&str> = password.iter().map(|(v, _)| v.as_str()).collect();
    assert_eq!(
        names,
        [
            "OS_AUTH_URL",
            "OS_USERNAME",
            "OS_PASSWORD",
            "OS_PROJECT_NAME",
            "OS_USER_DOMAIN_NAME",
            "OS_PROJECT_DOMAIN_NAME",
            "OS_REGION_NAME",
            "OS_INTERFACE",
            "OS_IDENTITY_API_VERSION",
        ]
    );
    // The commented alternative is an application credential, in the same format.
    let all = vars(&uncomment(&text));
    for (var, value) in [
        ("OS_AUTH_TYPE", Some("v3applicationcredential")),
        ("OS_APPLICATION_CREDENTIAL_ID", None),
        ("OS_APPLICATION_CREDENTIAL_SECRET", None),
    ] {
        let found = all.iter().find(|(v, _)| v == var);
        assert!(found.is_some(), "{var}");
        if let Some(value) = value {
            assert_eq!(found.unwrap().1, value);
        }
    }
}

/// The default of a value written `${VARIABLE:-default}`, else the value.
fn variable_default(value: &str) -> &str {
    value
        .strip_prefix("${")
        .and_then(|r| r.strip_suffix('}'))
        .and_then(|r| r.split_once(":-"))
        .map_or(value, |(_, default)| default)
}

#[test]
fn every_image_can_be_replaced_by_a_local_one() {
    // compose/local-images.sh prints VARIABLE=image lines; every image of every stack is
    // `${VARIABLE:-upstream}`, one variable per image, so a machine without a registry can
    // point each stack at local images (Grafana has no Debian package: none is built).
    let script = std::fs::read_to_string(repo().join("compose/local-images.sh")).unwrap();
    let mut seen = std::collections::BTreeMap::new();
    for file in compose_files() {
        for (name, s) in yaml(&file)["services"].as_mapping().unwrap() {
            let image = s["image"]
                .as_str()
                .unwrap_or_else(|| panic!("{}: {name:?} has no image", file.display()));
            let (variable, default) = image
                .strip_prefix("${")
                .and_then(|r| r.strip_suffix('}'))
                .and_then(|r| r.split_once(":-"))
                .unwrap_or_else(|| {
                    panic!("{}: {image} is not ${{VARIABLE:-image}}", file.display())
                });
            let repository = default.rsplit_once(':').map_or(default, |(r, _)| r);
            if let Some(other) = seen.insert(variable.to_owned(), repository.to_owned()) {
                assert_eq!(other, repository, "{variable} names two images");
            }
            if variable != "GRAFANA_IMAGE" {
                assert!(
                    script.contains(&format!("echo \"{variable}=")),
                    "compose/local-images.sh does not build {variable}"
                );
            }
        }
    }
    assert_eq!(
        seen.keys().map(String::as_str).collect::<Vec<_>>(),
        [
            "ALERTMANAGER_IMAGE",
            "EXPORTER_IMAGE",
            "GATEWAY_IMAGE",
            "GRAFANA_IMAGE",
            "PROMETHEUS_IMAGE",
            "VICTORIAMETRICS_IMAGE"
        ]
    );
}

/// The stages of a Dockerfile: (name, `FROM` argument), in order.
fn stages(dockerfile: &str) -> Vec<(String, String)> {
    dockerfile
        .lines()
        .filter_map(|l| l.strip_prefix("FROM "))
        .map(|l| {
            let words: Vec<&str> = l.split_whitespace().collect();
            let name = match words.as_slice() {
                [_, as_, name] if as_.eq_ignore_ascii_case("as") => (*name).to_owned(),
                _ => String::new(),
            };
            (name, words[0].to_owned())
        })
        .collect()
}

#[test]
fn the_dockerfile_builds_with_the_legacy_builder() {
    // Debian 12's docker.io 20.10 and docker-compose 1.29 build without BuildKit: no frontend
    // to fetch (`# syntax`), no `RUN --mount`. The legacy builder runs every stage before the
    // target, so the stages that need no Rust toolchain come before the build stage, and
    // compose/local-images.sh can build `exporter-base` and `gateway-base` without it.
    let text = std::fs::read_to_string(repo().join("compose/Dockerfile")).unwrap();
    assert!(
        !text
            .lines()
            .any(|l| l.to_lowercase().replace(' ', "").starts_with("#syntax=")),
        "a # syntax line"
    );
    assert!(
        !text
            .lines()
            .any(|l| !l.starts_with('#') && l.contains("--mount")),
        "RUN --mount needs BuildKit"
    );
    assert!(text.contains("\nARG RUNTIME_IMAGE=debian:bookworm-slim\n"));
    assert!(text.contains("\nARG RUST_IMAGE=rust:1-bookworm\n"));
    let names: Vec<(String, String)> = stages(&text);
    let expected = [
        ("runtime", "${RUNTIME_IMAGE}"),
        ("exporter-base", "runtime"),
        ("gateway-base", "runtime"),
        ("build", "${RUST_IMAGE}"),
        ("exporter", "exporter-base"),
        ("gateway", "gateway-base"),
    ];
    assert_eq!(
        names,
        expected.map(|(n, f)| (n.to_owned(), f.to_owned())),
        "compose/Dockerfile stages"
    );
    // The compose files build the production targets.
    for file in compose_files() {
        for (name, s) in yaml(&file)["services"].as_mapping().unwrap() {
            if let Some(build) = s["build"].as_mapping() {
                let target = build[&Value::from("target")].as_str().unwrap();
                assert!(
                    ["exporter", "gateway"].contains(&target),
                    "{}: {name:?} builds {target}",
                    file.display()
                );
            }
        }
    }
    // The host-binaries images add nothing but the binary to those bases.
    let host =
        std::fs::read_to_string(repo().join("compose/local-images/host-binaries.Dockerfile"))
            .unwrap();
    let instructions: Vec<&str> = host
        .lines()
        .filter(|l| !l.trim().is_empty() && !l.starts_with('#') && !l.starts_with("ARG "))
        .collect();
    assert_eq!(
        instructions,
        [
            "FROM ${EXPORTER_BASE} AS exporter-from-host-binaries",
            "COPY site-exporter /usr/local/bin/site-exporter",
            "FROM ${GATEWAY_BASE} AS gateway-from-host-binaries",
            "COPY federation-gateway /usr/local/bin/federation-gateway",
            "FROM ${EXPORTER_BASE} AS fake-openstack-from-host-binaries",
            "COPY fake_openstack /usr/local/bin/fake_openstack",
            "HEALTHCHECK NONE",
            "ENTRYPOINT [\"fake_openstack\"]",
        ]
    );
    for binary in ["site-exporter", "federation-gateway"] {
        assert!(
            text.contains(&format!(
                "COPY --from=build /out/{binary} /usr/local/bin/{binary}\n"
            )),
            "the production image installs {binary} where the host-binaries one does"
        );
    }
}

#[test]
fn each_dev_site_has_its_own_site_label() {
    // The dev stack's site Prometheus config is the shipped one but for `site: ${SITE}` and
    // the development Alertmanager's address and user.
    let dev = repo().join("compose/dev/site/prometheus.yml");
    let mut dev_config = yaml(&dev);
    assert_eq!(dev_config["global"]["external_labels"]["site"], "${SITE}");
    let shipped = yaml(&repo().join("prometheus/site/prometheus.yml"));
    dev_config["global"]["external_labels"]["site"] =
        shipped["global"]["external_labels"]["site"].clone();
    let dev_am = &mut dev_config["alerting"]["alertmanagers"][0];
    assert_eq!(
        dev_am["static_configs"][0]["targets"][0], "alertmanager:9093",
        "the dev sites send their alerts to the dev stack's Alertmanager"
    );
    let shipped_am = &shipped["alerting"]["alertmanagers"][0];
    dev_am["static_configs"] = shipped_am["static_configs"].clone();
    dev_am["basic_auth"]["username"] = shipped_am["basic_auth"]["username"].clone();
    assert_eq!(
        dev_config,
        shipped,
        "{} differs from prometheus/site/prometheus.yml",
        dev.display()
    );

    // Every site Prometheus of the dev stack expands its own SITE.
    let compose = yaml(&repo().join("compose/docker-compose.dev.yml"));
    let mut sites = Vec::new();
    for (name, s) in compose["services"].as_mapping().unwrap() {
        let name = name.as_str().unwrap();
        if !name.starts_with("prometheus-") {
            continue;
        }
        let command = strings(&s["command"]);
        assert!(
            command.contains(&"--enable-feature=expand-external-labels"),
            "{name}: {command:?}"
        );
        assert_eq!(
            mount_target(s, "./dev/site/prometheus.yml"),
            "/etc/prometheus/prometheus.yml"
        );
        let site = s["environment"]["SITE"].as_str().unwrap().to_owned();
        assert_eq!(
            format!("prometheus-{}", site.trim_start_matches("site-")),
            name
        );
        sites.push(site);
    }
    assert_eq!(sites, ["site-a", "site-b"]);

    // It loads in the Prometheus the tests run (Debian's), with the site's rules beside it.
    let tmp = tempfile::tempdir().unwrap();
    let status = Command::new("cp")
        .arg("-r")
        .arg(repo().join("prometheus/site"))
        .arg(tmp.path().join("site"))
        .status()
        .unwrap();
    assert!(status.success());
    std::fs::copy(&dev, tmp.path().join("site/prometheus.yml")).unwrap();
    promtool_check_config(&tmp.path().join("site"));
}

/// The `/run/secrets/<name>` names a text refers to.
fn secrets_named(text: &str) -> std::collections::BTreeSet<String> {
    text.split("/run/secrets/")
        .skip(1)
        .map(|rest| {
            rest.chars()
                .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
                .collect()
        })
        .collect()
}

#[test]
fn every_secret_the_alerting_configs_read_is_given_to_their_service() {
    // What each service reads from /run/secrets: the shipped files it mounts, and for the
    // dev stack its own files; compose must give it exactly those secrets or more.
    let read = |rel: &str| std::fs::read_to_string(repo().join(rel)).unwrap();
    let alertmanager = read("prometheus/portal/alertmanager.yml")
        + &read("prometheus/portal/amtool-healthcheck.yml");
    let cases = [
        (
            "docker-compose.portal.yml",
            "alertmanager",
            alertmanager.clone(),
        ),
        (
            "docker-compose.dev.yml",
            "alertmanager",
            alertmanager.clone() + &read("compose/dev/alertmanager-web.yml"),
        ),
        (
            "docker-compose.site.yml",
            "prometheus",
            read("prometheus/site/prometheus.yml"),
        ),
        (
            "docker-compose.dev.yml",
            "prometheus-a",
            read("compose/dev/site/prometheus.yml"),
        ),
        (
            "docker-compose.dev.yml",
            "prometheus-b",
            read("compose/dev/site/prometheus.yml"),
        ),
    ];
    for (file, service, text) in cases {
        let compose = yaml(&repo().join("compose").join(file));
        let s = &compose["services"][service];
        let command = serde_yaml::to_string(&s["command"]).unwrap();
        let needed = secrets_named(&(text + &command));
        assert!(!needed.is_empty(), "{file} {service}");
        let given: std::collections::BTreeSet<String> = s["secrets"]
            .as_sequence()
            .into_iter()
            .flatten()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        for name in &needed {
            assert!(
                given.contains(name),
                "{file}: {service} reads /run/secrets/{name} but is not given that secret"
            );
            assert!(
                compose["secrets"][name.as_str()]["file"].is_string(),
                "{file}: secret {name} is not defined"
            );
        }
    }
}

#[test]
fn each_portal_writes_its_billing_history_to_its_store() {
    // (compose file, portal Prometheus service, the config it mounts)
    for (file, portal, config) in [
        (
            "docker-compose.portal.yml",
            "prometheus",
            "prometheus/portal/prometheus.yml",
        ),
        (
            "docker-compose.dev.yml",
            "portal",
            "compose/dev/portal/prometheus.yml",
        ),
    ] {
        let compose = yaml(&repo().join("compose").join(file));
        let config = yaml(&repo().join(config));
        let writes = config["remote_write"].as_sequence().unwrap();
        assert_eq!(writes.len(), 1, "{file}: one remote_write");
        let url = writes[0]["url"].as_str().unwrap();
        let (host, port) = host_port(url.strip_suffix("/api/v1/write").unwrap());
        assert_eq!(port, 8428, "{file}: {url}");
        // Only the billing families.
        let relabel = writes[0]["write_relabel_configs"].as_sequence().unwrap();
        assert_eq!(relabel.len(), 1, "{file}");
        assert_eq!(relabel[0]["action"].as_str(), Some("keep"), "{file}");
        assert_eq!(
            relabel[0]["regex"].as_str(),
            Some("project_.*_usage|openstack_project_.+|project:libvirt_.+"),
            "{file}"
        );
        assert!(
            resolves(&compose, portal, &host),
            "{file}: {portal} reaches {host}"
        );

        // The store: its data on a named volume, retention in years, a health check, and a
        // port only on 127.0.0.1.
        let store = &compose["services"][host.as_str()];
        let args = strings(&store["command"]);
        let arg = |flag: &str| {
            args.iter()
                .find_map(|a| a.strip_prefix(flag))
                .unwrap_or_else(|| panic!("{file}: {host} has no {flag}"))
        };
        let data = arg("-storageDataPath=");
        let retention = variable_default(arg("-retentionPeriod="));
        assert!(
            retention.ends_with('y') && retention[..retention.len() - 1].parse::<u32>().is_ok(),
            "{file}: retention {retention} in years"
        );
        let volume = store["volumes"]
            .as_sequence()
            .unwrap()
            .iter()
            .filter_map(|v| v.as_str()?.strip_suffix(&format!(":{data}")))
            .next()
            .unwrap_or_else(|| panic!("{file}: nothing mounted at {data}"));
        assert!(
            compose["volumes"][volume].is_mapping(),
            "{file}: {volume} is a named volume"
        );
        assert!(store["healthcheck"]["test"].is_sequence(), "{file}");
        for published in store["ports"].as_sequence().into_iter().flatten() {
            assert!(
                published.as_str().unwrap().starts_with("127.0.0.1:"),
                "{file}: {published:?}"
            );
        }
    }
}

#[test]
fn the_hypervisor_stack_serves_tls_with_basic_auth_and_the_site_scrapes_it_so() {
    let doc = yaml(&repo().join("compose/docker-compose.hypervisor.yml"));
    let exporter = &doc["services"]["exporter"];
    let dir = mount_target(exporter, "./hypervisor/secrets");
    let web = format!("{dir}/web.yml");

    // The command's --web.config.file is the mounted directory's web.yml, through the same
    // parser as the binary.
    let mut argv = vec!["site-exporter".to_owned()];
    argv.extend(
        exporter["command"]
            .as_sequence()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap().to_owned()),
    );
    let cli = site_exporter::cli::Cli::try_parse_from(&argv).unwrap();
    assert_eq!(cli.web_config_file.as_deref(), Some(Path::new(&web)));

    // Published (the site Prometheus is on another host), on the exporter's port.
    assert_eq!(exporter["ports"][0], "${EXPORTER_PUBLISH:-9184}:9184");
    // The health check logs in with the netrc from the same directory, over TLS.
    let test = strings(&exporter["healthcheck"]["test"]);
    let netrc = format!("{dir}/healthcheck.netrc");
    assert!(
        test.windows(2)
            .any(|w| w == ["--netrc-file", netrc.as_str()]),
        "{test:?}"
    );
    assert_eq!(test.last(), Some(&"https://127.0.0.1:9184/-/healthy"));

    // Every file of the directory is documented, and the README's web.yml loads once its
    // hashes and files are real.
    let readme =
        std::fs::read_to_string(repo().join("compose/hypervisor/secrets/README.md")).unwrap();
    for name in ["web.yml", "tls.crt", "tls.key", "healthcheck.netrc"] {
        assert!(
            readme.contains(&format!("`{name}`")),
            "README misses {name}"
        );
    }
    let example = readme
        .split("```yaml\n")
        .nth(1)
        .and_then(|rest| rest.split("```").next())
        .expect("the README shows web.yml");
    let tmp = tempfile::tempdir().unwrap();
    let cert = rcgen::generate_simple_self_signed(vec!["compute-01.example.org".into()]).unwrap();
    std::fs::write(tmp.path().join("tls.crt"), cert.cert.pem()).unwrap();
    std::fs::write(tmp.path().join("tls.key"), cert.signing_key.serialize_pem()).unwrap();
    let hash = bcrypt::hash("pw", 4).unwrap();
    std::fs::write(
        tmp.path().join("web.yml"),
        example.replace("$2y$10$...", &format!("'{hash}'")),
    )
    .unwrap();
    let live = site_exporter::webconfig::live::LiveWebConfig::load(&tmp.path().join("web.yml"))
        .unwrap_or_else(|e| panic!("the README's web.yml: {e}"));
    let summary = live.summary();
    assert!(
        summary.contains("TLS") && summary.contains("2 user(s)"),
        "{summary}"
    );

    // The site Prometheus scrapes the hypervisors over TLS with basic auth, from files in
    // prometheus/site/secrets/ (which the site stack mounts with prometheus/site), each
    // documented there.
    let prometheus = yaml(&repo().join("prometheus/site/prometheus.yml"));
    let job = prometheus["scrape_configs"]
        .as_sequence()
        .unwrap()
        .iter()
        .find(|j| j["job_name"] == "libvirt")
        .unwrap();
    assert_eq!(job["scheme"], "https");
    assert_eq!(job["basic_auth"]["username"], "prometheus");
    assert!(
        job["basic_auth"]["password"].is_null(),
        "no password in the config"
    );
    let secrets_readme =
        std::fs::read_to_string(repo().join("prometheus/site/secrets/README.md")).unwrap();
    for file in [
        &job["tls_config"]["ca_file"],
        &job["basic_auth"]["password_file"],
    ] {
        let file = file.as_str().unwrap();
        let name = file
            .strip_prefix("secrets/")
            .unwrap_or_else(|| panic!("{file}"));
        assert!(secrets_readme.contains(&format!("`{name}`")), "{name}");
        assert!(
            git_ignored(&format!("prometheus/site/{file}")),
            "{file} is not ignored"
        );
        assert!(
            docker_ignored(&format!("prometheus/site/{file}")),
            "{file} reaches builds"
        );
    }
    assert_eq!(
        mount_target(&site()["services"]["prometheus"], "../prometheus/site"),
        "/etc/prometheus"
    );
}
