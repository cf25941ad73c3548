//! `site-exporter` binary: parse flags, validate the configuration, log, serve.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use site_exporter::cli::Cli;
use site_exporter::config::{Config, LogFormat};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("site-exporter: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    let web = match config
        .web_config_file
        .as_deref()
        .map(site_exporter::webconfig::live::LiveWebConfig::load)
        .transpose()
    {
        Ok(web) => web,
        Err(error) => {
            eprintln!("site-exporter: invalid web config: {error}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!("configuration is valid:\n{}", config.summary());
        if let Some(web) = web {
            println!("{}", web.summary());
        }
        if cli.probe {
            return probe(&config);
        }
        return ExitCode::SUCCESS;
    }
    init_tracing(&config);
    match serve(config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Reaches every backend once and prints one line each; 1 when one failed.
fn probe(config: &Config) -> ExitCode {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(error) => {
            eprintln!("site-exporter: cannot start the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcomes = runtime.block_on(site_exporter::probe::run(config));
    let mut failed = false;
    for o in outcomes {
        match o.result {
            Ok(answer) => println!("probe {}: ok: {answer}", o.what),
            Err(error) => {
                failed = true;
                println!("probe {}: FAILED: {error}", o.what);
            }
        }
    }
    if failed {
        ExitCode::FAILURE
    } else {
        ExitCode::SUCCESS
    }
}

fn init_tracing(config: &Config) {
    let filter = tracing_subscriber::EnvFilter::new(&config.log.filter);
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match config.log.format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let large_blocks = site_exporter::allocator::map_large_blocks();
    tracing::debug!(?large_blocks, "allocator");
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    // The sources' own thread: their CPU work never delays a scrape (`site_exporter::run`).
    let sources = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .thread_name("sources")
        .enable_all()
        .build()
        .context("cannot start the sources' runtime")?;
    let result = runtime.block_on(serve_until_shutdown(config, sources.handle().clone()));
    // Dropping a runtime waits for every blocking task; a libvirt call stuck on the blocking
    // pool must not keep the process alive after shutdown. The sources' go first: a state
    // file being written there gets the time to finish.
    let (budget, stopping) = (std::time::Duration::from_secs(5), std::time::Instant::now());
    sources.shutdown_timeout(budget);
    runtime.shutdown_timeout(budget.saturating_sub(stopping.elapsed()));
    result
}

async fn serve_until_shutdown(
    config: Config,
    sources: tokio::runtime::Handle,
) -> anyhow::Result<()> {
    let listener = tokio::net::TcpListener::bind(config.listen_address)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen_address))?;
    tracing::info!(address = %listener.local_addr()?, version = site_exporter::VERSION, "serving metrics");
    site_exporter::run(config, listener, shutdown_signal(), sources).await?;
    Ok(())
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = match tokio::signal::unix::signal(
            tokio::signal::unix::SignalKind::terminate(),
        ) {
            Ok(term) => term,
            Err(error) => {
                tracing::warn!(%error, "cannot listen for SIGTERM; only SIGINT stops the exporter");
                let _ = interrupt.await;
                return;
            }
        };
        tokio::select! {
            _ = interrupt => {},
            _ = term.recv() => {},
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown signal received");
}
