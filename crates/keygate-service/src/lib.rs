//! Key and account operations with their policy: who may do what.
//!
//! Every operation takes an [`Actor`] and decides, from DESIGN.md section 3's rules, whether that
//! actor may perform it; every change is written together with its audit record. The HTTP server,
//! the admin channel and the CLI are thin paths into this layer, so a rule enforced here holds on
//! every path, and tests can reach every rule without HTTP.

pub mod accounts;
pub mod actor;
pub mod admin;
pub mod apps;
pub mod assembly;
mod background;
pub mod cache;
pub mod clock;
pub mod cluster;
pub mod counters;
pub mod devices;
pub mod engine;
mod error;
mod faucet_status;
pub mod follow;
pub mod funds;
pub mod holds;
pub mod invites;
pub mod keys;
pub mod leaks;
pub mod market;
pub mod password;
pub mod policy;
pub mod sessions;
mod throttle;
pub mod totp;
pub mod usage;
pub mod view;
pub mod webhooks;

pub use actor::{Actor, FRESH_CODE_MS, FreshCode};
pub use assembly::{Assembly, ExchangeSetup, StoreSource};
pub use cache::KeyCache;
pub use clock::{Clock, ManualClock, Stopwatch, SystemClock};
pub use error::ServiceError;
pub use faucet_status::FaucetStatus;
pub use funds::{ApiWithdrawal, DepositRequest};
pub use holds::{HoldKind, HoldView, WithdrawalBlock};
pub use invites::{CreatedInvite, InviteView};
pub use keygate_auth::SessionToken;
pub use keys::{CreatedOnce, KeyEdit, NewKey, NewKeyMaterial};
pub use leaks::{LeakReport, LeakVerdict};
pub use password::PasswordParams;
pub use sessions::{NewSession, SessionConfig, SessionInfo, ThrottleConfig};
pub use totp::{FailedLoginCodes, RecoveryCodes, TotpEnrollment, TwoFactorView};
pub use view::{AccountView, AuditView, CreatedKey, KeyView};
pub use webhooks::{CreatedWebhook, DeliveryView, NoticeView, WebhookConfig, WebhookTransport, WebhookView};

use keygate_auth::{Entropy, EntropyError};
use keygate_store::Store;
use std::sync::Arc;
use usage::{DenialAggregator, UsageTracker};

/// Result of a service operation.
pub type ServiceResult<T> = Result<T, ServiceError>;

/// Policy switches of the service. Build it as `ServiceConfig { field: .., ..ServiceConfig::default() }`
/// so that new switches keep their defaults.
#[derive(Debug, Clone)]
pub struct ServiceConfig {
    /// argon2id cost for passwords.
    pub password: PasswordParams,
    /// Console session lifetimes.
    pub sessions: SessionConfig,
    /// Login and 2FA throttles.
    pub throttle: ThrottleConfig,
    /// Owners need 2FA enabled to create (or widen into) keys with `trade` or `withdraw`;
    /// operators and the system are unaffected. On by default.
    pub require_2fa_for_trading_keys: bool,
    /// How long withdrawals stay locked after a password change or 2FA removal (24 h).
    pub withdrawal_lock_ms: u64,
    /// How long withdrawals wait after an owner turns 2FA on (the whole account), gives a key
    /// `withdraw` (that key) or adds a withdrawal address (that address on that key): 24 h by
    /// default, `serve --withdrawal-hold`; 0 starts no holds (the demo). See [`holds`].
    pub withdrawal_hold_ms: u64,
    /// Who may create their own account ([`Service::sign_up`]): anyone, nobody (only the
    /// operator creates accounts), or whoever holds an invite code. Open by default here (tests,
    /// the demo); `keygate serve` closes it unless `--signup open|invite` (or `--demo`).
    pub sign_up: SignUpMode,
    /// With several nodes on one database: how long after its last successful look at the
    /// change feed a node still checks signatures against its key cache (2 s); beyond it, signed
    /// requests are refused until the node is current again (see [`follow`]).
    pub max_staleness_ms: u64,
    /// Counters every node shares (`serve --redis-url`): login, sign-up and 2FA throttles here,
    /// and the server's rate limits, count there. `None` (the default): each node counts alone.
    /// See [`counters`].
    pub shared_counters: Option<Arc<dyn counters::CounterStore>>,
    /// The deployment's key policies (issue #17; see [`policy`]): idle keys disabled, withdraw
    /// keys expiring, keys per account, re-confirmation after a password change.
    pub key_policy: policy::KeyPolicy,
    /// Webhook delivery rules (targets allowed, retries, timeouts): see [`webhooks`].
    pub webhooks: WebhookConfig,
    /// Public keys that sign leak reports (`serve --leak-report-key`); none: reports are
    /// refused. See [`leaks`].
    pub leak_reporters: Vec<keygate_auth::leak::ReporterKey>,
}

