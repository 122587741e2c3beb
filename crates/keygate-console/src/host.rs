//! The `Host` header allowlist: the defence against DNS rebinding.
//!
//! A page on `evil.example` whose name is re-pointed at 127.0.0.1 can make the victim's browser
//! talk to a console listening on loopback, same-origin from the browser's point of view. The
//! browser still sends `Host: evil.example:8080`, so refusing every host the console was not
//! configured for closes that door.

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;

/// `Host` values (`name:port`, lower case) the console answers to.
#[derive(Debug, Clone, Default)]
pub struct HostAllowlist(Arc<BTreeSet<String>>);

impl HostAllowlist {
    /// The listen address, `localhost`, `127.0.0.1` and `[::1]`, each with `addr`'s port (and
    /// without a port when it is 80 or 443, as browsers then send none), plus `extra` entries
    /// (`name` or `name:port`; a name without a port is allowed on the listen port and bare).
    #[must_use]
    pub fn for_listen_addr(addr: SocketAddr, extra: &[String]) -> Self {
        let port = addr.port();
        let mut names: Vec<String> = vec!["localhost".into(), "127.0.0.1".into(), "[::1]".into()];
        names.push(match addr {
            SocketAddr::V4(a) => a.ip().to_string(),
            SocketAddr::V6(a) => format!("[{}]", a.ip()),
        });
        let mut set = BTreeSet::new();
        for n in names {
            set.insert(format!("{n}:{port}"));
            if port == 80 || port == 443 {
                set.insert(n);
            }
        }
        for e in extra {
            let e = e.trim().to_ascii_lowercase();
            if e.is_empty() {
                continue;
            }
            if has_port(&e) {
                set.insert(e);
            } else {
                set.insert(format!("{e}:{port}"));
                set.insert(e);
            }
        }
        Self(Arc::new(set))
    }

    /// True if and only if `host` (as sent, any case) is on the list.
    #[must_use]
    pub fn allows(&self, host: &str) -> bool {
        self.0.contains(&host.trim().to_ascii_lowercase())
    }

    /// The entries, for messages and docs.
    #[must_use]
    pub fn entries(&self) -> Vec<String> {
        self.0.iter().cloned().collect()
    }
}

fn has_port(host: &str) -> bool {
    let tail = if host.starts_with('[') {
        host.rsplit_once("]:").map(|(_, p)| p)
    } else {
        host.rsplit_once(':').map(|(_, p)| p)
    };
    tail.is_some_and(|p| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit()))
}

/// Refuses requests whose `Host` (HTTP/1.1) or URI authority (HTTP/2) is not allowed.
pub(crate) async fn check(State(allow): State<HostAllowlist>, req: Request, next: Next) -> Response {
    let host = req
        .headers()
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .map(str::to_owned)
        .or_else(|| req.uri().authority().map(|a| a.as_str().to_owned()));
    match host {
        Some(h) if allow.allows(&h) => next.run(req).await,
        _ => (
            StatusCode::MISDIRECTED_REQUEST,
            [(header::CONTENT_TYPE, "text/plain; charset=utf-8")],
            "This keygate console does not answer to that host name. Use the address it listens on \
             (or add the name with --console-host).\n",
        )
            .into_response(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_cover_loopback_names_with_the_port() {
        let a = HostAllowlist::for_listen_addr("127.0.0.1:8080".parse().unwrap(), &[]);
        for ok in ["127.0.0.1:8080", "localhost:8080", "LOCALHOST:8080", "[::1]:8080"] {
            assert!(a.allows(ok), "{ok}");
        }
        for bad in ["evil.example:8080", "localhost", "127.0.0.1:8081", "localhost.evil.example:8080", ""] {
            assert!(!a.allows(bad), "{bad}");
        }
    }

    #[test]
    fn extra_names_without_port_are_allowed_bare_and_on_the_listen_port() {
        let a = HostAllowlist::for_listen_addr(
            "0.0.0.0:8443".parse().unwrap(),
            &["keys.example.com".into(), "other.example:9000".into()],
        );
        assert!(a.allows("keys.example.com"));
        assert!(a.allows("keys.example.com:8443"));
        assert!(a.allows("other.example:9000"));
        assert!(!a.allows("other.example"));
        assert!(a.allows("0.0.0.0:8443"));
    }

    #[test]
    fn ipv6_listen_address_is_bracketed() {
        let a = HostAllowlist::for_listen_addr("[::1]:443".parse().unwrap(), &["[2001:db8::1]".into()]);
        assert!(a.allows("[::1]"));
        assert!(a.allows("[::1]:443"));
        assert!(a.allows("[2001:db8::1]:443"));
    }
}
