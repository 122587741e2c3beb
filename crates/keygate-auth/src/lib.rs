//! The pure heart of keygate: key formats, permissions, restrictions and request verification.
//!
//! Nothing here performs I/O or reads the clock: the caller passes `now`, the peer address, the
//! raw bytes of the request and a [`KeyLookup`] (the in-memory key cache). That keeps the hot path
//! testable to the byte and lets property tests drive it without a server.
//!
//! The one entry point for signed requests is [`Verifier::verify`] (or its two halves,
//! [`Verifier::prepare`] and [`Verifier::conclude`], between which the server checks Ed25519
//! signatures of concurrent requests together); the only way to obtain a [`VerifiedRequest`] is
//! through them, and handlers read parameters only from that value, so what was verified is
//! exactly what is executed.

pub mod account;
pub mod base62;
pub mod credential;
pub mod ed25519_batch;
pub mod entropy;
pub mod invite;
pub mod keyfmt;
pub mod leak;
pub mod oauth;
pub mod params;
pub mod permission;
pub mod replay;
pub mod restriction;
pub mod scan;
pub mod session;
pub mod verify;
pub mod webhook;

pub use account::AccountId;
pub use credential::{Credential, KeyType, PublicKey, PublicKeyError};
pub use entropy::{Entropy, EntropyError};
pub use keyfmt::{ApiKeyId, HmacSecret, KeyFormatError};
pub use params::{ParamError, ParamErrorKind, Params};
pub use permission::{Permission, Permissions, PermissionsError};
pub use replay::{Endpoint, ReplayGuard};
pub use restriction::{IpAllowlist, RestrictionError, Restrictions, WithdrawLimit};
pub use session::{SessionToken, SessionTokenError};
pub use verify::{
    Access, Denial, GoodSignature, KeyEntry, KeyLookup, KeyStatus, Limits, Prepared, Rejection, SignatureCheck,
    UnverifiedRequest, VerifiedRequest, Verifier,
};
