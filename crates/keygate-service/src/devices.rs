//! Known devices: a browser that has finished a login with its second factor gets a signed
//! token, so that an attacker who has only the password cannot, by typing wrong codes from
//! other addresses, stop the owner from logging in (issue #18, finding 1).
//!
//! Wrong codes finishing password logins count per login session, per client address and
//! against an account-wide ceiling ([`crate::sessions::ThrottleConfig::totp_login_per_account`]).
//! Whoever has the password can spend that ceiling from enough addresses, and then no new login
//! of the account is heard until the window passes, again and again. A code typed on a known
//! device is counted on the device's own counter instead of the account-wide one, the pattern
//! OWASP calls device cookies: the owner's own browser keeps working during such an attack,
//! while the attacker, who has no token, is held to the ceiling.
//!
//! The token is stateless, so every node checks it with the key it derives from the master key:
//! `kgd1` and the hex of the account id, the time it was issued and an HMAC-SHA256 over both and
//! over a digest of the account's password hash. Changing the password therefore forgets every
//! known device at once; a token also lapses after [`KNOWN_DEVICE_TTL_MS`], and every login
//! that finishes on the device issues a fresh one.

use hmac::{KeyInit as _, Mac as _};
use keygate_auth::AccountId;
use keygate_proto::UnixMillis;
use keygate_store::AccountRecord;
use sha2::{Digest as _, Sha256};

type HmacSha256 = hmac::Hmac<Sha256>;

/// How long a known-device token is honoured after it was issued: 90 days.
pub const KNOWN_DEVICE_TTL_MS: u64 = 90 * 24 * 60 * 60 * 1000;

/// The purpose the token key is derived under (see [`keygate_store::Store::derived_key`]).
pub(crate) const KEY_PURPOSE: &[u8] = b"keygate/known-device/v1";

const PREFIX: &str = "kgd1";
const BODY_LEN: usize = 8 + 8 + 32;

fn mac(key: &[u8; 32], account: &AccountRecord, issued_at: UnixMillis) -> HmacSha256 {
    let mut m = HmacSha256::new_from_slice(key).unwrap_or_else(|_| unreachable!("HMAC takes a key of any length"));
    m.update(PREFIX.as_bytes());
    m.update(&account.id.0.to_be_bytes());
    m.update(&issued_at.0.to_be_bytes());
    m.update(&Sha256::digest(account.password_hash.as_bytes()));
    m
}

/// A new token for `account`'s device, issued at `now`.
pub(crate) fn issue(key: &[u8; 32], account: &AccountRecord, now: UnixMillis) -> String {
    let mut body = Vec::with_capacity(BODY_LEN);
    body.extend_from_slice(&account.id.0.to_be_bytes());
    body.extend_from_slice(&now.0.to_be_bytes());
    body.extend_from_slice(&mac(key, account, now).finalize().into_bytes());
    format!("{PREFIX}{}", hex::encode(body))
}

/// The device's id (for its own failure counter) if `token` was issued by this deployment for
/// `account`, under its current password, less than [`KNOWN_DEVICE_TTL_MS`] before `now`.
/// Anything else (another account's token, a forged or truncated one, junk) is simply not a
/// known device: the caller counts the code like any other.
pub(crate) fn check(key: &[u8; 32], account: &AccountRecord, token: &str, now: UnixMillis) -> Option<String> {
    let body = hex::decode(token.strip_prefix(PREFIX)?).ok()?;
    if body.len() != BODY_LEN {
        return None;
    }
    let (id, rest) = body.split_at(8);
    let (issued, tag) = rest.split_at(8);
    let id = AccountId(i64::from_be_bytes(id.try_into().ok()?));
    let issued_at = UnixMillis(u64::from_be_bytes(issued.try_into().ok()?));
    if id != account.id || issued_at.0 > now.0 || now.0 - issued_at.0 >= KNOWN_DEVICE_TTL_MS {
        return None;
    }
    // Constant time: `verify_slice` compares the tags without an early exit.
    mac(key, account, issued_at).verify_slice(tag).ok()?;
    Some(hex::encode(&tag[..16]))
}

#[cfg(test)]
mod tests {
    use super::*;
    use keygate_store::AccountStatus;

    fn account(id: i64, hash: &str) -> AccountRecord {
        AccountRecord {
            id: AccountId(id),
            name: "alice".into(),
            password_hash: hash.into(),
            status: AccountStatus::Active,
            created_at: UnixMillis(0),
            withdrawals_locked_until: None,
            withdrawals_held_until: None,
        }
    }

    #[test]
    fn a_token_is_known_only_for_its_account_password_key_and_lifetime() {
        let key = [7u8; 32];
        let alice = account(1, "$argon2id$a");
        let t = issue(&key, &alice, UnixMillis(1_000));
        let id = check(&key, &alice, &t, UnixMillis(2_000)).expect("known");
        assert_eq!(id.len(), 32);
        // Another account, a changed password, another deployment's key: not known.
        assert_eq!(check(&key, &account(2, "$argon2id$a"), &t, UnixMillis(2_000)), None);
        assert_eq!(check(&key, &account(1, "$argon2id$b"), &t, UnixMillis(2_000)), None);
        assert_eq!(check(&[8u8; 32], &alice, &t, UnixMillis(2_000)), None);
        // Lapsed, or issued in the future.
        assert_eq!(check(&key, &alice, &t, UnixMillis(1_000 + KNOWN_DEVICE_TTL_MS)), None);
        assert!(check(&key, &alice, &t, UnixMillis(1_000 + KNOWN_DEVICE_TTL_MS - 1)).is_some());
        assert_eq!(check(&key, &alice, &t, UnixMillis(999)), None);
        // Any changed character, a truncation, junk.
        let mut forged = t.clone().into_bytes();
        let last = forged.len() - 1;
        forged[last] = if forged[last] == b'0' { b'1' } else { b'0' };
        assert_eq!(check(&key, &alice, std::str::from_utf8(&forged).unwrap(), UnixMillis(2_000)), None);
        assert_eq!(check(&key, &alice, &t[..t.len() - 2], UnixMillis(2_000)), None);
        for junk in ["", "kgd1", "kgd1zz", "kgd2", "\u{e9}\u{e9}"] {
            assert_eq!(check(&key, &alice, junk, UnixMillis(2_000)), None, "{junk:?}");
        }
    }
}
