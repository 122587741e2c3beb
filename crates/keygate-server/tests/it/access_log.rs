//! The access log (one line per answer, never a signature or a secret) and the Prometheus
//! metrics on their own address.

use super::exchange_support::{fund, trader};
use keygate_auth::Permission;
use keygate_client::{Answer, signed_query};
use keygate_testkit::TestApp;
use reqwest::Method;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

/// Everything the log wrote, as bytes.
#[derive(Clone, Default)]
pub(crate) struct Captured(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Captured {
    pub(crate) fn text(&self) -> String {
        String::from_utf8(self.0.lock().unwrap().clone()).unwrap()
    }

    /// The access lines so far, parsed.
    fn access(&self) -> Vec<serde_json::Value> {
        self.text()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap_or_else(|e| panic!("{e}: {l}")))
            .filter(|v| v["target"] == keygate_server::access_log::TARGET)
            .collect()
    }
}

/// What [`capture`] returns: the log, and what keeps it installed.
pub(crate) struct Capture {
    pub(crate) log: Captured,
    _guard: tracing::subscriber::DefaultGuard,
    _second: tracing::Dispatch,
}

/// Logs of this thread as JSON lines into a buffer. The tests run on a current-thread runtime,
/// so the server's tasks log on this thread, and tests running beside them on other threads do
/// not write here.
///
/// A second, idle dispatcher is kept alive beside it: while only one dispatcher exists,
/// tracing-core decides a callsite's interest from the default of whichever thread reaches it
/// first, so a test on another thread, with no subscriber, would switch the access event off
/// for this one too (tracing-core 0.1, `Dispatchers::rebuilder`).
pub(crate) fn capture() -> Capture {
    let log = Captured::default();
    let w = log.clone();
    let subscriber = tracing_subscriber::fmt()
        .json()
        .flatten_event(true)
        .with_current_span(false)
        .with_span_list(false)
        .with_max_level(tracing::Level::INFO)
        .with_writer(move || w.clone())
        .finish();
    let second = tracing::Dispatch::new(tracing_subscriber::registry());
    Capture { log, _guard: tracing::subscriber::set_default(subscriber), _second: second }
}

/// Asserts that exactly one more access line was written since `before` lines, for `answer`,
/// and returns it.
#[track_caller]
fn one_more(log: &Captured, before: usize, answer: &Answer) -> serde_json::Value {
    let lines = log.access();
    assert_eq!(lines.len(), before + 1, "one access line per answer: {lines:#?}");
    let line = lines[before].clone();
    assert_eq!(Some(line["request_id"].as_str().unwrap()), answer.request_id.as_deref(), "{line}");
    assert_eq!(line["status"], answer.status, "{line}");
    assert!(line["latency_us"].is_u64(), "{line}");
    line
}

async fn get(url: &str, headers: &[(&str, &str)]) -> Answer {
    let mut req = reqwest::Client::new().get(url);
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let res = req.send().await.unwrap();
    let status = res.status().as_u16();
    let request_id = res.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
    Answer { status, reason: None, request_id, body: res.json().await.unwrap_or_default() }
}

