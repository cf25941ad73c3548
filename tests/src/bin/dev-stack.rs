//! `dev-stack`: the development topology without Docker — two dummy sites (exporter, site
//! Prometheus, gateway) and a portal Prometheus federating both through their gateways over
//! TLS and remote-writing the billing families to a VictoriaMetrics billing store. Prints the
//! URLs; Ctrl-C stops everything.
//!
//! `cargo run -p stack-tests --bin dev-stack -- [SITES]` (default 2; needs Debian's prometheus
//! and victoria-metrics).

use std::process::ExitCode;

use stack_tests::stack::{DevStack, Speed};
use stack_tests::store::VictoriaMetrics;

fn main() -> ExitCode {
    let sites = match std::env::args().nth(1).map(|a| a.parse::<usize>()) {
        None => 2,
        Some(Ok(n)) => n,
        Some(Err(_)) => {
            eprintln!("usage: dev-stack [SITES]");
            return ExitCode::from(2);
        }
    };
    let store = match VictoriaMetrics::start() {
        Ok(s) => s,
        Err(error) => {
            eprintln!("dev-stack: the billing store: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    let stack = match DevStack::start_with_store(sites, Speed::DEMO, &store.write_url()) {
        Ok(s) => s,
        Err(error) => {
            eprintln!("dev-stack: {error:#}");
            return ExitCode::FAILURE;
        }
    };
    println!("portal Prometheus   {}", stack.portal.url);
    println!("billing store       {} (VictoriaMetrics)", store.url);
    for site in &stack.sites {
        println!(
            "{:<8} exporter http://{}/metrics  Prometheus {}  gateway https://{} (internal http://{})  portal token {}",
            site.name, site.exporter.addr, site.prometheus.url, site.gateway.addr, site.gateway.internal, site.token
        );
    }
    println!(
        "certificate: {}",
        stack.dir.path().join("tls.crt").display()
    );
    println!("Ctrl-C stops everything.");
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(error) => {
            eprintln!("dev-stack: {error}");
            return ExitCode::FAILURE;
        }
    };
    let _ = runtime.block_on(tokio::signal::ctrl_c());
    drop(stack);
    drop(store);
    ExitCode::SUCCESS
}
