//! Integration tests of `keygate-auth`: one test binary (see STYLE.md, "one integration-test
//! binary per crate"), one module per concern.
//!
//! - `binance_vectors`: Binance's documented HMAC-SHA256 vectors through the verifier.
//! - `openssl_vectors`: Ed25519 and RSA signatures made by OpenSSL (`fixtures/`), the reference's
//!   deterministic Ed25519 vector, and public-key parsing.
//! - `denials`: every denial path of `Verifier::verify`, and what is disclosed after the signature.
//! - `properties`: property tests of the verifier and of the parameter parser.

// Tests fail by panicking: `unwrap` on a value that must be present is the clearest assertion,
// and the workspace's `unwrap_used = "warn"` is meant for library code.
#![allow(clippy::unwrap_used)]

mod binance_vectors;
mod denials;
mod openssl_vectors;
mod properties;
mod support;
