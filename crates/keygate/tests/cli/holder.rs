//! The key holder's commands (`vault`, `check`, `portfolio`, `export`) run as a user would,
//! against a real `keygate serve`.

use super::{Reaped, Sandbox};
use std::io::Write as _;
use std::process::{Output, Stdio};

const PASS: &str = "a long vault passphrase";

/// Runs `keygate ARGS` with the sandbox's vault and `passphrase` in the environment, `stdin` piped in.
fn holder(s: &Sandbox, passphrase: &str, args: &[&str], stdin: &str) -> Output {
    let mut child = s
        .command(args)
        .env("KEYGATE_VAULT", s.dir.path().join("vault.json"))
        .env("KEYGATE_VAULT_PASSPHRASE", passphrase)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    child.stdin.take().unwrap().write_all(stdin.as_bytes()).unwrap();
    child.wait_with_output().unwrap()
}

fn ok(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "failed: {stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    String::from_utf8(out.stdout.clone()).unwrap()
}

#[test]
fn the_vault_round_trips_refuses_a_wrong_passphrase_untouched_and_execs_with_the_secret_in_the_environment() {
    let s = Sandbox::new();
    let path = s.dir.path().join("vault.json");
    ok(&holder(&s, PASS, &["vault", "init"], ""));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt as _;
        assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    }
    let again = holder(&s, PASS, &["vault", "init"], "");
    assert!(!again.status.success() && String::from_utf8_lossy(&again.stderr).contains("already exists"));
    let args = ["vault", "add", "bot", "--url", "http://127.0.0.1:9", "--api-key", "kg_bot", "--purpose", "trade"];
    ok(&holder(&s, PASS, &args, "kgs_TheSecretValue\n"));
    let on_disk = std::fs::read(&path).unwrap();
    assert!(!String::from_utf8_lossy(&on_disk).contains("kgs_TheSecretValue"));

    let list = ok(&holder(&s, PASS, &["vault", "list"], ""));
    assert!(
        list.contains("bot") && list.contains("kg_bot") && list.contains("HMAC") && list.contains("trade"),
        "{list}"
    );
    assert!(!list.contains("kgs_TheSecretValue"));

    let wrong = holder(&s, "not the passphrase", &["vault", "add", "x", "--url", "http://h", "--api-key", "k"], "s");
    assert!(!wrong.status.success());
    assert!(String::from_utf8_lossy(&wrong.stderr).contains("wrong passphrase (the vault was not changed)"));
    assert_eq!(std::fs::read(&path).unwrap(), on_disk);

    // The bot sees its credentials in its environment; keygate's own environment has none.
    let script = r#"test "$KEYGATE_API_SECRET" = kgs_TheSecretValue && echo "$KEYGATE_API_KEY $KEYGATE_BASE_URL""#;
    let out = ok(&holder(&s, PASS, &["vault", "exec", "bot", "--", "sh", "-c", script], ""));
    assert_eq!(out.trim(), "kg_bot http://127.0.0.1:9");
    // ... and never the way into the whole vault: no passphrase, no vault path.
    let env = ok(&holder(&s, PASS, &["vault", "exec", "bot", "--", "env"], ""));
    assert!(!env.contains("KEYGATE_VAULT") && !env.contains(PASS), "{env}");
    let failed = holder(&s, PASS, &["vault", "exec", "bot", "--", "sh", "-c", "exit 7"], "");
    assert_eq!(failed.status.code(), Some(7));
    let missing = holder(&s, PASS, &["vault", "exec", "bot", "--", "no-such-command-here"], "");
    assert_eq!(missing.status.code(), Some(127), "{missing:?}");
    assert!(String::from_utf8_lossy(&missing.stderr).contains("cannot run no-such-command-here"));
    // A bot killed by a signal: 128 + the signal, as a shell says.
    let killed = holder(&s, PASS, &["vault", "exec", "bot", "--", "sh", "-c", "kill -9 $$"], "");
    assert_eq!(killed.status.code(), Some(137));
    // The passphrase from standard input's first line (the option after the subcommand's name):
    // the bot gets the rest of standard input.
    let piped = holder(
        &s,
        "",
        &["vault", "exec", "--passphrase-stdin", "bot", "--", "cat"],
        &format!("{PASS}\nfor the bot\nand more\n"),
    );
    assert_eq!(ok(&piped), "for the bot\nand more\n");

    ok(&holder(&s, PASS, &["vault", "remove", "bot"], ""));
    assert!(!ok(&holder(&s, PASS, &["vault", "list", "--json"], "")).contains("bot"));
    let gone = holder(&s, PASS, &["vault", "remove", "bot"], "");
    assert!(String::from_utf8_lossy(&gone.stderr).contains("no vault entry named \"bot\""));
}

