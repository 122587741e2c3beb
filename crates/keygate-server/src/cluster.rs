//! The channel between nodes: how a node that does not write the exchange hands a command to
//! the node that does (see `keygate_service::cluster`).
//!
//! Plain HTTP/1.1 on a listener of its own (`serve --cluster-listen`), never on the public one:
//! `POST /internal/v1/engine` with the command as JSON. Each call is signed with HMAC-SHA256
//! under the channel key, which every node derives from the master key it already holds, over
//! the writer's term it is meant for, the time, a random nonce and the body; the writer refuses
//! a call whose signature does not verify (compared in constant time), whose time is more than
//! [`MAX_SKEW_MS`] from its own, or whose nonce it has seen within that window, and carries out
//! only calls made to its own term (a call recorded before a takeover or a restart is refused by
//! the next writer, whose term is higher). The answer is signed over the call's nonce and its
//! body, so a node accepts only the answer to its own call from a holder of the key. The channel
//! authenticates; it does not encrypt (a command holds no secret, but withdrawal addresses and
//! amounts are private): keep it on a private network or loopback. Its listener caps open
//! connections and gives request headers and bodies [`READ_TIMEOUT`] to arrive.

use axum::Router;
use axum::body::Bytes;
use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::post;
use hmac::{KeyInit as _, Mac as _};
use keygate_service::Service;
use keygate_service::cluster::{Forward, ForwardError};
use keygate_service::engine::{Committed, EngineError, Forwarded};
use std::collections::HashMap;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

type HmacSha256 = hmac::Hmac<sha2::Sha256>;

/// The path of the writer's end of the channel.
pub const ENGINE_PATH: &str = "/internal/v1/engine";

/// How far a call's time may be from the writer's clock, ms; also how long nonces are kept.
pub const MAX_SKEW_MS: u64 = 30_000;

/// How long a node waits for the writer's answer before telling its client the outcome is
/// unknown (-1007). Far above a commit's time; reached only when the writer hangs.
pub const ANSWER_TIMEOUT: Duration = Duration::from_secs(10);

/// Nonces seen at most, past which the oldest are dropped early (a flood of valid calls would
/// need the channel key).
const MAX_NONCES: usize = 1 << 20;

/// How long a call's headers, and then its body, may take to arrive.
pub const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Open connections the channel's listener holds at most (the other nodes keep a few each).
const MAX_CONNECTIONS: usize = 256;

const TERM_HEADER: &str = "x-keygate-term";
const TIME_HEADER: &str = "x-keygate-time";
const NONCE_HEADER: &str = "x-keygate-nonce";
const MAC_HEADER: &str = "x-keygate-mac";

/// What a call's signature covers: a label, the writer's term, the time, the nonce and the body,
/// so no part can be swapped between calls.
fn mac(key: &[u8; 32], term: &str, time: &str, nonce: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(b"keygate-internal-v1\n");
    mac.update(term.as_bytes());
    mac.update(b"\n");
    mac.update(time.as_bytes());
    mac.update(b"\n");
    mac.update(nonce.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac
}

/// What an answer's signature covers: another label, the call's nonce and the answer's body.
fn answer_mac(key: &[u8; 32], nonce: &str, body: &[u8]) -> HmacSha256 {
    let mut mac = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    mac.update(b"keygate-internal-v1-answer\n");
    mac.update(nonce.as_bytes());
    mac.update(b"\n");
    mac.update(body);
    mac
}

/// The sending side: an HTTP client with kept-alive connections to the writer.
#[derive(Clone)]
pub struct HttpForward {
    client: reqwest::Client,
    clock: Arc<dyn keygate_service::Clock>,
}

impl std::fmt::Debug for HttpForward {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HttpForward")
    }
}

impl HttpForward {
    /// A client for the channel, signing calls with the time on `clock` (the writer checks it
    /// against its own).
    ///
    /// # Errors
    /// When the HTTP client cannot be built (no usable system resolver).
    pub fn new(clock: Arc<dyn keygate_service::Clock>) -> Result<Self, String> {
        let client = reqwest::Client::builder()
            .timeout(ANSWER_TIMEOUT)
            .connect_timeout(Duration::from_secs(1))
            .pool_idle_timeout(Duration::from_secs(30))
            // Node to node directly: an HTTPS_PROXY meant for the outside must not carry it.
            .no_proxy()
            .build()
            .map_err(|e| e.to_string())?;
        Ok(Self { client, clock })
    }
}

#[async_trait::async_trait]
impl Forward for HttpForward {
    async fn forward(
        &self,
        endpoint: &str,
        term: i64,
        key: &[u8; 32],
        job: &Forwarded,
    ) -> Result<Result<Committed, EngineError>, ForwardError> {
        let body = serde_json::to_vec(job).map_err(|e| ForwardError::Unreachable(e.to_string()))?;
        let time = self.clock.now().as_millis().0.to_string();
        let mut nonce = [0u8; 16];
        getrandom::getrandom(&mut nonce).map_err(|e| ForwardError::Unreachable(format!("no randomness: {e}")))?;
        let nonce = hex::encode(nonce);
        let term = term.to_string();
        let tag = hex::encode(mac(key, &term, &time, &nonce, &body).finalize().into_bytes());
        let sent = self
            .client
            .post(format!("{}{ENGINE_PATH}", endpoint.trim_end_matches('/')))
            .header(TERM_HEADER, &term)
            .header(TIME_HEADER, &time)
            .header(NONCE_HEADER, &nonce)
            .header(MAC_HEADER, tag)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await;
        let res = match sent {
            Ok(res) => res,
            // Refused before anything was delivered: safe to send elsewhere.
            Err(e) if e.is_connect() => return Err(ForwardError::Unreachable(e.to_string())),
            Err(e) => return Err(ForwardError::NoAnswer(e.to_string())),
        };
        let status = res.status();
        let answer_tag = res.headers().get(MAC_HEADER).and_then(|v| v.to_str().ok()).and_then(|t| hex::decode(t).ok());
        let bytes = res.bytes().await.map_err(|e| ForwardError::NoAnswer(e.to_string()))?;
        if status != StatusCode::OK {
            // The writer refused the call itself (signature, time): nothing was carried out.
            return Err(ForwardError::Unreachable(format!(
                "the writer refused the call ({status}): {}",
                String::from_utf8_lossy(&bytes).chars().take(200).collect::<String>()
            )));
        }
        // An answer not signed for this call is not the writer's: what happened is unknown.
        let signed = answer_tag.is_some_and(|tag| answer_mac(key, &nonce, &bytes).verify_slice(&tag).is_ok());
        if !signed {
            return Err(ForwardError::NoAnswer("the answer is not signed with the channel key".into()));
        }
        serde_json::from_slice(&bytes).map_err(|e| ForwardError::NoAnswer(format!("unreadable answer: {e}")))
    }
}

