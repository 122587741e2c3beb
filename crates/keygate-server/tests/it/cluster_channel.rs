//! The channel between nodes (`keygate_server::cluster`), from the outside: a call signed with
//! the channel key for the writer's own term is carried out; a call for another term (recorded
//! before a takeover, say), signed with another key, sent twice, or too old is not.

use hmac::{KeyInit as _, Mac as _};
use keygate_exchange::{Command, Deposit};
use keygate_proto::{AccountId, Amount, AssetCode};
use keygate_server::cluster::{ENGINE_PATH, HttpForward, serve_channel};
use keygate_service::Clock as _;
use keygate_service::cluster::{Forward as _, ForwardError};
use keygate_service::engine::{EngineError, Forwarded};
use keygate_testkit::TestApp;

fn deposit(amount: &str) -> Forwarded {
    Forwarded {
        command: Command::Deposit(Deposit {
            account: AccountId(1),
            coin: AssetCode::parse("USDT").unwrap(),
            network: None,
            amount: Amount::parse(amount).unwrap(),
        }),
        fresh_until: None,
        single_use: None,
        audit: None,
    }
}

/// A call signed by hand, as a recording of one would be sent again.
fn signed_call(key: &[u8; 32], term: i64, time: u64, nonce: &str, body: &[u8]) -> Vec<(&'static str, String)> {
    let mut mac = <hmac::Hmac<sha2::Sha256>>::new_from_slice(key).unwrap();
    mac.update(format!("keygate-internal-v1\n{term}\n{time}\n{nonce}\n").as_bytes());
    mac.update(body);
    vec![
        ("x-keygate-term", term.to_string()),
        ("x-keygate-time", time.to_string()),
        ("x-keygate-nonce", nonce.to_owned()),
        ("x-keygate-mac", hex::encode(mac.finalize().into_bytes())),
    ]
}

async fn usdt(app: &TestApp) -> Amount {
    app.engine
        .query(|ex| ex.balances(AccountId(1)).into_iter().find(|b| b.asset.as_str() == "USDT").map(|b| b.free))
        .await
        .unwrap()
        .unwrap_or_default()
}

#[tokio::test]
async fn only_calls_for_the_writers_own_term_signed_with_the_channel_key_are_carried_out_once() {
    let app = TestApp::spawn().await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let endpoint = format!("http://{}", listener.local_addr().unwrap());
    let channel = serve_channel(listener, app.service.clone()).unwrap();
    let key = app.engine.channel_key();
    let term = app.engine.term();
    assert!(app.engine.is_writer() && term >= 1);
    let forward = HttpForward::new(app.clock.clone()).unwrap();

    let done = forward.forward(&endpoint, term, &key, &deposit("5")).await.unwrap().unwrap();
    assert!(done.seq >= 1, "{done:?}");
    assert_eq!(usdt(&app).await, Amount::parse("5").unwrap());
    // Meant for another term (a call recorded before a takeover): not this writer's to carry out.
    let other = forward.forward(&endpoint, term + 1, &key, &deposit("5")).await.unwrap();
    assert!(matches!(other, Err(EngineError::NotWriter)), "{other:?}");
    // Signed with another key: refused before anything is read.
    let forged = forward.forward(&endpoint, term, &[7; 32], &deposit("5")).await;
    assert!(matches!(forged, Err(ForwardError::Unreachable(_))), "{forged:?}");
    assert_eq!(usdt(&app).await, Amount::parse("5").unwrap(), "nothing else was credited");

    // The same bytes sent twice: the second is refused, and the answer to the first is signed.
    let body = serde_json::to_vec(&deposit("1")).unwrap();
    let now = app.clock.now().as_millis().0;
    let http = reqwest::Client::new();
    let send = |headers: Vec<(&'static str, String)>| {
        let mut req = http.post(format!("{endpoint}{ENGINE_PATH}")).body(body.clone());
        for (name, value) in headers {
            req = req.header(name, value);
        }
        req.send()
    };
    let first = send(signed_call(&key, term, now, "n1", &body)).await.unwrap();
    assert_eq!(first.status(), 200);
    assert!(first.headers().contains_key("x-keygate-mac"), "answers are signed");
    let again = send(signed_call(&key, term, now, "n1", &body)).await.unwrap();
    assert_eq!((again.status().as_u16(), again.text().await.unwrap().as_str()), (401, "nonce already used"));
    let stale = send(signed_call(&key, term, now - 60_000, "n2", &body)).await.unwrap();
    assert_eq!(stale.status(), 401, "a call a minute old");
    assert_eq!(usdt(&app).await, Amount::parse("6").unwrap(), "one of the three was carried out");
    channel.abort();
}
