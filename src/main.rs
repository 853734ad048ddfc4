//! The `roost` command: serve, token, and the split-deployment halves.

use anyhow::Context;
use clap::{Parser, Subcommand};
use roost::settings::Settings;
use roost::{shutdown::shutdown_signal, telemetry, App};
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
    /// The broker alone (split deployment; needs a shared MongoDB store).
    Broker,
    /// The history service alone (split deployment; needs a shared MongoDB store).
    History,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    telemetry::init();
    let cli = Cli::parse();
    let settings = Settings::load(cli.config.as_deref())?;
    match cli.command {
        Command::Serve => {
            let app = App::build(settings).await?;
            let at = app.addresses();
            println!("roost ready mqtt={} ws=ws://{}/mqtt http=http://{}", at.mqtt_tcp, at.mqtt_ws, at.http);
            app.run_until(shutdown_signal()).await;
        }
        Command::Token { user, ttl } => {
            roost_protocol::Name::parse(&user).context("--user")?;
            let tokens = roost_auth::TokenService::new(&roost::app::signing_secret(&settings)?);
            println!("{}", tokens.issue(&user, ttl.unwrap_or(settings.auth.access_ttl)));
        }
        Command::Broker | Command::History => {
            anyhow::bail!(
                "split deployment needs a shared MongoDB store, which this build does not have yet; use `roost serve`"
            )
        }
    }
    Ok(())
}
