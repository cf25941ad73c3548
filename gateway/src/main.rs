//! `federation-gateway` binary: flags, configuration, logging, listeners, signals.

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context;
use clap::Parser;
use federation_gateway::cli::{Cli, LogFormat};
use federation_gateway::config::Config;
use federation_gateway::state::State;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let config = match Config::load(&cli.config) {
        Ok(config) => config,
        Err(error) => {
            eprintln!("federation-gateway: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    if cli.check_config {
        println!("configuration is valid");
        return ExitCode::SUCCESS;
    }
    let filter = match tracing_subscriber::EnvFilter::try_new(&cli.log_level) {
        Ok(f) => f,
        Err(error) => {
            eprintln!(
                "federation-gateway: invalid --log.level '{}': {error}",
                cli.log_level
            );
            return ExitCode::from(2);
        }
    };
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
    match serve(cli, config) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            tracing::error!("{error:#}");
            ExitCode::FAILURE
        }
    }
}

#[tokio::main]
async fn serve(cli: Cli, config: Config) -> anyhow::Result<()> {
    let public = tokio::net::TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let internal = match config.internal_listen {
        Some(addr) => Some(
            tokio::net::TcpListener::bind(addr)
                .await
                .with_context(|| format!("cannot listen on {addr} (internal_listen)"))?,
        ),
        None => None,
    };
    if config.tls.is_none() {
        tracing::warn!(
            "no tls section: serving plain HTTP; tokens cross the network in clear text"
        );
    }
    tracing::info!(address = %public.local_addr()?, tls = config.tls.is_some(), "serving /federate");
    let state = Arc::new(State::new(&cli.config, config)?);
    tokio::spawn(reload_on_sighup(Arc::clone(&state)));
    federation_gateway::run(state, public, internal, shutdown_signal()).await;
    Ok(())
}

/// Reloads the configuration on every SIGHUP.
async fn reload_on_sighup(state: Arc<State>) {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let Ok(mut hup) = signal(SignalKind::hangup()) else {
            tracing::warn!("cannot listen for SIGHUP; reloading is off");
            return;
        };
        while hup.recv().await.is_some() {
            // The outcome is logged and in federation_gateway_config_last_reload_success.
            let _ = state.reload();
        }
    }
}

/// Completes on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = interrupt => {},
                    _ = term.recv() => {},
                }
            }
            Err(_) => {
                let _ = interrupt.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = interrupt.await;
    tracing::info!("shutdown signal received; draining connections");
}
