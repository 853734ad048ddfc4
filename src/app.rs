//! The app: broker edge, ingest and HTTP API in one process, or one half of the split deployment.

use crate::settings::Settings;
use metrics_exporter_prometheus::PrometheusBuilder;
use roost_auth::passwords::PasswordPool;
use roost_auth::tokens::random_secret;
use roost_auth::{MembershipView, OperatorRules, Policy, TokenService, UrlSigner, VapidKey};
use roost_broker::{Broker, BrokerDeps};
use roost_history::http::{serve, AuthThrottle, HttpConfig};
use roost_history::media::Uploads;
use roost_history::push::{Delivery, Push};
use roost_history::{ApiConfig, AppState, ClientConfig, PushKeys};
use roost_protocol::Envelope;
use roost_store::{
    BlobError, Blobs, FsBlobs, GridFsBlobs, Ingest, MongoStore, OutboxRelay, PresenceReader, PresenceSource, Relay,
    RetentionPolicy, S3Blobs, SqliteStore, Store,
};
use secrecy::{ExposeSecret, SecretString};
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
    Store(#[from] roost_store::StoreError),
    #[error("broker: {0}")]
    Broker(#[from] roost_broker::BrokerError),
    #[error("cannot listen on {addr}: {source}")]
    Bind { addr: String, source: std::io::Error },
    #[error("metrics: {0}")]
    Metrics(String),
    #[error("media: {0}")]
    Media(#[from] BlobError),
    #[error("push.webpush.vapid_private_key (or the data dir's vapid.key): {0}")]
    Vapid(String),
    #[error(transparent)]
    Push(#[from] roost_history::push::ProviderError),
}

/// Queued records the ingest may hold before publishers wait.
const INGEST_QUEUE: usize = 8192;
/// Password jobs that may wait per hashing thread; more are answered 503 at once.
const HASH_QUEUE_PER_THREAD: usize = 16;
/// How long shutdown waits for the ingest to flush.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(10);

/// Which part of Roost this process runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    /// Broker, ingest and HTTP API in one process (`roost serve`).
    AllInOne,
    /// The broker with the ingest, following the API's outbox in the shared store (`roost broker`).
    Broker,
    /// The HTTP API, relaying membership changes through the shared store (`roost history`).
    History,
}

/// Where a running Roost listens; `None` for the parts this process does not run.
#[derive(Debug, Clone, Copy)]
pub struct Addresses {
    pub mqtt_tcp: Option<SocketAddr>,
    pub mqtt_ws: Option<SocketAddr>,
    pub mqtt_tls: Option<SocketAddr>,
    pub mqtt_wss: Option<SocketAddr>,
    pub http: Option<SocketAddr>,
}

impl std::fmt::Display for Addresses {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut parts = Vec::new();
        if let Some(tcp) = self.mqtt_tcp {
            parts.push(format!("mqtt={tcp}"));
        }
        if let Some(ws) = self.mqtt_ws {
            parts.push(format!("ws=ws://{ws}/mqtt"));
        }
        if let Some(tls) = self.mqtt_tls {
            parts.push(format!("tls={tls}"));
        }
        if let Some(wss) = self.mqtt_wss {
            parts.push(format!("wss=wss://{wss}/mqtt"));
        }
        if let Some(http) = self.http {
            parts.push(format!("http=http://{http}"));
        }
        f.write_str(&parts.join(" "))
    }
}

/// The broker half: the edge, and the ingest that holds PUBACKs until messages are stored.
struct BrokerPart {
    broker: Broker,
    ingest: Ingest,
    /// Split, or one of several nodes: the outbox to follow for the API's membership changes,
    /// this node's name, and where to start.
    outbox: Option<(Arc<dyn Store>, String, i64)>,
}

/// The HTTP half, and the history retention it runs.
struct HttpPart {
    listener: TcpListener,
    api: axum::Router,
    config: HttpConfig,
    retention: (RetentionPolicy, Arc<dyn Store>),
    uploads: Uploads,
    delivery: Delivery,
    /// What wakes delivery; `None` when split (it polls the store).
    stored: Option<tokio::sync::broadcast::Receiver<Envelope>>,
    /// This node's name: the holder of the leases of jobs one process at a time runs.
    node: String,
}

/// A bound, ready-to-run Roost (or one half of it).
pub struct App {
    broker: Option<BrokerPart>,
    http: Option<HttpPart>,
}

/// The HS256 secret: configured, or generated once and kept in the data dir.
pub fn signing_secret(settings: &Settings) -> Result<SecretString, crate::settings::SettingsError> {
    if let Some(secret) = &settings.auth.secret {
        return Ok(secret.clone());
    }
    kept_secret(settings, "signing.key", random_secret)
}

/// The VAPID key for Web Push: configured, or generated once and kept in the data dir.
fn vapid_key(settings: &Settings) -> Result<VapidKey, AppError> {
    let encoded = match &settings.push.webpush.vapid_private_key {
        Some(configured) => configured.clone(),
        None => kept_secret(settings, "vapid.key", || VapidKey::generate().to_private().expose_secret().to_owned())?,
    };
    VapidKey::from_private(&encoded).map_err(|e| AppError::Vapid(e.to_string()))
}

/// The secret in the data dir's `file`, made by `make` and kept (mode 0600) the first time.
fn kept_secret(
    settings: &Settings,
    file: &str,
    make: impl FnOnce() -> String,
) -> Result<SecretString, crate::settings::SettingsError> {
    let path = ensure_data_dir(settings)?.join(file);
    match std::fs::read_to_string(&path) {
        Ok(secret) if !secret.trim().is_empty() => Ok(SecretString::from(secret.trim().to_owned())),
        _ => {
            let secret = make();
            write_private(&path, &secret).map_err(|source| data_dir_error(settings, source))?;
            Ok(SecretString::from(secret))
        }
    }
}

/// Creates the data dir when missing, readable by this user only (it holds the database and
/// the signing key), and returns it.
fn ensure_data_dir(settings: &Settings) -> Result<&Path, crate::settings::SettingsError> {
    let dir = &settings.data_dir;
    std::fs::create_dir_all(dir).map_err(|source| data_dir_error(settings, source))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700))
            .map_err(|source| data_dir_error(settings, source))?;
    }
    Ok(dir)
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

