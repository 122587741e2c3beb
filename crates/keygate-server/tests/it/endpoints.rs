//! The endpoint table is what the server does: every row is routed at its method and path, is
//! charged the weight the row gives, and demands the key its security type names. A row whose
//! handler, weight or security type diverged from what the server does fails here.

use crate::exchange_support::trader;
use keygate_server::endpoints::{Route, Security};
use keygate_testkit::TestApp;
use reqwest::Method;

fn method(route: Route) -> Method {
    Method::from_bytes(route.spec().method.as_str().as_bytes()).unwrap()
}

#[tokio::test]
async fn every_row_is_routed_at_its_path_with_its_weight_and_its_security_type() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::new();
    let mut used = 0;
    for &route in Route::ALL {
        let spec = route.spec();
        let res = http.request(method(route), format!("{}{}", app.base_url, spec.path)).send().await.unwrap();
        let status = res.status().as_u16();
        let header = res.headers().get("x-mbx-used-weight-1m").map(|v| v.to_str().unwrap().parse::<u32>().unwrap());
        let body: serde_json::Value = res.json().await.unwrap_or_default();
        // Without parameters: a parameter-dependent weight is the one with none.
        used += spec.weight.of_query("");
        assert_eq!(header, Some(used), "{route:?} weighs what its row says");
        match spec.security {
            // Answered without a key: the answer, or a missing parameter.
            Security::Public => assert!(matches!(status, 200 | 400), "{route:?}: {status} {body}"),
            // Asked for a key before anything else.
            Security::UserData | Security::Trade | Security::Withdraw => {
                assert_eq!((status, body["code"].as_i64()), (401, Some(-2014)), "{route:?}: {body}");
            }
        }
    }
    // A path no row names is no route, whatever it resembles, and weighs what an unlisted
    // request weighs.
    let res = http.get(format!("{}/api/v3/tickr/price", app.base_url)).send().await.unwrap();
    assert_eq!(res.status(), 404);
    assert_eq!(res.headers()["x-mbx-used-weight-1m"], (used + 1).to_string().as_str());
    app.shutdown().await;
}

#[tokio::test]
async fn every_signed_row_demands_the_permission_its_security_type_names() {
    let app = TestApp::spawn().await;
    // Every key can read; this one can do nothing else.
    let reader = trader(&app, "alice", &[]).await;
    for &route in Route::ALL {
        let spec = route.spec();
        let a = reader.client.signed(method(route), spec.path, &[]).await.unwrap();
        let refused = match spec.security {
            Security::Public => continue,
            Security::UserData => None,
            Security::Trade => Some("PERMISSION_MISSING_TRADE"),
            Security::Withdraw => Some("PERMISSION_MISSING_WITHDRAW"),
        };
        match refused {
            Some(reason) => assert_eq!((a.status, a.reason.as_deref()), (401, Some(reason)), "{route:?}"),
            // Served, or refused for its parameters: never for the key.
            None => assert!(matches!(a.status, 200 | 400) && a.reason.is_none(), "{route:?}: {a:?}"),
        }
    }
    app.shutdown().await;
}

/// The endpoint table's paths are served without the router (`front.rs`), and still answer as a
/// router would: `HEAD` as `GET` without the body, another method 405 with `Allow`, each charged
/// the weight of a request no row lists.
#[tokio::test]
async fn a_table_path_answers_head_like_get_without_a_body_and_an_unserved_method_405_with_allow() {
    let app = TestApp::spawn().await;
    let http = reqwest::Client::new();
    let url = format!("{}/api/v3/exchangeInfo?symbol=BTCUSDT", app.base_url);
    let get = http.get(&url).send().await.unwrap();
    assert_eq!(get.status(), 200);
    let (get_type, get_len) = (get.headers()["content-type"].clone(), get.bytes().await.unwrap().len());
    let head = http.head(&url).send().await.unwrap();
    assert_eq!(head.status(), 200);
    assert_eq!(head.headers()["content-type"], get_type);
    assert_eq!(head.headers()["content-length"], get_len.to_string().as_str(), "the length GET's body has");
    assert!(head.headers().contains_key("x-request-id"));
    assert!(head.bytes().await.unwrap().is_empty(), "no body");

    let weight =
        |res: &reqwest::Response| res.headers()["x-mbx-used-weight-1m"].to_str().unwrap().parse::<u32>().unwrap();
    let put = http.put(format!("{}/api/v3/ping", app.base_url)).send().await.unwrap();
    assert_eq!(put.status(), 405);
    assert_eq!(put.headers()["allow"], "GET,HEAD");
    let before = weight(&put);
    let patch = http.patch(format!("{}/api/v3/order", app.base_url)).send().await.unwrap();
    assert_eq!(patch.status(), 405);
    let mut allowed: Vec<&str> = patch.headers()["allow"].to_str().unwrap().split(',').collect();
    allowed.sort_unstable();
    assert_eq!(allowed, ["DELETE", "GET", "HEAD", "POST"]);
    assert_eq!(weight(&patch), before + 1, "an unlisted request weighs 1");
    let body: serde_json::Value = patch.json().await.unwrap();
    assert!(body["code"].is_i64() && body["msg"].is_string(), "Binance's error shape: {body}");
    app.shutdown().await;
}
