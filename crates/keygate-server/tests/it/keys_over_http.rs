//! Keys of every type used over HTTP, and revocation taking effect on the next request.

use keygate_auth::{Permission, Permissions, Restrictions};
use keygate_client::Signer;
use keygate_service::{NewKey, NewKeyMaterial};
use keygate_testkit::TestApp;
use reqwest::Method;

const RESTRICTIONS: &str = "/sapi/v1/account/apiRestrictions";

#[tokio::test]
async fn api_restrictions_reports_the_key_in_binance_shape() {
    let app = TestApp::spawn().await;
    app.account("alice").await;
    let key = app.hmac_key("alice", Permissions::with(&[Permission::Trade]), Restrictions::default()).await;
    let a = app.hmac_client(&key).signed(Method::GET, RESTRICTIONS, &[]).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    let b = &a.body;
    assert_eq!(b["ipRestrict"], false);
    assert_eq!(b["enableReading"], true);
    assert_eq!(b["enableSpotAndMarginTrading"], true);
    assert_eq!(b["enableWithdrawals"], false);
    assert_eq!(b["createTime"], keygate_testkit::START.0);
    for field in [
        "enableInternalTransfer",
        "enableMargin",
        "enableFutures",
        "permitsUniversalTransfer",
        "enableVanillaOptions",
        "enableFixApiTrade",
        "enableFixReadOnly",
        "enablePortfolioMarginTrading",
    ] {
        assert_eq!(b[field], false, "{field}");
    }
    app.shutdown().await;
}

#[tokio::test]
async fn ed25519_key_signs_requests_with_percent_encoded_base64() {
    let app = TestApp::spawn().await;
    app.account("alice").await;
    let signing = ed25519_dalek::SigningKey::from_bytes(&[9; 32]);
    let public_pem = {
        use ed25519_dalek::pkcs8::EncodePublicKey as _;
        signing.verifying_key().to_public_key_pem(Default::default()).unwrap()
    };
    let created = app
        .service
        .create_key(
            &TestApp::operator(),
            NewKey {
                account: "alice".into(),
                label: "bot".into(),
                material: NewKeyMaterial::Ed25519(public_pem),
                permissions: Permissions::READ_ONLY,
                restrictions: Restrictions::default(),
                confirm_wide_ip: false,
            },
        )
        .await
        .unwrap();
    assert!(created.secret.is_none(), "the server keeps no secret for a public key");
    let client = app.client(&created.key.api_key, Signer::Ed25519(signing));
    let a = client.signed(Method::GET, RESTRICTIONS, &[("recvWindow", "10000")]).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    app.shutdown().await;
}

/// An Ed25519 key for alice, and its signing half.
async fn ed25519_key(app: &TestApp, seed: u8) -> (String, ed25519_dalek::SigningKey) {
    use ed25519_dalek::pkcs8::EncodePublicKey as _;
    let signing = ed25519_dalek::SigningKey::from_bytes(&[seed; 32]);
    let pem = signing.verifying_key().to_public_key_pem(Default::default()).unwrap();
    let material = NewKeyMaterial::Ed25519(pem);
    let new = NewKey {
        account: "alice".into(),
        label: format!("bot {seed}"),
        material,
        permissions: Permissions::READ_ONLY,
        restrictions: Restrictions::default(),
        confirm_wide_ip: false,
    };
    let created = app.service.create_key(&TestApp::operator(), new).await.unwrap();
    (created.key.api_key, signing)
}

/// Concurrent Ed25519 requests are checked through the batcher (`keygate_server::ed25519_batches`);
/// a bad signature among them is refused alone, and every request gets its own answer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_ed25519_requests_each_get_their_own_answer() {
    use std::sync::Arc;
    let app = TestApp::spawn_with(|c| c.rate_limits.enabled = false).await;
    app.account("alice").await;
    let (key_a, signing_a) = ed25519_key(&app, 11).await;
    let (key_b, signing_b) = ed25519_key(&app, 12).await;
    // Right key ids, and for every fifth request the other key's signature.
    let clients = [
        (Arc::new(app.client(&key_a, Signer::Ed25519(signing_a.clone()))), true),
        (Arc::new(app.client(&key_b, Signer::Ed25519(signing_b.clone()))), true),
        (Arc::new(app.client(&key_a, Signer::Ed25519(signing_b))), false),
        (Arc::new(app.client(&key_b, Signer::Ed25519(signing_a))), false),
    ];
    let requests: Vec<_> = (0..300)
        .map(|i| {
            let (client, good) = clients[if i % 5 == 4 { 2 + i % 2 } else { i % 2 }].clone();
            tokio::spawn(async move {
                let recv_window = format!("{}", 10_000 + i);
                let a = client.signed(Method::GET, RESTRICTIONS, &[("recvWindow", &recv_window)]).await.unwrap();
                (a, good)
            })
        })
        .collect();
    for r in requests {
        let (a, good) = r.await.unwrap();
        if good {
            assert_eq!(a.status, 200, "{:?}", a.body);
        } else {
            assert_eq!((a.status, a.error().map(|e| e.code)), (400, Some(-1022)), "{:?}", a.body);
        }
    }
    app.shutdown().await;
}

