//! What a key may do: `read` always, `trade` and `withdraw` only when granted.

use serde::{Deserialize, Serialize};
use std::fmt;

/// One permission.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Permission {
    /// Balances, orders, trades, deposit and withdrawal history (Binance "Enable Reading").
    Read,
    /// Place and cancel orders (Binance "Enable Spot & Margin Trading").
    Trade,
    /// Request withdrawals (Binance "Enable Withdrawals"); needs an IP allowlist.
    Withdraw,
}

impl Permission {
    /// Every permission, in display order.
    pub const ALL: [Self; 3] = [Self::Read, Self::Trade, Self::Withdraw];

    const fn bit(self) -> u8 {
        match self {
            Self::Read => 1,
            Self::Trade => 2,
            Self::Withdraw => 4,
        }
    }

    /// The lower-case name used on the CLI, in JSON and in denial reasons.
    #[must_use]
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Read => "read",
            Self::Trade => "trade",
            Self::Withdraw => "withdraw",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown permission name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown permission {0:?}; the permissions are read, trade and withdraw")]
pub struct PermissionsError(pub String);

/// A set of permissions that always contains `read`.
///
/// The invariant is kept by construction: there is no way to build a set without `read`, which
/// matches Binance (every key can read) and means "deny by default" only ever concerns trade and
/// withdraw.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "Vec<Permission>", from = "Vec<Permission>")]
pub struct Permissions(u8);

impl Permissions {
    /// `read` alone: the default for a new key.
    pub const READ_ONLY: Self = Self(1);

    /// The set holding `read` and each of `extra`.
    #[must_use]
    pub fn with(extra: &[Permission]) -> Self {
        Self(extra.iter().fold(Permission::Read.bit(), |acc, p| acc | p.bit()))
    }

    /// Parses a comma-separated list such as `read,trade`; `read` is implied.
    ///
    /// # Errors
    /// [`PermissionsError`] naming the first unknown entry.
    pub fn parse_list(text: &str) -> Result<Self, PermissionsError> {
        let mut set = Self::READ_ONLY;
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let p = match part.to_ascii_lowercase().as_str() {
                "read" => Permission::Read,
                "trade" => Permission::Trade,
                "withdraw" => Permission::Withdraw,
                _ => return Err(PermissionsError(part.to_owned())),
            };
            set.0 |= p.bit();
        }
        Ok(set)
    }

    /// True if and only if `p` is in the set.
    #[must_use]
    pub const fn contains(self, p: Permission) -> bool {
        self.0 & p.bit() != 0
    }

    /// True if and only if `self` grants something `other` does not.
    #[must_use]
    pub const fn widens(self, other: Self) -> bool {
        self.0 & !other.0 != 0
    }

    /// The permissions in display order.
    pub fn iter(self) -> impl Iterator<Item = Permission> {
        Permission::ALL.into_iter().filter(move |p| self.contains(*p))
    }
}

impl Default for Permissions {
    fn default() -> Self {
        Self::READ_ONLY
    }
}

impl From<Permissions> for Vec<Permission> {
    fn from(p: Permissions) -> Self {
        p.iter().collect()
    }
}

impl From<Vec<Permission>> for Permissions {
    fn from(v: Vec<Permission>) -> Self {
        Self::with(&v)
    }
}

impl fmt::Display for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut first = true;
        for p in self.iter() {
            if !first {
                f.write_str(",")?;
            }
            first = false;
            f.write_str(p.as_str())?;
        }
        Ok(())
    }
}

impl fmt::Debug for Permissions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Permissions({self})")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn read_is_always_present_and_unknown_names_are_refused() {
        assert_eq!(Permissions::parse_list("").unwrap(), Permissions::READ_ONLY);
        assert_eq!(Permissions::parse_list("trade").unwrap().to_string(), "read,trade");
        assert_eq!(Permissions::parse_list("read, Withdraw").unwrap().to_string(), "read,withdraw");
        assert_eq!(Permissions::parse_list("read,admin"), Err(PermissionsError("admin".into())));
    }

    #[test]
    fn widening_is_detected_only_for_added_permissions() {
        let rt = Permissions::with(&[Permission::Trade]);
        assert!(rt.widens(Permissions::READ_ONLY));
        assert!(!Permissions::READ_ONLY.widens(rt));
        assert!(!rt.widens(rt));
    }
}
