//! The HTTP server loop: HTTP/1.1 with a cap on open connections, a deadline for each request's
//! headers (counted from the connection's start or the previous response, so it also ends idle
//! connections) and one for the whole request, the client's address for the handlers, and a
//! graceful stop on the shutdown signal.

use axum::extract::ConnectInfo;
use axum::http::StatusCode;
use axum::Router;
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use serde::{Deserialize, Serialize};
use std::future::Future;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;
use tower::ServiceExt;
use tower_http::timeout::TimeoutLayer;
use tracing::{debug, warn};

/// The HTTP server's settings: the `[http]` section of the configuration as it is
/// deserialized (durations in seconds).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct HttpConfig {
    /// HTTP API address (`ROOST_HTTP__LISTEN`).
    pub listen: String,
    /// Connections open at once; more are closed on accept (`ROOST_HTTP__MAX_CONNECTIONS`).
    pub max_connections: usize,
    /// Seconds a client has to send a request's headers, counted from the connection's start or
    /// the previous response: also the longest idle wait between requests on a kept-alive
    /// connection (`ROOST_HTTP__HEADER_TIMEOUT`).
    pub header_timeout: u64,
    /// Seconds a request may take from its headers to its answer, its body included
    /// (`ROOST_HTTP__REQUEST_TIMEOUT`); past it: 408.
    pub request_timeout: u64,
    /// The API is reached only through a reverse proxy that appends the client's address to
    /// `X-Forwarded-For` (`ROOST_HTTP__TRUST_FORWARDED_FOR`): rate limits key on that address.
    /// Never set it when clients can reach the API directly (they would choose their address).
    pub trust_forwarded_for: bool,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            listen: "127.0.0.1:8080".into(),
            max_connections: 10_000,
            header_timeout: 10,
            request_timeout: 30,
            trust_forwarded_for: false,
        }
    }
}

/// How long connections still open at shutdown may take to finish.
const DRAIN: Duration = Duration::from_secs(5);

/// Pause after a failed accept (e.g. out of file descriptors) before the next.
const ACCEPT_BACKOFF: Duration = Duration::from_millis(100);

/// Serves `router` on `listener` until `shutdown` resolves, then lets open requests finish.
pub async fn serve(listener: TcpListener, router: Router, config: &HttpConfig, shutdown: impl Future<Output = ()>) {
    let request_timeout = Duration::from_secs(config.request_timeout);
    let header_timeout = Duration::from_secs(config.header_timeout);
    let router = router.layer(TimeoutLayer::with_status_code(StatusCode::REQUEST_TIMEOUT, request_timeout));
    let permits = Arc::new(Semaphore::new(config.max_connections));
    let (stop, stopping) = watch::channel(false);
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            _ = &mut shutdown => break,
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
            accepted = listener.accept() => match accepted {
                Ok(accepted) => accepted,
                Err(e) => {
                    warn!(error = %e, "HTTP accept failed");
                    tokio::time::sleep(ACCEPT_BACKOFF).await;
                    continue;
                }
            },
        };
        let Ok(permit) = permits.clone().try_acquire_owned() else {
            metrics::counter!("roost_http_connections_refused_total").increment(1);
            debug!(%peer, "HTTP connection cap reached; closing");
            continue;
        };
        let router = router.clone();
        let service = hyper::service::service_fn(move |mut request: hyper::Request<Incoming>| {
            request.extensions_mut().insert(ConnectInfo(peer));
            router.clone().oneshot(request)
        });
        let mut stopping = stopping.clone();
        connections.spawn(async move {
            let _permit = permit;
            // HTTP/1.1 only: every byte a client sends first is read under the header deadline
            // (HTTP/2 detection would wait for it with none)
            let connection = http1::Builder::new()
                .timer(TokioTimer::new())
                .header_read_timeout(header_timeout)
                .serve_connection(TokioIo::new(stream), service);
            tokio::pin!(connection);
            let stop_requested = async {
                let _ = stopping.wait_for(|stop| *stop).await;
            };
            tokio::select! {
                _ = connection.as_mut() => {}
                () = stop_requested => {
                    connection.as_mut().graceful_shutdown();
                    let _ = connection.await;
                }
            }
        });
    }
    let _ = stop.send(true);
    if tokio::time::timeout(DRAIN, async { while connections.join_next().await.is_some() {} }).await.is_err() {
        warn!(open = connections.len(), "HTTP connections still open after the drain; closing them");
    }
}
