//! Exchange operations in the service: who may deposit, the faucet's counted limit, the ledger
//! audit, readiness, and the assembly that starts it all on one store.

// Tests fail loudly by design.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use keygate_auth::AccountId;
use keygate_proto::UnixMicros;
use keygate_service::{
    Actor, Assembly, DepositRequest, ExchangeSetup, ManualClock, PasswordParams, Service, ServiceConfig, ServiceError,
    StoreSource,
};
use keygate_store::Store;
use keygate_store::crypto::{MasterKey, SecretCipher};
use keygate_store::sqlite::{SqliteStore, SyncMode};
use std::sync::Arc;
use zeroize::Zeroizing;

const START_US: u64 = 1_767_225_600_000_000;
const DAY_MS: u64 = 24 * 60 * 60 * 1000;

async fn open_store(dir: &std::path::Path) -> Arc<dyn Store> {
    let cipher = Arc::new(SecretCipher::new(MasterKey::from_bytes([5; 32]), vec![]));
    Arc::new(SqliteStore::open(&dir.join("db"), cipher, SyncMode::Normal).await.unwrap())
}

/// A service with the exchange on `store`, as `serve` assembles it.
async fn assemble(store: &Arc<dyn Store>, clock: &Arc<ManualClock>) -> Service {
    Assembly::new(StoreSource::Opened(Arc::clone(store)), clock.clone())
        .config(ServiceConfig { password: PasswordParams::insecure_for_tests(), ..ServiceConfig::default() })
        .exchange(ExchangeSetup::default())
        .start()
        .await
        .unwrap()
}

fn owner(id: i64, name: &str) -> Actor {
    Actor::Owner {
        account_id: AccountId(id),
        name: name.into(),
        stepped_up_until: None,
        source: None,
        fresh_code: None,
    }
}

fn deposit(account: &str, asset: &str, amount: &str) -> DepositRequest {
    DepositRequest { account: account.into(), asset: asset.into(), amount: amount.into(), network: None }
}

#[tokio::test]
async fn deposits_are_the_operators_and_their_audit_record_names_what_was_credited() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let clock = Arc::new(ManualClock::new(UnixMicros(START_US)));
    let service = assemble(&store, &clock).await;
    let operator = Actor::operator_cli();
    let alice =
        service.create_account(&operator, "alice", Zeroizing::new("correct horse battery".into())).await.unwrap();

    let err = service.deposit(&owner(alice.id, "alice"), deposit("alice", "BTC", "1")).await.unwrap_err();
    assert!(matches!(err, ServiceError::Forbidden(_)), "{err:?}");
    let err = service.deposit(&operator, deposit("nobody", "BTC", "1")).await.unwrap_err();
    assert!(matches!(err, ServiceError::NotFound(_)), "{err:?}");
    for (asset, amount) in [("BTC", "1e-3"), ("B C", "1"), ("NOPE", "1")] {
        let err = service.deposit(&operator, deposit("alice", asset, amount)).await.unwrap_err();
        assert!(matches!(err, ServiceError::Invalid(_) | ServiceError::Exchange(_)), "{asset} {amount}: {err:?}");
    }
    let before = store.audit_records(0, 1000, None).await.unwrap().len();
    let record = service.deposit(&operator, deposit("alice", "btc", "1.5")).await.unwrap();
    let audit = store.audit_records(0, 1000, None).await.unwrap();
    assert_eq!(audit.len(), before + 1, "one audit record per deposit, none for the refused ones");
    let last = &audit.last().unwrap().draft;
    assert_eq!((last.action.as_str(), last.actor.as_str()), ("exchange.deposit", "operator:cli"));
    assert_eq!(last.details["id"].as_str(), Some(record.id.as_str()));
    assert_eq!(last.account_id, Some(AccountId(alice.id)));
    assert_eq!(store.journal_after(0, 100).await.unwrap().len(), 1, "only the credited deposit is journaled");
    service.shutdown().await;
}

#[tokio::test]
async fn the_faucet_limit_is_counted_in_the_store_and_holds_across_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let clock = Arc::new(ManualClock::new(UnixMicros(START_US)));
    let store = open_store(dir.path()).await;
    let service = assemble(&store, &clock).await;
    let operator = Actor::operator_cli();
    let bob = service.create_account(&operator, "bob", Zeroizing::new("correct horse battery".into())).await.unwrap();
    let bob_owner = owner(bob.id, "bob");

    assert!(matches!(service.faucet(&operator, "BTC", 2).await, Err(ServiceError::Forbidden(_))));
    assert!(matches!(service.faucet(&bob_owner, "BTC", 0).await, Err(ServiceError::Forbidden(_))));
    assert!(matches!(service.faucet(&bob_owner, "B C", 2).await, Err(ServiceError::Invalid(_))));
    service.faucet(&bob_owner, "btc", 2).await.unwrap();
    // An asset the exchange does not list: refused by the exchange, and the grant given back.
    assert!(matches!(service.faucet(&bob_owner, "NOPE", 2).await, Err(ServiceError::Exchange(_))));
    service.faucet(&bob_owner, "USDT", 2).await.unwrap();
    match service.faucet(&bob_owner, "BTC", 2).await {
        Err(ServiceError::Throttled { retry_after_ms, .. }) => assert_eq!(retry_after_ms, DAY_MS),
        other => panic!("a third grant in 24 hours: {other:?}"),
    }
    let audited = store.audit_records(0, 1000, None).await.unwrap();
    assert_eq!(audited.iter().filter(|r| r.draft.action == "console.faucet").count(), 2);

    service.shutdown().await;
    let store = open_store(dir.path()).await;
    let service = assemble(&store, &clock).await;
    clock.advance_ms(DAY_MS - 1);
    assert!(matches!(service.faucet(&bob_owner, "BTC", 2).await, Err(ServiceError::Throttled { .. })));
    clock.advance_ms(1);
    service.faucet(&bob_owner, "BTC", 2).await.unwrap();
    let balances = service.engine().unwrap().account_view(keygate_proto::AccountId(bob.id)).await.unwrap();
    let btc = balances.balances.iter().find(|b| b.asset.as_str() == "BTC").unwrap();
    assert_eq!(btc.free.to_string(), "2.00000000", "two BTC grants, across the restart");
    service.shutdown().await;
}

#[tokio::test]
async fn the_ledger_audit_is_the_operators_and_readiness_follows_the_store() {
    let dir = tempfile::tempdir().unwrap();
    let store = open_store(dir.path()).await;
    let clock = Arc::new(ManualClock::new(UnixMicros(START_US)));
    let service = assemble(&store, &clock).await;
    let operator = Actor::operator_cli();
    let carol =
        service.create_account(&operator, "carol", Zeroizing::new("correct horse battery".into())).await.unwrap();
    service.deposit(&operator, deposit("carol", "ETH", "3")).await.unwrap();
    assert!(matches!(service.audit_ledger(&owner(carol.id, "carol")).await, Err(ServiceError::Forbidden(_))));
    let report = service.audit_ledger(&operator).await.unwrap();
    assert!(!report.is_empty());
    service.ready().await.unwrap();
    store.close().await;
    assert!(service.ready().await.is_err(), "a closed store must not look ready");
}
