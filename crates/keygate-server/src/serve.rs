//! Binding, serving, background flushing and graceful shutdown.

use crate::{AppState, app};
use keygate_auth::{Limits, Verifier};
use keygate_service::Service;
use keygate_service::admin;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// How the server listens and what it trusts.
#[derive(Debug, Clone)]
pub struct ServerConfig {
    /// Address to bind; port 0 picks a free port.
    pub listen: SocketAddr,
    /// Proxies whose `X-Forwarded-For` is believed.
    pub trusted_proxies: Vec<ipnet::IpNet>,
    /// Verification limits.
    pub limits: Limits,
    /// Signatures the replay guard can hold.
    pub replay_capacity: usize,
    /// Where to serve the admin channel, if anywhere.
    pub admin_socket: Option<PathBuf>,
    /// Most open client connections; further ones are closed at once.
    pub max_connections: usize,
    /// Most open connections from one client address (IPv6: one /64); further ones from it are
    /// closed at once. Trusted proxies are exempt: every client behind them shares their address.
    pub max_connections_per_ip: usize,
    /// Time a client has to send its request headers, and then, from there, its whole body: a
    /// request takes at most twice this to arrive, however its bytes trickle in.
    pub read_timeout: Duration,
    /// Simulated liquidity, when wanted.
    pub market_maker: Option<keygate_exchange::MarketMakerConfig>,
    /// Request-weight, order-count and ban limits (Binance's by default).
    pub rate_limits: crate::ratelimit::RateLimitConfig,
    /// Serve HTTPS with this certificate and key instead of plain HTTP.
    pub tls: Option<crate::tls::TlsConfig>,
    /// Host names the console answers to besides the listen address, localhost, 127.0.0.1 and
    /// [::1] (DNS-rebinding defence).
    pub console_hosts: Vec<String>,
    /// Sandbox faucet deposits an owner may take per 24 hours in the console (0: no faucet).
    pub faucet_per_day: usize,
    /// Where to serve Prometheus metrics (`GET /metrics`), if anywhere: never on `listen`.
    pub metrics_listen: Option<SocketAddr>,
    /// Deliver owners' webhooks from this process (the service's event worker, with the HTTP
    /// transport of [`crate::webhook_transport`]). On by default; every node of a cluster may run
    /// it, the store hands each delivery to one of them.
    pub webhooks: bool,
    /// Where to write access lines directly (the process's log writer; see
    /// [`crate::access_line`]). `None`, the default, writes each as a `tracing` event.
    pub access_log: Option<crate::access_line::DirectLog>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 8080)),
            trusted_proxies: Vec::new(),
            limits: Limits::default(),
            replay_capacity: 1_000_000,
            admin_socket: None,
            max_connections: 4096,
            max_connections_per_ip: 256,
            read_timeout: Duration::from_secs(10),
            market_maker: None,
            rate_limits: crate::ratelimit::RateLimitConfig::binance(),
            tls: None,
            console_hosts: Vec::new(),
            faucet_per_day: 5,
            metrics_listen: None,
            webhooks: true,
            access_log: None,
        }
    }
}

/// A running server.
#[derive(Debug)]
pub struct ServerHandle {
    /// The bound address (the real port when 0 was asked for).
    pub addr: SocketAddr,
    /// The bound metrics address, when metrics are served.
    pub metrics_addr: Option<SocketAddr>,
    shutdown: Option<oneshot::Sender<()>>,
    join: JoinHandle<std::io::Result<()>>,
}

impl ServerHandle {
    /// Stops accepting, finishes in-flight requests, flushes usage and denials, and returns.
    ///
    /// # Errors
    /// The server's I/O error, if it failed.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        self.join.await.map_err(std::io::Error::other)?
    }

    /// Waits until the server stops by itself (it does not, unless it fails).
    ///
    /// # Errors
    /// The server's I/O error.
    pub async fn wait(self) -> std::io::Result<()> {
        self.join.await.map_err(std::io::Error::other)?
    }

    /// A sender that triggers the graceful shutdown, for signal handlers.
    pub fn take_shutdown(&mut self) -> Option<oneshot::Sender<()>> {
        self.shutdown.take()
    }
}

