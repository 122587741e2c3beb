//! Full verification of one signed request (parse, cache lookup, time window, signature, IP,
//! permission) against the bare cryptography it cannot avoid, measured side by side.
//!
//! Run: `cargo bench -p keygate-bench --bench verify`. Prints the ratios at the end.

// A benchmark reports on stdout.
#![allow(clippy::print_stdout, clippy::unwrap_used, clippy::expect_used, missing_docs)]

/// The endpoint every request here is sent to.
const ENDPOINT: keygate_auth::Endpoint<'static> = keygate_auth::Endpoint { method: "POST", path: "/api/v3/order" };

use base64::Engine as _;
use criterion::{Criterion, black_box};
use ed25519_dalek::Signer as _;
use hmac::{Hmac, KeyInit as _, Mac as _};
use keygate_auth::{
    Access, AccountId, ApiKeyId, Credential, Entropy, EntropyError, HmacSecret, KeyEntry, KeyLookup, KeyStatus, Limits,
    Permissions, PublicKey, Restrictions, UnverifiedRequest, Verifier,
};
use keygate_proto::{UnixMicros, UnixMillis};
use keygate_service::KeyCache;
use keygate_store::{KeyMaterial, KeyRecord};
use sha2::Sha256;
use std::net::IpAddr;

const NOW_MS: u64 = 1_767_225_600_000;
/// Keys in the cache while measuring, so the lookup is not a one-entry map.
const KEYS: usize = 10_000;

struct Counter(u64);
impl Entropy for Counter {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), EntropyError> {
        for b in dest {
            self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
            *b = (self.0 >> 33) as u8;
        }
        Ok(())
    }
}

fn record(id: ApiKeyId, material: KeyMaterial) -> KeyRecord {
    KeyRecord {
        id,
        account_id: AccountId(1),
        label: String::new(),
        material,
        permissions: Permissions::READ_ONLY,
        restrictions: Restrictions::default(),
        status: KeyStatus::Active,
        status_reason: None,
        created_at: UnixMillis(NOW_MS),
        created_by: "operator".into(),
        updated_at: UnixMillis(NOW_MS),
        updated_by: "operator".into(),
        last_used_at: None,
        last_used_ip: None,
        use_count: 0,
        withdrawal_holds: keygate_store::WithdrawalHolds::default(),
        app_id: None,
    }
}

/// The query binance-connector sends for `GET /api/v3/account`, signature excluded.
fn payload() -> String {
    format!("omitZeroBalances=true&recvWindow=5000&timestamp={NOW_MS}")
}

