//! Clients that hold connections without finishing their requests: one address cannot take every
//! connection, and a body that trickles in is cut off at a fixed deadline, not kept alive by each
//! byte.

use keygate_testkit::TestApp;
use std::net::SocketAddr;
use std::time::{Duration, Instant};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpSocket, TcpStream};

/// A connection from `local` (any address of 127.0.0.0/8) to the server.
async fn connect_from(local: [u8; 4], server: SocketAddr) -> TcpStream {
    let socket = TcpSocket::new_v4().unwrap();
    socket.bind(SocketAddr::from((local, 0))).unwrap();
    socket.connect(server).await.unwrap()
}

/// The head of an order whose 1,000-byte body has barely begun, with a well-formed key header
/// (the extractor reads a body only for a key it could accept).
fn slow_order_head(api_key: &str) -> String {
    format!(
        "POST /api/v3/order HTTP/1.1\r\nHost: localhost\r\nX-MBX-APIKEY: {api_key}\r\n\
         Content-Type: application/x-www-form-urlencoded\r\nContent-Length: 1000\r\n\r\nsymbol=BTCUSDT"
    )
}

async fn ping(app: &TestApp) -> u16 {
    let http = reqwest::Client::builder().timeout(Duration::from_secs(3)).build().unwrap();
    match http.get(format!("{}/api/v3/ping", app.base_url)).send().await {
        Ok(r) => r.status().as_u16(),
        Err(_) => 0,
    }
}

#[tokio::test]
async fn one_address_holding_slow_requests_cannot_starve_another_client() {
    let app = TestApp::spawn_with(|c| {
        c.max_connections = 40;
        c.max_connections_per_ip = 10;
        c.read_timeout = Duration::from_secs(60);
    })
    .await;
    let key = keygate_auth::ApiKeyId::generate(&mut keygate_service::OsEntropy).unwrap();
    // 127.0.0.2 opens as many connections as the server has, each an order body that trickles.
    let mut held = Vec::new();
    for _ in 0..40 {
        let mut c = connect_from([127, 0, 0, 2], app.addr).await;
        let _ = c.write_all(slow_order_head(key.as_str()).as_bytes()).await;
        held.push(c);
    }
    // Its first ten are open; the rest were closed at once.
    let mut closed = 0;
    for c in &mut held[10..] {
        let mut buf = [0u8; 64];
        if let Ok(Ok(0) | Err(_)) = tokio::time::timeout(Duration::from_secs(2), c.read(&mut buf)).await {
            closed += 1;
        }
    }
    assert_eq!(closed, 30, "connections beyond an address's share are closed");
    let mut open = 0;
    for c in &mut held[..10] {
        let mut buf = [0u8; 64];
        if tokio::time::timeout(Duration::from_millis(100), c.read(&mut buf)).await.is_err() {
            open += 1;
        }
    }
    assert_eq!(open, 10, "an address's share is still being served");
    // Another client is served, every time.
    for _ in 0..8 {
        assert_eq!(ping(&app).await, 200);
    }
    drop(held);
    app.shutdown().await;
}

#[tokio::test]
#[allow(clippy::disallowed_methods)] // Wall time: how long a real socket was kept open.
async fn a_body_that_trickles_in_is_cut_off_at_its_deadline() {
    let app = TestApp::spawn_with(|c| c.read_timeout = Duration::from_secs(1)).await;
    let key = keygate_auth::ApiKeyId::generate(&mut keygate_service::OsEntropy).unwrap();
    let mut c = connect_from([127, 0, 0, 1], app.addr).await;
    let started = Instant::now();
    c.write_all(slow_order_head(key.as_str()).as_bytes()).await.unwrap();
    // One byte every 200 ms: an idle timeout of 1 s would never fire.
    let (mut rd, mut wr) = c.into_split();
    let trickle = tokio::spawn(async move {
        for _ in 0..25 {
            tokio::time::sleep(Duration::from_millis(200)).await;
            if wr.write_all(b"x").await.is_err() {
                break;
            }
        }
    });
    let mut answer = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(4), rd.read_to_end(&mut answer)).await;
    let took = started.elapsed();
    assert!(read.is_ok(), "the connection was still open after {took:?}");
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert!(text.contains("\"code\":-1000") && text.contains("did not arrive in time"), "{text}");
    assert!(took < Duration::from_millis(2500), "cut off after {took:?}");
    trickle.abort();
    // A prompt client is unaffected.
    assert_eq!(ping(&app).await, 200);
    app.shutdown().await;
}

/// A client that stops sending in the middle of a body (here: closes its side after 14 of 1,000
/// bytes) sent too little, not too much: 400 `BODY_INCOMPLETE`, not 413 "too large", and the
/// connection is closed. A body over the limit is still 413.
#[tokio::test]
async fn a_body_cut_short_is_incomplete_and_one_over_the_limit_too_large() {
    let app = TestApp::spawn().await;
    let key = keygate_auth::ApiKeyId::generate(&mut keygate_service::OsEntropy).unwrap();
    let mut c = connect_from([127, 0, 0, 1], app.addr).await;
    c.write_all(slow_order_head(key.as_str()).as_bytes()).await.unwrap();
    c.shutdown().await.unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), c.read_to_end(&mut answer)).await.unwrap().unwrap();
    let text = String::from_utf8_lossy(&answer);
    assert!(text.starts_with("HTTP/1.1 400"), "{text}");
    assert!(text.contains("ended before its declared length"), "{text}");

    let big = "x".repeat(2 * 1024 * 1024);
    let res = reqwest::Client::new()
        .post(format!("{}/api/v3/order", app.base_url))
        .header("X-MBX-APIKEY", key.as_str())
        .header("Content-Type", "application/x-www-form-urlencoded")
        .body(big)
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 413);
    app.shutdown().await;
}
