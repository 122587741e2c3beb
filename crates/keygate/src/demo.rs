//! `keygate serve --demo`: a sandbox ready to use in one command. A funded `demo` account, a
//! read-only HMAC key, a trading HMAC key and an Ed25519 trading key, written with the console
//! login to `<data-dir>/demo-keys.json` (mode 0600) for scripts: the one place keygate writes
//! secrets in clear (DESIGN.md section 7), which is why the demo only listens on loopback.
//!
//! Everything is done by the system actor (`system:demo` in the audit log, keys marked
//! `created_by: system`). A restart reuses the account and every key still active in the store,
//! and rewrites only `base_url`; `--demo-reset` starts a fresh sandbox.

use crate::context::Context;
use anyhow::{Context as _, bail};
use keygate_auth::{KeyStatus, Permission, Permissions, Restrictions};
use keygate_proto::AccountId;
use keygate_service::{Actor, DepositRequest, NewKey, NewKeyMaterial, Service, ServiceError};
use serde::{Deserialize, Serialize};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use zeroize::{Zeroize as _, Zeroizing};

/// The demo account's name (also its console login).
pub const ACCOUNT: &str = "demo";
/// The file scripts read the demo keys from.
pub const KEYS_FILE: &str = "demo-keys.json";
/// The Ed25519 key's private key, next to the keys file.
const ED25519_FILE: &str = "demo-ed25519.pem";

/// The demo's keys: label, type, and whether they trade.
const KEYS: [(&str, &str, bool); 3] =
    [("demo-read", "hmac", false), ("demo-trade", "hmac", true), ("demo-ed25519", "ed25519", true)];

/// `demo-keys.json`.
#[derive(Debug, Serialize, Deserialize)]
struct DemoFile {
    base_url: String,
    account: String,
    console: Console,
    keys: Vec<DemoKey>,
}

/// The console login.
#[derive(Serialize, Deserialize)]
struct Console {
    url: String,
    account: String,
    password: String,
}

/// Hides the password, so a `{:?}` or a tracing field can never print it.
impl std::fmt::Debug for Console {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Console")
            .field("url", &self.url)
            .field("account", &self.account)
            .field("password", &"<hidden>")
            .finish()
    }
}

/// One key as scripts need it.
#[derive(Serialize, Deserialize)]
struct DemoKey {
    label: String,
    #[serde(rename = "type")]
    key_type: String,
    api_key: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    secret: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    private_key_file: Option<PathBuf>,
    permissions: Vec<String>,
}

/// Hides the HMAC secret, so a `{:?}` or a tracing field can never print it.
impl std::fmt::Debug for DemoKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoKey")
            .field("label", &self.label)
            .field("key_type", &self.key_type)
            .field("api_key", &self.api_key)
            .field("secret", &self.secret.as_ref().map(|_| "<hidden>"))
            .field("private_key_file", &self.private_key_file)
            .field("permissions", &self.permissions)
            .finish()
    }
}

impl Drop for DemoFile {
    fn drop(&mut self) {
        self.console.password.zeroize();
        for k in &mut self.keys {
            k.secret.zeroize();
        }
    }
}

/// A prepared demo: the account and keys exist; [`Demo::write`] records them once the port is
/// known.
#[derive(Debug)]
pub struct Demo {
    file: DemoFile,
    path: PathBuf,
}

/// The data directory as an absolute path, so the file's paths work from any directory.
fn absolute_dir(ctx: &Context) -> anyhow::Result<PathBuf> {
    std::path::absolute(ctx.data_dir.path())
        .with_context(|| format!("cannot resolve {}", ctx.data_dir.path().display()))
}

/// Wipes the sandbox in `ctx`'s data directory for `--demo-reset`. Deletes only the files keygate
/// writes (database, its journal files, the demo files), and only in a directory that holds a
/// demo: a data directory without `demo-keys.json` is someone's real sandbox and is refused.
/// The caller holds the data directory's lock.
///
/// # Errors
/// A PostgreSQL database (shared, never dropped from here), a directory that is not a demo, or a
/// file that cannot be removed.
pub fn reset(ctx: &Context) -> anyhow::Result<()> {
    let dir = ctx.data_dir.path();
    if ctx.uses_postgres() {
        bail!("--demo-reset works only on the embedded store; it never drops a PostgreSQL database");
    }
    let keys = dir.join(KEYS_FILE);
    let database = ctx.data_dir.database();
    if !database.exists() {
        return Ok(());
    }
    if !keys.exists() {
        bail!(
            "{} holds a keygate sandbox that is not a demo (no {KEYS_FILE}); --demo-reset deletes only demo data. \
             Use another --data-dir for the demo",
            dir.display()
        );
    }
    let mut files = vec![keys, dir.join(ED25519_FILE)];
    for suffix in ["", "-wal", "-shm", "-journal"] {
        let mut p = database.clone().into_os_string();
        p.push(suffix);
        files.push(PathBuf::from(p));
    }
    for f in files {
        match std::fs::remove_file(&f) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(e).with_context(|| format!("cannot remove {}", f.display())),
        }
    }
    Ok(())
}