/// Binds and starts serving `service` (assembled with its exchange, see
/// [`keygate_service::Assembly`]) in the background, with the market maker when configured.
///
/// # Errors
/// I/O errors binding the TCP port or the admin socket; a service without an exchange.
pub async fn start(config: ServerConfig, service: Service) -> std::io::Result<ServerHandle> {
    let engine = service.engine().map_err(std::io::Error::other)?.clone();
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let addr = listener.local_addr()?;
    let admin = match &config.admin_socket {
        Some(path) => Some(admin::bind(path)?),
        None => None,
    };
    let metrics_listener = crate::metrics::bind(config.metrics_listen).await?;
    let metrics_addr = metrics_listener.as_ref().map(tokio::net::TcpListener::local_addr).transpose()?;
    let metrics = metrics_listener.as_ref().map(|_| Arc::new(crate::metrics::Metrics::new()));
    if let Some(m) = &metrics {
        let commits = m.journal_commits();
        engine.observe_commits(Box::new(move |took| commits.record(took.as_secs_f64())));
    }
    // Cookies are Secure when the browser reaches us over TLS: ours, or a trusted proxy's.
    let secure_cookies = config.tls.is_some() || !config.trusted_proxies.is_empty();
    let mut console_config =
        keygate_console::ConsoleConfig::for_listen_addr(addr, &config.console_hosts, secure_cookies);
    console_config.faucet =
        keygate_console::FaucetConfig { enabled: config.faucet_per_day > 0, per_day: config.faucet_per_day };
    let console = keygate_console::Console::new(service.clone(), engine.clone(), console_config);
    let state = AppState::new(crate::AppStateInner {
        console,
        service: service.clone(),
        engine: engine.clone(),
        verifier: Arc::new(Verifier::new(config.limits, config.replay_capacity)),
        ed25519_batches: crate::ed25519_batches::Ed25519Batches::new(
            crate::ed25519_batches::Ed25519Batches::lanes_for(
                tokio::runtime::Handle::current().metrics().num_workers(),
            ),
        ),
        trusted_proxies: Arc::new(config.trusted_proxies.clone()),
        limiter: Arc::new(
            crate::ratelimit::RateLimiter::new(config.rate_limits.clone()).sharing(service.shared_counters().cloned()),
        ),
        metrics,
        request_ids: crate::request_id::RequestIds::default(),
        access_log: config.access_log.clone(),
    });
    let (tx, rx) = oneshot::channel::<()>();
    let limits = ConnectionLimits {
        max_connections: config.max_connections,
        per_ip: crate::slow_clients::PerIpConnections::new(config.max_connections_per_ip),
        trusted_proxies: config.trusted_proxies.clone(),
        read_timeout: config.read_timeout,
    };
    let tls = config.tls.clone().map(|t| tokio_rustls::TlsAcceptor::from(t.0));
    if let Some(mm) = config.market_maker.clone() {
        service.start_market_maker(mm).map_err(std::io::Error::other)?;
    }
    if config.webhooks {
        let transport =
            crate::webhook_transport::HttpTransport::new(service.webhook_settings()).map_err(std::io::Error::other)?;
        service.start_webhooks(Arc::new(transport));
    }
    let socket_path = config.admin_socket.clone();
    let join = tokio::spawn(async move {
        let admin_task = admin.map(|l| tokio::spawn(admin::serve(l, service.clone())));
        let metrics_tasks = metrics_listener.map(|l| {
            (tokio::spawn(crate::metrics::serve(l, state.clone())), tokio::spawn(crate::metrics::upkeep(state.clone())))
        });
        let front = app(state);
        let served = if tls.is_some() {
            let connection = |peer| tower::util::MapResponse::new(front.for_peer(peer), hsts);
            serve_http(listener, connection, &limits, tls, rx).await
        } else {
            serve_http(listener, |peer| front.for_peer(peer), &limits, tls, rx).await
        };
        if let Some(t) = admin_task {
            t.abort();
        }
        if let Some((serving, upkeep)) = metrics_tasks {
            serving.abort();
            upkeep.abort();
        }
        if let Some(p) = socket_path {
            let _ = std::fs::remove_file(p);
        }
        // Whatever usage the service's flusher has not written yet is written now; the service
        // itself (its background tasks, its store) stops with `Service::shutdown`.
        if let Err(e) = service.flush(true).await {
            tracing::error!(error = %e, "final flush of usage counters failed");
        }
        served
    });
    Ok(ServerHandle { addr, metrics_addr, shutdown: Some(tx), join })
}

/// `Strict-Transport-Security` on every answer served over our own TLS, so a browser that has
/// reached the console once over HTTPS never falls back to plain HTTP (behind a TLS-terminating
/// proxy, the proxy sets it).
fn hsts(mut res: axum::response::Response) -> axum::response::Response {
    res.headers_mut().insert(
        axum::http::header::STRICT_TRANSPORT_SECURITY,
        axum::http::HeaderValue::from_static("max-age=31536000"),
    );
    res
}

