//! The HTTP client that carries webhook deliveries out of the process (the service decides what
//! to send and when; see `keygate_service::webhooks`).
//!
//! It follows no redirects (the Standard Webhooks rule: a 3xx is a failed attempt), gives up
//! after the configured timeout, reads at most a little of each answer, and, unless the operator
//! allowed private targets, connects only to public addresses: names are resolved here and every
//! non-public address is dropped before connecting, so a name that resolves (or is re-pointed)
//! to 127.0.0.1 or 169.254.169.254 cannot be used to reach the server's own network.

use async_trait::async_trait;
use keygate_auth::webhook::is_public_address;
use keygate_service::{WebhookConfig, WebhookTransport};
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

/// Webhook deliveries over HTTP(S).
#[derive(Debug, Clone)]
pub struct HttpTransport {
    client: reqwest::Client,
    allow_private: bool,
}

/// Resolves names with the system resolver, keeping public addresses only.
#[derive(Debug)]
struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let found: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let public: Vec<SocketAddr> = found.into_iter().filter(|a| is_public_address(a.ip())).collect();
            if public.is_empty() {
                return Err(format!("{host} resolves to no public address").into());
            }
            Ok(Box::new(public.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

impl HttpTransport {
    /// A client for `config`'s timeout and target rules.
    ///
    /// # Errors
    /// When the TLS client cannot be set up.
    pub fn new(config: &WebhookConfig) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .timeout(Duration::from_millis(config.timeout_ms))
            .connect_timeout(Duration::from_millis(config.timeout_ms.min(10_000)))
            .user_agent("keygate-webhooks/1")
            // Never through a proxy from the environment (HTTPS_PROXY and the like): the proxy
            // would resolve the target's name itself, past the public-address check (outside
            // review).
            .no_proxy();
        if !config.allow_private_targets {
            builder = builder.dns_resolver(Arc::new(PublicOnly));
        }
        let client = builder.build().map_err(|e| format!("webhook HTTP client: {e}"))?;
        Ok(Self { client, allow_private: config.allow_private_targets })
    }
}

#[async_trait]
impl WebhookTransport for HttpTransport {
    async fn post(&self, url: &str, headers: Vec<(&'static str, String)>, body: Vec<u8>) -> Result<u16, String> {
        let parsed = reqwest::Url::parse(url).map_err(|e| format!("bad URL: {e}"))?;
        // An address written in the URL is never resolved, so it is checked here.
        let literal = match parsed.host() {
            Some(url::Host::Ipv4(ip)) => Some(std::net::IpAddr::V4(ip)),
            Some(url::Host::Ipv6(ip)) => Some(std::net::IpAddr::V6(ip)),
            _ => None,
        };
        if !self.allow_private && literal.is_some_and(|ip| !is_public_address(ip)) {
            return Err("the target address is not public".into());
        }
        let mut request = self.client.post(parsed).body(body);
        for (name, value) in headers {
            request = request.header(name, value);
        }
        let answer = request.send().await.map_err(describe)?;
        let status = answer.status().as_u16();
        // The body is not needed; dropping the answer closes or reuses the connection.
        drop(answer);
        Ok(status)
    }
}

/// A short reason for the owner, without the URL (it may carry a token in its path).
fn describe(e: reqwest::Error) -> String {
    if e.is_timeout() {
        "timed out".into()
    } else if e.is_connect() {
        let mut source = std::error::Error::source(&e);
        let mut last = None;
        while let Some(s) = source {
            last = Some(s.to_string());
            source = s.source();
        }
        format!("could not connect: {}", last.unwrap_or_default())
    } else {
        format!("request failed: {}", e.without_url())
    }
}
