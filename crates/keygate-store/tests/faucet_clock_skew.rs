//! Outside review finding: the faucet's counted limit is exceeded when a grant whose
//! timestamp is earlier than the current window's start arrives after it (a concurrent request
//! that read the clock first but took the row lock second, or a node whose clock is a little
//! behind another's). `decide` treats it as "the clock went back" and starts a new window at 1.
#![allow(clippy::unwrap_used)]

use keygate_proto::UnixMillis;
use keygate_store::conformance::{Harness, SqliteHarness};
use keygate_store::{AuditDraft, FaucetGrant, NewAccount};

#[tokio::test]
async fn an_earlier_timestamp_does_not_reset_the_faucet_limit() {
    let h = SqliteHarness::fresh().await;
    let store = h.open().await;
    let new = NewAccount { name: "mallory".into(), password_hash: "$argon2id$x".into(), created_at: UnixMillis(1) };
    let draft = AuditDraft {
        at: UnixMillis(1),
        actor: "operator:cli".into(),
        action: "account.create".into(),
        target: "account:mallory".into(),
        account_id: None,
        source: None,
        details: serde_json::Value::Null,
    };
    let acct = store.create_account(new, draft).await.unwrap();
    let day = 86_400_000;
    let t = 1_767_225_600_000;
    let mut granted = 0;
    // Limit 1. Node A's clock reads t; node B's clock is 1 ms behind (or B's request read the
    // clock 1 ms before A's and reached the row lock after it).
    for i in 0..10 {
        let at = if i % 2 == 0 { t + i } else { t + i - 2 };
        if matches!(
            store.take_faucet_grant(acct.id, UnixMillis(at), day, 1).await.unwrap(),
            FaucetGrant::Granted { .. }
        ) {
            granted += 1;
        }
    }
    assert_eq!(granted, 1, "limit 1 per 24 h, but {granted} grants were given within 10 ms");
}
