//! The real `keygate` binary, run as a user would, each test in a fresh directory.

// Tests fail loudly by design; the wall clock stamps requests to a real server.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::disallowed_methods)]

mod access_log;
mod apps;
mod cluster;
mod demo;
mod durability;
mod holder;
mod key_policies;
mod nodes;
mod replay;
mod shared_limits;
mod signup;
mod store_faults;
mod webhooks_nodes;

use std::io::{BufRead as _, BufReader, Write as _};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

/// Held by the tests that run several servers on one PostgreSQL database: each measures
/// latencies that two of them running at once on a small machine would distort.
static SEVERAL_SERVERS: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// A fresh directory with its own data directory and master key file.
struct Sandbox {
    dir: tempfile::TempDir,
}

impl Sandbox {
    fn new() -> Self {
        Self { dir: tempfile::tempdir().unwrap() }
    }

    fn data(&self) -> PathBuf {
        self.dir.path().join("data")
    }

    fn master_key(&self) -> PathBuf {
        self.dir.path().join("config").join("master.key")
    }

    fn command(&self, args: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_keygate"));
        c.args(args)
            .current_dir(self.dir.path())
            .env("KEYGATE_DATA_DIR", self.data())
            .env("KEYGATE_MASTER_KEY_FILE", self.master_key())
            .env_remove("RUST_LOG");
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.command(args).stdin(Stdio::null()).output().unwrap()
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.status.success(), "{args:?} failed: {}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap()
    }

    fn json(&self, args: &[&str]) -> serde_json::Value {
        serde_json::from_str(&self.ok(args)).unwrap()
    }

    fn fails(&self, args: &[&str], message: &str) {
        let out = self.run(args);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded");
        assert!(stderr.contains(message), "{args:?}: expected {message:?} in {stderr:?}");
        assert!(!stderr.contains("panicked"), "{stderr}");
    }

