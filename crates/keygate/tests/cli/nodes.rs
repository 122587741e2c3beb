//! Several `keygate serve` processes on one PostgreSQL database, as an operator runs them: a key
//! created or revoked through any node is honoured or refused by every node within
//! milliseconds (issue #13). Skipped when `KEYGATE_TEST_POSTGRES_URL` is not set.

use super::system_time;
use keygate_client::{Client, Signer};
use keygate_store::conformance::{Harness as _, PgHarness};
use reqwest::Method;
use std::io::Write as _;
use std::time::{Duration, Instant};

/// Signed reads through `base` with the key until `want` is the status; how long it took.
async fn until_status(client: &Client, want: u16) -> Duration {
    let start = Instant::now();
    loop {
        let a = client.signed(Method::GET, "/sapi/v1/account/apiRestrictions", &[]).await.unwrap();
        if a.status == want {
            return start.elapsed();
        }
        assert!(start.elapsed() < Duration::from_secs(5), "still {} after 5 s (want {want})", a.status);
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_key_created_or_revoked_through_one_node_is_honoured_or_refused_by_every_node() {
    if let Err(why) = PgHarness::available() {
        let _ = std::io::stderr().write_all(format!("several nodes: skipped: {why}\n").as_bytes());
        return;
    }
    let _alone = super::SEVERAL_SERVERS.lock().await;
    let (_db, _url, nodes) = super::cluster::nodes_on_a_fresh_database(3).await;
    nodes[0].account("alice");
    let servers: Vec<_> = nodes
        .iter()
        .map(|n| {
            let mut c = n.command(&["serve", "--listen", "127.0.0.1:0", "--rate-limits", "off"]);
            let mut child = c
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .unwrap();
            let mut line = String::new();
            std::io::BufRead::read_line(&mut std::io::BufReader::new(child.stdout.as_mut().unwrap()), &mut line)
                .unwrap();
            let http = line.trim().strip_prefix("keygate listening on ").unwrap().to_owned();
            (super::Reaped(Some(child)), http)
        })
        .collect();

    let rounds: usize = std::env::var("KEYGATE_NODES_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(20);
    let mut refusals = Vec::new();
    for round in 0..rounds {
        // Each round's key is made through one node and revoked through the next.
        let (maker, revoker) = (round % 3, (round + 1) % 3);
        let k = nodes[maker].json(&["keys", "create", "--account", "alice", "--json"]);
        let (id, secret) = (k["api_key"].as_str().unwrap(), k["secret"].as_str().unwrap());
        let clients: Vec<Client> = servers
            .iter()
            .map(|(_, http)| Client::new(http.clone(), id, Signer::hmac(secret), system_time()))
            .collect();
        for c in &clients {
            until_status(c, 200).await;
        }
        let out = nodes[revoker].command(&["keys", "revoke", id]).output().unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        for (n, c) in clients.iter().enumerate() {
            let took = until_status(c, 401).await;
            if n != revoker {
                refusals.push(took);
            }
        }
        // The revoking node itself refuses at once: it updated its cache with the commit.
        let own = clients[revoker].signed(Method::GET, "/sapi/v1/account/apiRestrictions", &[]).await.unwrap();
        assert_eq!((own.status, own.body["code"].as_i64()), (401, Some(-2015)));
    }
    // A signed order taken by one node is refused by the others: the signature is recorded
    // with the order in the shared journal's transaction.
    let k = nodes[0].json(&["keys", "create", "--account", "alice", "--permissions", "read,trade", "--json"]);
    let (id, secret) = (k["api_key"].as_str().unwrap(), k["secret"].as_str().unwrap());
    let clients: Vec<Client> =
        servers.iter().map(|(_, http)| Client::new(http.clone(), id, Signer::hmac(secret), system_time())).collect();
    for c in &clients {
        until_status(c, 200).await;
    }
    let order = [
        ("symbol", "BTCUSDT"),
        ("side", "BUY"),
        ("type", "LIMIT"),
        ("timeInForce", "GTC"),
        ("quantity", "0.001"),
        ("price", "10000"),
        ("recvWindow", "60000"),
    ];
    let query = keygate_client::signed_query(&order, clients[0].now(), clients[0].signer());
    // No funds: the exchange refuses the order (-2010), and its signature is spent all the same.
    let first = clients[0].raw(Method::POST, "/api/v3/order", &query, "").await.unwrap();
    assert_eq!(first.body["code"].as_i64(), Some(-2010), "{:?}", first.body);
    for c in &clients[1..] {
        let again = c.raw(Method::POST, "/api/v3/order", &query, "").await.unwrap();
        assert_eq!(again.body["code"].as_i64(), Some(-1022), "replayed on another node: {:?}", again.body);
    }
    refusals.sort_unstable();
    let pct = |p: usize| refusals[(refusals.len() * p / 100).min(refusals.len() - 1)];
    let _ = writeln!(
        std::io::stderr(),
        "revoke through one node -> first refusal on another, {} samples over {rounds} revocations: p50 {:?}, p99 {:?}, max {:?}",
        refusals.len(),
        pct(50),
        pct(99),
        refusals.last().unwrap()
    );
    assert!(pct(99) < Duration::from_millis(250), "p99 {:?}", pct(99));
    for (server, _) in servers {
        server.stop();
    }
}