/// What bounds the connections of [`serve_http`].
pub(crate) struct ConnectionLimits {
    pub(crate) max_connections: usize,
    pub(crate) per_ip: Arc<crate::slow_clients::PerIpConnections>,
    pub(crate) trusted_proxies: Vec<ipnet::IpNet>,
    pub(crate) read_timeout: Duration,
}

/// Serves HTTP/1.1 (over TLS when `tls` is given) on `listener` until `shutdown` fires, then lets
/// in-flight requests finish (for at most 10 s). The TLS handshake counts against the header
/// deadline, so a client that opens a connection and says nothing holds it no longer over TLS.
///
/// Written out instead of `axum::serve` for what a public endpoint needs and that one lacks: a
/// deadline for request headers (slow-header clients) and one for the whole body after them
/// (slow-body clients), a cap on open connections in all and per client address, and a pause
/// after a failed accept (when file descriptors run out) instead of a busy loop.
pub(crate) async fn serve_http<S>(
    listener: tokio::net::TcpListener,
    connection: impl Fn(std::net::SocketAddr) -> S,
    limits: &ConnectionLimits,
    tls: Option<tokio_rustls::TlsAcceptor>,
    mut shutdown: oneshot::Receiver<()>,
) -> std::io::Result<()>
where
    S: tower::Service<axum::extract::Request, Response = axum::response::Response, Error = std::convert::Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    use hyper_util::rt::TokioIo;
    use tower::ServiceExt as _;
    let read_timeout = limits.read_timeout;
    let graceful = hyper_util::server::graceful::GracefulShutdown::new();
    let permits = Arc::new(tokio::sync::Semaphore::new(limits.max_connections));
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = &mut shutdown => break,
        };
        let (stream, peer) = match accepted {
            Ok(a) => a,
            Err(e) => {
                tracing::warn!(error = %e, "accept failed; pausing");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Behind a trusted proxy every client shares the proxy's address: it is not capped.
        let ip_slot = if limits.trusted_proxies.iter().any(|n| n.contains(&peer.ip().to_canonical())) {
            None
        } else {
            let Some(slot) = crate::slow_clients::PerIpConnections::take(&limits.per_ip, peer.ip()) else {
                drop(stream);
                continue;
            };
            Some(slot)
        };
        let Ok(permit) = Arc::clone(&permits).try_acquire_owned() else {
            drop(stream);
            continue;
        };
        let _ = stream.set_nodelay(true);
        // The service knows the connection's peer (`connection`); a request carries none.
        let service = connection(peer).map_request(move |req: axum::extract::Request<hyper::body::Incoming>| {
            // Headers have arrived (hyper's header deadline); the whole body must follow within
            // the same time, counted once, not per chunk.
            let deadline = tokio::time::Instant::now() + read_timeout;
            req.map(|body| axum::body::Body::new(crate::slow_clients::DeadlineBody::new(body, deadline)))
        });
        let watcher = graceful.watcher();
        let tls = tls.clone();
        tokio::spawn(async move {
            match tls {
                None => serve_connection(TokioIo::new(stream), service, read_timeout, watcher).await,
                Some(acceptor) => match tokio::time::timeout(read_timeout, acceptor.accept(stream)).await {
                    Ok(Ok(stream)) => serve_connection(TokioIo::new(stream), service, read_timeout, watcher).await,
                    // A failed or slow handshake: nothing was served, nothing to log per client.
                    Ok(Err(e)) => tracing::debug!(error = %e, %peer, "TLS handshake failed"),
                    Err(_) => tracing::debug!(%peer, "TLS handshake timed out"),
                },
            }
            drop(permit);
            drop(ip_slot);
        });
    }
    drop(listener);
    if tokio::time::timeout(Duration::from_secs(10), graceful.shutdown()).await.is_err() {
        tracing::warn!("some connections were still open after 10 s and were dropped");
    }
    Ok(())
}

/// Serves one connection (plain or TLS) until it closes or the graceful shutdown ends it.
async fn serve_connection<I, S>(
    io: I,
    service: S,
    read_timeout: Duration,
    watcher: hyper_util::server::graceful::Watcher,
) where
    I: hyper::rt::Read + hyper::rt::Write + Unpin + Send + 'static,
    S: tower::Service<
            axum::extract::Request<hyper::body::Incoming>,
            Response = axum::response::Response,
            Error = std::convert::Infallible,
        > + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
{
    let conn = hyper::server::conn::http1::Builder::new()
        .timer(hyper_util::rt::TokioTimer::new())
        .header_read_timeout(read_timeout)
        .serve_connection(io, hyper_util::service::TowerToHyperService::new(service));
    let _ = watcher.watch(conn).await;
}