/// After a bad signature, a key's Ed25519 signatures are checked alone for a minute, outside the
/// batches (`RecentBadSignature`): a flood of bad signatures with one key id spoils nobody else's.
#[tokio::test]
async fn a_key_that_sent_a_bad_signature_is_checked_alone_for_a_minute() {
    use std::net::SocketAddr;
    let app = TestApp::spawn_with(|c| c.metrics_listen = Some(SocketAddr::from(([127, 0, 0, 1], 0)))).await;
    app.account("alice").await;
    let (key_a, signing_a) = ed25519_key(&app, 13).await;
    let (key_b, signing_b) = ed25519_key(&app, 14).await;
    let good_a = app.client(&key_a, Signer::Ed25519(signing_a));
    let bad_a = app.client(&key_a, Signer::Ed25519(signing_b.clone()));
    let good_b = app.client(&key_b, Signer::Ed25519(signing_b));
    let batched = || async {
        let text =
            reqwest::get(format!("http://{}/metrics", app.metrics_addr.unwrap())).await.unwrap().text().await.unwrap();
        text.lines().find_map(|l| l.strip_prefix("keygate_ed25519_signatures_total ")?.parse::<u64>().ok()).unwrap()
    };
    assert_eq!(good_a.signed(Method::GET, RESTRICTIONS, &[]).await.unwrap().status, 200);
    assert_eq!(batched().await, 1);
    assert_eq!(bad_a.signed(Method::GET, RESTRICTIONS, &[]).await.unwrap().error().map(|e| e.code), Some(-1022));
    assert_eq!(batched().await, 2, "the first bad signature went through the batches");
    assert_eq!(bad_a.signed(Method::GET, RESTRICTIONS, &[]).await.unwrap().error().map(|e| e.code), Some(-1022));
    assert_eq!(good_a.signed(Method::GET, RESTRICTIONS, &[]).await.unwrap().status, 200, "still served, checked alone");
    assert_eq!(batched().await, 2, "key a stays out of the batches");
    assert_eq!(good_b.signed(Method::GET, RESTRICTIONS, &[]).await.unwrap().status, 200);
    assert_eq!(batched().await, 3, "key b is batched as before");
    app.clock.advance_ms(60_000);
    assert_eq!(good_a.signed(Method::GET, RESTRICTIONS, &[]).await.unwrap().status, 200);
    assert_eq!(batched().await, 4, "a minute later key a is batched again");
    app.shutdown().await;
}

#[tokio::test]
async fn revoked_key_is_refused_on_the_very_next_request() {
    let app = TestApp::spawn().await;
    app.account("alice").await;
    let key = app.hmac_key("alice", Permissions::READ_ONLY, Restrictions::default()).await;
    let client = app.hmac_client(&key);
    assert_eq!(client.signed(Method::GET, RESTRICTIONS, &[]).await.unwrap().status, 200);
    app.service.revoke_key(&TestApp::operator(), &key.key.api_key).await.unwrap();
    let a = client.signed(Method::GET, RESTRICTIONS, &[]).await.unwrap();
    assert_eq!((a.status, a.error().unwrap().code, a.reason.as_deref()), (401, -2015, Some("KEY_REVOKED")));
    app.shutdown().await;
}

#[tokio::test]
async fn parameters_in_the_body_are_verified_whatever_the_content_type() {
    let app = TestApp::spawn().await;
    app.account("alice").await;
    let key = app.hmac_key("alice", Permissions::READ_ONLY, Restrictions::default()).await;
    let client = app.hmac_client(&key);
    let secret = key.secret.as_ref().unwrap().expose().to_owned();
    let ts = client.now().0;
    let query = format!("timestamp={ts}");
    let body = "recvWindow=10000";
    let sig = Signer::hmac(&secret).sign(format!("{query}{body}").as_bytes());
    let url = format!("{}{RESTRICTIONS}?{query}", app.base_url);
    let res = reqwest::Client::new()
        .get(url)
        .header("X-MBX-APIKEY", &key.key.api_key)
        .header("Content-Type", "application/json;charset=utf-8")
        .body(format!("{body}&signature={sig}"))
        .send()
        .await
        .unwrap();
    assert_eq!(res.status(), 200);
    app.shutdown().await;
}