#[tokio::test]
async fn every_answer_is_logged_once_with_its_fields_and_never_a_signature_or_secret() {
    let capture = capture();
    let log = &capture.log;
    let app = TestApp::spawn().await;
    let t = trader(&app, "alice", &[Permission::Trade]).await;
    fund(&app, t.account, "USDT", "1000").await;
    let key = app.hmac_key("alice", keygate_auth::Permissions::with(&[]), keygate_auth::Restrictions::default()).await;
    let secret = key.secret.as_ref().unwrap().expose().to_owned();
    let reader = app.hmac_client(&key);
    let api_key = reader.api_key().to_owned();

    // A public endpoint, with a query string: no key, the path only.
    let n = log.access().len();
    let a = get(&format!("{}/api/v3/depth?symbol=BTCUSDT&limit=5", app.base_url), &[]).await;
    let line = one_more(log, n, &a);
    assert_eq!((line["method"].as_str(), line["path"].as_str()), (Some("GET"), Some("/api/v3/depth")));
    assert!(line.get("key").is_none() && line.get("reason").is_none(), "{line}");

    // A signed read, signature in the query: the key id, no reason.
    let n = log.access().len();
    let a = reader.signed(Method::GET, "/api/v3/account", &[("omitZeroBalances", "true")]).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    let line = one_more(log, n, &a);
    assert_eq!(line["path"], "/api/v3/account");
    assert_eq!(line["key"].as_str(), Some(api_key.as_str()));
    assert!(line.get("code").is_none() && line.get("reason").is_none(), "{line}");

    // A signed order, signature in the body.
    let n = log.access().len();
    let body = signed_query(
        &[
            ("symbol", "BTCUSDT"),
            ("side", "BUY"),
            ("type", "LIMIT"),
            ("timeInForce", "GTC"),
            ("quantity", "0.01"),
            ("price", "30000"),
        ],
        t.client.now(),
        t.client.signer(),
    );
    let a = t.client.raw(Method::POST, "/api/v3/order", "", &body).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    let line = one_more(log, n, &a);
    assert_eq!((line["method"].as_str(), line["path"].as_str()), (Some("POST"), Some("/api/v3/order")));
    assert_eq!(line["key"].as_str(), Some(t.client.api_key()));

    // A forged signature: refused before the signature verified, yet the operator sees why.
    let n = log.access().len();
    let forged = format!("timestamp={}&signature={}", reader.now().0, "ab".repeat(32));
    let a = reader.raw(Method::GET, "/api/v3/account", &forged, "").await.unwrap();
    assert_eq!(a.status, 400);
    let line = one_more(log, n, &a);
    assert_eq!((line["code"].as_i64(), line["reason"].as_str()), (Some(-1022), Some("SIGNATURE_INVALID")));
    assert_eq!(line["key"].as_str(), Some(api_key.as_str()));

    // A secret pasted as the key header: malformed, so it is not logged as a key.
    let n = log.access().len();
    let url = format!("{}/api/v3/account?{}", app.base_url, signed_query(&[], reader.now(), reader.signer()));
    let a = get(&url, &[("X-MBX-APIKEY", &secret)]).await;
    assert_eq!(a.status, 401);
    let line = one_more(log, n, &a);
    assert_eq!((line["code"].as_i64(), line["reason"].as_str()), (Some(-2014), Some("API_KEY_MALFORMED")));
    assert!(line.get("key").is_none(), "{line}");

    // A path no route has, and a console API refusal.
    let n = log.access().len();
    let a = get(&format!("{}/nowhere?signature=deadbeef", app.base_url), &[]).await;
    let line = one_more(log, n, &a);
    assert_eq!((line["status"].as_u64(), line["path"].as_str()), (Some(404), Some("/nowhere")));
    let n = log.access().len();
    let a = get(&format!("{}/api/console/v1/keys/{secret}", app.base_url), &[]).await;
    let line = one_more(log, n, &a);
    assert_eq!((line["status"].as_u64(), line["reason"].as_str()), (Some(401), Some("unauthenticated")));
    assert_eq!(line["path"].as_str(), Some("/api/console/v1/keys/{id}"), "a known route is logged as its template");

    // Whole signed queries and secrets sent as unknown paths: the query behind an encoded `?`, a
    // signature after `;`, a secret as a segment. Only a safe prefix is written.
    let signed_order = signed_query(&[("symbol", "BTCUSDT"), ("side", "BUY")], t.client.now(), t.client.signer());
    let signature = signed_order.rsplit_once("signature=").unwrap().1.to_owned();
    for (path, logged) in [
        (format!("/api/v3/order%3F{signed_order}"), "/api/v3/order..."),
        (format!("/api/v3/order;signature={signature}"), "/api/v3/order..."),
        (format!("/{secret}"), "/*"),
        (format!("/api/v3/x/{signature}/y"), "/api/v3/x/*/y"),
        (format!("/{}", "a".repeat(100)), "/*"),
        (
            format!("{}/end", "/abcdefgh".repeat(10)),
            "/abcdefgh/abcdefgh/abcdefgh/abcdefgh/abcdefgh/abcdefgh/abcdefgh...",
        ),
    ] {
        let n = log.access().len();
        let a = get(&format!("{}{path}", app.base_url), &[]).await;
        let line = one_more(log, n, &a);
        assert_eq!((line["status"].as_u64(), line["path"].as_str()), (Some(404), Some(logged)), "{path}");
    }

    let text = log.text();
    for needle in [secret.as_str(), "signature", "timestamp=", "deadbeef", &"ab".repeat(32), &signature] {
        assert!(!text.contains(needle), "{needle:?} reached the log:\n{text}");
    }
    app.shutdown().await;
}

/// hyper takes any token as a method, hundreds of kilobytes long: the line shows at most its
/// first 16 bytes, so one request cannot write that much log. Standard methods are shown whole.
#[tokio::test]
async fn a_method_of_any_length_is_logged_cut_short() {
    let capture = capture();
    let log = &capture.log;
    let app = TestApp::spawn().await;
    let long = "M".repeat(100_000);
    for (method, shown) in [(long.as_str(), "MMMMMMMMMMMMMMMM..."), ("FOO!#", "FOO!#"), ("OPTIONS", "OPTIONS")] {
        let n = log.access().len();
        let res = reqwest::Client::new()
            .request(reqwest::Method::from_bytes(method.as_bytes()).unwrap(), format!("{}/api/v3/ping", app.base_url))
            .send()
            .await
            .unwrap();
        let status = res.status().as_u16();
        let request_id = res.headers().get("x-request-id").map(|v| v.to_str().unwrap().to_owned());
        let line = one_more(log, n, &Answer { status, reason: None, request_id, body: serde_json::Value::Null });
        assert_eq!(line["method"], shown, "{line}");
        assert!(line.to_string().len() < 1_000, "{line}");
    }
}