struct Channel {
    service: Service,
    key: zeroize::Zeroizing<[u8; 32]>,
    /// Nonces seen, with when they were seen (ms).
    nonces: Mutex<HashMap<String, u64>>,
}

/// The writer's end of the channel, for [`serve_channel`]. Every node serves it: whichever is
/// the writer answers; the others answer that they are not.
///
/// # Errors
/// When the service runs no exchange.
pub fn channel_router(service: Service) -> Result<Router, String> {
    let key = service.engine().map_err(|e| e.to_string())?.channel_key();
    let state = Arc::new(Channel { service, key, nonces: Mutex::new(HashMap::new()) });
    Ok(Router::new().route(ENGINE_PATH, post(engine_call)).with_state(state))
}

/// Serves [`channel_router`] on `listener` until the task is aborted, with the public
/// listener's defences: at most [`MAX_CONNECTIONS`] open connections, and [`READ_TIMEOUT`] for
/// the headers and then the body of each call.
///
/// # Errors
/// When the service runs no exchange.
pub fn serve_channel(
    listener: tokio::net::TcpListener,
    service: Service,
) -> Result<tokio::task::JoinHandle<()>, String> {
    let router = channel_router(service)?;
    Ok(tokio::spawn(async move {
        let limits = crate::serve::ConnectionLimits {
            max_connections: MAX_CONNECTIONS,
            per_ip: crate::slow_clients::PerIpConnections::new(MAX_CONNECTIONS),
            trusted_proxies: Vec::new(),
            read_timeout: READ_TIMEOUT,
        };
        // Stopped by aborting the task: the sender lives as long as it does.
        let (_keep, never) = tokio::sync::oneshot::channel();
        if let Err(e) = crate::serve::serve_http(listener, |_| router.clone(), &limits, None, never).await {
            tracing::error!(error = %e, "the channel between nodes stopped");
        }
    }))
}

fn refuse(status: StatusCode, why: &'static str) -> Response {
    (status, why).into_response()
}

async fn engine_call(State(ch): State<Arc<Channel>>, headers: HeaderMap, body: Bytes) -> Response {
    let header = |name: &str| headers.get(name).and_then(|v| v.to_str().ok()).unwrap_or_default().to_owned();
    let (term, time, nonce, tag) = (header(TERM_HEADER), header(TIME_HEADER), header(NONCE_HEADER), header(MAC_HEADER));
    let Ok(tag) = hex::decode(&tag) else {
        return refuse(StatusCode::UNAUTHORIZED, "bad signature");
    };
    if mac(&ch.key, &term, &time, &nonce, &body).verify_slice(&tag).is_err() {
        return refuse(StatusCode::UNAUTHORIZED, "bad signature");
    }
    let now = ch.service.now_ms().0;
    let Ok(at) = time.parse::<u64>() else {
        return refuse(StatusCode::UNAUTHORIZED, "bad time");
    };
    if at.abs_diff(now) > MAX_SKEW_MS {
        return refuse(StatusCode::UNAUTHORIZED, "time outside the window");
    }
    {
        let mut seen = ch.nonces.lock().unwrap_or_else(PoisonError::into_inner);
        if seen.len() >= MAX_NONCES || seen.len() % 4096 == 0 {
            seen.retain(|_, t| now.saturating_sub(*t) <= 2 * MAX_SKEW_MS);
        }
        if seen.insert(nonce.clone(), now).is_some() {
            return refuse(StatusCode::UNAUTHORIZED, "nonce already used");
        }
    }
    let Ok(term) = term.parse::<i64>() else {
        return refuse(StatusCode::UNAUTHORIZED, "bad term");
    };
    let job: Forwarded = match serde_json::from_slice(&body) {
        Ok(job) => job,
        Err(_) => return refuse(StatusCode::BAD_REQUEST, "unreadable command"),
    };
    // Only a call made to this writer's own term: the sender asks the current writer otherwise.
    let answer = match ch.service.engine() {
        Ok(engine) if engine.is_writer() && engine.term() == term => engine.submit_local(job).await,
        _ => Err(EngineError::NotWriter),
    };
    match serde_json::to_vec(&answer) {
        Ok(bytes) => {
            let tag = hex::encode(answer_mac(&ch.key, &nonce, &bytes).finalize().into_bytes());
            (StatusCode::OK, [("content-type", "application/json".to_owned()), (MAC_HEADER, tag)], bytes)
                .into_response()
        }
        Err(_) => refuse(StatusCode::INTERNAL_SERVER_ERROR, "unwritable answer"),
    }
}
