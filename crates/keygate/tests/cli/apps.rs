//! `keygate apps` on the store directly (no server): register (the client secret printed once,
//! only its hash stored), list, show, verify, suspend, resume, delete, allow-developer; refusals
//! of a withdraw ceiling and of a plain-http redirect URI.

use crate::Sandbox;

#[test]
fn the_operator_registers_verifies_suspends_and_deletes_apps() {
    let s = Sandbox::new();
    s.account("alice");
    let base = [
        "apps",
        "register",
        "--name",
        "Grid Bot",
        "--homepage",
        "https://gridbot.example",
        "--publisher-domain",
        "gridbot.example",
        "--redirect-uri",
        "https://gridbot.example/cb",
    ];
    let mut args = base.to_vec();
    args.extend(["--max-permissions", "read,withdraw"]);
    s.fails(&args, "never ask for withdraw");
    let mut args = base.to_vec();
    args[9] = "http://gridbot.example/cb";
    s.fails(&args, "http is allowed only to 127.0.0.1");

    let human = s.ok(&base);
    assert!(human.contains("client_id") && human.contains("kgcs_"), "{human}");
    assert!(human.contains("shown this once"), "{human}");
    let mut args = base.to_vec();
    args.extend(["--max-permissions", "read,trade", "--client-type", "public", "--json"]);
    let public = s.json(&args);
    assert!(public["client_secret"].is_null());
    let id = public["client_id"].as_str().unwrap().to_owned();
    let listed = s.json(&["apps", "list", "--json"]);
    assert_eq!(listed.as_array().unwrap().len(), 2);
    assert!(!s.ok(&["apps", "list"]).contains("kgcs_"), "the secret is never listed");

    let shown = s.json(&["apps", "verify", &id, "--json"]);
    assert_eq!(shown["verified"], true);
    assert_eq!(s.json(&["apps", "show", &id, "--json"])["max_permissions"], serde_json::json!(["read", "trade"]));
    let suspended = s.json(&["apps", "suspend", &id, "--json"]);
    assert_eq!(suspended["app"]["status"], "suspended");
    assert_eq!(suspended["keys_revoked"], 0);
    assert_eq!(s.json(&["apps", "resume", &id, "--json"])["status"], "active");
    assert!(s.ok(&["apps", "delete", &id]).contains("deleted"));
    assert_eq!(s.json(&["apps", "list", "--json"]).as_array().unwrap().len(), 1);
    assert_eq!(s.json(&["apps", "list", "--all", "--json"]).as_array().unwrap().len(), 2);
    assert!(s.ok(&["apps", "allow-developer", "alice"]).contains("may register apps"));
    s.fails(&["apps", "allow-developer", "nobody"], "nobody");
    s.fails(&["apps", "show", "kgapp_0000000000000000"], "not found");
}
