//! Issue #15 on several nodes (PostgreSQL): an app's key issued on one node works on the other;
//! suspending the app on the second node revokes the key on the first within the change feed's
//! delay, and a code exchanged on one node cannot be exchanged again on the other. Skipped, like
//! the store's PostgreSQL suite, when `KEYGATE_TEST_POSTGRES_URL` is not set.

// Tests fail loudly by design; waits are measured on the wall clock.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use keygate_auth::oauth::{ErrorCode, Narrowing, s256_challenge};
use keygate_auth::{AccountId, KeyLookup as _, KeyStatus};
use keygate_proto::UnixMicros;
use keygate_service::apps::{AuthorizeParams, Consent, NewApp, TokenParams};
use keygate_service::{Actor, ManualClock, Service};
use keygate_store::conformance::{Harness as _, PgHarness, run_or_skip};
use std::sync::Arc;
use std::time::{Duration, Instant};
use zeroize::Zeroizing;
mod support;

use support::pg_node;

const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
const CB: &str = "https://bot.example/cb";

async fn until_status(node: &Service, id: &str, status: KeyStatus) {
    let start = Instant::now();
    loop {
        if node.cache().lookup(id).is_some_and(|e| e.status == status) {
            return;
        }
        assert!(start.elapsed() < Duration::from_secs(5), "{id} never reached {status:?} on the other node");
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}

fn token(client_id: &str, secret: &str, code: &str) -> TokenParams {
    TokenParams {
        grant_type: Some("authorization_code".into()),
        code: Some(code.into()),
        redirect_uri: Some(CB.into()),
        client_id: Some(client_id.into()),
        client_secret: Some(Zeroizing::new(secret.to_owned())),
        code_verifier: Some(VERIFIER.into()),
        ..TokenParams::default()
    }
}

#[test]
fn suspending_an_app_on_one_node_revokes_its_keys_on_the_other_and_codes_work_once_across_nodes() {
    run_or_skip::<PgHarness>(
        "suspending_an_app_on_one_node_revokes_its_keys_on_the_other_and_codes_work_once_across_nodes",
        async {
            let h = PgHarness::fresh().await;
            let clock = Arc::new(ManualClock::new(UnixMicros(1_767_225_600_000_000)));
            let a = pg_node(&h, &clock).await;
            let b = pg_node(&h, &clock).await;
            a.create_account(&Actor::operator_cli(), "alice", Zeroizing::new("correct horse battery".into()))
                .await
                .unwrap();
            let reg = a
                .register_app(
                    &Actor::operator_cli(),
                    NewApp {
                        name: "Bot".into(),
                        homepage: "https://bot.example".into(),
                        publisher_domain: "bot.example".into(),
                        redirect_uris: vec![CB.into()],
                        max_permissions: "read".into(),
                        client_type: "confidential".into(),
                        logo_url: None,
                    },
                )
                .await
                .unwrap();
            let (id, secret) = (reg.app.client_id, reg.client_secret.unwrap());
            let p = AuthorizeParams {
                response_type: Some("code".into()),
                client_id: Some(id.clone()),
                redirect_uri: Some(CB.into()),
                scope: Some("read".into()),
                state: Some("s".into()),
                code_challenge: Some(s256_challenge(VERIFIER)),
                code_challenge_method: Some("S256".into()),
                ..AuthorizeParams::default()
            };
            let alice = Actor::Owner {
                account_id: AccountId(1),
                name: "alice".into(),
                stepped_up_until: None,
                source: None,
                fresh_code: None,
            };
            let req = a.authorization_request(&p, &[]).await.unwrap();
            let url = a.consent(&alice, &req, Consent::Allow(Narrowing::default())).await.unwrap();
            let code = url::Url::parse(&url).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
            // Exchanged on node B: the key reaches node A; node A refuses the same code.
            let issued = b.token(token(&id, &secret, &code), None).await.unwrap();
            until_status(&a, &issued.api_key, KeyStatus::Active).await;
            let again = a.token(token(&id, &secret, &code), None).await.map(|_| ()).unwrap_err();
            assert_eq!(again.code, ErrorCode::InvalidGrant);
            until_status(&b, &issued.api_key, KeyStatus::Revoked).await;

            // A second key, then the kill switch on node A: node B refuses the key.
            let req = b.authorization_request(&p, &[]).await.unwrap();
            let url = b.consent(&alice, &req, Consent::Allow(Narrowing::default())).await.unwrap();
            let code = url::Url::parse(&url).unwrap().query_pairs().find(|(k, _)| k == "code").unwrap().1.into_owned();
            let second = b.token(token(&id, &secret, &code), None).await.unwrap();
            until_status(&a, &second.api_key, KeyStatus::Active).await;
            assert_eq!(a.suspend_app(&Actor::operator_cli(), &id, false).await.unwrap().keys_revoked, 1);
            until_status(&b, &second.api_key, KeyStatus::Revoked).await;
            a.shutdown().await;
            b.shutdown().await;
        },
    );
}
