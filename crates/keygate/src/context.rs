//! Where the data lives and how a command reaches it: through a running server's admin socket,
//! or by opening the store directly when no server runs.

use anyhow::{Context as _, anyhow, bail};
use keygate_service::admin::{self, AdminRequest, AdminResponse};
use keygate_service::{Actor, Assembly, ExchangeSetup, Service, StoreSource, SystemClock};
use keygate_store::crypto::{MasterKey, SecretCipher};
use keygate_store::datadir::{DataDir, DataDirLock, LockError};
use keygate_store::sqlite::SyncMode;
use std::path::PathBuf;
use std::sync::Arc;

/// Resolved locations of the data directory and the master key file.
#[derive(Debug)]
pub struct Context {
    /// The data directory.
    pub data_dir: DataDir,
    master_key_file: Option<PathBuf>,
    database_url: Option<String>,
    /// The deployment's key policies (`--key-policy FILE`, or the defaults), which commands that
    /// open the store themselves apply as `serve` does.
    key_policy: keygate_service::policy::KeyPolicy,
}

/// The default master key location: the user's config directory, outside any data directory,
/// so a copy of the data alone reveals no secret.
fn default_master_key_file() -> Option<PathBuf> {
    let config = std::env::var_os("XDG_CONFIG_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| PathBuf::from(h).join(".config")))?;
    Some(config.join("keygate").join("master.key"))
}

impl Context {
    /// A context for `data_dir`, with the master key file given or the default one.
    ///
    /// # Errors
    /// An unreadable or invalid key policy file, named.
    pub fn new(
        data_dir: PathBuf,
        master_key_file: Option<PathBuf>,
        database_url: Option<String>,
        key_policy: Option<PathBuf>,
    ) -> anyhow::Result<Self> {
        let key_policy = match key_policy.filter(|p| !p.as_os_str().is_empty()) {
            Some(path) => {
                let text = std::fs::read_to_string(&path).with_context(|| format!("cannot read {}", path.display()))?;
                keygate_service::policy::KeyPolicy::from_toml(&text).map_err(|e| anyhow!("{}: {e}", path.display()))?
            }
            None => keygate_service::policy::KeyPolicy::default(),
        };
        Ok(Self {
            data_dir: DataDir::new(data_dir),
            master_key_file: master_key_file.or_else(default_master_key_file),
            database_url: database_url.filter(|u| !u.is_empty()),
            key_policy,
        })
    }

    /// The deployment's key policies, as the policy file (or the defaults) sets them.
    #[cfg(feature = "server")]
    #[must_use]
    pub fn key_policy(&self) -> keygate_service::policy::KeyPolicy {
        self.key_policy
    }

    #[cfg(feature = "server")]
    /// True if and only if the store is a PostgreSQL database rather than the data directory's
    /// SQLite file.
    #[must_use]
    pub fn uses_postgres(&self) -> bool {
        self.database_url.is_some()
    }

    fn master_key_file(&self) -> anyhow::Result<&PathBuf> {
        self.master_key_file
            .as_ref()
            .ok_or_else(|| anyhow!("no home or config directory to keep the master key in; pass --master-key-file"))
    }

    /// Takes the data directory's lock for `holder`.
    ///
    /// # Errors
    /// [`LockError`] when another process holds it.
    pub fn lock(&self, holder: &str) -> Result<DataDirLock, LockError> {
        self.data_dir.try_lock(holder)
    }

    /// What to start on this context's data: its store, with the default policy. The caller
    /// adds the exchange, a policy or background tasks, and must hold the data directory lock
    /// while it runs.
    ///
    /// # Errors
    /// A missing or unreadable master key file, with the path concerned.
    pub fn assembly(&self, sync: SyncMode) -> anyhow::Result<Assembly> {
        let key_file = self.master_key_file()?;
        let database = self.data_dir.database();
        if self.database_url.is_none() && database.exists() && !key_file.exists() {
            // A new master key would seal new secrets under a key the existing data does not know,
            // and the next start would fail on them: refuse, and say where to look.
            bail!(
                "{} holds data sealed with a master key, but the master key file {} does not exist; point --master-key-file (or KEYGATE_MASTER_KEY_FILE) at the file that was used with it",
                database.display(),
                key_file.display()
            );
        }
        let master = MasterKey::load_or_create(key_file)?;
        let cipher = Arc::new(SecretCipher::new(master, Vec::new()));
        let store = StoreSource::Open { database_url: self.database_url.clone(), sqlite_path: database, cipher, sync };
        let config = keygate_service::ServiceConfig { key_policy: self.key_policy, ..Default::default() };
        Ok(Assembly::new(store, Arc::new(SystemClock)).config(config))
    }

    /// This command's part among the nodes of a PostgreSQL deployment: it writes the exchange
    /// itself when no node does, and otherwise sends its commands to the node that does (a
    /// build without the server cannot, and says so when it would have to).
    fn cli_node(&self) -> keygate_service::cluster::ClusterSetup {
        #[cfg(feature = "server")]
        let forward =
            keygate_server::cluster::HttpForward::new(std::sync::Arc::new(keygate_service::clock::SystemClock))
                .ok()
                .map(|f| std::sync::Arc::new(f) as std::sync::Arc<dyn keygate_service::cluster::Forward>);
        #[cfg(not(feature = "server"))]
        let forward = None;
        keygate_service::cluster::ClusterSetup {
            node: format!("cli-{}", std::process::id()),
            endpoint: String::new(),
            forward,
        }
    }

    /// Starts what `assembly` describes, saying which database failed to open.
    ///
    /// # Errors
    /// Database, migration, key cache or exchange replay failures.
    pub async fn start(&self, assembly: Assembly) -> anyhow::Result<Service> {
        assembly.start().await.with_context(|| match &self.database_url {
            Some(_) => "opening the PostgreSQL database".to_owned(),
            None => format!("opening the database in {}", self.data_dir.path().display()),
        })
    }

    /// Runs an admin request: through the server when one holds the data directory, otherwise
    /// directly on the store (holding the lock meanwhile, so no server starts underneath).
    ///
    /// # Errors
    /// The service's refusal or a failure to reach the data.
    pub async fn dispatch(&self, req: AdminRequest) -> anyhow::Result<serde_json::Value> {
        // Only creating an account may start a data directory; anything else on a directory that
        // does not exist is a typo or the wrong working directory, not an empty keygate.
        if !matches!(req, AdminRequest::AccountCreate { .. }) && !self.data_dir.path().exists() {
            bail!(
                "no keygate data directory at {}; pass --data-dir (or KEYGATE_DATA_DIR), or create it with \
                 `keygate serve` or `keygate accounts create`",
                self.data_dir.path().display()
            );
        }
        match self.lock("keygate cli") {
            Ok(lock) => {
                let mut assembly = self.assembly(SyncMode::Normal)?;
                if req.needs_engine() {
                    assembly =
                        assembly.exchange(ExchangeSetup { cluster: self.cli_node(), ..ExchangeSetup::default() });
                }
                let service = self.start(assembly).await?;
                let result = admin::execute(&service, &Actor::operator_cli(), req).await;
                service.shutdown().await;
                drop(lock);
                Ok(result?)
            }
            Err(LockError::Held { .. }) => {
                let socket = self.data_dir.admin_socket();
                let answer = admin::call(&socket, &req).await.with_context(|| {
                    format!(
                        "a keygate server holds {} but its admin socket {} does not answer",
                        self.data_dir.path().display(),
                        socket.display()
                    )
                })?;
                match answer {
                    AdminResponse::Ok(v) => Ok(v),
                    AdminResponse::Error { message, .. } => bail!("{message}"),
                }
            }
            Err(e) => Err(e.into()),
        }
    }
}
