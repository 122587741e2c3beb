//! Account identity as the verifier reports it (defined in `keygate-proto`, shared with the
//! exchange).

pub use keygate_proto::AccountId;
