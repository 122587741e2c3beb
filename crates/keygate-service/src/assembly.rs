//! The one place that assembles a running keygate: store, service, key cache, exchange engine
//! and background tasks, in the right order. `serve`, the CLI and the test kit all start here,
//! so what one of them runs, the others run too.

use crate::engine::{Engine, EngineConfig};
use crate::{Clock, Service, ServiceConfig, ServiceResult};
use keygate_exchange::ExchangeConfig;
use keygate_store::crypto::SecretCipher;
use keygate_store::{Store, SyncMode};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

/// Where the data is.
#[derive(Debug)]
pub enum StoreSource {
    /// Open the PostgreSQL database at `database_url` when given, else the SQLite file at
    /// `sqlite_path` (see [`keygate_store::open`]).
    Open {
        /// A `postgres://` URL, or `None` for SQLite.
        database_url: Option<String>,
        /// The SQLite database file.
        sqlite_path: PathBuf,
        /// Seals secrets at rest.
        cipher: Arc<SecretCipher>,
        /// How hard commits work to reach the disk.
        sync: SyncMode,
    },
    /// A store the caller opened (tests, which open one on a temporary file).
    Opened(Arc<dyn Store>),
}

/// The sandbox exchange to run beside the key system.
#[derive(Debug, Clone, Default)]
pub struct ExchangeSetup {
    /// Markets, assets and fees (fixed with the first snapshot of a new sandbox).
    pub config: ExchangeConfig,
    /// Snapshot cadence.
    pub engine: EngineConfig,
    /// Who this node is to the other nodes of the exchange (see [`crate::cluster`]).
    pub cluster: crate::cluster::ClusterSetup,
}

/// What to start. Build with [`Assembly::new`] and the setters, then [`Assembly::start`].
#[derive(Debug)]
pub struct Assembly {
    store: StoreSource,
    clock: Arc<dyn Clock>,
    config: ServiceConfig,
    exchange: Option<ExchangeSetup>,
    flush_every: Option<Duration>,
    sweep_every: Option<Duration>,
}

impl Assembly {
    /// A key system on `store` with the default policy, no exchange and no background tasks.
    #[must_use]
    pub fn new(store: StoreSource, clock: Arc<dyn Clock>) -> Self {
        Self { store, clock, config: ServiceConfig::default(), exchange: None, flush_every: None, sweep_every: None }
    }

    /// The service's policy.
    #[must_use]
    pub fn config(mut self, config: ServiceConfig) -> Self {
        self.config = config;
        self
    }

    /// Runs the sandbox exchange too: its engine, and the task that completes withdrawals.
    #[must_use]
    pub fn exchange(mut self, setup: ExchangeSetup) -> Self {
        self.exchange = Some(setup);
        self
    }

    /// Writes usage counters every `every` in the background (a server; a one-shot CLI command
    /// writes them at [`Service::shutdown`]).
    #[must_use]
    pub fn flush_every(mut self, every: Duration) -> Self {
        self.flush_every = Some(every);
        self
    }

    /// Applies the key policies every `every` in the background (see
    /// [`crate::policy`]; a server: on the exchange's writer only when several nodes run).
    #[must_use]
    pub fn sweep_policies_every(mut self, every: Duration) -> Self {
        self.sweep_every = Some(every);
        self
    }

    /// Opens the store, loads every key into the cache, rebuilds the exchange from its journal
    /// and starts the background tasks (on a store several nodes share, the change-feed
    /// follower too). Stop it all with [`Service::shutdown`].
    ///
    /// # Errors
    /// [`crate::ServiceError::Store`] when the store cannot be opened (the message names the file or
    /// server, never a password); what [`Service::start`] and [`Engine::start`] return.
    pub async fn start(self) -> ServiceResult<Service> {
        let store = match self.store {
            StoreSource::Opened(store) => store,
            StoreSource::Open { database_url, sqlite_path, cipher, sync } => {
                keygate_store::open(database_url.as_deref(), &sqlite_path, cipher, sync).await?
            }
        };
        // Read before the key cache is loaded: a change committed in between is applied again
        // by the follower, never missed.
        let cursor = store.last_change().await?;
        let mut cluster_tasks = Vec::new();
        let engine = match self.exchange {
            Some(x) => {
                let engine = Engine::spawn(
                    Arc::clone(&store),
                    Arc::clone(&self.clock),
                    x.config,
                    x.engine,
                    x.cluster.forward.clone(),
                )
                .await?;
                cluster_tasks =
                    crate::cluster::join(engine.clone(), Arc::clone(&store), Arc::clone(&self.clock), &x.cluster)
                        .await?;
                Some(engine)
            }
            None => None,
        };
        let service = Service::start_with(store, self.clock, self.config, engine.clone()).await?;
        for task in cluster_tasks {
            service.inner.background.push(task);
        }
        service.follow_changes(cursor).await?;
        if let Some(every) = self.flush_every {
            service.spawn_flusher(every);
        }
        if let Some(every) = self.sweep_every {
            service.spawn_policy_sweeper(every, engine.clone());
        }
        if let Some(engine) = engine {
            service.spawn_withdrawal_advancer(engine);
        }
        Ok(service)
    }
}
