//! Key and account operations with their policy: who may do what.
//!
//! Every operation takes an [`Actor`] and decides, from DESIGN.md section 3's rules, whether that
//! actor may perform it; every change is written together with its audit record. The HTTP server,
//! the admin channel and the CLI are thin paths into this layer, so a rule enforced here holds on
//! every path, and tests can reach every rule without HTTP.

pub mod accounts;
pub mod actor;
pub mod cache;
pub mod clock;
pub mod engine;
mod error;
pub mod keys;
pub mod password;
pub mod usage;
pub mod view;

pub use actor::Actor;
pub use cache::KeyCache;
pub use clock::{Clock, ManualClock, SystemClock};
pub use error::ServiceError;
pub use keys::{KeyEdit, NewKey, NewKeyMaterial};
pub use password::PasswordParams;
pub use view::{AccountView, AuditView, CreatedKey, KeyView};

use keygate_auth::{Entropy, EntropyError};
use keygate_store::Store;
use std::sync::Arc;
use usage::{DenialAggregator, UsageTracker};

/// Result of a service operation.
pub type ServiceResult<T> = Result<T, ServiceError>;

/// Policy switches of the service.
#[derive(Debug, Clone, Default)]
pub struct ServiceConfig {
    /// argon2id cost for passwords.
    pub password: PasswordParams,
}

/// The operating system's random number generator, the production [`Entropy`].
#[derive(Debug, Clone, Copy, Default)]
pub struct OsEntropy;

impl Entropy for OsEntropy {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), EntropyError> {
        getrandom::getrandom(dest).map_err(|_| EntropyError)
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
    /// Serialises every read-modify-write of keys in this process, so a concurrent edit can never
    /// write back a stale copy over a revocation, and the per-account key count holds.
    key_writes: tokio::sync::Mutex<()>,
}

impl Service {
    /// A service over `store`, loading every key into the in-memory cache.
    ///
    /// # Errors
    /// [`ServiceError`] if the store cannot be read or holds a key that cannot be decoded.
    pub async fn start(store: Arc<dyn Store>, clock: Arc<dyn Clock>, config: ServiceConfig) -> ServiceResult<Self> {
        let cache = Arc::new(KeyCache::default());
        cache.load(store.list_keys(None).await?)?;
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                clock,
                cache,
                config,
                usage: UsageTracker::default(),
                denials: DenialAggregator::default(),
                key_writes: tokio::sync::Mutex::new(()),
            }),
        })
    }

    /// The key cache the verifier reads.
    #[must_use]
    pub fn cache(&self) -> &Arc<KeyCache> {
        &self.inner.cache
    }

    /// The clock in force.
    #[must_use]
    pub fn clock(&self) -> &Arc<dyn Clock> {
        &self.inner.clock
    }

    /// The store, for read-only views that need no policy (health checks).
    #[must_use]
    pub fn store(&self) -> &Arc<dyn Store> {
        &self.inner.store
    }

    fn now_ms(&self) -> keygate_proto::UnixMillis {
        self.inner.clock.now().as_millis()
    }
}
