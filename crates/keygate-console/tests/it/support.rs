//! A minimal cookie-keeping HTTP client for driving the console without a browser, and TOTP codes
//! computed from the app's clock.

use keygate_service::Clock as _;
use keygate_testkit::TestApp;
use std::collections::BTreeMap;

/// What a console answer looked like.
#[derive(Debug)]
pub struct Page {
    pub status: u16,
    pub location: Option<String>,
    pub set_cookies: Vec<String>,
    pub cache_control: Option<String>,
    pub body: String,
}

impl Page {
    /// The value of the first `name="csrf"` hidden field.
    pub fn csrf(&self) -> String {
        field_value(&self.body, "csrf").expect("a csrf field")
    }
}

/// The `value` of the first input named `name`.
pub fn field_value(html: &str, name: &str) -> Option<String> {
    let at = html.find(&format!("name=\"{name}\" value=\""))?;
    let rest = &html[at + name.len() + 15..];
    Some(rest[..rest.find('"')?].to_owned())
}

/// The text inside the element with `id`.
pub fn element_text(html: &str, id: &str) -> Option<String> {
    let at = html.find(&format!("id=\"{id}\""))?;
    let rest = &html[at..];
    let start = rest.find('>')? + 1;
    let end = rest[start..].find('<')?;
    Some(rest[start..start + end].trim().to_owned())
}

/// A browser-like client: keeps cookies, does not follow redirects.
pub struct Agent {
    pub base: String,
    pub host: Option<String>,
    http: reqwest::Client,
    pub cookies: BTreeMap<String, String>,
}

impl Agent {
    pub fn new(app: &TestApp) -> Self {
        let http = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap();
        Self { base: app.base_url.clone(), host: None, http, cookies: BTreeMap::new() }
    }

    fn cookie_header(&self) -> String {
        self.cookies.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("; ")
    }

    async fn send(&mut self, req: reqwest::RequestBuilder) -> Page {
        let mut req = req;
        if !self.cookies.is_empty() {
            req = req.header("cookie", self.cookie_header());
        }
        if let Some(h) = &self.host {
            req = req.header("host", h);
        }
        let res = req.send().await.unwrap();
        let status = res.status().as_u16();
        let header = |n: &str| res.headers().get(n).and_then(|v| v.to_str().ok()).map(str::to_owned);
        let location = header("location");
        let cache_control = header("cache-control");
        let set_cookies: Vec<String> =
            res.headers().get_all("set-cookie").iter().filter_map(|v| v.to_str().ok()).map(str::to_owned).collect();
        for c in &set_cookies {
            let pair = c.split(';').next().unwrap();
            let (k, v) = pair.split_once('=').unwrap();
            if c.contains("Max-Age=0") {
                self.cookies.remove(k);
            } else {
                self.cookies.insert(k.to_owned(), v.to_owned());
            }
        }
        let body = res.text().await.unwrap();
        Page { status, location, set_cookies, cache_control, body }
    }

    pub async fn get(&mut self, path: &str) -> Page {
        let req = self.http.get(format!("{}{path}", self.base));
        self.send(req).await
    }

    pub async fn post(&mut self, path: &str, form: &[(&str, &str)]) -> Page {
        let req = self.http.post(format!("{}{path}", self.base)).form(form);
        self.send(req).await
    }

    pub async fn post_json(&mut self, path: &str, csrf: Option<&str>, body: serde_json::Value) -> Page {
        let mut req = self.http.post(format!("{}{path}", self.base)).json(&body);
        if let Some(t) = csrf {
            req = req.header("x-csrf-token", t);
        }
        self.send(req).await
    }

    /// Signs up `name` through the pages; returns the 2FA page.
    pub async fn sign_up(&mut self, name: &str, password: &str) -> Page {
        let page = self.get("/console/signup").await;
        assert_eq!(page.status, 200, "{}", page.body);
        let csrf = page.csrf();
        let res = self
            .post(
                "/console/signup",
                &[("csrf", &csrf), ("name", name), ("password", password), ("password2", password)],
            )
            .await;
        assert_eq!(res.status, 303, "{}", res.body);
        assert_eq!(res.location.as_deref(), Some("/console/2fa"));
        self.get("/console/2fa").await
    }

    /// Enrolls TOTP; returns the base32 secret.
    pub async fn enroll_totp(&mut self, app: &TestApp) -> String {
        let page = self.get("/console/2fa").await;
        let started = self.post("/console/2fa/enroll", &[("csrf", &page.csrf())]).await;
        assert_eq!(started.status, 303, "{}", started.body);
        assert_eq!(started.location.as_deref(), Some("/console/2fa/enroll"));
        let enroll = self.get("/console/2fa/enroll").await;
        assert_eq!(enroll.status, 200, "{}", enroll.body);
        assert_eq!(enroll.cache_control.as_deref(), Some("no-store"));
        let secret = element_text(&enroll.body, "totp-secret").expect("the secret on the page");
        let code = totp(&secret, app);
        let done = self.post("/console/2fa/confirm", &[("csrf", &enroll.csrf()), ("code", &code)]).await;
        assert_eq!(done.status, 200, "{}", done.body);
        assert!(done.body.contains("recovery-codes"));
        secret
    }

    /// The CSRF token of the keys page.
    pub async fn keys_csrf(&mut self) -> String {
        let page = self.get("/console/keys").await;
        assert_eq!(page.status, 200, "{}", page.body);
        page.csrf()
    }
}

/// The TOTP code for `secret` at the app's current time.
pub fn totp(secret: &str, app: &TestApp) -> String {
    let t = totp_rs::Builder::new()
        .with_algorithm(totp_rs::Algorithm::SHA1)
        .with_digits(6)
        .with_step_duration(30)
        .with_secret(totp_rs::Secret::try_from_base32(secret).unwrap())
        .with_account_name("test")
        .build()
        .unwrap();
    t.generate(app.clock.now().as_millis().0 / 1000).to_string()
}

/// Moves the app's clock to the next 30-second TOTP step, so a fresh code exists.
pub fn next_totp_step(app: &TestApp) {
    app.clock.advance_ms(30_000);
}

pub const PASSWORD: &str = "correct horse battery staple";