    fn account(&self, name: &str) {
        let mut child = self
            .command(&["accounts", "create", name, "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        child.stdin.take().unwrap().write_all(b"correct horse battery\n").unwrap();
        assert!(child.wait().unwrap().success());
    }

    /// Starts `keygate serve` on a free port; returns the process and its base URL.
    fn serve(&self, log: &str) -> (Child, String) {
        self.serve_with(&[], log)
    }

    /// Starts `keygate serve --listen 127.0.0.1:0` with `extra` flags; returns the process and its
    /// base URL.
    fn serve_with(&self, extra: &[&str], log: &str) -> (Child, String) {
        let mut args = vec!["serve", "--listen", "127.0.0.1:0"];
        args.extend_from_slice(extra);
        let mut child = self
            .command(&args)
            .env("RUST_LOG", log)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
        let url =
            line.trim().strip_prefix("keygate listening on ").expect("the bound address is printed first").to_owned();
        (child, url)
    }
}

/// A server process killed when dropped: a test that fails half-way leaves no server behind
/// holding database connections (several-node tests run many).
struct Reaped(Option<Child>);

impl Reaped {
    /// Stops it as an operator would (SIGTERM) and returns its stderr.
    fn stop(mut self) -> String {
        stop(self.0.take().unwrap())
    }

    /// Its process id.
    fn pid(&self) -> u32 {
        self.0.as_ref().map_or(0, Child::id)
    }

    /// Kills it with SIGKILL and waits for it.
    fn kill(&mut self) {
        if let Some(mut child) = self.0.take() {
            child.kill().unwrap();
            child.wait().unwrap();
        }
    }
}

impl Drop for Reaped {
    fn drop(&mut self) {
        if let Some(mut child) = self.0.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

fn stop(child: Child) -> String {
    let status = Command::new("kill").args(["-TERM", &child.id().to_string()]).status().unwrap();
    assert!(status.success());
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "server exited with {:?}", out.status);
    String::from_utf8_lossy(&out.stderr).into_owned()
}

fn all_bytes(dir: &Path) -> Vec<u8> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).unwrap() {
        let p = entry.unwrap().path();
        if p.is_file() {
            out.extend(std::fs::read(&p).unwrap());
        }
    }
    out
}

fn contains(hay: &[u8], needle: &[u8]) -> bool {
    hay.windows(needle.len()).any(|w| w == needle)
}

fn system_time() -> keygate_client::TimeSource {
    std::sync::Arc::new(|| {
        let d = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        keygate_proto::UnixMillis(u64::try_from(d.as_millis()).unwrap())
    })
}

#[test]
fn creates_an_account_and_a_key_with_every_restriction_as_json() {
    let s = Sandbox::new();
    s.account("alice");
    // A withdraw key must expire within 365 days (the default key policy): 200 days from now, at
    // midnight UTC.
    let day = time::OffsetDateTime::now_utc().date() + time::Duration::days(200);
    let at = day.midnight().assume_utc();
    let expires = at.format(&time::format_description::well_known::Rfc3339).unwrap();
    let expires_ms = u64::try_from(at.unix_timestamp()).unwrap() * 1000;
    let k = s.json(&[
        "keys",
        "create",
        "--account",
        "alice",
        "--label",
        "bot",
        "--permissions",
        "read,trade,withdraw",
        "--ip",
        "203.0.113.0/24",
        "--ip",
        "2001:db8::/32",
        "--symbols",
        "BTCUSDT,ETHUSDT",
        "--expires",
        &expires,
        "--withdraw-address",
        "bc1qexample",
        "--withdraw-address",
        "0xabc",
        "--withdraw-limit-24h",
        "0.5",
        "BTC",
        "--json",
    ]);
    assert!(k["api_key"].as_str().unwrap().starts_with("kg_"));
    assert!(k["secret"].as_str().unwrap().starts_with("kgs_"));
    assert_eq!(k["permissions"], serde_json::json!(["read", "trade", "withdraw"]));
    assert_eq!(k["ip_allowlist"], serde_json::json!(["203.0.113.0/24", "2001:db8::/32"]));
    assert_eq!(k["symbols"], serde_json::json!(["BTCUSDT", "ETHUSDT"]));
    assert_eq!(k["withdraw_addresses"], serde_json::json!(["bc1qexample", "0xabc"]));
    assert_eq!(k["withdraw_limit_24h"], serde_json::json!({"asset": "BTC", "amount": "0.50000000"}));
    assert_eq!(k["expires_at"], expires_ms);
    assert_eq!(k["created_by"], "operator");
    let id = k["api_key"].as_str().unwrap();
    let shown = s.json(&["keys", "show", id, "--json"]);
    assert!(shown.get("secret").is_none(), "the secret is shown once, at creation");
    let listed = s.json(&["keys", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 1);
    let table = s.ok(&["keys", "list"]);
    assert!(table.contains(id) && table.contains("read,trade,withdraw"), "{table}");
}

#[test]
fn bad_input_gets_a_clear_message_a_failing_exit_and_changes_nothing() {
    let s = Sandbox::new();
    s.account("alice");
    let missing = s.dir.path().join("nope.pem");
    let missing = missing.to_str().unwrap();
    let not_a_key = s.dir.path().join("garbage.pem");
    std::fs::write(&not_a_key, "hello").unwrap();
    let not_a_key = not_a_key.to_str().unwrap();
    s.fails(&["keys", "create", "--account", "alice", "--permissions", "read,admin"], "unknown permission \"admin\"");
    s.fails(
        &["keys", "create", "--account", "alice", "--ip", "10.0.0.300/8"],
        "is not an IPv4/IPv6 address or CIDR range",
    );
    s.fails(&["keys", "create", "--account", "alice", "--ip", "10.0.0.1/8"], "did you mean 10.0.0.0/8?");
    s.fails(&["keys", "create", "--account", "alice", "--ed25519-public-key", missing], "cannot read public key file");
    s.fails(&["keys", "create", "--account", "alice", "--ed25519-public-key", not_a_key], "not an Ed25519 public key");
    s.fails(&["keys", "create", "--account", "alice", "--rsa-public-key", not_a_key], "not an RSA public key");
    s.fails(&["keys", "create", "--account", "alice", "--permissions", "withdraw"], "needs an IP allowlist");
    s.fails(&["keys", "create", "--account", "alice", "--expires", "tomorrow"], "is not a time like");
    s.fails(&["keys", "create", "--account", "nobody"], "not found");
    s.fails(&["keys", "create", "--account", "alice", "--withdraw-limit-24h", "1e-5", "BTC"], "withdrawal limit");
    assert_eq!(s.json(&["keys", "list", "--json"]), serde_json::json!([]));
    let audit = s.json(&["audit", "list", "--json"]);
    assert_eq!(audit.as_array().unwrap().len(), 1, "only the account creation was recorded: {audit}");
}

#[test]
fn keygen_writes_an_lf_pkcs8_pair_whose_public_key_registers() {
    use std::os::unix::fs::PermissionsExt as _;
    let s = Sandbox::new();
    s.account("alice");
    let key = s.dir.path().join("bot.pem");
    s.ok(&["keys", "keygen", "--out", key.to_str().unwrap()]);
    let private = std::fs::read_to_string(&key).unwrap();
    assert!(private.starts_with("-----BEGIN PRIVATE KEY-----\n") && !private.contains('\r'));
    assert!(private.len() <= 120, "ccxt and python-binance detect Ed25519 by PEM length <= 120");
    assert_eq!(std::fs::metadata(&key).unwrap().permissions().mode() & 0o777, 0o600);
    s.fails(&["keys", "keygen", "--out", key.to_str().unwrap()], "already exists");
    let public = format!("{}.pub", key.display());
    let k = s.json(&["keys", "create", "--account", "alice", "--ed25519-public-key", &public, "--json"]);
    assert_eq!(k["type"], "ed25519");
    assert!(k["secret"].is_null());
    let rsa = concat!(env!("CARGO_MANIFEST_DIR"), "/../keygate-auth/tests/it/fixtures/rsa2048_public.pem");
    let r = s.json(&["keys", "create", "--account", "alice", "--rsa-public-key", rsa, "--json"]);
    assert_eq!(r["type"], "rsa");
}

#[test]
fn the_data_directory_holds_no_secret_in_plain_text() {
    let s = Sandbox::new();
    s.account("alice");
    let k = s.json(&["keys", "create", "--account", "alice", "--json"]);
    let secret = k["secret"].as_str().unwrap();
    let data = all_bytes(&s.data());
    assert!(!data.is_empty());
    assert!(!contains(&data, secret.as_bytes()), "secret found in the data directory");
    assert!(!contains(&data, &secret.as_bytes()[4..20]), "part of the secret found in the data directory");
    assert!(contains(&data, k["api_key"].as_str().unwrap().as_bytes()), "the scan reads the database");
    assert!(!s.master_key().starts_with(s.data()), "the master key lives outside the data directory");
}

#[test]
fn non_loopback_listen_without_tls_is_refused() {
    let s = Sandbox::new();
    s.fails(&["serve", "--listen", "0.0.0.0:0"], "refusing to listen on 0.0.0.0:0 without TLS");
}

#[test]
fn a_trusted_proxy_network_covering_everyone_is_refused() {
    let s = Sandbox::new();
    // The allowlist parser's own floor (/8, /16 for IPv6) already refuses them, before anything
    // is served: any client in such a network could choose the address keygate sees.
    for net in ["0.0.0.0/0", "::/0", "128.0.0.0/1", "::ffff:0:0/96", "2000::/3"] {
        s.fails(&["serve", "--trusted-proxy", net], "too broad");
    }
}

#[test]
fn tls_files_that_cannot_be_read_are_named() {
    let s = Sandbox::new();
    s.fails(
        &["serve", "--listen", "0.0.0.0:0", "--tls-cert", "/nonexistent/cert.pem", "--tls-key", "/nonexistent/key.pem"],
        "cannot read /nonexistent/cert.pem",
    );
    s.fails(&["serve", "--tls-cert", "/nonexistent/cert.pem"], "--tls-key");
}

#[tokio::test]
async fn with_a_server_running_the_cli_goes_through_its_admin_socket_and_revocation_is_immediate() {
    let s = Sandbox::new();
    s.account("alice");
    let (server, url) = s.serve("trace");
    s.fails(&["serve", "--listen", "127.0.0.1:0"], "is in use by keygate serve (pid");
    let k = s.json(&["keys", "create", "--account", "alice", "--json"]);
    let id = k["api_key"].as_str().unwrap();
    let client = keygate_client::Client::new(
        url,
        id,
        keygate_client::Signer::hmac(k["secret"].as_str().unwrap()),
        system_time(),
    );
    let path = "/sapi/v1/account/apiRestrictions";
    let ok = client.signed(reqwest::Method::GET, path, &[("recvWindow", "10000")]).await.unwrap();
    assert_eq!(ok.status, 200, "{:?}", ok.body);
    let q = keygate_client::signed_query(&[], client.now(), client.signer());
    let signature = q.rsplit_once("signature=").unwrap().1.to_owned();
    s.ok(&["keys", "revoke", id]);
    let refused = client.raw(reqwest::Method::GET, path, &q, "").await.unwrap();
    assert_eq!((refused.status, refused.reason.as_deref()), (401, Some("KEY_REVOKED")));
    let log = stop(server);
    assert!(log.contains("apiRestrictions"), "the trace log was captured");
    assert!(!log.contains(&signature), "a signature reached the log");
    assert!(!log.contains("timestamp="), "a signed query string reached the log");
    // Usage counters were flushed on shutdown; the store is ours again.
    let shown = s.json(&["keys", "show", id, "--json"]);
    assert_eq!(shown["use_count"], 1);
    assert_eq!(shown["status"], "revoked");
    // account, key, the key's first use from 127.0.0.1 (key.new_address, issue #17), revocation.
    assert_eq!(s.ok(&["audit", "verify"]).trim(), "Audit chain intact: 5 record(s) verified.");
}

#[test]
fn commands_other_than_account_creation_refuse_a_missing_data_directory() {
    let s = Sandbox::new();
    s.fails(&["keys", "list"], "no keygate data directory at");
    assert!(!s.data().exists(), "a typo must not create a data directory");
    s.account("alice");
    assert!(s.data().exists());
}

#[test]
fn a_database_whose_master_key_file_is_missing_is_refused_rather_than_given_a_new_key() {
    let s = Sandbox::new();
    s.account("alice");
    std::fs::remove_file(s.master_key()).unwrap();
    s.fails(&["keys", "list"], "does not exist; point --master-key-file");
    assert!(!s.master_key().exists(), "no new master key was created");
}

#[tokio::test]
async fn serve_on_postgresql_runs_end_to_end() {
    use keygate_store::conformance::{Harness as _, PgHarness};
    if let Err(why) = PgHarness::available() {
        // Straight to stderr: libtest hides a passing test's captured prints.
        let _ =
            std::io::stderr().write_all(format!("serve_on_postgresql_runs_end_to_end: skipped: {why}\n").as_bytes());
        return;
    }
    let db = PgHarness::fresh().await;
    let base = std::env::var("KEYGATE_TEST_POSTGRES_URL").unwrap();
    let (server_part, _) = base.rsplit_once('/').unwrap();
    let url = format!("{server_part}/{}", db.database());
    let s = Sandbox::new();
    let with_db = |mut c: Command| {
        c.env("KEYGATE_DATABASE_URL", &url);
        c
    };
    let mut create = with_db(s.command(&["accounts", "create", "alice", "--password-stdin"]));
    let mut child = create.stdin(Stdio::piped()).stdout(Stdio::null()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"correct horse battery\n").unwrap();
    assert!(child.wait().unwrap().success());
    let mut serve = with_db(s.command(&["serve", "--listen", "127.0.0.1:0"]));
    let mut server = serve.stdin(Stdio::null()).stdout(Stdio::piped()).stderr(Stdio::piped()).spawn().unwrap();
    let mut line = String::new();
    BufReader::new(server.stdout.as_mut().unwrap()).read_line(&mut line).unwrap();
    let url_http = line.trim().strip_prefix("keygate listening on ").unwrap().to_owned();
    let out = with_db(s.command(&["keys", "create", "--account", "alice", "--json"])).output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let k: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap();
    let id = k["api_key"].as_str().unwrap();
    let client = keygate_client::Client::new(
        url_http,
        id,
        keygate_client::Signer::hmac(k["secret"].as_str().unwrap()),
        system_time(),
    );
    let path = "/sapi/v1/account/apiRestrictions";
    assert_eq!(client.signed(reqwest::Method::GET, path, &[]).await.unwrap().status, 200);
    assert!(with_db(s.command(&["keys", "revoke", id])).output().unwrap().status.success());
    assert_eq!(client.signed(reqwest::Method::GET, path, &[]).await.unwrap().status, 401);
    stop(server);
    let out = with_db(s.command(&["audit", "verify"])).output().unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains("Audit chain intact"), "{out:?}");
}

#[test]
fn an_operator_resets_a_lost_2fa_device_and_it_is_audited() {
    let s = Sandbox::new();
    s.account("alice");
    let trade = s.json(&["keys", "create", "--account", "alice", "--permissions", "read,trade", "--json"]);
    let read = s.json(&["keys", "create", "--account", "alice", "--json"]);
    s.fails(&["accounts", "totp-reset", "nobody"], "not found");
    let out = s.ok(&["accounts", "totp-reset", "alice"]);
    assert!(out.contains("2FA of alice removed") && out.contains("keys are suspended"), "{out}");
    let status =
        |k: &serde_json::Value| s.json(&["keys", "show", k["api_key"].as_str().unwrap(), "--json"])["status"].clone();
    assert_eq!((status(&trade), status(&read)), ("disabled".into(), "active".into()));
    let audit = s.json(&["audit", "list", "--json"]);
    let actions: Vec<&str> = audit.as_array().unwrap().iter().filter_map(|r| r["action"].as_str()).collect();
    assert_eq!(
        actions,
        ["account.create", "key.create", "key.create", "key.suspend", "totp.reset", "auth.sessions_ended"],
        "{audit}"
    );
}

#[test]
fn a_reader_that_closes_the_pipe_ends_the_command_quietly() {
    let s = Sandbox::new();
    s.account("alice");
    for args in [&["audit", "list"][..], &["audit", "ledger"], &["accounts", "list", "--json"]] {
        // The read end is closed before the command starts, so its first write meets a closed
        // pipe (as `keygate audit ledger | head -0` would), whatever the timing.
        let (reader, writer) = std::io::pipe().unwrap();
        drop(reader);
        let out = s.command(args).stdin(Stdio::null()).stdout(writer).stderr(Stdio::piped()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{args:?} exited with {:?}: {stderr}", out.status);
        assert!(stderr.is_empty(), "{args:?} said something on a closed pipe: {stderr}");
    }
    // A command that shows a secret once must not end quietly when nobody read it.
    let (reader, writer) = std::io::pipe().unwrap();
    drop(reader);
    let out = s
        .command(&["keys", "create", "--account", "alice", "--label", "lost"])
        .stdin(Stdio::null())
        .stdout(writer)
        .stderr(Stdio::piped())
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "a lost secret exited 0");
    assert!(stderr.contains("secret was shown to no one") && stderr.contains("keygate keys revoke kg_"), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
}

#[test]
fn serve_caps_the_connections_of_one_address() {
    use std::io::Read as _;
    let s = Sandbox::new();
    let (child, url) = s.serve_with(&["--max-connections-per-ip", "2"], "warn");
    let addr = url.strip_prefix("http://").unwrap();
    let held: Vec<_> = (0..2).map(|_| std::net::TcpStream::connect(addr).unwrap()).collect();
    let mut third = std::net::TcpStream::connect(addr).unwrap();
    third.set_read_timeout(Some(std::time::Duration::from_secs(5))).unwrap();
    let mut buf = [0u8; 16];
    assert_eq!(third.read(&mut buf).unwrap(), 0, "the third connection from one address is closed at once");
    drop(held);
    stop(child);
}

#[test]
fn scan_finds_planted_secrets_in_files_and_in_git_history_and_exits_for_ci() {
    let s = Sandbox::new();
    s.account("alice");
    let k = s.json(&["keys", "create", "--account", "alice", "--label", "leaky", "--json"]);
    let (id, secret) = (k["api_key"].as_str().unwrap().to_owned(), k["secret"].as_str().unwrap().to_owned());
    let tree = s.dir.path().join("tree");
    std::fs::create_dir_all(tree.join("sub")).unwrap();
    std::fs::write(tree.join("clean.txt"), "kgs_notasecret kg_123 nothing to see\n".repeat(100)).unwrap();
    std::fs::write(tree.join("sub").join(".env"), format!("# bot\nKEY={id}\nSECRET={secret}\n")).unwrap();
    let scan = |args: &[&str]| s.command(&[&["scan"], args].concat()).stdin(Stdio::null()).output().unwrap();

    // Files: the secret (redacted) and the id, with their place; status 1 for a secret.
    let out = scan(&[tree.to_str().unwrap()]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains(&format!(".env:2: key id: {id}")), "{stdout}");
    assert!(stdout.contains(&format!(".env:3: SECRET (revoke its key): {}...", &secret[..8])), "{stdout}");
    assert!(!stdout.contains(&secret) && !String::from_utf8_lossy(&out.stderr).contains(&secret));
    assert_eq!(stdout.lines().count(), 2, "random look-alikes are not reported: {stdout}");
    // JSON lines.
    let out = scan(&["--json", tree.to_str().unwrap()]);
    let lines: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(lines.len(), 2);
    assert_eq!((lines[1]["kind"].as_str(), lines[1]["line"].as_u64()), (Some("secret"), Some(3)));
    // A clean tree: status 0. Key ids alone are listed but pass: they identify, never sign.
    assert_eq!(scan(&[tree.join("clean.txt").to_str().unwrap()]).status.code(), Some(0));
    std::fs::write(tree.join("ids.txt"), format!("bot key: {id}\n")).unwrap();
    let out = scan(&[tree.join("ids.txt").to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(0), "{}", String::from_utf8_lossy(&out.stdout));
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("ids.txt:1: key id: {id}")));
    // Something that cannot be read: status 2.
    assert_eq!(scan(&[tree.join("missing").to_str().unwrap()]).status.code(), Some(2));

    // Git history: committed, then deleted; the working tree is clean, the history is not.
    let repo = s.dir.path().join("repo");
    std::fs::create_dir(&repo).unwrap();
    let git = |args: &[&str]| {
        let st = Command::new("git")
            .arg("-C")
            .arg(&repo)
            .args(["-c", "user.name=t", "-c", "user.email=t@example.invalid"])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .unwrap();
        assert!(st.success(), "git {args:?}");
    };
    git(&["init", "-q"]);
    std::fs::write(repo.join("config.py"), format!("API_SECRET = '{secret}'\n")).unwrap();
    git(&["add", "."]);
    git(&["commit", "-q", "-m", "oops"]);
    std::fs::write(repo.join("config.py"), "API_SECRET = os.environ['SECRET']\n").unwrap();
    git(&["commit", "-q", "-am", "fix"]);
    assert_eq!(scan(&[repo.to_str().unwrap()]).status.code(), Some(0), "the files are clean now");
    let out = scan(&["--git", "--json", repo.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let found: Vec<serde_json::Value> =
        String::from_utf8_lossy(&out.stdout).lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    // Added in one commit, removed in the next: both patches show it.
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(found.iter().all(|f| f["file"] == "config.py" && f["commit"].as_str().is_some_and(|c| c.len() == 40)));
}
