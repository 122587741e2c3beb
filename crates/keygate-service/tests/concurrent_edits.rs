//! Outside review finding: two nodes on one PostgreSQL database edit the same key at the
//! same time. Each node serialises its own key writes (a process-local mutex) and writes the
//! whole row it read, so one node's change can silently overwrite the other's: an operator
//! disables a key, is told it is disabled, and the key ended up active. Key writes are now a
//! compare-and-swap on what was read (`update_key_if`), retried on a fresh read.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

use keygate_auth::{KeyStatus, Permissions, Restrictions};
use keygate_proto::UnixMicros;
use keygate_service::{Actor, KeyEdit, ManualClock, NewKey, NewKeyMaterial};
use keygate_store::conformance::{Harness as _, PgHarness, run_or_skip};
use std::sync::Arc;
use zeroize::Zeroizing;
mod support;

use support::pg_node;

#[test]
fn a_disable_on_one_node_is_not_undone_by_a_label_edit_on_another() {
    run_or_skip::<PgHarness>("a_disable_on_one_node_is_not_undone_by_a_label_edit_on_another", async {
        let h = PgHarness::fresh().await;
        let clock = Arc::new(ManualClock::new(UnixMicros(1_767_225_600_000_000)));
        let a = pg_node(&h, &clock).await;
        let b = pg_node(&h, &clock).await;
        let op = Actor::operator_cli();
        a.create_account(&op, "alice", Zeroizing::new("correct horse battery".into())).await.unwrap();
        let new = NewKey {
            account: "alice".into(),
            label: "bot".into(),
            material: NewKeyMaterial::Hmac,
            permissions: Permissions::READ_ONLY,
            restrictions: Restrictions::default(),
            confirm_wide_ip: false,
        };
        let id = a.create_key(&op, new).await.unwrap().key.api_key;
        let mut lost = 0;
        for i in 0..50 {
            let enable = KeyEdit { status: Some(KeyStatus::Active), ..KeyEdit::default() };
            a.edit_key(&op, &id, enable).await.unwrap();
            let disable = KeyEdit { status: Some(KeyStatus::Disabled), ..KeyEdit::default() };
            let relabel = KeyEdit { label: Some(format!("bot{i}")), ..KeyEdit::default() };
            let (d, _) = tokio::join!(a.edit_key(&op, &id, disable), b.edit_key(&op, &id, relabel));
            assert_eq!(d.unwrap().status, KeyStatus::Disabled, "node A answers: disabled");
            if a.key(&op, &id).await.unwrap().status != KeyStatus::Disabled {
                lost += 1;
            }
        }
        assert_eq!(lost, 0, "{lost} of 50 acknowledged disables were undone by a concurrent label edit");
    });
}
