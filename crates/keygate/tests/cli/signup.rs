//! `serve --signup open|closed` (issue #18): a server takes no sign-ups unless asked to.

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
