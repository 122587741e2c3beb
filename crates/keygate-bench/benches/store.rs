//! Store operations on SQLite and on PostgreSQL, side by side in one run.
//!
//! Run: `KEYGATE_TEST_POSTGRES_URL=postgres://postgres@127.0.0.1:5432/postgres cargo bench -p
//! keygate-bench --bench store`. Without the variable only SQLite is measured. Each backend gets
//! a fresh database (the conformance suite's harnesses) and the same operations; the table at the
//! end gives PostgreSQL's time over SQLite's.

// A benchmark reports on stdout.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, missing_docs)]

use criterion::{BenchmarkId, Criterion};
use keygate_auth::{ApiKeyId, HmacSecret, KeyStatus, Permissions, Restrictions};
use keygate_proto::{AccountId, UnixMillis};
use keygate_store::conformance::{Harness, PgHarness, SqliteHarness, TestEntropy};
use keygate_store::{AuditDraft, KeyMaterial, KeyRecord, NewAccount, Store, UsageDelta};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

fn draft(action: &str, target: &str, account: Option<AccountId>) -> AuditDraft {
    AuditDraft {
        at: UnixMillis(1_767_225_600_000),
        actor: "operator:bench".into(),
        action: action.into(),
        target: target.into(),
        account_id: account,
        source: None,
        details: serde_json::json!({}),
    }
}

fn hmac_key(seed: u64, account: AccountId) -> KeyRecord {
    let mut e = TestEntropy::new(seed);
    KeyRecord {
        id: ApiKeyId::generate(&mut e).unwrap(),
        account_id: account,
        label: "bench".into(),
        material: KeyMaterial::Hmac(HmacSecret::generate(&mut e).unwrap()),
        permissions: Permissions::READ_ONLY,
        restrictions: Restrictions::default(),
        status: KeyStatus::Active,
        status_reason: None,
        created_at: UnixMillis(1_767_225_600_000),
        created_by: "operator".into(),
        updated_at: UnixMillis(1_767_225_600_000),
        updated_by: "operator".into(),
        last_used_at: None,
        last_used_ip: None,
        use_count: 0,
        withdrawal_holds: keygate_store::WithdrawalHolds::default(),
        app_id: None,
    }
}

/// Opens a fresh store with two accounts: one that `insert_key` fills as it runs, and one holding
/// exactly 100 keys for the reads and updates (so `list_keys` lists 100 keys on both backends,
/// however many inserts each managed).
async fn prepared<H: Harness>() -> (H, Arc<dyn Store>, AccountId, AccountId, Vec<KeyRecord>) {
    let h = H::fresh().await;
    let store = h.open().await;
    let mut ids = Vec::new();
    for name in ["inserts", "bench"] {
        let acc = store
            .create_account(
                NewAccount { name: name.into(), password_hash: "x".into(), created_at: UnixMillis(1) },
                draft("account.create", &format!("account:{name}"), None),
            )
            .await
            .unwrap();
        ids.push(acc.id);
    }
    let (inserts, acc) = (ids[0], ids[1]);
    let mut keys = Vec::new();
    for i in 0..100 {
        let k = hmac_key(1_000 + i, acc);
        store.insert_key(&k, draft("key.create", k.id.as_str(), Some(acc))).await.unwrap();
        keys.push(k);
    }
    (h, store, inserts, acc, keys)
}

fn bench_backend<H: Harness>(c: &mut Criterion, rt: &tokio::runtime::Runtime, backend: &str) {
    let (_h, store, inserts, account, keys) = rt.block_on(prepared::<H>());
    let seed = AtomicU64::new(1_000_000);
    let mut g = c.benchmark_group("store");
    g.sample_size(20).measurement_time(Duration::from_secs(3)).warm_up_time(Duration::from_secs(1));
    g.bench_function(BenchmarkId::new("insert_key", backend), |b| {
        b.to_async(rt).iter(|| {
            let k = hmac_key(seed.fetch_add(1, Ordering::Relaxed), inserts);
            let store = Arc::clone(&store);
            async move { store.insert_key(&k, draft("key.create", k.id.as_str(), Some(inserts))).await.unwrap() }
        });
    });
    g.bench_function(BenchmarkId::new("get_key", backend), |b| {
        b.to_async(rt).iter(|| {
            let store = Arc::clone(&store);
            let id = keys[7].id.clone();
            async move { store.get_key(&id).await.unwrap().unwrap() }
        });
    });
    g.bench_function(BenchmarkId::new("update_key", backend), |b| {
        b.to_async(rt).iter(|| {
            let store = Arc::clone(&store);
            let k = keys[9].clone();
            async move { store.update_key(&k, draft("key.edit", k.id.as_str(), Some(account))).await.unwrap() }
        });
    });
    let deltas: Vec<UsageDelta> = keys
        .iter()
        .map(|k| UsageDelta {
            key_id: k.id.clone(),
            count: 3,
            last_used_at: UnixMillis(5),
            last_used_ip: "127.0.0.1".into(),
        })
        .collect();
    g.bench_function(BenchmarkId::new("record_usage_100_keys", backend), |b| {
        b.to_async(rt).iter(|| {
            let store = Arc::clone(&store);
            let deltas = deltas.clone();
            async move { store.record_usage(&deltas).await.unwrap() }
        });
    });
    g.bench_function(BenchmarkId::new("append_audit", backend), |b| {
        b.to_async(rt).iter(|| {
            let store = Arc::clone(&store);
            async move { store.append_audit(draft("api.denied", "unknown-key", None)).await.unwrap() }
        });
    });
    g.bench_function(BenchmarkId::new("list_keys_100", backend), |b| {
        b.to_async(rt).iter(|| {
            let store = Arc::clone(&store);
            async move { store.list_keys(Some(account)).await.unwrap() }
        });
    });
    g.finish();
    rt.block_on(store.close());
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().unwrap();
    bench_backend::<SqliteHarness>(&mut c, &rt, "sqlite");
    let pg = std::env::var("KEYGATE_TEST_POSTGRES_URL").is_ok_and(|v| !v.is_empty());
    if pg {
        bench_backend::<PgHarness>(&mut c, &rt, "postgres");
    } else {
        println!("KEYGATE_TEST_POSTGRES_URL is not set: PostgreSQL not measured");
    }
    c.final_summary();
    let target = keygate_bench::criterion_target();
    println!("\nstore operations, mean time (same run):");
    println!("  {:<24} {:>12} {:>12} {:>8}", "operation", "sqlite", "postgres", "pg/sqlite");
    for op in ["insert_key", "get_key", "update_key", "record_usage_100_keys", "append_audit", "list_keys_100"] {
        let s = keygate_bench::mean_ns(&target, &format!("store/{op}"), "sqlite");
        let p = keygate_bench::mean_ns(&target, &format!("store/{op}"), "postgres");
        let us = |v: Option<f64>| v.map_or_else(|| "-".to_owned(), |ns| format!("{:.1} µs", ns / 1000.0));
        let ratio = match (s, p) {
            (Some(s), Some(p)) if pg => format!("{:.2}", p / s),
            _ => "-".into(),
        };
        println!("  {op:<24} {:>12} {:>12} {ratio:>8}", us(s), us(p));
    }
}
