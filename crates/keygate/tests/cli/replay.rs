//! A signed order is carried out at most once (issue #13): the same bytes sent again are refused
//! with -1022 by the server that took them, after that server restarts, and by another node on
//! the same PostgreSQL database. The signature is recorded with the order, in the journal's
//! transaction, not only in one process's memory.

use super::{Sandbox, stop, system_time};
use keygate_client::{Client, Signer, signed_query};
use reqwest::Method;

const ORDER: [(&str, &str); 7] = [
    ("symbol", "BTCUSDT"),
    ("side", "BUY"),
    ("type", "LIMIT"),
    ("timeInForce", "GTC"),
    ("quantity", "0.001"),
    ("price", "10000"),
    ("recvWindow", "60000"),
];

async fn open_orders(client: &Client) -> usize {
    let a = client.signed(Method::GET, "/api/v3/openOrders", &[("symbol", "BTCUSDT")]).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    a.body.as_array().unwrap().len()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_replayed_order_is_refused_after_the_server_restarts() {
    let s = Sandbox::new();
    s.account("alice");
    s.ok(&["deposit", "--account", "alice", "--asset", "USDT", "--amount", "1000"]);
    let k = s.json(&["keys", "create", "--account", "alice", "--permissions", "read,trade", "--json"]);
    let (id, secret) = (k["api_key"].as_str().unwrap(), k["secret"].as_str().unwrap());
    let (server, url) = s.serve("warn");
    let client = Client::new(url, id, Signer::hmac(secret), system_time());
    let query = signed_query(&ORDER, client.now(), client.signer());
    let first = client.raw(Method::POST, "/api/v3/order", &query, "").await.unwrap();
    assert_eq!(first.status, 200, "{:?}", first.body);
    let again = client.raw(Method::POST, "/api/v3/order", &query, "").await.unwrap();
    assert_eq!(again.body["code"].as_i64(), Some(-1022), "{:?}", again.body);
    stop(server);

    let (server, url) = s.serve("warn");
    let client = Client::new(url, id, Signer::hmac(secret), system_time());
    let after_restart = client.raw(Method::POST, "/api/v3/order", &query, "").await.unwrap();
    assert_eq!(after_restart.body["code"].as_i64(), Some(-1022), "replayed after a restart: {:?}", after_restart.body);
    assert_eq!(open_orders(&client).await, 1, "one signed order, one order");
    stop(server);
}