impl Default for ServiceConfig {
    fn default() -> Self {
        Self {
            password: PasswordParams::default(),
            sessions: SessionConfig::default(),
            throttle: ThrottleConfig::default(),
            require_2fa_for_trading_keys: true,
            withdrawal_lock_ms: 24 * 60 * 60 * 1000,
            withdrawal_hold_ms: 24 * 60 * 60 * 1000,
            sign_up: SignUpMode::Open,
            max_staleness_ms: 2_000,
            shared_counters: None,
            key_policy: policy::KeyPolicy::default(),
            webhooks: WebhookConfig::default(),
            leak_reporters: Vec::new(),
        }
    }
}

/// Who may create their own account (`serve --signup`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SignUpMode {
    /// Anyone.
    Open,
    /// Nobody: the operator creates accounts.
    Closed,
    /// Whoever presents an unused invite code the operator made (see [`invites`]).
    Invite,
}

/// The operating system's random number generator, the production [`Entropy`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), EntropyError> {
        getrandom::getrandom(dest).map_err(|_| EntropyError)
    }
}

/// Keys read per store call while the key cache is warmed at start: large enough that the walk
/// costs about what one full listing does, small enough that its transient memory (rows and
/// decrypted records, about 3.7 KiB per key) stays a few tens of MB.
const KEY_LOAD_PAGE: u32 = 10_000;

/// Loads every stored key into `cache`, `page` keys per store call. Page by page: only one page
/// of rows and records is alive at a time besides the cache itself (one `list_keys(None)` of
/// 1,000,000 keys peaked at 3.9 GB, and glibc kept most of it resident after it was freed).
async fn warm_cache(store: &dyn Store, cache: &KeyCache, page: u32) -> ServiceResult<()> {
    let mut after = None;
    loop {
        let keys = store.list_keys_page(after.as_ref(), page).await?;
        cache.extend(&keys)?;
        match keys.last() {
            Some(last) => after = Some(last.id.clone()),
            None => return Ok(()),
        }
    }
}

