//! Owner webhooks end to end (issue #17): a real receiver on a loopback port, the real HTTP
//! transport, signatures checked against the Standard Webhooks rule, retries on the app's clock,
//! the dead letter and its redelivery, a 410 pausing the endpoint, and the same events as
//! console notices. (The cross-implementation check with the Python `standardwebhooks` package,
//! and the crash between commit and delivery, are in `compat/webhooks/`.)

use axum::extract::State;
use axum::http::{HeaderMap, StatusCode};
use keygate_auth::webhook::WebhookSecret;
use keygate_auth::{Permissions, Restrictions};
use keygate_service::WebhookConfig;
use keygate_testkit::TestApp;
use reqwest::Method;
use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use std::time::Duration;

/// What the receiver got: (webhook-id, webhook-timestamp, webhook-signature, body).
type Got = (String, String, String, String);

#[derive(Clone, Default)]
struct Receiver {
    got: Arc<Mutex<Vec<Got>>>,
    /// Statuses to answer with, in order; 204 once they run out.
    answers: Arc<Mutex<VecDeque<u16>>>,
}

async fn receive(State(r): State<Receiver>, headers: HeaderMap, body: String) -> StatusCode {
    let h = |n: &str| headers.get(n).and_then(|v| v.to_str().ok()).unwrap_or("").to_owned();
    r.got.lock().unwrap().push((h("webhook-id"), h("webhook-timestamp"), h("webhook-signature"), body));
    let status = r.answers.lock().unwrap().pop_front().unwrap_or(204);
    StatusCode::from_u16(status).unwrap()
}

