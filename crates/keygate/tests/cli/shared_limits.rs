//! `serve --redis-url`: two `keygate serve` processes count one client's request weight together,
//! and `exchangeInfo` says whether limits are counted per node or across the cluster.

use crate::{Sandbox, stop};
use keygate_redis::testing::{unique_prefix, url_or_skip};

/// `GET /api/v3/ping` on `base`: the weight its address used this minute, as the server reports.
async fn used_weight(base: &str) -> u32 {
    let res = reqwest::get(format!("{base}/api/v3/ping")).await.unwrap();
    assert_eq!(res.status(), 200);
    res.headers()["x-mbx-used-weight-1m"].to_str().unwrap().parse().unwrap()
}

async fn scope(base: &str) -> serde_json::Value {
    let info: serde_json::Value =
        reqwest::get(format!("{base}/api/v3/exchangeInfo")).await.unwrap().json().await.unwrap();
    info["rateLimitsScope"].clone()
}

#[tokio::test]
async fn two_serve_processes_given_one_redis_count_weight_together() {
    let Some(url) = url_or_skip("two_serve_processes_given_one_redis_count_weight_together") else { return };
    let help = Sandbox::new().ok(&["serve", "--help"]);
    assert!(help.contains("--redis-url <URL>") && help.contains("--redis-key-prefix <PREFIX>"), "{help}");
    let prefix = unique_prefix();
    let (a, b, alone) = (Sandbox::new(), Sandbox::new(), Sandbox::new());
    let shared = ["--redis-url", url.as_str(), "--redis-key-prefix", prefix.as_str()];
    let (node_a, url_a) = a.serve_with(&shared, "warn");
    let (node_b, url_b) = b.serve_with(&shared, "warn");
    let (node_c, url_c) = alone.serve("warn");
    // Weight spent on A shows on B (unless the minute turned in between: then try again).
    let mut shown = false;
    for _ in 0..3 {
        let on_a = used_weight(&url_a).await;
        let on_b = used_weight(&url_b).await;
        if on_b == on_a + 1 {
            shown = true;
            break;
        }
        assert!(on_b < on_a, "B counted {on_b} after A's {on_a}: neither shared nor a new minute");
    }
    assert!(shown, "B never counted A's weight");
    assert_eq!(scope(&url_a).await, "CLUSTER");
    assert_eq!(scope(&url_c).await, "NODE");
    for node in [node_a, node_b, node_c] {
        stop(node);
    }
}
