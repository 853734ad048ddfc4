//! Configuration: defaults -> `config/default.toml` (or `--config FILE`) -> `ROOST_*` env.

use figment::providers::{Env, Format, Serialized, Toml};
use figment::Figment;
use roost_broker::{BrokerConfig, ClusterConfig};
use roost_history::http::HttpConfig;
use roost_history::media::MediaConfig;
use roost_history::push::PushConfig;
use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

/// Why the configuration cannot be used; always names the key.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    #[error("configuration: {0}")]
    Load(#[from] Box<figment::Error>),
    #[error("configuration key `{key}` (env {env}): {reason}")]
    Invalid { key: &'static str, env: &'static str, reason: String },
    #[error("cannot use the data dir {path}: {source}")]
    DataDir { path: PathBuf, source: std::io::Error },
}

/// Every setting of Roost.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Settings {
    /// Embedded database and generated signing key live here (`ROOST_DATA_DIR`).
    pub data_dir: PathBuf,
    /// The broker's own settings type (`[mqtt]`).
    pub mqtt: BrokerConfig,
    /// The HTTP server's own settings type (`[http]`).
    pub http: HttpConfig,
    pub store: StoreSettings,
    pub auth: AuthSettings,
    pub retention: RetentionSettings,
    pub rooms: RoomSettings,
    /// The uploads service's own settings type (`[media]`).
    pub media: MediaConfig,
    /// The push service's own settings type (`[push]`).
    pub push: PushConfig,
    /// Several nodes (`[cluster]`), the broker's own settings type.
    pub cluster: ClusterConfig,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RoomSettings {
    /// Rooms one user may own at once (`ROOST_ROOMS__MAX_PER_USER`); creating more answers 403.
    pub max_per_user: usize,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct StoreSettings {
    /// Unset: the embedded store in the data dir; `mongodb://...`: MongoDB (`ROOST_STORE__URI`).
    pub uri: Option<String>,
}

/// History retention; both limits unset keeps everything.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RetentionSettings {
    /// Messages older than this many seconds are deleted (`ROOST_RETENTION__MAX_AGE`).
    pub max_age: Option<u64>,
    /// Each room keeps its newest this many messages (`ROOST_RETENTION__MAX_MESSAGES`).
    pub max_messages: Option<u64>,
    /// Seconds between pruning rounds (`ROOST_RETENTION__INTERVAL`).
    pub interval: u64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct AuthSettings {
    /// HS256 secret (`ROOST_AUTH__SECRET`); unset: generated once and kept in the data dir.
    #[serde(skip_serializing)]
    pub secret: Option<SecretString>,
    /// Access token lifetime, seconds.
    pub access_ttl: u64,
    /// Refresh token lifetime, seconds.
    pub refresh_ttl: u64,
    /// Login and registration attempts a minute from one client address
    /// (`ROOST_AUTH__ATTEMPTS_PER_ADDRESS`); past it: 429 with `Retry-After`.
    pub attempts_per_address: u32,
    /// Login attempts a minute on one user name from one address, ten times that from all
    /// addresses together (`ROOST_AUTH__ATTEMPTS_PER_USER`).
    pub attempts_per_user: u32,
    /// Threads that hash passwords (`ROOST_AUTH__HASHING_THREADS`); unset: one per core.
    /// Each hash holds 19 MiB while it runs.
    pub hashing_threads: Option<usize>,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            data_dir: PathBuf::from("./data"),
            mqtt: BrokerConfig::default(),
            http: HttpConfig::default(),
            store: StoreSettings::default(),
            auth: AuthSettings {
                secret: None,
                access_ttl: 3600,
                refresh_ttl: 30 * 24 * 3600,
                attempts_per_address: 60,
                attempts_per_user: 10,
                hashing_threads: None,
            },
            retention: RetentionSettings { max_age: None, max_messages: None, interval: 300 },
            rooms: RoomSettings { max_per_user: 1000 },
            media: MediaConfig::default(),
            push: PushConfig::default(),
            cluster: ClusterConfig::default(),
        }
    }
}

