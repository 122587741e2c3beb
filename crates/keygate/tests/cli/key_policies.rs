//! Issue #17, item 1, as an operator meets it: the policy file and its errors, an account's
//! tightenings and their refusal to loosen, what `keys show` says a policy will do, and a sweep
//! from the CLI marking an expired key.

use crate::Sandbox;

#[test]
fn an_operator_sets_policies_tightens_an_account_and_sweeps_from_the_cli() {
    let s = Sandbox::new();
    s.account("alice");
    // A bad policy file is refused by name, before anything runs.
    std::fs::write(s.dir.path().join("bad.toml"), "unused_days = \"never\"\n").unwrap();
    s.fails(&["--key-policy", "bad.toml", "keys", "list"], "bad.toml");
    std::fs::write(s.dir.path().join("policy.toml"), "unused_days = 60\nmax_keys = 3\n").unwrap();
    let p = ["--key-policy", "policy.toml"];
    let shown = s.ok(&[&p[..], &["accounts", "policy", "alice"]].concat());
    assert!(shown.contains("disable unused keys after    60 days"), "{shown}");

    // Tighten; loosening is refused with the reason.
    let tightened = s.json(&[&p[..], &["accounts", "policy", "alice", "--unused-days", "20", "--json"]].concat());
    assert_eq!(tightened["effective"]["unused_days"], 20);
    assert_eq!(tightened["effective"]["max_keys"], 3);
    s.fails(&[&p[..], &["accounts", "policy", "alice", "--unused-days", "61"]].concat(), "would loosen");

    // The key shows what the policy will do to it, and when.
    let key = s.json(&[&p[..], &["keys", "create", "--account", "alice", "--label", "tracker", "--json"]].concat());
    let id = key["api_key"].as_str().unwrap().to_owned();
    let show = s.ok(&[&p[..], &["keys", "show", &id]].concat());
    assert!(show.contains("disabled on ") && show.contains("(unused too long)"), "{show}");

    // An expiring key, swept after its expiry: marked expired, with the reason on `keys show`.
    let soon = time::OffsetDateTime::now_utc() + time::Duration::seconds(2);
    let soon = soon.format(&time::format_description::well_known::Rfc3339).unwrap();
    let short = s.json(
        &[&p[..], &["keys", "create", "--account", "alice", "--label", "short", "--expires", &soon, "--json"]].concat(),
    );
    let short = short["api_key"].as_str().unwrap().to_owned();
    std::thread::sleep(std::time::Duration::from_millis(3_100));
    let swept = s.json(&[&p[..], &["keys", "sweep", "--json"]].concat());
    assert_eq!(swept["expired"], 1, "{swept}");
    let show = s.ok(&[&p[..], &["keys", "show", &short]].concat());
    assert!(show.contains("expired (past its expiry)"), "{show}");
    let listed = s.ok(&[&p[..], &["keys", "list"]].concat());
    assert!(listed.contains("expired") && !listed.contains("expired (expired)"), "{listed}");
    // The policy's key limit (3 in the file) holds.
    s.ok(&[&p[..], &["keys", "create", "--account", "alice", "--label", "three"]].concat());
    s.fails(
        &[&p[..], &["keys", "create", "--account", "alice", "--label", "four"]].concat(),
        "most its key policy allows",
    );
}
