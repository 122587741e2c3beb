//! `serve --log-format json` and `--metrics-listen`, through the real binary.

use super::{Sandbox, stop, system_time};
use keygate_client::{Client, Signer};
use reqwest::Method;
use std::io::{BufRead as _, BufReader};
use std::process::{Child, Stdio};

/// Starts `serve` with `extra` flags and the default log level; returns the process, the API URL
/// and the metrics URL when one is printed.
pub(crate) fn serve(s: &Sandbox, extra: &[&str]) -> (Child, String, Option<String>) {
    let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
    args.extend_from_slice(extra);
    let mut child =
        s.command(&args).stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let (mut url, mut metrics) = (None, None);
    let mut line = String::new();
    // The address first, the data directory last of the lines printed at start.
    while !line.starts_with("data directory:") {
        line.clear();
        assert!(out.read_line(&mut line).unwrap() > 0, "serve exited early");
        if let Some(u) = line.trim().strip_prefix("keygate listening on ") {
            url = Some(u.to_owned());
        }
        if let Some(m) = line.trim().strip_prefix("metrics: ") {
            metrics = Some(m.to_owned());
        }
    }
    (child, url.unwrap(), metrics)
}

#[tokio::test]
async fn json_log_format_writes_one_parseable_access_line_per_request_without_secrets() {
    let s = Sandbox::new();
    s.account("alice");
    let k = s.json(&["keys", "create", "--account", "alice", "--json"]);
    let (api_key, secret) = (k["api_key"].as_str().unwrap().to_owned(), k["secret"].as_str().unwrap().to_owned());
    let (server, url, metrics) = serve(&s, &["--log-format", "json", "--metrics-listen", "127.0.0.1:0"]);
    let client = Client::new(url.clone(), api_key.clone(), Signer::hmac(&secret), system_time());
    let ok = client.signed(Method::GET, "/api/v3/account", &[]).await.unwrap();
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let forged = format!("timestamp={}&signature={}", client.now().0, "00".repeat(32));
    let bad = client.raw(Method::GET, "/api/v3/account", &forged, "").await.unwrap();
    assert_eq!(bad.status, 400);
    let ping = reqwest::get(format!("{url}/api/v3/ping")).await.unwrap();
    assert_eq!(ping.status().as_u16(), 200);
    let metrics = metrics.expect("the metrics address is printed");
    let text = reqwest::get(&metrics).await.unwrap().text().await.unwrap();
    assert!(
        text.contains(r#"keygate_http_requests_total{endpoint="/api/v3/account",method="GET",status="200"} 1"#),
        "{text}"
    );
    let stderr = stop(server);

    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not a JSON line ({e}): {l}")))
        .collect();
    let access: Vec<&serde_json::Value> = lines.iter().filter(|l| l["target"] == "keygate::access").collect();
    assert_eq!(access.len(), 3, "one line per request: {stderr}");
    let first = access[0];
    assert_eq!(first["method"], "GET");
    assert_eq!(first["path"], "/api/v3/account");
    assert_eq!(first["status"], 200);
    assert_eq!(first["key"].as_str(), Some(api_key.as_str()));
    assert_eq!(first["request_id"].as_str(), ok.request_id.as_deref());
    assert!(first["latency_us"].is_u64(), "{first}");
    assert_eq!(access[1]["status"], 400);
    assert_eq!(access[1]["code"], -1022);
    assert_eq!(access[1]["reason"], "SIGNATURE_INVALID");
    assert_eq!(access[2]["path"], "/api/v3/ping");
    assert!(access[2].get("key").is_none(), "{}", access[2]);
    for needle in [secret.as_str(), "signature", "timestamp="] {
        assert!(!stderr.contains(needle), "{needle:?} reached the log:\n{stderr}");
    }
}

#[tokio::test]
async fn text_log_format_is_the_default_and_names_the_fields() {
    let s = Sandbox::new();
    let (server, url, metrics) = serve(&s, &[]);
    assert_eq!(metrics, None, "metrics are off by default");
    let ping = reqwest::get(format!("{url}/api/v3/ping?x=1")).await.unwrap();
    assert_eq!(ping.status().as_u16(), 200);
    let stderr = stop(server);
    let lines: Vec<&str> = stderr.lines().filter(|l| l.contains("keygate::access")).collect();
    assert_eq!(lines.len(), 1, "{stderr}");
    for field in ["request_id=", "method=GET", "path=/api/v3/ping", "status=200", "latency_us="] {
        assert!(lines[0].contains(field), "{field} in {}", lines[0]);
    }
    assert!(!lines[0].contains("x=1") && !lines[0].starts_with('{'), "{}", lines[0]);
    // The layout of tracing-subscriber's default formatter, which writes every other line:
    // `2026-12-07T16:05:57.476809Z  INFO keygate::access: answered request_id=...`.
    let (time, rest) = lines[0].split_at(27);
    let shape: String = time.chars().map(|c| if c.is_ascii_digit() { '9' } else { c }).collect();
    assert_eq!(shape, "9999-99-99T99:99:99.999999Z", "{}", lines[0]);
    assert!(rest.starts_with("  INFO keygate::access: answered request_id="), "{}", lines[0]);
    assert!(!lines[0].contains('"') && !lines[0].contains('\u{1b}'), "{}", lines[0]);
}