/// Sets up (or finds again) the demo account, its funds and its keys.
///
/// # Errors
/// An unreadable `demo-keys.json`, or a service, engine or file failure.
pub async fn prepare(ctx: &Context, service: &Service) -> anyhow::Result<Demo> {
    let system = Actor::System { policy: "demo".into() };
    let dir = absolute_dir(ctx)?;
    let path = dir.join(KEYS_FILE);
    let previous: Option<DemoFile> = match std::fs::read(&path) {
        Ok(bytes) => {
            let bytes = Zeroizing::new(bytes);
            Some(serde_json::from_slice(&bytes).with_context(|| {
                format!("{} is not a demo keys file; remove it or start over with --demo-reset", path.display())
            })?)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("cannot read {}", path.display())),
    };
    let account = match service.account(&system, ACCOUNT).await {
        Ok(a) if previous.is_some() || created_by_demo(service, &system).await? => AccountId(a.id),
        Ok(_) => bail!(
            "this sandbox has an account named {ACCOUNT:?} that the demo did not create; --demo would take it over \
             (new keys, a new password). Use another --data-dir for the demo"
        ),
        Err(ServiceError::NotFound(_)) => {
            // Without a console password: the one set below is then its first, not a change,
            // and locks no withdrawals (issue #19).
            let a = service.create_account_without_password(&system, ACCOUNT).await?;
            fund(service, &system).await?;
            AccountId(a.id)
        }
        Err(e) => return Err(e.into()),
    };
    // The console password: the recorded one, or (first run, or a lost file) a new one.
    let password = match previous.as_ref().map(|p| p.console.password.clone()) {
        Some(p) if service.check_password(ACCOUNT, Zeroizing::new(p.clone())).await?.is_some() => Zeroizing::new(p),
        _ => {
            let p = random_password()?;
            service.set_password(&system, ACCOUNT, p.clone()).await?;
            p
        }
    };
    let mut keys = Vec::new();
    for (label, key_type, trades) in KEYS {
        let old = previous.as_ref().and_then(|p| p.keys.iter().find(|k| k.label == label && k.key_type == key_type));
        if let Some(old) = old
            && still_usable(service, &system, account, old).await
        {
            keys.push(DemoKey {
                label: old.label.clone(),
                key_type: old.key_type.clone(),
                api_key: old.api_key.clone(),
                secret: old.secret.clone(),
                private_key_file: old.private_key_file.clone(),
                permissions: old.permissions.clone(),
            });
            continue;
        }
        keys.push(create_key(service, &system, &dir, label, key_type, trades).await?);
    }
    // Demo keys the file no longer lists (a lost file, a replaced key) are revoked: nobody can
    // read their secrets any more, and they would pile up towards the per-account key limit.
    for k in service.list_keys(&system, Some(ACCOUNT)).await? {
        let ours = KEYS.iter().any(|(label, _, _)| *label == k.label);
        if ours && k.status != KeyStatus::Revoked && !keys.iter().any(|d| d.api_key == k.api_key) {
            service.revoke_key(&system, &k.api_key).await?;
        }
    }
    let file = DemoFile {
        base_url: String::new(),
        account: ACCOUNT.to_owned(),
        console: Console { url: String::new(), account: ACCOUNT.to_owned(), password: password.to_string() },
        keys,
    };
    Ok(Demo { file, path })
}

/// True if and only if the audit log says the `demo` account was created by the demo (for a
/// restart that finds the account but lost `demo-keys.json`).
async fn created_by_demo(service: &Service, system: &Actor) -> anyhow::Result<bool> {
    let target = format!("account:{ACCOUNT}");
    let mut after = 0;
    loop {
        let page = service.audit_log(system, after, 10_000).await?;
        let Some(last) = page.last() else { return Ok(false) };
        after = last.seq;
        if let Some(r) = page.iter().find(|r| r.action == "account.create" && r.target == target) {
            return Ok(r.actor == system.label());
        }
    }
}

/// True if and only if `key` is still the demo account's, active, and its secret or private key
/// file is at hand.
async fn still_usable(service: &Service, system: &Actor, account: AccountId, key: &DemoKey) -> bool {
    let material = match key.key_type.as_str() {
        "hmac" => key.secret.is_some(),
        _ => key.private_key_file.as_ref().is_some_and(|f| f.is_file()),
    };
    match service.key(system, &key.api_key).await {
        Ok(k) => material && k.status == KeyStatus::Active && k.account_id == account.0,
        Err(_) => false,
    }
}

