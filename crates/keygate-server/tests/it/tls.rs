//! `serve --tls-cert --tls-key`: HTTPS with a self-signed certificate made in the test.

use keygate_server::tls::TlsConfig;
use keygate_testkit::TestApp;
use std::sync::Arc;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

struct SelfSigned {
    cert_pem: String,
    key_pem: String,
    der: rustls::pki_types::CertificateDer<'static>,
}

fn self_signed() -> SelfSigned {
    let ck = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
    SelfSigned { cert_pem: ck.cert.pem(), key_pem: ck.signing_key.serialize_pem(), der: ck.cert.der().clone() }
}

/// Sends one HTTP/1.1 request over TLS to `app` (SNI `localhost`) and returns the raw answer.
async fn https_get(app: &TestApp, der: &rustls::pki_types::CertificateDer<'static>, path: &str) -> String {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(der.clone()).unwrap();
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    let name = rustls::pki_types::ServerName::try_from("localhost").unwrap();
    let mut tls = connector.connect(name, tcp).await.expect("TLS handshake with the server");
    let port = app.addr.port();
    tls.write_all(format!("GET {path} HTTP/1.1\r\nHost: localhost:{port}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut out = Vec::new();
    let _ = tls.read_to_end(&mut out).await;
    String::from_utf8_lossy(&out).into_owned()
}

#[tokio::test]
async fn serves_https_with_the_given_certificate_and_secure_console_cookies() {
    let cert = self_signed();
    let tls = TlsConfig::from_pem(cert.cert_pem.as_bytes(), cert.key_pem.as_bytes()).unwrap();
    let app = TestApp::spawn_with(|c| c.tls = Some(tls)).await;

    let ping = https_get(&app, &cert.der, "/api/v3/ping").await;
    assert!(ping.starts_with("HTTP/1.1 200"), "{ping}");
    assert!(ping.ends_with("{}"), "{ping}");
    assert!(ping.to_ascii_lowercase().contains("\r\nstrict-transport-security: max-age=31536000\r\n"), "{ping}");

    let login = https_get(&app, &cert.der, "/console/login").await;
    assert!(login.starts_with("HTTP/1.1 200"), "{login}");
    let cookie = login.lines().find(|l| l.to_ascii_lowercase().starts_with("set-cookie:")).expect("a cookie");
    assert!(cookie.contains("__Host-kg_pre=") && cookie.contains("; Secure"), "{cookie}");
    assert!(login.to_ascii_lowercase().contains("\r\nstrict-transport-security: max-age=31536000\r\n"), "{login}");

    // Plain HTTP to the TLS port gets no HTTP answer.
    let mut tcp = tokio::net::TcpStream::connect(app.addr).await.unwrap();
    tcp.write_all(b"GET /api/v3/ping HTTP/1.1\r\nHost: localhost\r\n\r\n").await.unwrap();
    let mut out = Vec::new();
    let _ = tokio::time::timeout(std::time::Duration::from_secs(5), tcp.read_to_end(&mut out)).await;
    assert!(!String::from_utf8_lossy(&out).contains("200 OK"));
    app.shutdown().await;
}

#[test]
fn unusable_certificate_files_are_named_in_the_error() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let err = TlsConfig::from_pem_files(&missing, &missing).unwrap_err().to_string();
    assert!(err.contains("missing.pem"), "{err}");
    let junk = dir.path().join("junk.pem");
    std::fs::write(&junk, "not a certificate").unwrap();
    let err = TlsConfig::from_pem_files(&junk, &junk).unwrap_err().to_string();
    assert!(err.contains("junk.pem"), "{err}");
    let cert = self_signed();
    let other = self_signed();
    let err = TlsConfig::from_pem(cert.cert_pem.as_bytes(), other.key_pem.as_bytes()).unwrap_err().to_string();
    assert!(err.contains("cannot be used together"), "{err}");
}

#[tokio::test]
async fn plain_http_sends_no_hsts() {
    let app = TestApp::spawn().await;
    let res = reqwest::get(format!("{}/api/v3/ping", app.base_url)).await.unwrap();
    assert_eq!(res.status(), 200);
    assert!(res.headers().get("strict-transport-security").is_none());
}