#[tokio::test]
async fn check_portfolio_and_export_work_against_a_running_keygate_and_a_dead_exchange_is_reported() {
    let s = Sandbox::new();
    s.account("alice");
    let (server, url) = s.serve("warn");
    let server = Reaped(Some(server));
    let k = s.json(&["keys", "create", "--account", "alice", "--json"]);
    let (id, secret) = (k["api_key"].as_str().unwrap(), k["secret"].as_str().unwrap());
    s.ok(&["deposit", "--account", "alice", "--asset", "USDT", "--amount", "1000"]);
    s.ok(&["deposit", "--account", "alice", "--asset", "BTC", "--amount", "0.5"]);

    ok(&holder(&s, PASS, &["vault", "init"], ""));
    ok(&holder(&s, PASS, &["vault", "add", "local", "--url", &url, "--api-key", id, "--purpose", "read"], secret));
    // Nothing listens on port 9 (discard) here: an exchange that is down.
    ok(&holder(&s, PASS, &["vault", "add", "down", "--url", "http://127.0.0.1:9", "--api-key", "kg_x"], "kgs_x"));

    // check: a read-only key without an IP allowlist is a medium finding, and so is a key never
    // used before; HMAC where keygate offers Ed25519 a low one. The default --fail-on high
    // passes; --fail-on medium fails.
    let out = holder(&s, PASS, &["check", "local", "--json"], "");
    let reports: serde_json::Value = serde_json::from_str(&ok(&out)).unwrap();
    let codes: Vec<&str> =
        reports[0]["findings"].as_array().unwrap().iter().map(|f| f["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["never-used", "no-ip-restriction", "hmac-where-ed25519-offered"]);
    let strict = holder(&s, PASS, &["check", "local", "--fail-on", "medium"], "");
    assert_eq!(strict.status.code(), Some(1));
    let table = String::from_utf8_lossy(&strict.stdout);
    assert!(table.contains("no-ip-restriction") && !table.contains(secret), "{table}");
    // Two or three: whether the first check's use is written yet decides "never-used".
    let stderr = String::from_utf8_lossy(&strict.stderr);
    assert!(
        ["2 finding(s) at or above medium", "1 finding(s) at or above medium"].iter().any(|m| stderr.contains(m)),
        "{stderr}"
    );
    // The same key given on the command line, its secret on stdin.
    let direct = holder(&s, PASS, &["check", "--url", &url, "--api-key", id, "--json"], secret);
    let findings =
        serde_json::from_str::<serde_json::Value>(&ok(&direct)).unwrap()[0]["findings"].as_array().unwrap().len();
    assert!((2..=3).contains(&findings), "{findings} findings");
    // A key the exchange does not know is critical.
    let unknown = holder(&s, PASS, &["check", "down"], "");
    assert_eq!(unknown.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&unknown.stdout).contains("critical"));
    // A failed request's message names no signed URL (its signature stays out of output).
    assert!(!String::from_utf8_lossy(&unknown.stdout).contains("signature="));

    // portfolio: USDT at 1, BTC at the exchange's BTCUSDT ticker; the dead exchange is reported.
    let ticker: serde_json::Value =
        reqwest::get(format!("{url}/api/v3/ticker/price?symbol=BTCUSDT")).await.unwrap().json().await.unwrap();
    let btc: f64 = ticker["price"].as_str().unwrap().parse().unwrap();
    let chart = s.dir.path().join("allocation.svg");
    let out = ok(&holder(&s, PASS, &["portfolio", "--json", "--chart", chart.to_str().unwrap()], ""));
    let p: serde_json::Value = serde_json::from_str(&out).unwrap();
    let total: f64 = p["total"].as_str().unwrap().parse().unwrap();
    assert!((total - (1000.0 + 0.5 * btc)).abs() < 1e-6, "{total} vs {btc}");
    assert_eq!(p["exchanges"][0]["name"], "down");
    assert!(p["exchanges"][0]["error"].as_str().is_some());
    assert!(std::fs::read_to_string(&chart).unwrap().contains("\nBTC\n</text>"));
    let text = ok(&holder(&s, PASS, &["portfolio"], ""));
    assert!(text.contains("not read:") && text.contains("All exchanges"), "{text}");
    // Only the dead exchange: nothing could be read, a failure.
    let none = holder(&s, PASS, &["portfolio", "--json"], "");
    assert!(ok(&none).contains("local"));
    let other = tempfile::tempdir().unwrap();
    let only_down = other.path().join("vault.json");
    let vault_arg = only_down.to_str().unwrap();
    ok(&holder(&s, PASS, &["vault", "init", "--vault", vault_arg], ""));
    ok(&holder(
        &s,
        PASS,
        &["vault", "add", "--vault", vault_arg, "down", "--url", "http://127.0.0.1:9", "--api-key", "kg_x"],
        "kgs_x",
    ));
    let dead = holder(&s, PASS, &["portfolio", "--vault", vault_arg], "");
    assert_eq!(dead.status.code(), Some(1), "{dead:?}");
    assert!(String::from_utf8_lossy(&dead.stderr).contains("no exchange could be read"), "{dead:?}");
    assert!(!text.contains("signature="), "{text}");

    // export: the two deposits; a second run adds nothing. The dead exchange makes it exit 1.
    let dir = s.dir.path().join("export");
    let first = holder(&s, PASS, &["export", "local", "--out", dir.to_str().unwrap(), "--since", "2026-01-01"], "");
    assert!(ok(&first).contains("local: 0 new trade(s), 2 deposit(s), 0 withdrawal(s)"));
    let second = holder(&s, PASS, &["export", "local", "--out", dir.to_str().unwrap(), "--since", "2026-01-01"], "");
    assert!(ok(&second).contains("local: 0 new trade(s), 0 deposit(s)"));
    let koinly = std::fs::read_to_string(dir.join("koinly-local.csv")).unwrap();
    assert_eq!(koinly.lines().count(), 3, "{koinly}");
    let all = holder(&s, PASS, &["export", "--out", dir.to_str().unwrap()], "");
    assert_eq!(all.status.code(), Some(1));
    assert!(
        String::from_utf8_lossy(&all.stdout)
            .contains("down: 0 new trade(s), 0 deposit(s), 0 withdrawal(s); stopped early")
    );
    // The reason, not only reqwest's "error sending request".
    assert!(String::from_utf8_lossy(&all.stdout).contains("Connection refused"), "{all:?}");

    // rotate: guidance first; a new key that does not work changes nothing; one that works
    // replaces the old one, and the owner is told to revoke the old one.
    let guide = ok(&holder(&s, PASS, &["vault", "rotate", "local"], ""));
    assert!(
        guide.contains("the old key may: read, no IP allowlist") && guide.contains("--api-key NEW_KEY_ID"),
        "{guide}"
    );
    let k2 = s.json(&["keys", "create", "--account", "alice", "--json"]);
    let (id2, secret2) = (k2["api_key"].as_str().unwrap(), k2["secret"].as_str().unwrap());
    let vault = std::fs::read(s.dir.path().join("vault.json")).unwrap();
    let same = holder(&s, PASS, &["vault", "rotate", "local", "--api-key", id], secret);
    assert!(String::from_utf8_lossy(&same.stderr).contains("already holds"), "{same:?}");
    assert_eq!(std::fs::read(s.dir.path().join("vault.json")).unwrap(), vault);
    let bad = holder(&s, PASS, &["vault", "rotate", "local", "--api-key", id2], "kgs_not_the_secret");
    assert!(!bad.status.success());
    assert!(String::from_utf8_lossy(&bad.stderr).contains("the new key does not work; the vault was not changed"));
    assert_eq!(std::fs::read(s.dir.path().join("vault.json")).unwrap(), vault);
    let rotated = ok(&holder(&s, PASS, &["vault", "rotate", "local", "--api-key", id2], secret2));
    assert!(
        rotated.contains("the new key works") && rotated.contains(&format!("revoke the old key {id}")),
        "{rotated}"
    );
    let list = ok(&holder(&s, PASS, &["vault", "list", "--json"], ""));
    assert!(list.contains(id2) && !list.contains(id), "{list}");
    drop(server);
}