async fn create_key(
    service: &Service,
    system: &Actor,
    dir: &Path,
    label: &str,
    key_type: &str,
    trades: bool,
) -> anyhow::Result<DemoKey> {
    let permissions = if trades { Permissions::with(&[Permission::Trade]) } else { Permissions::READ_ONLY };
    let (material, private_key) = if key_type == "hmac" {
        (NewKeyMaterial::Hmac, None)
    } else {
        let (private_pem, public_pem) = crate::keygen::pair()?;
        (NewKeyMaterial::Ed25519(public_pem), Some(private_pem))
    };
    let new = NewKey {
        account: ACCOUNT.into(),
        label: label.into(),
        material,
        permissions,
        restrictions: Restrictions::default(),
        confirm_wide_ip: false,
    };
    let created = service.create_key(system, new).await?;
    let private_key_file = match private_key {
        Some(pem) => {
            let f = dir.join(ED25519_FILE);
            write_private(&f, pem.as_bytes())?;
            Some(f)
        }
        None => None,
    };
    let permissions = serde_json::to_value(created.key.permissions)?;
    Ok(DemoKey {
        label: label.to_owned(),
        key_type: key_type.to_owned(),
        api_key: created.key.api_key.clone(),
        secret: created.secret.as_ref().map(|s| s.expose().to_owned()),
        private_key_file,
        permissions: serde_json::from_value(permissions)?,
    })
}

/// Generous sandbox funds in every asset the exchange has, deposited once, when the account is
/// created (by the system, each with its audit record in its journal entry's transaction).
async fn fund(service: &Service, system: &Actor) -> anyhow::Result<()> {
    let engine = service.engine()?;
    let coins = engine.query(|ex| ex.config().assets.iter().map(|a| a.coin.clone()).collect::<Vec<_>>()).await?;
    for coin in coins {
        let amount = match coin.as_str() {
            "BTC" => "10",
            "ETH" => "100",
            "USDT" | "USDC" | "FDUSD" | "BUSD" => "1000000",
            _ => "1000",
        };
        let deposit = DepositRequest {
            account: ACCOUNT.into(),
            asset: coin.as_str().into(),
            amount: amount.into(),
            network: None,
        };
        service.deposit(system, deposit).await?;
    }
    Ok(())
}

fn random_password() -> anyhow::Result<Zeroizing<String>> {
    let mut raw = Zeroizing::new([0u8; 16]);
    getrandom::getrandom(raw.as_mut_slice()).context("no system randomness")?;
    Ok(Zeroizing::new(raw.iter().map(|b| format!("{b:02x}")).collect()))
}

/// Writes `bytes` to `path` atomically: a 0600 temporary file beside it (0600 from creation, so
/// the secret is never readable by others, not even briefly), synced, then renamed over.
fn write_private(path: &Path, bytes: &[u8]) -> anyhow::Result<()> {
    let dir = path.parent().context("a file path has a parent")?;
    let name = path.file_name().context("a file path has a name")?.to_string_lossy();
    let tmp = dir.join(format!(".{name}.tmp"));
    let _ = std::fs::remove_file(&tmp);
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .with_context(|| format!("cannot create {}", tmp.display()))?;
    f.write_all(bytes).and_then(|()| f.sync_all()).with_context(|| format!("cannot write {}", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("cannot rename {} to {}", tmp.display(), path.display()))?;
    if let Ok(d) = std::fs::File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

impl Demo {
    /// Records the keys with `base_url` (the server's address for this run) in `demo-keys.json`
    /// and returns the file's path.
    ///
    /// # Errors
    /// When the file cannot be written.
    pub fn write(&mut self, base_url: &str) -> anyhow::Result<&Path> {
        self.file.base_url = base_url.to_owned();
        self.file.console.url = format!("{base_url}/console/");
        let json = Zeroizing::new(serde_json::to_vec_pretty(&self.file)?);
        write_private(&self.path, &json)?;
        Ok(&self.path)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_output_hides_the_password_and_secrets() {
        let file = DemoFile {
            base_url: "http://127.0.0.1:8080".into(),
            account: "demo".into(),
            console: Console {
                url: "http://127.0.0.1:8080/console/".into(),
                account: "demo".into(),
                password: "console-password-123".into(),
            },
            keys: vec![DemoKey {
                label: "demo-trade".into(),
                key_type: "hmac".into(),
                api_key: "kg_demo".into(),
                secret: Some("hmac-secret-456".into()),
                private_key_file: None,
                permissions: vec!["TRADE".into()],
            }],
        };
        let demo = Demo { file, path: PathBuf::from("/tmp/demo-keys.json") };
        let shown = format!("{demo:?} {demo:#?}");
        assert!(!shown.contains("console-password-123") && !shown.contains("hmac-secret-456"), "{shown}");
        assert!(shown.contains("<hidden>") && shown.contains("kg_demo"), "{shown}");
    }
}
