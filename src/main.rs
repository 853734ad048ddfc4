//! The `roost` command: serve, token, and the split-deployment halves.

use anyhow::Context;
use clap::{Parser, Subcommand};
use roost::settings::Settings;
use roost::{shutdown::shutdown_signal, telemetry, App, Role};
use std::path::PathBuf;

#[derive(Parser)]
#[command(name = "roost", version, about = "Chat messaging and presence over MQTT")]
struct Cli {
    /// Configuration file (default: config/default.toml when present).
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Broker and history service in one process, embedded store.
    Serve,
    /// Print an access token for a user, signed with the configured key.
    Token {
        #[arg(long)]
        user: String,
        /// Lifetime in seconds (default: auth.access_ttl).
        #[arg(long)]
        ttl: Option<u64>,
    },
    /// The broker and ingest alone (split deployment: shared MongoDB store and signing key).
    Broker,
    /// The HTTP API alone (split deployment: shared MongoDB store and signing key).
    History,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => run(settings, Role::AllInOne, "roost").await?,
        Command::Broker => run(settings, Role::Broker, "roost broker").await?,
        Command::History => run(settings, Role::History, "roost history").await?,
        Command::Token { user, ttl } => {
            roost_protocol::Name::parse(&user).context("--user")?;
            let tokens = roost_auth::TokenService::new(&roost::app::signing_secret(&settings)?);
            println!("{}", tokens.issue(&user, ttl.unwrap_or(settings.auth.access_ttl)));
        }
    }
    Ok(())
}

/// Builds `role`, announces its addresses on stdout (`{name} ready ...`) and runs it until a
/// shutdown signal.
async fn run(settings: Settings, role: Role, name: &str) -> anyhow::Result<()> {
    let app = App::build(settings, role).await?;
    println!("{name} ready {}", app.addresses());
    app.run_until(shutdown_signal()).await;
    Ok(())
}