/// The names of the MQTT listeners, as `mqtt.anonymous` lists them.
const LISTENERS: [&str; 4] = ["tcp", "ws", "tls", "wss"];

/// The shortest HS256 secret accepted: RFC 7518 asks for a key at least as long as the hash.
const MIN_SECRET_BYTES: usize = 32;

/// The file read when `--config` is not given, if it exists.
const DEFAULT_FILE: &str = "config/default.toml";

impl Settings {
    /// Loads and validates the configuration.
    pub fn load(file: Option<&Path>) -> Result<Self, SettingsError> {
        let mut figment = Figment::from(Serialized::defaults(Settings::default()));
        match file {
            Some(path) => figment = figment.merge(Toml::file_exact(path)),
            None if Path::new(DEFAULT_FILE).exists() => figment = figment.merge(Toml::file_exact(DEFAULT_FILE)),
            None => {}
        }
        let settings: Settings = figment.merge(Env::prefixed("ROOST_").split("__")).extract().map_err(Box::new)?;
        settings.validate()?;
        Ok(settings)
    }

    fn validate(&self) -> Result<(), SettingsError> {
        let invalid = |key, env, reason: String| Err(SettingsError::Invalid { key, env, reason });
        for (key, env, value) in [
            ("mqtt.tcp", "ROOST_MQTT__TCP", &self.mqtt.tcp),
            ("mqtt.ws", "ROOST_MQTT__WS", &self.mqtt.ws),
            ("http.listen", "ROOST_HTTP__LISTEN", &self.http.listen),
        ] {
            if let Err(e) = value.parse::<SocketAddr>() {
                return invalid(key, env, format!("'{value}' is not an ip:port address ({e})"));
            }
        }
        for (key, env, value) in
            [("mqtt.tls", "ROOST_MQTT__TLS", &self.mqtt.tls), ("mqtt.wss", "ROOST_MQTT__WSS", &self.mqtt.wss)]
        {
            let Some(value) = value else { continue };
            if let Err(e) = value.parse::<SocketAddr>() {
                return invalid(key, env, format!("'{value}' is not an ip:port address ({e})"));
            }
            if self.mqtt.tls_cert.is_none() || self.mqtt.tls_key.is_none() {
                let reason = "a TLS listener needs mqtt.tls_cert and mqtt.tls_key (PEM files)".into();
                return invalid(key, env, reason);
            }
        }
        if let Some(name) = self.mqtt.anonymous.iter().find(|name| !LISTENERS.contains(&name.as_str())) {
            let reason = format!("unknown listener '{name}' (expected some of {})", LISTENERS.join(", "));
            return invalid("mqtt.anonymous", "ROOST_MQTT__ANONYMOUS", reason);
        }
        if !(1..=65_535).contains(&self.mqtt.keepalive_max.as_secs()) {
            return invalid("mqtt.keepalive_max", "ROOST_MQTT__KEEPALIVE_MAX", "must be 1 to 65535 seconds".into());
        }
        if self.mqtt.max_payload == 0 || self.mqtt.max_payload > self.mqtt.max_packet {
            return invalid("mqtt.max_payload", "ROOST_MQTT__MAX_PAYLOAD", "must be 1 to mqtt.max_packet bytes".into());
        }
        if self.mqtt.max_subscriptions == 0 {
            return invalid("mqtt.max_subscriptions", "ROOST_MQTT__MAX_SUBSCRIPTIONS", "must be at least 1".into());
        }
        if self.mqtt.max_publish_rate == Some(0) {
            let reason = "must be at least 1 (unset: no limit)".into();
            return invalid("mqtt.max_publish_rate", "ROOST_MQTT__MAX_PUBLISH_RATE", reason);
        }
        if self.mqtt.max_connect_rate == Some(0) {
            let reason = "must be at least 1 (unset: no limit)".into();
            return invalid("mqtt.max_connect_rate", "ROOST_MQTT__MAX_CONNECT_RATE", reason);
        }
        if self.mqtt.max_connections == 0 {
            return invalid("mqtt.max_connections", "ROOST_MQTT__MAX_CONNECTIONS", "must be at least 1".into());
        }
        match self.media.store.as_str() {
            "fs" => {}
            "gridfs" if self.store.uri.is_none() => {
                let reason = "gridfs keeps uploads in the MongoDB of store.uri, which is unset".into();
                return invalid("media.store", "ROOST_MEDIA__STORE", reason);
            }
            "gridfs" => {}
            "s3" if self.media.s3.bucket.is_empty() => {
                return invalid(
                    "media.s3.bucket",
                    "ROOST_MEDIA__S3__BUCKET",
                    "media.store = \"s3\" needs a bucket".into(),
                );
            }
            "s3" => {}
            other => {
                let reason = format!("'{other}' is not a media store (fs, gridfs or s3)");
                return invalid("media.store", "ROOST_MEDIA__STORE", reason);
            }
        }
        if let Some(secret) = &self.auth.secret {
            if secret.expose_secret().len() < MIN_SECRET_BYTES {
                let reason = format!(
                    "must be at least {MIN_SECRET_BYTES} bytes (e.g. `openssl rand -hex 32`); unset: generated into the data dir"
                );
                return invalid("auth.secret", "ROOST_AUTH__SECRET", reason);
            }
        }
        for (key, env, value) in [
            ("http.max_connections", "ROOST_HTTP__MAX_CONNECTIONS", self.http.max_connections as u64),
            ("mqtt.max_filters_per_user", "ROOST_MQTT__MAX_FILTERS_PER_USER", self.mqtt.max_filters_per_user as u64),
            ("rooms.max_per_user", "ROOST_ROOMS__MAX_PER_USER", self.rooms.max_per_user as u64),
            (
                "mqtt.max_connections_per_user",
                "ROOST_MQTT__MAX_CONNECTIONS_PER_USER",
                self.mqtt.max_connections_per_user as u64,
            ),
            (
                "mqtt.max_connections_per_bot",
                "ROOST_MQTT__MAX_CONNECTIONS_PER_BOT",
                self.mqtt.max_connections_per_bot as u64,
            ),
            ("media.max_upload_size", "ROOST_MEDIA__MAX_UPLOAD_SIZE", self.media.max_upload_size),
            ("media.url_ttl", "ROOST_MEDIA__URL_TTL", self.media.url_ttl),
            ("media.sweep_interval", "ROOST_MEDIA__SWEEP_INTERVAL", self.media.sweep_interval),
            ("media.max_pixels", "ROOST_MEDIA__MAX_PIXELS", self.media.max_pixels),
            ("http.header_timeout", "ROOST_HTTP__HEADER_TIMEOUT", self.http.header_timeout),
            ("http.request_timeout", "ROOST_HTTP__REQUEST_TIMEOUT", self.http.request_timeout),
            ("auth.attempts_per_address", "ROOST_AUTH__ATTEMPTS_PER_ADDRESS", self.auth.attempts_per_address.into()),
            ("auth.attempts_per_user", "ROOST_AUTH__ATTEMPTS_PER_USER", self.auth.attempts_per_user.into()),
            ("auth.hashing_threads", "ROOST_AUTH__HASHING_THREADS", self.auth.hashing_threads.unwrap_or(1) as u64),
        ] {
            if value == 0 {
                return invalid(key, env, "must be at least 1".into());
            }
        }
        if self.auth.access_ttl == 0 || self.auth.refresh_ttl == 0 {
            return invalid("auth.access_ttl", "ROOST_AUTH__ACCESS_TTL", "token lifetimes must be positive".into());
        }
        for (key, env, limit) in [
            ("retention.max_age", "ROOST_RETENTION__MAX_AGE", self.retention.max_age),
            ("retention.max_messages", "ROOST_RETENTION__MAX_MESSAGES", self.retention.max_messages),
        ] {
            if limit == Some(0) {
                return invalid(key, env, "0 would delete all history; leave it unset to keep everything".into());
            }
        }
        if self.retention.interval == 0 {
            return invalid("retention.interval", "ROOST_RETENTION__INTERVAL", "must be at least 1 second".into());
        }
        if !roost_protocol::names::is_valid(&self.cluster.node_name()) {
            let reason = "must be 1 to 64 of a-z, 0-9, '_', '.', '-'".into();
            return invalid("cluster.node", "ROOST_CLUSTER__NODE", reason);
        }
        if self.cluster.node_ttl < 2 {
            return invalid("cluster.node_ttl", "ROOST_CLUSTER__NODE_TTL", "must be at least 2 seconds".into());
        }
        if let Some(nats) = &self.cluster.nats {
            if !(nats.starts_with("nats://") || nats.starts_with("tls://")) {
                let reason = format!("'{nats}' is not a nats:// (or tls://) URL");
                return invalid("cluster.nats", "ROOST_CLUSTER__NATS", reason);
            }
        }
        if let Some(uri) = &self.store.uri {
            if !(uri.starts_with("mongodb://") || uri.starts_with("mongodb+srv://")) {
                let reason = "expected a mongodb:// or mongodb+srv:// URI (unset: the embedded store)".into();
                return invalid("store.uri", "ROOST_STORE__URI", reason);
            }
        }
        Ok(())
    }

