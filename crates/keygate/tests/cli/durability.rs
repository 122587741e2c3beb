//! Durable means: an acknowledged order survives `kill -9` of the server.

use super::{Sandbox, system_time};
use keygate_client::{Client, Signer};
use reqwest::Method;
use std::collections::BTreeMap;
use std::process::{Child, Command};
use std::sync::{Arc, Mutex};

/// Rate limits off: the lanes place orders from one account far faster than Binance allows.
fn start(s: &Sandbox) -> (Child, String) {
    s.serve_with(&["--rate-limits", "off"], "warn")
}

fn kill9(mut child: Child) {
    let status = Command::new("kill").args(["-KILL", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let _ = child.wait();
}

fn trading_key(s: &Sandbox, account: &str) -> (String, String) {
    let k = s.json(&["keys", "create", "--account", account, "--permissions", "read,trade", "--json"]);
    (k["api_key"].as_str().unwrap().to_owned(), k["secret"].as_str().unwrap().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn acknowledged_orders_survive_kill_9_and_the_ledger_still_balances() {
    let s = Sandbox::new();
    s.account("alice");
    s.account("bob");
    s.ok(&["deposit", "--account", "alice", "--asset", "USDT", "--amount", "1000000"]);
    s.ok(&["deposit", "--account", "bob", "--asset", "BTC", "--amount", "100"]);
    let alice = trading_key(&s, "alice");
    let bob = trading_key(&s, "bob");
    let (server, url) = start(&s);
    let acked: Arc<Mutex<BTreeMap<u64, (String, serde_json::Value)>>> = Arc::default();
    let mut tasks = Vec::new();
    for (who, (key, secret), side) in [("alice", alice.clone(), "BUY"), ("bob", bob.clone(), "SELL")] {
        for lane in 0..3u32 {
            let client = Client::new(url.clone(), key.clone(), Signer::hmac(&secret), system_time());
            let acked = Arc::clone(&acked);
            tasks.push(tokio::spawn(async move {
                for i in 0..400u32 {
                    // Prices overlap around 50000 so that many orders trade, some rest.
                    let price = format!("{}", 49_900 + ((i * 7 + lane * 13) % 200));
                    let params = [
                        ("symbol", "BTCUSDT"),
                        ("side", side),
                        ("type", "LIMIT"),
                        ("timeInForce", "GTC"),
                        ("quantity", "0.01"),
                        ("price", price.as_str()),
                        ("recvWindow", "60000"),
                    ];
                    match client.signed(Method::POST, "/api/v3/order", &params).await {
                        Ok(a) if a.status == 200 => {
                            let id = a.body["orderId"].as_u64().expect("orderId");
                            acked.lock().unwrap().insert(id, (who.to_owned(), a.body));
                        }
                        // The server died under us: stop this lane.
                        Err(_) => return,
                        // On a fast run the account reaches the exchange's cap on open orders
                        // (MAX_NUM_ORDERS) before the kill: a refusal, not an acknowledgement.
                        Ok(a) if a.status == 400 && a.body["code"] == -1013 => return,
                        Ok(a) => panic!("unexpected answer {} {:?}", a.status, a.body),
                    }
                }
            }));
        }
    }
    // Let the load run, then kill the server without warning, mid-flight.
    tokio::time::sleep(std::time::Duration::from_millis(1500)).await;
    kill9(server);
    for t in tasks {
        t.await.unwrap();
    }
    let acked = std::mem::take(&mut *acked.lock().unwrap());
    assert!(acked.len() > 50, "the load placed only {} orders before the kill", acked.len());

    let (server, url) = start(&s);
    let clients: BTreeMap<&str, Client> = [
        ("alice", Client::new(url.clone(), alice.0.clone(), Signer::hmac(&alice.1), system_time())),
        ("bob", Client::new(url.clone(), bob.0.clone(), Signer::hmac(&bob.1), system_time())),
    ]
    .into_iter()
    .collect();
    for (id, (who, ack)) in &acked {
        let client = &clients[who.as_str()];
        let id = id.to_string();
        let got =
            client.signed(Method::GET, "/api/v3/order", &[("symbol", "BTCUSDT"), ("orderId", &id)]).await.unwrap();
        assert_eq!(got.status, 200, "acknowledged order {id} of {who} is gone after kill -9: {:?}", got.body);
        let executed = |v: &serde_json::Value| v["executedQty"].as_str().unwrap().parse::<f64>().unwrap();
        assert!(
            executed(&got.body) >= executed(ack),
            "order {id}: acknowledged with {} executed, now {}",
            ack["executedQty"],
            got.body["executedQty"]
        );
    }
    // The books balance after the restart, per asset.
    let ledger = s.json(&["audit", "ledger", "--json"]);
    assert_eq!(ledger["invariant"], "holds", "{ledger}");
    super::stop(server);
}