async fn scrape(addr: SocketAddr) -> (u16, String) {
    let res = reqwest::get(format!("http://{addr}/metrics")).await.unwrap();
    let status = res.status().as_u16();
    (status, res.text().await.unwrap())
}

/// The value of the series whose line starts with `series` (name and labels, as rendered).
fn value(text: &str, series: &str) -> Option<f64> {
    text.lines().find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
}

#[tokio::test]
async fn metrics_are_served_on_their_own_address_with_every_named_series() {
    let app = TestApp::spawn_with(|c| c.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)))).await;
    let metrics = app.metrics_addr.expect("a metrics address");
    assert_ne!(metrics, app.addr);
    let t = trader(&app, "alice", &[Permission::Trade]).await;
    fund(&app, t.account, "USDT", "1000").await;
    for _ in 0..3 {
        let a = get(&format!("{}/api/v3/ping", app.base_url), &[]).await;
        assert_eq!(a.status, 200);
    }
    let a = t
        .client
        .signed(
            Method::POST,
            "/api/v3/order",
            &[
                ("symbol", "BTCUSDT"),
                ("side", "BUY"),
                ("type", "LIMIT"),
                ("timeInForce", "GTC"),
                ("quantity", "0.01"),
                ("price", "30000"),
            ],
        )
        .await
        .unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    let a = get(&format!("{}/api/v3/order/12345?x=1", app.base_url), &[]).await;
    assert_eq!(a.status, 404);
    // Not on the API address: an unknown endpoint there, like any other.
    let a = get(&format!("{}/metrics", app.base_url), &[]).await;
    assert_eq!(a.status, 404);

    let (status, text) = scrape(metrics).await;
    assert_eq!(status, 200);
    let requests = |endpoint: &str, method: &str, status: u16| {
        value(
            &text,
            &format!(r#"keygate_http_requests_total{{endpoint="{endpoint}",method="{method}",status="{status}"}}"#),
        )
    };
    assert_eq!(requests("/api/v3/ping", "GET", 200), Some(3.0), "{text}");
    assert_eq!(requests("/api/v3/order", "POST", 200), Some(1.0), "{text}");
    // Unmatched paths share one series: the raw path never becomes a label.
    assert_eq!(requests("unmatched", "GET", 404), Some(2.0), "{text}");
    assert!(!text.contains("12345"), "{text}");
    assert_eq!(
        value(&text, r#"keygate_http_request_duration_seconds_count{endpoint="/api/v3/ping",method="GET"}"#),
        Some(3.0),
        "{text}"
    );
    assert!(text.contains(r#"keygate_http_request_duration_seconds_bucket{endpoint="/api/v3/ping",method="GET",le="#));
    // The deposit and the order each committed a journal batch.
    assert!(value(&text, "keygate_journal_commit_duration_seconds_count").is_some_and(|n| n >= 2.0), "{text}");
    assert_eq!(value(&text, "keygate_engine_queue_depth"), Some(0.0), "{text}");
    assert_eq!(value(&text, "keygate_key_cache_keys"), Some(1.0), "{text}");
    assert_eq!(value(&text, "keygate_replay_guard_signatures"), Some(1.0), "{text}");
    assert_eq!(value(&text, "keygate_replay_guard_capacity"), Some(1_000_000.0), "{text}");
    // A lone node on its own store writes the exchange (term 1), and its state includes every
    // entry it committed.
    assert_eq!(value(&text, "keygate_exchange_writer_term"), Some(1.0), "{text}");
    assert!(value(&text, "keygate_exchange_journal_applied").is_some_and(|v| v >= 2.0), "{text}");
    for help in ["# HELP keygate_http_requests_total", "# TYPE keygate_http_request_duration_seconds histogram"] {
        assert!(text.contains(help), "{help}: {text}");
    }
    // The metrics address serves nothing else.
    let res = reqwest::get(format!("http://{metrics}/api/v3/ping")).await.unwrap();
    assert_eq!(res.status().as_u16(), 404);
    app.shutdown().await;
}

#[tokio::test]
async fn two_servers_in_one_process_count_only_their_own_requests() {
    let on = |c: &mut keygate_server::ServerConfig| c.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
    let (a, b) = (TestApp::spawn_with(on).await, TestApp::spawn_with(on).await);
    get(&format!("{}/api/v3/ping", a.base_url), &[]).await;
    let (_, text_a) = scrape(a.metrics_addr.unwrap()).await;
    let (_, text_b) = scrape(b.metrics_addr.unwrap()).await;
    let ping = r#"keygate_http_requests_total{endpoint="/api/v3/ping",method="GET",status="200"}"#;
    assert_eq!(value(&text_a, ping), Some(1.0), "{text_a}");
    assert_eq!(value(&text_b, ping), None, "{text_b}");
    a.shutdown().await;
    b.shutdown().await;
}

#[tokio::test]
async fn without_a_metrics_address_nothing_is_served() {
    let app = TestApp::spawn().await;
    assert_eq!(app.metrics_addr, None);
    let a = get(&format!("{}/metrics", app.base_url), &[]).await;
    assert_eq!(a.status, 404);
    app.shutdown().await;
}