impl Receiver {
    async fn start() -> (Self, String) {
        let r = Self::default();
        let app = axum::Router::new().route("/hook", axum::routing::post(receive)).with_state(r.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/hook", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        (r, url)
    }

    /// Waits (real time, up to 10 s) until `n` requests arrived; all of them.
    async fn wait_for(&self, n: usize) -> Vec<Got> {
        for _ in 0..200 {
            let got = self.got.lock().unwrap().clone();
            if got.len() >= n {
                return got;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("expected {n} deliveries, got {:?}", self.got.lock().unwrap());
    }
}

async fn app() -> TestApp {
    TestApp::spawn_configured(
        |s| {
            s.webhooks = WebhookConfig {
                allow_http: true,
                allow_private_targets: true,
                retry_schedule_ms: vec![1_000, 1_000],
                timeout_ms: 2_000,
                poll_ms: 50,
            };
        },
        |_| {},
    )
    .await
}

fn event_type(body: &str) -> String {
    let v: serde_json::Value = serde_json::from_str(body).unwrap();
    v["type"].as_str().unwrap().to_owned()
}

/// Waits (real time, up to 10 s) until keygate has recorded `n` attempts of the delivery with
/// this `webhook-id`. The receiver sees a request before keygate records its answer and
/// schedules the retry from the app's clock, so a test must wait for this before it moves the
/// clock, or the retry is scheduled from the moved clock and never falls due.
async fn recorded(app: &TestApp, endpoint: i64, webhook_id: &str, n: u32) {
    for _ in 0..200 {
        let all = app.service.webhook_deliveries(&TestApp::operator(), endpoint, 50).await.unwrap();
        if all.iter().any(|d| d.webhook_id == webhook_id && d.attempts >= n) {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("delivery {webhook_id} of endpoint {endpoint} never recorded {n} attempts");
}

/// The endpoint's deliveries once none is being sent (up to 10 s of real time).
async fn settled(app: &TestApp, endpoint: i64) -> Vec<keygate_service::DeliveryView> {
    for _ in 0..200 {
        let all = app.service.webhook_deliveries(&TestApp::operator(), endpoint, 50).await.unwrap();
        let sending = all.iter().any(|d| {
            d.status == keygate_service::webhooks::Delivery::Pending
                && d.next_attempt_at.is_some_and(|t| t <= app.service.now_ms().0)
        });
        if !sending {
            return all;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("deliveries of endpoint {endpoint} never settled");
}

#[tokio::test]
async fn events_are_delivered_signed_retried_dead_lettered_and_shown_as_notices() {
    let app = app().await;
    let op = TestApp::operator();
    app.account("alice").await;
    let (rx, url) = Receiver::start().await;
    let created = app.service.create_webhook(&op, "alice", &url, "test receiver").await.unwrap();
    let secret = WebhookSecret::parse(&created.secret).unwrap();
    assert!(created.secret.starts_with("whsec_"));
    let listed = app.service.list_webhooks(&op, Some("alice")).await.unwrap();
    assert_eq!(listed, vec![created.endpoint.clone()]);
    assert!(!format!("{listed:?}{created:?}").contains(created.secret.as_str()), "the secret is shown once only");

    // A key is created: key.created arrives, signed over id.timestamp.body.
    let key = app.hmac_key("alice", Permissions::READ_ONLY, Restrictions::default()).await;
    let got = rx.wait_for(1).await;
    let (id, ts, sig, body) = &got[0];
    assert_eq!(event_type(body), "key.created");
    assert_eq!(*sig, secret.sign(id, ts.parse().unwrap(), body.as_bytes()));
    assert_eq!(ts.parse::<u64>().unwrap(), keygate_testkit::START.0 / 1000, "the attempt's time, in seconds");
    let payload: serde_json::Value = serde_json::from_str(body).unwrap();
    assert_eq!(payload["data"]["key"], key.key.api_key.as_str());
    assert_eq!(payload["data"]["actor"], "operator:cli");

    // The key is used from 127.0.0.1: after the usage flush, key.new_address; a second use from
    // the same address tells nothing more.
    let client = app.hmac_client(&key);
    for _ in 0..2 {
        let answer = client.signed(Method::GET, "/sapi/v1/account/apiRestrictions", &[]).await.unwrap();
        assert_eq!(answer.status, 200);
        app.service.flush(false).await.unwrap();
    }
    let got = rx.wait_for(2).await;
    assert_eq!(event_type(&got[1].3), "key.new_address");
    assert!(got[1].3.contains("127.0.0.1"));

    // A failed attempt is retried after the schedule's delay, with the same webhook-id.
    rx.answers.lock().unwrap().push_back(500);
    app.service.revoke_key(&op, &key.key.api_key).await.unwrap();
    let got = rx.wait_for(3).await;
    assert_eq!(event_type(&got[2].3), "key.revoked");
    recorded(&app, created.endpoint.id, &got[2].0, 1).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.got.lock().unwrap().len(), 3, "no retry before its time (the app's clock has not moved)");
    app.clock.advance_ms(1_200);
    let got = rx.wait_for(4).await;
    assert_eq!(got[3].0, got[2].0, "a retry keeps its webhook-id");
    assert_eq!(got[3].3, got[2].3, "and its body");
    assert_ne!(got[3].1, got[2].1, "but is stamped with its own time");
    // The receiver answers before keygate records the answer.
    let deliveries = settled(&app, created.endpoint.id).await;
    assert_eq!(deliveries.len(), 3);
    assert_eq!((deliveries[0].attempts, deliveries[0].last_status), (2, Some(204)));

    // Three failures: the dead letter. Redelivered, it arrives.
    rx.answers.lock().unwrap().extend([500, 502, 503]);
    let other = app.hmac_key("alice", Permissions::READ_ONLY, Restrictions::default()).await;
    let first = rx.wait_for(5).await.remove(4).0;
    recorded(&app, created.endpoint.id, &first, 1).await;
    app.clock.advance_ms(1_200);
    rx.wait_for(6).await;
    recorded(&app, created.endpoint.id, &first, 2).await;
    app.clock.advance_ms(1_200);
    let got = rx.wait_for(7).await;
    assert!(got[4..7].iter().all(|g| g.0 == got[4].0 && event_type(&g.3) == "key.created"));
    let dead = settled(&app, created.endpoint.id).await.remove(0);
    assert_eq!(dead.status, keygate_service::webhooks::Delivery::Dead, "{dead:?}");
    assert_eq!((dead.attempts, dead.last_status), (3, Some(503)));
    app.clock.advance_ms(60_000);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.got.lock().unwrap().len(), 7, "a dead delivery is not retried by itself");
    app.service.redeliver_webhook(&op, created.endpoint.id, dead.id).await.unwrap();
    let got = rx.wait_for(8).await;
    assert_eq!(got[7].0, got[4].0);

    // The console's notices: the same events, newest first, with the same ids.
    let notices = app.service.notices(&op, "alice", 50).await.unwrap();
    let types: Vec<&str> = notices.iter().map(|n| n.event_type.as_str()).collect();
    assert_eq!(types, ["key.created", "key.revoked", "key.new_address", "key.created"]);
    assert_eq!(notices[1].webhook_id, got[2].0);
    assert!(notices[0].summary.contains(&other.key.api_key), "{}", notices[0].summary);

    // 410 Gone: the delivery is dead and the endpoint paused; resuming it delivers what waited.
    rx.answers.lock().unwrap().push_back(410);
    app.service.revoke_key(&op, &other.key.api_key).await.unwrap();
    rx.wait_for(9).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ep = app.service.list_webhooks(&op, Some("alice")).await.unwrap().remove(0);
    assert_eq!(ep.status, keygate_service::webhooks::Endpoint::Disabled);
    app.hmac_key("alice", Permissions::READ_ONLY, Restrictions::default()).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.got.lock().unwrap().len(), 9, "a paused endpoint gets nothing");
    // Resumed, it gets the events from then on (not those made while it was paused).
    app.service.set_webhook_active(&op, ep.id, true).await.unwrap();
    let last = app.hmac_key("alice", Permissions::READ_ONLY, Restrictions::default()).await;
    let got = rx.wait_for(10).await;
    assert_eq!(event_type(&got[9].3), "key.created");
    assert!(got[9].3.contains(&last.key.api_key));
    app.shutdown().await;
}

#[tokio::test]
async fn private_and_plain_http_targets_are_refused_unless_allowed() {
    let app = TestApp::spawn().await;
    let op = TestApp::operator();
    app.account("alice").await;
    for url in ["http://hooks.example.com/x", "https://127.0.0.1:9/x", "https://10.0.0.1/x", "https://localhost/x"] {
        let err = app.service.create_webhook(&op, "alice", url, "").await.unwrap_err();
        assert!(matches!(err, keygate_service::ServiceError::Invalid(_)), "{url}: {err:?}");
    }
    assert!(app.service.create_webhook(&op, "alice", "https://hooks.example.com/x", "").await.is_ok());
    assert!(app.service.list_webhooks(&op, Some("alice")).await.unwrap().len() == 1);
    app.shutdown().await;
}

#[tokio::test]
async fn owners_manage_only_their_own_endpoints_and_need_a_step_up_to_remove_one() {
    let app = app().await;
    let op = TestApp::operator();
    let alice = app.account("alice").await;
    app.account("bob").await;
    let owner = keygate_service::Actor::Owner {
        account_id: keygate_auth::AccountId(alice.id),
        name: "alice".into(),
        stepped_up_until: None,
        source: Some("127.0.0.1".into()),
        fresh_code: None,
    };
    let mine = app.service.create_webhook(&owner, "alice", "http://127.0.0.1:9/a", "").await.unwrap();
    let theirs = app.service.create_webhook(&op, "bob", "http://127.0.0.1:9/b", "").await.unwrap();
    assert!(app.service.create_webhook(&owner, "bob", "http://127.0.0.1:9/c", "").await.is_err());
    assert_eq!(app.service.list_webhooks(&owner, None).await.unwrap(), vec![mine.endpoint.clone()]);
    let not_found = app.service.delete_webhook(&owner, theirs.endpoint.id).await.unwrap_err();
    assert!(matches!(not_found, keygate_service::ServiceError::NotFound(_)), "{not_found:?}");
    let step_up = app.service.delete_webhook(&owner, mine.endpoint.id).await.unwrap_err();
    assert!(matches!(step_up, keygate_service::ServiceError::StepUpRequired(_)), "{step_up:?}");
    let stepped = match owner {
        keygate_service::Actor::Owner { account_id, name, source, fresh_code, .. } => keygate_service::Actor::Owner {
            account_id,
            name,
            source,
            fresh_code,
            stepped_up_until: Some(app.service.now_ms().plus_millis(60_000)),
        },
        other => other,
    };
    app.service.delete_webhook(&stepped, mine.endpoint.id).await.unwrap();
    assert!(app.service.list_webhooks(&stepped, None).await.unwrap().is_empty());
    let log = app.service.audit_log(&op, 0, 100).await.unwrap();
    let actions: Vec<&str> = log.iter().map(|r| r.action.as_str()).filter(|a| a.starts_with("webhook.")).collect();
    assert_eq!(actions, ["webhook.create", "webhook.create", "webhook.delete"]);
    app.shutdown().await;
}

#[tokio::test]
async fn the_policy_sweepers_actions_reach_the_owner() {
    let app = app().await;
    let op = TestApp::operator();
    app.account("alice").await;
    let (rx, url) = Receiver::start().await;
    app.service.create_webhook(&op, "alice", &url, "").await.unwrap();
    let key = app.hmac_key("alice", Permissions::READ_ONLY, Restrictions::default()).await;
    rx.wait_for(1).await;
    let id = key.key.api_key.as_str();
    let day = keygate_service::policy::DAY_MS;
    let deadline = app.service.now_ms().plus_millis(90 * day);
    // The real sweeper, with the clock moved: the 7-day warning, then the key disabled.
    app.clock.advance_ms(84 * day);
    assert_eq!(app.service.sweep_key_policies().await.unwrap().warned, 1);
    app.clock.advance_ms(6 * day);
    assert_eq!(app.service.sweep_key_policies().await.unwrap().disabled, 1);
    assert_eq!(app.service.sweep_key_policies().await.unwrap(), keygate_service::policy::SweepReport::default());
    let got = rx.wait_for(3).await;
    let expiring: serde_json::Value = serde_json::from_str(&got[1].3).unwrap();
    assert_eq!(expiring["type"], "key.expiring");
    assert_eq!(expiring["data"]["key"], id);
    assert_eq!(expiring["data"]["at"], deadline.0);
    assert_eq!(expiring["data"]["days_left"], 7);
    assert_eq!(expiring["data"]["action"], "disable");
    assert_eq!(expiring["data"]["policy"], "unused");
    let disabled: serde_json::Value = serde_json::from_str(&got[2].3).unwrap();
    assert_eq!(disabled["type"], "key.disabled_by_policy");
    assert_eq!(disabled["data"]["policy"], "unused");
    assert_eq!(disabled["data"]["deadline"], deadline.0);
    assert_eq!(disabled["data"]["actor"], "system:key-policy:unused");
    let answer = app.hmac_client(&key).signed(Method::GET, "/sapi/v1/account/apiRestrictions", &[]).await.unwrap();
    assert_eq!(answer.status, 401, "a disabled key is refused");
    let notices = app.service.notices(&op, "alice", 10).await.unwrap();
    let n = notices.iter().find(|n| n.event_type == "key.expiring").unwrap();
    assert!(n.summary.contains("will be disabled by the key policy in 7 days (unused too long)"), "{}", n.summary);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(rx.got.lock().unwrap().len(), 3, "a sweep with nothing to do told nobody");
    app.shutdown().await;
}

#[tokio::test]
async fn a_withdrawal_request_reaches_the_owner() {
    use keygate_auth::{IpAllowlist, Permission};
    const ADDRESS: &str = "bc1qallowedaddressallowedaddressallowed00";
    let app = app().await;
    let op = TestApp::operator();
    let account = keygate_proto::AccountId(app.account("dave").await.id);
    let (rx, url) = Receiver::start().await;
    app.service.create_webhook(&op, "dave", &url, "").await.unwrap();
    let r = Restrictions {
        ip_allowlist: IpAllowlist::parse(&["127.0.0.0/8"]).unwrap(),
        withdraw_addresses: vec![ADDRESS.to_owned()],
        ..Restrictions::default()
    };
    let key = app.hmac_key("dave", Permissions::with(&[Permission::Withdraw]), r).await;
    super::exchange_support::fund(&app, account, "BTC", "1").await;
    let params = [("coin", "BTC"), ("network", "BTC"), ("address", ADDRESS), ("amount", "0.1")];
    let a = app.hmac_client(&key).signed(Method::POST, "/sapi/v1/capital/withdraw/apply", &params).await.unwrap();
    assert_eq!(a.status, 200, "{:?}", a.body);
    // key.created, key.new_address (its first use), withdrawal.requested, in some order.
    let got = rx.wait_for(3).await;
    let bodies: Vec<serde_json::Value> = got.iter().map(|g| serde_json::from_str(&g.3).unwrap()).collect();
    let w = bodies.iter().find(|b| b["type"] == "withdrawal.requested").expect("a withdrawal.requested delivery");
    assert_eq!(w["data"]["asset"], "BTC");
    assert_eq!(w["data"]["amount"], "0.10000000");
    assert_eq!(w["data"]["address"], ADDRESS);
    assert_eq!(w["data"]["key"], key.key.api_key.as_str());
    let notices = app.service.notices(&op, "dave", 10).await.unwrap();
    let n = notices.iter().find(|n| n.event_type == "withdrawal.requested").unwrap();
    assert!(n.summary.contains("0.10000000 BTC"), "{}", n.summary);
    app.shutdown().await;
}

/// Outside review: one account's receivers that never answer held every account's deliveries
/// (and notices) back, a batch at a time. Now each endpoint has at most one delivery in flight,
/// deliveries do not wait for each other, and events are made on a loop of their own.
#[tokio::test]
async fn receivers_that_hang_hold_back_only_their_own_deliveries() {
    let app = app().await;
    let op = TestApp::operator();
    app.account("mallory").await;
    app.account("victim").await;
    // A receiver that accepts connections and never answers (held open until the test ends).
    let hang = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let hang_url = format!("http://{}/hook", hang.local_addr().unwrap());
    let held = Arc::new(Mutex::new(Vec::new()));
    let keep = Arc::clone(&held);
    tokio::spawn(async move {
        while let Ok((socket, _)) = hang.accept().await {
            keep.lock().unwrap().push(socket);
        }
    });
    for _ in 0..10 {
        app.service.create_webhook(&op, "mallory", &hang_url, "").await.unwrap();
    }
    for _ in 0..10 {
        app.hmac_key("mallory", Permissions::READ_ONLY, Restrictions::default()).await;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (rx, url) = Receiver::start().await;
    app.service.create_webhook(&op, "victim", &url, "").await.unwrap();
    let started = keygate_service::Stopwatch::start();
    app.hmac_key("victim", Permissions::READ_ONLY, Restrictions::default()).await;
    rx.wait_for(1).await;
    let took = started.elapsed();
    // The hanging receivers' timeout is 2 s: before the fix this waited for at least one.
    assert!(took < Duration::from_millis(1_500), "the victim's delivery waited {took:?} behind mallory's");
    assert!(!app.service.notices(&op, "victim", 10).await.unwrap().is_empty());
    drop(held);
    app.shutdown().await;
}