/// Every connection and socket holds a file descriptor: the soft limit (often 1,024) goes up
/// to the hard one, so a crowd of clients meets Roost's own caps first.
fn raise_open_files_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => info!(limit, "open files limit"),
        Err(e) => warn!(error = %e, "cannot raise the open files limit"),
    }
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

/// The uploads service over the blob store `media.store` names: files under the data dir,
/// GridFS in the MongoDB of `store.uri`, or an S3 bucket.
async fn open_uploads(
    settings: &Settings,
    store: Arc<dyn Store>,
    membership: Arc<MembershipView>,
    signer: UrlSigner,
) -> Result<Uploads, AppError> {
    let dir = settings.data_dir.join("media");
    let blobs: Arc<dyn Blobs> = match (settings.media.store.as_str(), &settings.store.uri) {
        ("gridfs", Some(uri)) => Arc::new(GridFsBlobs::connect(uri).await?),
        ("s3", _) => Arc::new(S3Blobs::new(&settings.media.s3)?),
        _ => Arc::new(FsBlobs::open(dir.join("blobs"))?),
    };
    Uploads::new(settings.media.clone(), store, blobs, membership, signer, dir.join("spool"))
        .map_err(|e| AppError::Media(BlobError(e.to_string())))
}

impl App {
    /// Opens the store, loads membership and binds the listeners of `role`.
    pub async fn build(settings: Settings, role: Role) -> Result<Self, AppError> {
        raise_open_files_limit();
        let clustered = settings.cluster.nats.is_some();
        if role != Role::AllInOne || clustered {
            settings.validate_shared()?;
        }
        let node = settings.cluster.node_name();
        let secret = signing_secret(&settings)?;
        let tokens = TokenService::new(&secret);
        let store = open_store(&settings).await?;
        // split, or one of several nodes, the broker follows the outbox from here: read before
        // the view it updates
        let follows_outbox = role == Role::Broker || (role == Role::AllInOne && clustered);
        let outbox_start = if follows_outbox { Some(store.outbox_head().await?) } else { None };
        let membership = Arc::new(MembershipView::from_pairs(store.memberships().await?));
        for bot in store.bots().await? {
            membership.enroll_bot(&bot.name, &bot.token_id);
        }

        // stored messages as the ingest reports them wake push delivery in one process
        let mut stored = None;
        let broker = match role {
            Role::History => None,
            Role::AllInOne | Role::Broker => {
                let policy = Policy::new(membership.clone(), OperatorRules::new(settings.mqtt.rules.clone()));
                let (ingest, ingest_handle) = Ingest::new(store.clone(), INGEST_QUEUE);
                if role == Role::AllInOne {
                    stored = Some(ingest_handle.stored_messages());
                }
                let deps = BrokerDeps {
                    tokens: tokens.clone(),
                    policy,
                    store: store.clone(),
                    ingest: ingest_handle,
                    node: node.clone(),
                };
                let broker = Broker::bind(settings.mqtt.clone(), &settings.cluster, deps).await?;
                let outbox = outbox_start.map(|start| (store.clone(), node.clone(), start));
                Some(BrokerPart { broker, ingest, outbox })
            }
        };
        let http = match role {
            Role::Broker => None,
            Role::AllInOne | Role::History => {
                // with several nodes every broker applies a change from the outbox, this one too
                let outbox_relay = |view| -> Arc<dyn Relay> {
                    Arc::new(OutboxRelay::new(store.clone(), view, settings.cluster.node_ttl()))
                };
                let (relay, board): (Arc<dyn Relay>, Option<Arc<dyn PresenceSource>>) = match &broker {
                    Some(part) if clustered => (outbox_relay(None), Some(part.broker.presence())),
                    Some(part) => (Arc::new(part.broker.relay()), Some(part.broker.presence())),
                    None => (outbox_relay(Some(membership.clone())), None),
                };
                let presence = PresenceReader::new(board, store.clone());
                let vapid = vapid_key(&settings)?;
                let metrics =
                    PrometheusBuilder::new().install_recorder().map_err(|e| AppError::Metrics(e.to_string()))?;
                let config = ApiConfig {
                    access_ttl_secs: settings.auth.access_ttl,
                    refresh_ttl_secs: settings.auth.refresh_ttl,
                    client: client_config(&settings, broker.as_ref().map(|part| &part.broker), &vapid),
                    max_rooms_per_user: settings.rooms.max_per_user,
                };
                let policy = RetentionPolicy {
                    max_age: settings.retention.max_age.map(Duration::from_secs),
                    max_messages: settings.retention.max_messages,
                    every: Duration::from_secs(settings.retention.interval),
                };
                let retention = (policy, store.clone());
                let auth = &settings.auth;
                let threads = auth
                    .hashing_threads
                    .unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get));
                let passwords = PasswordPool::new(threads, threads * HASH_QUEUE_PER_THREAD);
                let throttle = Arc::new(AuthThrottle::new(
                    auth.attempts_per_address,
                    auth.attempts_per_user,
                    settings.http.trust_forwarded_for,
                ));
                let push = Push::new(store.clone(), settings.push.clone());
                let delivery =
                    Delivery::new(store.clone(), membership.clone(), presence.clone(), settings.push.clone(), vapid)?;
                let uploads =
                    open_uploads(&settings, store.clone(), membership.clone(), UrlSigner::new(&secret)).await?;
                let state = AppState {
                    store,
                    tokens,
                    membership,
                    relay,
                    presence,
                    metrics,
                    config,
                    passwords,
                    throttle,
                    uploads: uploads.clone(),
                    push,
                };
                let listener = TcpListener::bind(&settings.http.listen)
                    .await
                    .map_err(|source| AppError::Bind { addr: settings.http.listen.clone(), source })?;
                let config = settings.http.clone();
                let api = roost_history::http::router(state);
                Some(HttpPart { listener, api, config, retention, uploads, delivery, stored: stored.take(), node })
            }
        };
        Ok(Self { broker, http })
    }

    pub fn addresses(&self) -> Addresses {
        let broker = self.broker.as_ref().map(|part| &part.broker);
        Addresses {
            mqtt_tcp: broker.map(Broker::tcp_addr),
            mqtt_ws: broker.map(Broker::ws_addr),
            mqtt_tls: broker.and_then(Broker::tls_addr),
            mqtt_wss: broker.and_then(Broker::wss_addr),
            http: self.http.as_ref().map(|part| part.listener.local_addr().expect("bound listener has an address")),
        }
    }

    /// Serves until `shutdown` resolves; then stops accepting, closes connections, and flushes
    /// the ingest to the store before returning.
    pub async fn run_until(self, shutdown: impl Future<Output = ()> + Send + 'static) {
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let when_stopped = move || {
            let mut stopped = stopped.clone();
            async move {
                let _ = stopped.wait_for(|s| *s).await;
            }
        };
        let mut tasks = tokio::task::JoinSet::new();
        tasks.spawn(crate::memory::release_periodically(when_stopped()));
        if let Some(HttpPart { listener, api, config, retention, uploads, delivery, stored, node }) = self.http {
            tasks.spawn(uploads.sweep_until(node.clone(), when_stopped()));
            tasks.spawn(delivery.run_until(stored, when_stopped()));
            let stopped = when_stopped();
            tasks.spawn(async move { serve(listener, api, &config, stopped).await });
            let (policy, store) = retention;
            tasks.spawn(policy.run(store, node, when_stopped()));
        }
        let mut ingest = None;
        if let Some(BrokerPart { broker, ingest: worker, outbox }) = self.broker {
            if let Some((store, node, start)) = outbox {
                let follow = broker.relay().follow_outbox(store, node, start, when_stopped());
                tasks.spawn(follow);
            }
            ingest = Some(tokio::spawn(worker.run()));
            tasks.spawn(broker.run_until(when_stopped()));
        }
        tokio::select! {
            _ = shutdown => {}
            // a part that ends on its own stops the rest
            Some(_) = tasks.join_next() => warn!("a part of roost ended on its own; stopping"),
        }
        let _ = stop.send(true);
        while tasks.join_next().await.is_some() {}
        if let Some(ingest) = ingest {
            if tokio::time::timeout(FLUSH_TIMEOUT, ingest).await.is_err() {
                warn!("ingest did not flush in time");
            }
        }
        info!("stopped");
    }
}

/// The WebSocket ports browsers connect to: the bound ones in one process, the configured ones
/// when split.
fn client_config(settings: &Settings, broker: Option<&Broker>, vapid: &VapidKey) -> ClientConfig {
    let port = |address: &str| address.rsplit_once(':').and_then(|(_, port)| port.parse().ok());
    let (ws_port, wss_port) = match broker {
        Some(broker) => (Some(broker.ws_addr().port()), broker.wss_addr().map(|address| address.port())),
        None => (port(&settings.mqtt.ws), settings.mqtt.wss.as_deref().and_then(port)),
    };
    ClientConfig { ws_port, wss_port, push: PushKeys { webpush_vapid_key: vapid.public() } }
}
