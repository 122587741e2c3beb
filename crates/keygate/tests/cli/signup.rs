//! `serve --signup open|closed|invite` (issue #18): a server takes no sign-ups unless asked to,
//! and with invitations only from whoever holds an unused code.

use super::{Sandbox, stop};
use crate::access_log::serve;

/// The sign-up page's answer and whether it offers the form.
async fn signup_page(url: &str) -> (u16, bool) {
    let res = reqwest::get(format!("{url}/console/signup")).await.unwrap();
    let status = res.status().as_u16();
    let body = res.text().await.unwrap();
    (status, body.contains("id=\"password\""))
}

#[tokio::test]
async fn serve_takes_no_sign_ups_unless_asked_and_the_demo_does() {
    let s = Sandbox::new();
    let (server, url, _) = serve(&s, &[]);
    assert_eq!(signup_page(&url).await, (200, false), "closed by default");
    stop(server);
    let (server, url, _) = serve(&s, &["--signup", "open"]);
    assert_eq!(signup_page(&url).await, (200, true));
    stop(server);
    let (server, url, _) = serve(&s, &["--signup", "closed", "--demo"]);
    assert_eq!(signup_page(&url).await, (200, false), "an explicit choice wins over the demo's default");
    stop(server);
    let (server, url, _) = serve(&s, &["--demo"]);
    assert_eq!(signup_page(&url).await, (200, true), "the demo takes sign-ups");
    stop(server);
}

/// Signs `name` up through the console's JSON API, presenting `invite`; the answer's status and
/// body.
async fn api_sign_up(url: &str, name: &str, invite: Option<&str>) -> (u16, String) {
    let http = reqwest::Client::new();
    let res = http.get(format!("{url}/api/console/v1/session")).send().await.unwrap();
    let cookie = res.headers()["set-cookie"].to_str().unwrap().split(';').next().unwrap().to_owned();
    let session: serde_json::Value = res.json().await.unwrap();
    let mut body = serde_json::json!({ "name": name, "password": "correct horse battery" });
    if let Some(code) = invite {
        body["invite"] = code.into();
    }
    let res = http
        .post(format!("{url}/api/console/v1/signup"))
        .header("cookie", cookie)
        .header("x-csrf-token", session["csrf_token"].as_str().unwrap())
        .json(&body)
        .send()
        .await
        .unwrap();
    (res.status().as_u16(), res.text().await.unwrap())
}

/// `keygate invites` on the store directly and through a running server's admin socket, and
/// `serve --signup invite` taking each code once.
#[tokio::test]
async fn invites_made_by_the_operator_let_one_person_each_sign_up() {
    let s = Sandbox::new();
    s.fails(&["invites", "list"], "no keygate data directory");
    s.account("alice");
    // No server: the CLI opens the store itself.
    let first = s.json(&["invites", "create", "--note", "for carol", "--expires", "1d", "--json"]);
    let code = first["code"].as_str().unwrap().to_owned();
    assert!(code.starts_with("kginv_") && code.len() == 33, "{first}");
    assert_eq!(first["status"], "unused");
    assert_eq!(first["expires_at"].as_u64().unwrap() - first["created_at"].as_u64().unwrap(), 86_400_000);
    let human = s.ok(&["invites", "create"]);
    assert!(human.contains("Invite code: kginv_") && human.contains("shown once"), "{human}");
    let listed = s.ok(&["invites", "list"]);
    assert!(listed.contains("for carol") && listed.contains("unused"), "{listed}");
    assert!(!listed.contains("kginv_"), "the list shows a code: {listed}");
    let listed = s.ok(&["invites", "list", "--json"]);
    assert!(!listed.contains("kginv_"), "the list shows a code: {listed}");
    s.fails(&["invites", "create", "--expires", "0"], "must be valid for some time");
    s.fails(&["invites", "create", "--expires", "400d"], "longer than a year");

    let (server, url, _) = serve(&s, &["--signup", "invite"]);
    let page = reqwest::get(format!("{url}/console/signup")).await.unwrap().text().await.unwrap();
    assert!(page.contains("id=\"invite\""), "the sign-up form asks for the code: {page}");
    // Through the running server's admin socket.
    let second = s.json(&["invites", "create", "--note", "for dave", "--json"]);
    let (status, body) = api_sign_up(&url, "carol", None).await;
    assert_eq!(status, 403, "{body}");
    assert!(body.contains("invitation only"), "{body}");
    let (status, body) = api_sign_up(&url, "carol", Some(&code)).await;
    assert_eq!(status, 201, "{body}");
    let (status, body) = api_sign_up(&url, "dave", Some(&code)).await;
    assert_eq!((status, body.contains("already been used")), (403, true), "{body}");
    let invites = s.json(&["invites", "list", "--json"]);
    assert_eq!(invites[0]["used_by"], "carol", "{invites}");
    assert!(invites[0]["used_at"].is_u64(), "{invites}");
    let first_id = first["id"].to_string();
    s.fails(&["invites", "revoke", &first_id], "already used by carol");
    let second_id = second["id"].to_string();
    assert!(s.ok(&["invites", "revoke", &second_id]).contains(&format!("Revoked invite {second_id}")));
    let (status, body) = api_sign_up(&url, "dave", second["code"].as_str()).await;
    assert_eq!((status, body.contains("withdrawn")), (403, true), "{body}");
    s.fails(&["invites", "revoke", "999"], "invite 999");
    let audit = s.json(&["audit", "list", "--json"]);
    let actions: Vec<&str> = audit.as_array().unwrap().iter().filter_map(|r| r["action"].as_str()).collect();
    for action in ["invite.create", "invite.redeem", "invite.revoke"] {
        assert!(actions.contains(&action), "{action} not in {actions:?}");
    }
    let text = audit.to_string();
    assert!(!text.contains(&code), "the audit log holds a code");
    stop(server);
    // After the server: the used invite stays used.
    let invites = s.json(&["invites", "list", "--json"]);
    let statuses: Vec<&str> = invites.as_array().unwrap().iter().map(|i| i["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["used", "unused", "revoked"]);
}