fn main() {
    let mut c = Criterion::default().configure_from_args();
    let mut rng = Counter(7);
    let cache = KeyCache::default();
    let mut records = Vec::with_capacity(KEYS + 2);
    for _ in 0..KEYS {
        records.push(record(
            ApiKeyId::generate(&mut rng).unwrap(),
            KeyMaterial::Hmac(HmacSecret::generate(&mut rng).unwrap()),
        ));
    }
    let hmac_id = ApiKeyId::generate(&mut rng).unwrap();
    let secret = HmacSecret::generate(&mut rng).unwrap();
    records.push(record(hmac_id.clone(), KeyMaterial::Hmac(secret.clone())));
    let signing = ed25519_dalek::SigningKey::from_bytes(&[3; 32]);
    let pem = {
        use ed25519_dalek::pkcs8::EncodePublicKey as _;
        signing.verifying_key().to_public_key_pem(Default::default()).unwrap()
    };
    let ed_id = ApiKeyId::generate(&mut rng).unwrap();
    records.push(record(ed_id.clone(), KeyMaterial::Public(PublicKey::parse_ed25519(&pem).unwrap())));
    cache.load(records).unwrap();

    let verifier = Verifier::new(Limits::default(), 1 << 20);
    let now = UnixMicros(NOW_MS * 1000 + 500);
    let peer: IpAddr = "127.0.0.1".parse().unwrap();
    let body = payload();

    let mut mac = Hmac::<Sha256>::new_from_slice(secret.expose().as_bytes()).unwrap();
    mac.update(body.as_bytes());
    let hmac_query = format!("{body}&signature={}", hex::encode(mac.finalize().into_bytes()));
    let ed_sig = signing.sign(body.as_bytes());
    let ed_b64 = base64::engine::general_purpose::STANDARD.encode(ed_sig.to_bytes());
    let ed_query = format!("{body}&signature={}", ed_b64.replace('+', "%2B").replace('/', "%2F").replace('=', "%3D"));

    // Sanity: both pipelines accept their request before we time them.
    for (id, q) in [(&hmac_id, &hmac_query), (&ed_id, &ed_query)] {
        let req = UnverifiedRequest {
            api_key: Some(id.as_str().as_bytes()),
            query: q.as_bytes(),
            body: b"",
            peer,
            endpoint: ENDPOINT,
        };
        verifier.verify(&req, Access::USER_DATA, &cache, now).expect("benchmark request verifies");
    }

    let mut g = c.benchmark_group("verify");
    g.bench_function("hmac_baseline", |b| {
        b.iter(|| {
            let mut m = Hmac::<Sha256>::new_from_slice(black_box(secret.expose().as_bytes())).unwrap();
            m.update(black_box(body.as_bytes()));
            black_box(m.finalize().into_bytes())
        });
    });
    g.bench_function("hmac_pipeline", |b| {
        b.iter(|| {
            let req = UnverifiedRequest {
                api_key: Some(hmac_id.as_str().as_bytes()),
                query: black_box(hmac_query.as_bytes()),
                body: b"",
                peer,
                endpoint: ENDPOINT,
            };
            black_box(verifier.verify(&req, Access::USER_DATA, &cache, now).is_ok())
        });
    });
    let vk = signing.verifying_key();
    g.bench_function("ed25519_baseline", |b| {
        b.iter(|| black_box(vk.verify_strict(black_box(body.as_bytes()), black_box(&ed_sig)).is_ok()));
    });
    g.bench_function("ed25519_pipeline", |b| {
        b.iter(|| {
            let req = UnverifiedRequest {
                api_key: Some(ed_id.as_str().as_bytes()),
                query: black_box(ed_query.as_bytes()),
                body: b"",
                peer,
                endpoint: ENDPOINT,
            };
            black_box(verifier.verify(&req, Access::USER_DATA, &cache, now).is_ok())
        });
    });
    // Components of the pipeline, to see where its time goes.
    g.bench_function("part_parse", |b| {
        b.iter(|| black_box(keygate_auth::Params::parse(black_box(hmac_query.as_bytes()), b"").is_ok()));
    });
    g.bench_function("part_lookup", |b| b.iter(|| black_box(cache.lookup(black_box(hmac_id.as_str())).is_some())));
    g.bench_function("part_key_check", |b| {
        b.iter(|| black_box(ApiKeyId::check(black_box(hmac_id.as_str().as_bytes())).is_ok()))
    });
    g.finish();
    // Interleaved: short alternating batches, so a burst of load from other processes hits both
    // sides alike. The median of per-pair ratios and the ratio of the fastest batches are robust
    // where criterion's sequential 5 s windows are not (this machine is shared).
    let hmac_req = UnverifiedRequest {
        api_key: Some(hmac_id.as_str().as_bytes()),
        query: hmac_query.as_bytes(),
        body: b"",
        peer,
        endpoint: ENDPOINT,
    };
    let baseline = || {
        let mut m = Hmac::<Sha256>::new_from_slice(black_box(secret.expose().as_bytes())).unwrap();
        m.update(black_box(body.as_bytes()));
        black_box(m.finalize().into_bytes());
    };
    let pipeline = || {
        black_box(verifier.verify(black_box(&hmac_req), Access::USER_DATA, &cache, now).is_ok());
    };
    let interleaved = interleave(baseline, pipeline);
    // Keep the lookup honest: the entry really comes from the cache, not a stale clone.
    assert!(
        cache
            .lookup(hmac_id.as_str())
            .is_some_and(|e: std::sync::Arc<KeyEntry>| matches!(e.credential, Credential::Hmac(_)))
    );
    let batch_sizes = ed25519_batches(&mut c);
    c.final_summary();

    let target = keygate_bench::criterion_target();
    let get = |n: &str| keygate_bench::mean_ns(&target, "verify", n);
    println!("\nratios (pipeline / baseline, same run, {KEYS} keys cached):");
    for (pipe, base, goal) in [("hmac_pipeline", "hmac_baseline", 2.0), ("ed25519_pipeline", "ed25519_baseline", 1.1)] {
        match (get(pipe), get(base)) {
            (Some(p), Some(b)) => {
                println!("  {pipe:<18} {p:>9.0} ns  {base:<18} {b:>9.0} ns  ratio {:.2}  (target <= {goal})", p / b)
            }
            _ => println!("  {pipe}: no estimates found under {}", target.display()),
        }
    }
    let Interleaved { pairs, batch, median_ratio, fastest_base_ns, fastest_pipe_ns } = interleaved;
    println!(
        "  interleaved ({pairs} pairs of {batch}-iteration batches): hmac median ratio {median_ratio:.2}, \
         fastest batches {fastest_pipe_ns:.0} ns / {fastest_base_ns:.0} ns = {:.2}  (target <= 2.0)",
        fastest_pipe_ns / fastest_base_ns
    );
    println!("\nEd25519 checked together (keygate_auth::ed25519_batch::verify_all), CPU per signature:");
    let alone = get_batch(&target, "alone");
    for name in batch_sizes {
        let n: f64 = name.trim_start_matches("batch_").trim_end_matches("_one_bad").parse().unwrap_or(1.0);
        match (get_batch(&target, &name), alone) {
            (Some(t), Some(a)) => println!("  {name:<16} {:>9.0} ns per signature  ({:.2} of alone)", t / n, t / n / a),
            _ => println!("  {name}: no estimates found under {}", target.display()),
        }
    }
}