    /// The split deployment's halves, and several nodes, share their store and signing key, so
    /// both must be configured: an embedded store or a generated key cannot be shared.
    pub fn validate_shared(&self) -> Result<(), SettingsError> {
        let missing = |key, env, reason: &str| Err(SettingsError::Invalid { key, env, reason: reason.into() });
        if self.store.uri.is_none() {
            return missing("store.uri", "ROOST_STORE__URI", "several processes need a shared mongodb:// store");
        }
        if self.auth.secret.is_none() {
            return missing("auth.secret", "ROOST_AUTH__SECRET", "several processes need one shared signing key");
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_shipped_config_file_loads() {
        let files = ["default.toml", "production-mongodb.toml", "split-mongodb.toml", "cluster-node.toml"];
        for file in files.map(|name| format!("config/{name}")) {
            let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(&file);
            Settings::load(Some(&path)).unwrap_or_else(|e| panic!("{file}: {e}"));
        }
    }

    #[test]
    fn several_processes_need_a_shared_store_and_key() {
        let mut settings = Settings::default();
        let error = settings.validate_shared().unwrap_err().to_string();
        assert!(error.contains("ROOST_STORE__URI"), "{error}");
        settings.store.uri = Some("mongodb://db".into());
        let error = settings.validate_shared().unwrap_err().to_string();
        assert!(error.contains("ROOST_AUTH__SECRET"), "{error}");
    }

    #[test]
    fn a_short_or_empty_secret_is_refused() {
        let mut settings = Settings::default();
        for short in ["", "0123456789abcdef0123456789abcde"] {
            settings.auth.secret = Some(SecretString::from(short.to_owned()));
            let error = settings.validate().unwrap_err().to_string();
            assert!(error.contains("ROOST_AUTH__SECRET") && error.contains("32 bytes"), "{error}");
        }
        settings.auth.secret = Some(SecretString::from("0123456789abcdef0123456789abcdef".to_owned()));
        settings.validate().expect("32 bytes are enough");
    }

    #[test]
    fn a_store_uri_must_be_mongodb() {
        let mut settings = Settings::default();
        settings.store.uri = Some("postgres://db".into());
        let error = settings.validate().unwrap_err().to_string();
        assert!(error.contains("store.uri") && error.contains("ROOST_STORE__URI"), "{error}");
    }
}
