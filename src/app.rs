//! The all-in-one app: embedded store, broker edge, ingest and HTTP API in one process.

use crate::settings::Settings;
use metrics_exporter_prometheus::PrometheusBuilder;
use roost_auth::tokens::random_secret;
use roost_auth::{MembershipView, Policy, TokenService};
use roost_broker::{Broker, BrokerConfig, BrokerDeps};
use roost_history::{ApiConfig, AppState, Ingest, MongoStore, SqliteStore, Store};
use secrecy::SecretString;
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tracing::{info, warn};

/// Why the app could not start.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    #[error(transparent)]
    Settings(#[from] crate::settings::SettingsError),
    #[error("store: {0}")]
    Store(#[from] roost_history::StoreError),
    #[error("broker: {0}")]
    Broker(#[from] roost_broker::BrokerError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("metrics: {0}")]
    Metrics(String),
}

/// Queued records the ingest may hold before publishers wait.
const INGEST_QUEUE: usize = 8192;
/// How long shutdown waits for the ingest to flush.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Where a running Roost listens.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    pub mqtt_tcp: SocketAddr,
    pub mqtt_ws: SocketAddr,
    pub http: SocketAddr,
}

/// A bound, ready-to-run Roost.
pub struct App {
    broker: Broker,
    http: TcpListener,
    api: axum::Router,
    ingest: Ingest,
}

/// The HS256 secret: configured, or generated once and kept in the data dir.
pub fn signing_secret(settings: &Settings) -> Result<SecretString, crate::settings::SettingsError> {
    if let Some(secret) = &settings.auth.secret {
        return Ok(secret.clone());
    }
    let path = ensure_data_dir(settings)?.join("signing.key");
    match std::fs::read_to_string(&path) {
        Ok(secret) if !secret.trim().is_empty() => Ok(SecretString::from(secret.trim().to_owned())),
        _ => {
            let secret = random_secret();
            write_private(&path, &secret).map_err(|source| data_dir_error(settings, source))?;
            Ok(SecretString::from(secret))
        }
    }
}

/// Creates the data dir when missing and returns it.
fn ensure_data_dir(settings: &Settings) -> Result<&Path, crate::settings::SettingsError> {
    std::fs::create_dir_all(&settings.data_dir).map_err(|source| data_dir_error(settings, source))?;
    Ok(&settings.data_dir)
}

fn data_dir_error(settings: &Settings, source: std::io::Error) -> crate::settings::SettingsError {
    crate::settings::SettingsError::DataDir { path: settings.data_dir.clone(), source }
}

/// MongoDB when `store.uri` is set, else the embedded store in the data dir.
async fn open_store(settings: &Settings) -> Result<Arc<dyn Store>, AppError> {
    Ok(match &settings.store.uri {
        Some(uri) => Arc::new(MongoStore::connect(uri).await?),
        None => Arc::new(SqliteStore::open(&ensure_data_dir(settings)?.join("roost.db"))?),
    })
}

/// Writes a file readable by its owner only.
fn write_private(path: &Path, contents: &str) -> std::io::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
    options.open(path)?.write_all(contents.as_bytes())
}

impl App {
    /// Opens the store, loads membership and binds every listener.
    pub async fn build(settings: Settings) -> Result<Self, AppError> {
        let tokens = TokenService::new(&signing_secret(&settings)?);
        let store = open_store(&settings).await?;
        let membership = Arc::new(MembershipView::from_pairs(store.memberships().await?));
        let policy = Policy::new(membership.clone());
        let (ingest, ingest_handle) = Ingest::new(store.clone(), INGEST_QUEUE);

        let mqtt = &settings.mqtt;
        let broker_config = BrokerConfig {
            tcp: mqtt.tcp.clone(),
            ws: mqtt.ws.clone(),
            keepalive_max: Duration::from_secs(mqtt.keepalive_max),
            max_payload: mqtt.max_payload,
            max_packet: mqtt.max_packet,
            max_connections: mqtt.max_connections,
            connect_timeout: Duration::from_secs(mqtt.connect_timeout),
        };
        let deps = BrokerDeps { tokens: tokens.clone(), policy, store: store.clone(), ingest: ingest_handle };
        let broker = Broker::bind(broker_config, deps).await?;

        let metrics = PrometheusBuilder::new().install_recorder().map_err(|e| AppError::Metrics(e.to_string()))?;
        let state = AppState {
            store,
            tokens,
            membership,
            notifier: Arc::new(broker.server_link()),
            presence: broker.presence(),
            metrics,
            config: ApiConfig {
                access_ttl_secs: settings.auth.access_ttl,
                refresh_ttl_secs: settings.auth.refresh_ttl,
            },
        };
        let http = TcpListener::bind(&settings.http.listen)
            .await
            .map_err(|source| AppError::Bind { addr: settings.http.listen.clone(), source })?;
        Ok(Self { broker, http, api: roost_history::http::router(state), ingest })
    }

    pub fn addresses(&self) -> Addresses {
        Addresses {
            mqtt_tcp: self.broker.tcp_addr(),
            mqtt_ws: self.broker.ws_addr(),
            http: self.http.local_addr().expect("bound listener has an address"),
        }
    }

    /// Serves until `shutdown` resolves; then stops accepting, closes connections, and flushes
    /// the ingest to the store before returning.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let ingest = tokio::spawn(self.ingest.run());
        let mut http_stopped = stopped.clone();
        let http = tokio::spawn(async move {
            let serve = axum::serve(self.http, self.api).with_graceful_shutdown(async move {
                let _ = http_stopped.wait_for(|s| *s).await;
            });
            if let Err(e) = serve.await {
                warn!(error = %e, "HTTP server failed");
            }
        });
        let mut broker_stopped = stopped;
        let broker = self.broker.run_until(async move {
            let _ = broker_stopped.wait_for(|s| *s).await;
        });
        tokio::pin!(broker);
        tokio::select! {
            _ = shutdown => {}
            _ = &mut broker => {}
        }
        let _ = stop.send(true);
        broker.await;
        let _ = http.await;
        if tokio::time::timeout(FLUSH_TIMEOUT, ingest).await.is_err() {
            warn!("ingest did not flush in time");
        }
        info!("stopped");
    }
}
