//! Test support: the real server, in-process, on port 0, over a real SQLite file, with a clock
//! the test moves.

use keygate_auth::{Permissions, Restrictions};
use keygate_client::{Client, Signer};
use keygate_proto::{UnixMicros, UnixMillis};
use keygate_server::serve::{ServerConfig, ServerHandle, start};
use keygate_service::{
    Actor, Assembly, CreatedKey, ExchangeSetup, ManualClock, NewKey, NewKeyMaterial, PasswordParams, Service,
    ServiceConfig, StoreSource,
};
use keygate_store::crypto::{MasterKey, SecretCipher};
use keygate_store::datadir::DataDir;
use keygate_store::sqlite::SyncMode;
use std::net::SocketAddr;
use std::sync::Arc;
use zeroize::Zeroizing;

/// The time every test app starts at: 2026-01-01T00:00:00Z.
pub const START: UnixMillis = UnixMillis(1_767_225_600_000);

/// A running keygate with its data directory, clock and service.
#[derive(Debug)]
pub struct TestApp {
    /// Bound address.
    pub addr: SocketAddr,
    /// `http://addr`.
    pub base_url: String,
    /// The metrics address, when the configuration asked for one (`metrics_listen`).
    pub metrics_addr: Option<SocketAddr>,
    /// The clock the server reads; move it to test time windows and expiry.
    pub clock: Arc<ManualClock>,
    /// The service behind the server.
    pub service: Service,
    /// The exchange engine behind the server.
    pub engine: keygate_service::engine::Engine,
    /// The data directory (a temporary directory).
    pub data_dir: DataDir,
    handle: Option<ServerHandle>,
    _tmp: tempfile::TempDir,
}

/// A fixed master key for tests.
#[must_use]
pub fn test_cipher() -> Arc<SecretCipher> {
    Arc::new(SecretCipher::new(MasterKey::from_bytes([42; 32]), Vec::new()))
}

impl TestApp {
    /// Starts a fresh app with default server settings.
    ///
    /// # Panics
    /// If the server cannot start: a test cannot proceed without it.
    pub async fn spawn() -> Self {
        Self::spawn_with(|_| {}).await
    }

    /// Starts a fresh app after letting `tune` change the server configuration.
    ///
    /// # Panics
    /// If the server cannot start.
    pub async fn spawn_with(tune: impl FnOnce(&mut ServerConfig)) -> Self {
        Self::spawn_configured(|_| {}, tune).await
    }

    /// [`TestApp::spawn_with`], with the service's policy switches tuned too (sign-up closed,
    /// holds, throttles).
    ///
    /// # Panics
    /// If the server cannot start.
    #[allow(clippy::unwrap_used)] // Test support: failing loudly is the point.
    pub async fn spawn_configured(
        tune_service: impl FnOnce(&mut ServiceConfig),
        tune: impl FnOnce(&mut ServerConfig),
    ) -> Self {
        let tmp = tempfile::tempdir().unwrap();
        let data_dir = DataDir::new(tmp.path().join("data"));
        data_dir.ensure().unwrap();
        let clock = Arc::new(ManualClock::new(UnixMicros(START.as_micros())));
        let store = StoreSource::Open {
            database_url: None,
            sqlite_path: data_dir.database(),
            cipher: test_cipher(),
            sync: SyncMode::Normal,
        };
        let mut service_config =
            ServiceConfig { password: PasswordParams::insecure_for_tests(), ..ServiceConfig::default() };
        tune_service(&mut service_config);
        let service = Assembly::new(store, clock.clone())
            .config(service_config)
            .exchange(ExchangeSetup::default())
            .flush_every(std::time::Duration::from_secs(1))
            .start()
            .await
            .unwrap();
        let mut config = ServerConfig {
            listen: SocketAddr::from(([127, 0, 0, 1], 0)),
            admin_socket: Some(data_dir.admin_socket()),
            ..ServerConfig::default()
        };
        tune(&mut config);
        let engine = service.engine().unwrap().clone();
        let handle = start(config, service.clone()).await.unwrap();
        let addr = handle.addr;
        Self {
            addr,
            metrics_addr: handle.metrics_addr,
            base_url: format!("http://{addr}"),
            clock,
            service,
            engine,
            data_dir,
            handle: Some(handle),
            _tmp: tmp,
        }
    }

    /// The operator actor.
    #[must_use]
    pub fn operator() -> Actor {
        Actor::operator_cli()
    }

    /// Creates an account named `name` with a fixed password.
    ///
    /// # Panics
    /// If creation fails.
    #[allow(clippy::unwrap_used)] // Test support.
    pub async fn account(&self, name: &str) -> keygate_service::AccountView {
        self.service
            .create_account(&Self::operator(), name, Zeroizing::new("correct horse battery".into()))
            .await
            .unwrap()
    }

    /// Creates an HMAC key as the operator.
    ///
    /// # Panics
    /// If creation fails.
    #[allow(clippy::unwrap_used)] // Test support.
    pub async fn hmac_key(&self, account: &str, permissions: Permissions, restrictions: Restrictions) -> CreatedKey {
        let new = NewKey {
            account: account.into(),
            label: "test".into(),
            material: NewKeyMaterial::Hmac,
            permissions,
            restrictions,
            confirm_wide_ip: false,
        };
        self.service.create_key(&Self::operator(), new).await.unwrap()
    }

    /// A client signing with `created`'s HMAC secret, stamping requests with the app's clock.
    ///
    /// # Panics
    /// If `created` has no secret.
    #[must_use]
    #[allow(clippy::expect_used)] // Test support.
    pub fn hmac_client(&self, created: &CreatedKey) -> Client {
        let secret = created.secret.as_ref().expect("an HMAC key");
        self.client(&created.key.api_key, Signer::hmac(secret.expose()))
    }

    /// A client for any key and signer, stamping requests with the app's clock.
    #[must_use]
    pub fn client(&self, api_key: &str, signer: Signer) -> Client {
        let clock = self.clock.clone();
        Client::new(
            self.base_url.clone(),
            api_key,
            signer,
            Arc::new(move || keygate_service::Clock::now(&*clock).as_millis()),
        )
    }

    /// Stops the server gracefully (flushing usage counters).
    ///
    /// # Panics
    /// If the server failed.
    #[allow(clippy::unwrap_used)] // Test support.
    pub async fn shutdown(mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown().await.unwrap();
        }
    }
}
