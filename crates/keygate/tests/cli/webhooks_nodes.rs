//! Owner webhooks and leak reports with three `keygate serve` processes on one PostgreSQL
//! database (issue #17): every node runs the event worker, yet each event reaches the receiver
//! once; a leak report to one node revokes the key on every node within a second. Skipped when
//! `KEYGATE_TEST_POSTGRES_URL` is not set.

use super::system_time;
use base64::Engine as _;
use keygate_client::{Client, Signer};
use keygate_store::conformance::{Harness as _, PgHarness};
use p256::ecdsa::signature::Signer as _;
use p256::ecdsa::{Signature, SigningKey};
use p256::pkcs8::{EncodePublicKey as _, LineEnding};
use reqwest::Method;
use std::collections::BTreeMap;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// Requests received per `webhook-id`: the event type and how many times.
type Received = Arc<Mutex<BTreeMap<String, (String, u32)>>>;

/// A receiver on a loopback port: counts requests per `webhook-id` (and event type), answers 204.
fn receiver() -> (String, Received) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}/hook", listener.local_addr().unwrap());
    let got: Received = Arc::default();
    let seen = Arc::clone(&got);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            let Ok(mut stream) = stream else { continue };
            let seen = Arc::clone(&seen);
            std::thread::spawn(move || {
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let (mut id, mut len) = (String::new(), 0usize);
                loop {
                    let mut line = String::new();
                    if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
                        break;
                    }
                    let lower = line.to_ascii_lowercase();
                    if let Some(v) = lower.strip_prefix("webhook-id:") {
                        id = v.trim().to_owned();
                    } else if let Some(v) = lower.strip_prefix("content-length:") {
                        len = v.trim().parse().unwrap_or(0);
                    }
                }
                let mut body = vec![0; len];
                reader.read_exact(&mut body).unwrap();
                let v: serde_json::Value = serde_json::from_slice(&body).unwrap_or_default();
                let kind = v["type"].as_str().unwrap_or("").to_owned();
                seen.lock().unwrap().entry(id).or_insert((kind, 0)).1 += 1;
                let _ = stream.write_all(b"HTTP/1.1 204 No Content\r\ncontent-length: 0\r\nconnection: close\r\n\r\n");
            });
        }
    });
    (url, got)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_nodes_deliver_each_event_once_and_revoke_a_leaked_key_everywhere_within_a_second() {
    if let Err(why) = PgHarness::available() {
        let _ = std::io::stderr().write_all(format!("webhooks on several nodes: skipped: {why}\n").as_bytes());
        return;
    }
    let _alone = super::SEVERAL_SERVERS.lock().await;
    let (_db, _url, nodes) = super::cluster::nodes_on_a_fresh_database(3).await;
    let reporter = SigningKey::from_slice(&[7; 32]).unwrap();
    let key_file = tempfile::NamedTempFile::new().unwrap();
    std::fs::write(key_file.path(), reporter.verifying_key().to_public_key_pem(LineEnding::LF).unwrap()).unwrap();
    let leak_key = format!("scanner={}", key_file.path().display());
    nodes[0].account("alice");
    let (hook, got) = receiver();
    let extra = ["--webhook-allow-http", "--webhook-allow-private-targets", "--leak-report-key", leak_key.as_str()];
    let servers: Vec<_> = nodes.iter().map(|n| n.serve_with(&extra)).collect();
    nodes[1].json(&["webhooks", "add", "alice", &hook, "--json"]);

    // Keys made through every node: each key.created arrives once, whichever node's worker
    // took it.
    let mut keys = Vec::new();
    for i in 0..12 {
        keys.push(nodes[i % 3].json(&["keys", "create", "--account", "alice", "--json"]));
    }
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let created = got.lock().unwrap().values().filter(|(kind, _)| kind == "key.created").count();
        if created == keys.len() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "only {created} of {} key.created arrived: {:?}",
            keys.len(),
            got.lock().unwrap()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    // Long enough for any node to send one twice if it would.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let twice: Vec<_> =
        got.lock().unwrap().iter().filter(|(_, (_, n))| *n > 1).map(|(k, v)| (k.clone(), v.clone())).collect();
    assert!(twice.is_empty(), "delivered more than once: {twice:?}");

    // A leak report to node 0: the key is refused on every node within a second.
    let leaked = &keys[4];
    let (id, secret) = (leaked["api_key"].as_str().unwrap(), leaked["secret"].as_str().unwrap());
    let clients: Vec<Client> =
        servers.iter().map(|(_, base, _)| Client::new(base.clone(), id, Signer::hmac(secret), system_time())).collect();
    for c in &clients {
        assert_eq!(c.signed(Method::GET, "/sapi/v1/account/apiRestrictions", &[]).await.unwrap().status, 200);
    }
    let body = serde_json::json!([{ "token": secret, "type": "keygate_hmac_secret", "url": "", "source": "content" }])
        .to_string();
    let ts = system_time()().0 / 1000;
    let sig: Signature = reporter.sign(format!("{ts}.{body}").as_bytes());
    let started = Instant::now();
    let answer = reqwest::Client::new()
        .post(format!("{}/keygate/v1/leak-reports", servers[0].1))
        .header("Keygate-Leak-Key-Id", "scanner")
        .header("Keygate-Leak-Timestamp", ts.to_string())
        .header("Keygate-Leak-Signature", base64::engine::general_purpose::STANDARD.encode(sig.to_der().as_bytes()))
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    let v: serde_json::Value = answer.json().await.unwrap();
    assert_eq!(v[0]["label"], "true_positive");
    let mut took = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        loop {
            let a = c.signed(Method::GET, "/sapi/v1/account/apiRestrictions", &[]).await.unwrap();
            if a.status == 401 {
                took.push(started.elapsed());
                break;
            }
            assert!(started.elapsed() < Duration::from_secs(5), "node {i} still accepts the leaked key");
            tokio::time::sleep(Duration::from_millis(2)).await;
        }
    }
    let _ = std::io::stderr()
        .write_all(format!("leak report on node 0 to refusal on nodes 0, 1, 2: {took:?}\n").as_bytes());
    assert!(took.iter().all(|t| *t < Duration::from_secs(1)), "{took:?}");
    // The owner hears of it once.
    let deadline = Instant::now() + Duration::from_secs(10);
    while !got.lock().unwrap().values().any(|(kind, _)| kind == "key.leaked") {
        assert!(Instant::now() < deadline, "no key.leaked delivery");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    tokio::time::sleep(Duration::from_secs(2)).await;
    let leaked_deliveries: Vec<u32> =
        got.lock().unwrap().values().filter(|(kind, _)| kind == "key.leaked").map(|(_, n)| *n).collect();
    assert_eq!(leaked_deliveries, [1]);
    drop(servers);
}