/// The service: store, clock, key cache and usage bookkeeping, shared by every entry path.
#[derive(Debug, Clone)]
pub struct Service {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    cache: Arc<KeyCache>,
    config: ServiceConfig,
    usage: UsageTracker,
    denials: DenialAggregator,
    /// Failed logins per account name from every address, in memory (see [`throttle`]): past
    /// [`ThrottleConfig::login_per_account_global`], only addresses with no failure of their own
    /// on the account are still heard.
    login_by_account: throttle::FailureCounter,
    /// Failed logins per (account name, client address) pair: the hard per-account lock, which an
    /// attacker elsewhere cannot trigger for the owner's address.
    login_by_pair: throttle::FailureCounter,
    /// Failed logins per client address (IPv6 per /64), in memory.
    login_by_ip: throttle::FailureCounter,
    /// Sign-up attempts (taken names included) per client address, in memory.
    sign_ups_by_ip: throttle::FailureCounter,
    /// Codes finishing a password login, per login session, in memory.
    totp_by_session: throttle::FailureCounter,
    /// Codes finishing a password login, per client address (IPv6 per /64), in memory.
    totp_by_ip: throttle::FailureCounter,
    /// Codes finishing a password login on a known device, per device (see [`devices`]): they
    /// count here instead of against the account-wide ceiling.
    totp_by_device: throttle::FailureCounter,
    /// The key known-device tokens are signed with, derived from the master key.
    device_key: zeroize::Zeroizing<[u8; 32]>,
    /// Bounds concurrent argon2 runs (see [`ThrottleConfig::password_hashing_concurrency`]).
    password_work: Arc<tokio::sync::Semaphore>,
    /// When ended sessions were last deleted, ms.
    last_session_purge: std::sync::atomic::AtomicU64,
    /// Serialises every read-modify-write of keys in this process, so a concurrent edit can never
    /// write back a stale copy over a revocation, and the per-account key count holds.
    key_writes: tokio::sync::Mutex<()>,
    /// The sandbox exchange, when this service runs one (see [`funds`]).
    engine: Option<engine::Engine>,
    /// Tasks started for this service, stopped by [`Service::shutdown`].
    background: background::Background,
    /// The simulated market on this node, if started.
    market: market::MarketControl,
    /// Whether the caches are known to be current (see [`follow`]).
    currency: follow::Currency,
    /// The counters every node shares, when configured.
    shared: Option<counters::SharedCounters>,
    /// The webhook worker's memory (see [`webhooks`]).
    webhooks: webhooks::WebhookState,
}

impl Service {
    /// A service over `store` without the exchange, loading every key into the in-memory cache
    /// (for tests of the key system alone; a program starts from [`Assembly`]).
    ///
    /// # Errors
    /// [`ServiceError`] if the store cannot be read or holds a key that cannot be decoded.
    pub async fn start(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: ServiceConfig) -> ServiceResult<Self> {
        Self::start_with(store, clock, config, None).await
    }