fn get_batch(target: &std::path::Path, name: &str) -> Option<f64> {
    keygate_bench::mean_ns(target, "ed25519_batch", name)
}

/// `verify_all` on batches of good signatures of one key (as one bot sends), and on a batch with
/// one bad signature (the batch fails and every signature is checked again alone). Returns the
/// names of the batch benchmarks; "alone" is a single check (`verify_strict`).
fn ed25519_batches(c: &mut Criterion) -> Vec<String> {
    use keygate_auth::ed25519_batch::{Ed25519Check, verify_all};
    let signing = ed25519_dalek::SigningKey::from_bytes(&[5; 32]);
    let checks: Vec<Ed25519Check> = (0..64)
        .map(|i| {
            let message = format!("omitZeroBalances=true&recvWindow=5000&timestamp={}", NOW_MS + i).into_bytes();
            let sig = signing.sign(&message).to_bytes();
            Ed25519Check::new(signing.verifying_key(), &sig, message)
        })
        .collect();
    // A batch of the largest size the server makes, one of them bad.
    let mut one_bad = checks[..keygate_auth::ed25519_batch::MAX_BATCH].to_vec();
    let last = one_bad.len() - 1;
    one_bad[last] = {
        let message = b"timestamp=1".to_vec();
        let mut sig = signing.sign(&message).to_bytes();
        sig[40] ^= 1;
        Ed25519Check::new(signing.verifying_key(), &sig, message)
    };
    let mut g = c.benchmark_group("ed25519_batch");
    g.bench_function("alone", |b| b.iter(|| black_box(verify_all(black_box(&checks[..1])))));
    let mut names = Vec::new();
    for n in [2, 8, 32, 64] {
        let name = format!("batch_{n}");
        g.bench_function(&name, |b| b.iter(|| black_box(verify_all(black_box(&checks[..n])))));
        names.push(name);
    }
    let name = format!("batch_{}_one_bad", one_bad.len());
    g.bench_function(&name, |b| b.iter(|| black_box(verify_all(black_box(&one_bad)))));
    names.push(name);
    g.finish();
    names
}

/// The result of [`interleave`].
struct Interleaved {
    pairs: usize,
    batch: usize,
    median_ratio: f64,
    fastest_base_ns: f64,
    fastest_pipe_ns: f64,
}

/// Times `base` and `pipe` in alternating batches and returns the median of the per-pair ratios
/// and the fastest batch of each (per iteration).
#[allow(clippy::disallowed_methods)] // `Instant` is for benchmarks.
fn interleave(base: impl Fn(), pipe: impl Fn()) -> Interleaved {
    const PAIRS: usize = 400;
    const BATCH: usize = 2_000;
    let time = |f: &dyn Fn()| {
        let t = std::time::Instant::now();
        for _ in 0..BATCH {
            f();
        }
        t.elapsed().as_secs_f64() * 1e9 / BATCH as f64
    };
    let (mut ratios, mut fb, mut fp) = (Vec::with_capacity(PAIRS), f64::MAX, f64::MAX);
    for i in 0..PAIRS {
        // Alternate which goes first, so neither always follows the other.
        let (b, p) = if i % 2 == 0 {
            let b = time(&base);
            (b, time(&pipe))
        } else {
            let p = time(&pipe);
            (time(&base), p)
        };
        ratios.push(p / b);
        fb = fb.min(b);
        fp = fp.min(p);
    }
    ratios.sort_by(f64::total_cmp);
    Interleaved {
        pairs: PAIRS,
        batch: BATCH,
        median_ratio: ratios[PAIRS / 2],
        fastest_base_ns: fb,
        fastest_pipe_ns: fp,
    }
}