    /// [`Service::start`] with the exchange's engine, which [`Assembly`] starts on the same store.
    async fn start_with(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        config: ServiceConfig,
        engine: Option<engine::Engine>,
    ) -> ServiceResult<Self> {
        let cache = Arc::new(KeyCache::default());
        warm_cache(&*store, &cache, KEY_LOAD_PAGE).await?;
        // Keys made before secrets were indexed get their digest now (leak reports find them).
        while store.index_secret_digests(KEY_LOAD_PAGE).await? > 0 {}
        let shared = config.shared_counters.clone().map(|c| counters::SharedCounters::new(c, Arc::clone(&clock)));
        let t = &config.throttle;
        let counter = |limit: u32, window_ms: u64, name: &'static str| {
            throttle::FailureCounter::new(limit, window_ms).sharing(shared.as_ref(), name)
        };
        let device_key = store.derived_key(devices::KEY_PURPOSE);
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                clock,
                cache,
                usage: UsageTracker::default(),
                denials: DenialAggregator::default(),
                login_by_account: counter(t.login_per_account_global, t.login_window_ms, "login-account"),
                login_by_pair: counter(t.login_per_account, t.login_window_ms, "login-pair"),
                login_by_ip: counter(t.login_per_ip, t.login_window_ms, "login-ip"),
                sign_ups_by_ip: counter(t.sign_ups_per_ip_per_hour, 60 * 60 * 1000, "sign-up-ip"),
                totp_by_session: counter(t.totp_failures, t.totp_window_ms, "totp-session"),
                totp_by_ip: counter(t.totp_login_per_ip, t.totp_window_ms, "totp-ip"),
                totp_by_device: counter(t.totp_failures, t.totp_window_ms, "totp-device"),
                device_key,
                password_work: Arc::new(tokio::sync::Semaphore::new(
                    config.throttle.password_hashing_concurrency.max(1),
                )),
                last_session_purge: std::sync::atomic::AtomicU64::new(0),
                key_writes: tokio::sync::Mutex::new(()),
                engine,
                background: background::Background::default(),
                market: market::MarketControl::default(),
                currency: follow::Currency::default(),
                shared,
                config,
                webhooks: webhooks::WebhookState::default(),
            }),
        })
    }

    /// The key cache the verifier reads.
    #[must_use]
    pub fn cache(&self) -> &Arc<KeyCache> {
        &self.inner.cache
    }

    /// Whether owners may sign themselves up at all, with or without an invite code
    /// ([`ServiceConfig::sign_up`]), for pages that offer sign-up only when it can work.
    #[must_use]
    pub fn sign_up_open(&self) -> bool {
        self.inner.config.sign_up != SignUpMode::Closed
    }

    /// Who may sign up ([`ServiceConfig::sign_up`]), for pages that ask for an invite code.
    #[must_use]
    pub fn sign_up_mode(&self) -> SignUpMode {
        self.inner.config.sign_up
    }

    /// The clock in force.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The counters every node shares, when this node was given some: the server counts its
    /// rate limits there too, so one outage policy holds for both (see [`counters`]).
    #[must_use]
    pub fn shared_counters(&self) -> Option<&counters::SharedCounters> {
        self.inner.shared.as_ref()
    }

    /// Whether the service can serve: its keys are current (see [`follow`]), the store answers a
    /// read and a write transaction, and the exchange's engine (when there is one) answers a
    /// query. For readiness probes.
    ///
    /// # Errors
    /// The first part that does not answer.
    pub async fn ready(&self) -> ServiceResult<()> {
        if !self.is_current(self.now_ms().0) {
            return Err(ServiceError::Internal("this node cannot confirm its keys are current".into()));
        }
        self.inner.store.ping().await?;
        if let Some(engine) = &self.inner.engine {
            engine.query(|_| ()).await?;
        }
        Ok(())
    }

    /// The time on the service's clock (the one clock every decision reads, so tests control it).
    #[must_use]
    pub fn now_ms(&self) -> keygate_proto::UnixMillis {
        self.inner.clock.now().as_millis()
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]

    use super::*;
    use keygate_auth::{KeyLookup as _, Permissions, Restrictions};
    use keygate_store::crypto::{MasterKey, SecretCipher};
    use keygate_store::sqlite::{SqliteStore, SyncMode};

    /// The warm-up reads every stored key, over several pages and a last partial one, into a
    /// cache that then finds each of them.
    #[tokio::test]
    async fn warm_up_loads_every_key_over_several_pages() {
        let dir = tempfile::tempdir().unwrap();
        let cipher = Arc::new(SecretCipher::new(MasterKey::from_bytes([5; 32]), vec![]));
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open(&dir.path().join("db"), cipher, SyncMode::Normal).await.unwrap());
        let clock = Arc::new(ManualClock::new(keygate_proto::UnixMicros(1_767_225_600_000_000)));
        let config = ServiceConfig {
            password: PasswordParams::insecure_for_tests(),
            require_2fa_for_trading_keys: false,
            ..ServiceConfig::default()
        };
        let service = Service::start(Arc::clone(&store), clock, config).await.unwrap();
        let operator = Actor::operator_cli();
        let mut ids = Vec::new();
        for name in ["alice", "bob"] {
            service
                .create_account(&operator, name, zeroize::Zeroizing::new("correct horse battery".into()))
                .await
                .unwrap();
            for _ in 0..4 {
                let new = NewKey {
                    account: name.into(),
                    label: "k".into(),
                    material: NewKeyMaterial::Hmac,
                    permissions: Permissions::READ_ONLY,
                    restrictions: Restrictions::default(),
                    confirm_wide_ip: false,
                };
                ids.push(service.create_key(&operator, new).await.unwrap().key.api_key);
            }
        }
        for page in [1, 3, 8, 100] {
            let cache = KeyCache::default();
            warm_cache(&*store, &cache, page).await.unwrap();
            assert_eq!(cache.len(), ids.len(), "page size {page}");
            for id in &ids {
                assert!(cache.lookup(id).is_some(), "key {id} missing with page size {page}");
            }
        }
    }
}
