//! Where and how a key may be used: IP allowlist, expiry, symbols, withdrawal addresses and limit.

use ipnet::IpNet;
use keygate_proto::{Amount, AssetCode, Symbol, UnixMillis};
use serde::{Deserialize, Serialize};
use std::net::IpAddr;

/// Most CIDR entries one key may carry (Binance allows 30 addresses; ranges make fewer needed).
pub const MAX_IP_ENTRIES: usize = 100;
/// Most symbols one key's allowlist may carry.
pub const MAX_SYMBOLS: usize = 200;
/// Most withdrawal addresses one key may carry.
pub const MAX_WITHDRAW_ADDRESSES: usize = 50;

/// Shortest IPv4 prefix an allowlist entry may have: anything wider is not a restriction, and a
/// `0.0.0.0/0` entry would satisfy "withdraw needs an IP allowlist" while allowing every address.
pub const MIN_V4_PREFIX: u8 = 8;
/// Shortest IPv6 prefix an allowlist entry may have.
pub const MIN_V6_PREFIX: u8 = 16;

/// Why a restriction was refused; the message is meant for the person who typed it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RestrictionError {
    /// Not an IP address or CIDR range.
    #[error("{0:?} is not an IPv4/IPv6 address or CIDR range (e.g. 203.0.113.0/24 or 2001:db8::/32)")]
    BadCidr(String),
    /// A range with bits set past its prefix, which usually means a typo.
    #[error("{given:?} has host bits set; did you mean {suggested}?")]
    HostBitsSet {
        /// What was typed.
        given: String,
        /// The network it probably meant.
        suggested: String,
    },
    /// A range so wide it restricts nothing.
    #[error("{given:?} is too broad to restrict anything; entries must be /{shortest} or narrower")]
    TooBroad {
        /// What was typed.
        given: String,
        /// The shortest prefix allowed for its family.
        shortest: u8,
    },
    /// Too many entries of one kind.
    #[error("too many {what} (at most {max})")]
    TooMany {
        /// The kind of entry.
        what: &'static str,
        /// The limit.
        max: usize,
    },
    /// A malformed withdrawal address.
    #[error("withdrawal address {0:?} must be 1 to 128 printable characters without spaces")]
    BadAddress(String),
}

/// An IP allowlist of IPv4 and IPv6 networks; empty means "any address".
///
/// IPv4-mapped IPv6 entries (`::ffff:203.0.113.7`) are stored as IPv4, and peers are
/// canonicalised the same way before matching, so a dual-stack listener cannot bypass an IPv4
/// entry or fail to match one.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(transparent)]
pub struct IpAllowlist(Vec<IpNet>);

impl IpAllowlist {
    /// Parses entries such as `203.0.113.0/24`, `2001:db8::/32` or a single address.
    ///
    /// # Errors
    /// [`RestrictionError`] naming the first bad entry, or when there are too many.
    pub fn parse<S: AsRef<str>>(entries: &[S]) -> Result<Self, RestrictionError> {
        if entries.len() > MAX_IP_ENTRIES {
            return Err(RestrictionError::TooMany { what: "IP allowlist entries", max: MAX_IP_ENTRIES });
        }
        let mut nets = Vec::with_capacity(entries.len());
        for raw in entries {
            let raw = raw.as_ref().trim();
            let net = parse_net(raw)?;
            if !nets.contains(&net) {
                nets.push(net);
            }
        }
        Ok(Self(nets))
    }

    /// True if and only if the list is empty (no IP restriction).
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The networks.
    #[must_use]
    pub fn nets(&self) -> &[IpNet] {
        &self.0
    }

    /// True if and only if the list is empty or `ip` (canonicalised) lies in one of its networks.
    #[must_use]
    pub fn allows(&self, ip: IpAddr) -> bool {
        let ip = ip.to_canonical();
        self.0.is_empty() || self.0.iter().any(|n| n.contains(&ip))
    }

    /// True if and only if `self` admits an address `other` does not (an added or wider range).
    #[must_use]
    pub fn widens(&self, other: &Self) -> bool {
        if other.is_empty() {
            return false;
        }
        if self.is_empty() {
            return true;
        }
        self.0.iter().any(|n| !other.0.iter().any(|o| o.contains(n)))
    }
}

fn parse_net(raw: &str) -> Result<IpNet, RestrictionError> {
    let bad = || RestrictionError::BadCidr(raw.to_owned());
    let (addr, prefix) = match raw.split_once('/') {
        Some((a, p)) => {
            if p.is_empty() || !p.bytes().all(|b| b.is_ascii_digit()) || p.len() > 3 {
                return Err(bad());
            }
            (a.parse::<IpAddr>().map_err(|_| bad())?, Some(p.parse::<u8>().map_err(|_| bad())?))
        }
        None => (raw.parse::<IpAddr>().map_err(|_| bad())?, None),
    };
    let (addr, prefix) = match (addr, addr.to_canonical()) {
        (IpAddr::V6(_), v4 @ IpAddr::V4(_)) => {
            // An IPv4-mapped range: keep it as the IPv4 range it denotes.
            let p = match prefix {
                Some(p) if p < 96 => return Err(bad()),
                Some(p) => p - 96,
                None => 32,
            };
            (v4, p)
        }
        (a, _) => (a, prefix.unwrap_or(if a.is_ipv4() { 32 } else { 128 })),
    };
    let shortest = if addr.is_ipv4() { MIN_V4_PREFIX } else { MIN_V6_PREFIX };
    if prefix < shortest {
        return Err(RestrictionError::TooBroad { given: raw.to_owned(), shortest });
    }
    let net = IpNet::new(addr, prefix).map_err(|_| bad())?;
    if net.network() != addr {
        return Err(RestrictionError::HostBitsSet { given: raw.to_owned(), suggested: net.trunc().to_string() });
    }
    Ok(net)
}

/// The most a key may withdraw of one asset in any 24 hours.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WithdrawLimit {
    /// The asset the limit is counted in.
    pub asset: AssetCode,
    /// The amount.
    pub amount: Amount,
}

/// Everything that narrows where and how a key may be used, besides its permissions.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
pub struct Restrictions {
    /// Networks requests may come from; empty means any.
    pub ip_allowlist: IpAllowlist,
    /// After this instant every request is refused.
    pub expires_at: Option<UnixMillis>,
    /// Symbols the key may trade; empty means all.
    pub symbols: Vec<Symbol>,
    /// Addresses the key may withdraw to; empty means none.
    pub withdraw_addresses: Vec<String>,
    /// Withdrawal ceiling per rolling 24 hours.
    pub withdraw_limit_24h: Option<WithdrawLimit>,
}

impl Restrictions {
    /// Checks the sizes and formats that parsing alone does not.
    ///
    /// # Errors
    /// [`RestrictionError`] for too many symbols or addresses, or a malformed address.
    pub fn validate(&self) -> Result<(), RestrictionError> {
        if self.symbols.len() > MAX_SYMBOLS {
            return Err(RestrictionError::TooMany { what: "symbols", max: MAX_SYMBOLS });
        }
        if self.withdraw_addresses.len() > MAX_WITHDRAW_ADDRESSES {
            return Err(RestrictionError::TooMany { what: "withdrawal addresses", max: MAX_WITHDRAW_ADDRESSES });
        }
        for a in &self.withdraw_addresses {
            if a.is_empty() || a.len() > 128 || !a.bytes().all(|b| b.is_ascii_graphic()) {
                return Err(RestrictionError::BadAddress(a.clone()));
            }
        }
        Ok(())
    }

    /// Drops repeated withdrawal addresses and symbols, keeping the first of each in its place:
    /// a list that names one twice means it once.
    pub fn dedup(&mut self) {
        let mut seen = std::collections::HashSet::new();
        self.withdraw_addresses.retain(|a| seen.insert(a.clone()));
        let mut seen = std::collections::HashSet::new();
        self.symbols.retain(|s| seen.insert(s.clone()));
    }

    /// True if and only if `symbol` may be traded (an empty allowlist allows all).
    #[must_use]
    pub fn allows_symbol(&self, symbol: &str) -> bool {
        self.symbols.is_empty() || self.symbols.iter().any(|s| s.as_str() == symbol)
    }

    /// True if and only if `self` is wider than `before` in a way DESIGN.md section 3 protects
    /// with a step-up: an added or wider IP range, an added withdrawal address, a lifted or
    /// later expiry, a wider symbol list, or a raised withdrawal limit.
    #[must_use]
    pub fn widens(&self, before: &Self) -> bool {
        let expiry_wider = match (self.expires_at, before.expires_at) {
            (None, Some(_)) => true,
            (Some(a), Some(b)) => a > b,
            _ => false,
        };
        let symbols_wider = !before.symbols.is_empty()
            && (self.symbols.is_empty() || self.symbols.iter().any(|s| !before.symbols.contains(s)));
        let address_added = self.withdraw_addresses.iter().any(|a| !before.withdraw_addresses.contains(a));
        let limit_wider = match (&self.withdraw_limit_24h, &before.withdraw_limit_24h) {
            (None, Some(_)) => true,
            (Some(a), Some(b)) => a.asset != b.asset || a.amount > b.amount,
            _ => false,
        };
        self.ip_allowlist.widens(&before.ip_allowlist) || expiry_wider || symbols_wider || address_added || limit_wider
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn repeated_addresses_and_symbols_are_kept_once_in_their_first_place() {
        let mut r = Restrictions {
            withdraw_addresses: vec!["b".into(), "a".into(), "b".into(), "a".into()],
            symbols: vec![
                Symbol::parse("ETHUSDT").unwrap(),
                Symbol::parse("BTCUSDT").unwrap(),
                Symbol::parse("ETHUSDT").unwrap(),
            ],
            ..Restrictions::default()
        };
        r.dedup();
        assert_eq!(r.withdraw_addresses, ["b", "a"]);
        assert_eq!(r.symbols.iter().map(Symbol::as_str).collect::<Vec<_>>(), ["ETHUSDT", "BTCUSDT"]);
    }

    #[test]
    fn parses_v4_v6_and_single_addresses() {
        let l = IpAllowlist::parse(&["203.0.113.0/24", "2001:db8::/32", "198.51.100.7"]).unwrap();
        assert!(l.allows("203.0.113.200".parse().unwrap()));
        assert!(l.allows("2001:db8:1::5".parse().unwrap()));
        assert!(l.allows("198.51.100.7".parse().unwrap()));
        assert!(!l.allows("198.51.100.8".parse().unwrap()));
        assert!(!l.allows("2001:db9::1".parse().unwrap()));
    }

    #[test]
    fn ipv4_mapped_entries_and_peers_are_canonicalised() {
        let l = IpAllowlist::parse(&["::ffff:203.0.113.0/120"]).unwrap();
        assert_eq!(l.nets()[0].to_string(), "203.0.113.0/24");
        assert!(l.allows("::ffff:203.0.113.9".parse().unwrap()));
        assert!(l.allows("203.0.113.9".parse().unwrap()));
        let v4 = IpAllowlist::parse(&["10.0.0.0/8"]).unwrap();
        assert!(v4.allows("::ffff:10.1.2.3".parse().unwrap()));
    }

    #[test]
    fn malformed_cidrs_get_a_clear_message() {
        assert!(matches!(IpAllowlist::parse(&["300.1.1.1/24"]), Err(RestrictionError::BadCidr(_))));
        assert!(matches!(IpAllowlist::parse(&["10.0.0.0/33"]), Err(RestrictionError::BadCidr(_))));
        assert!(matches!(IpAllowlist::parse(&["10.0.0.0/"]), Err(RestrictionError::BadCidr(_))));
        assert!(matches!(IpAllowlist::parse(&["::ffff:1.2.3.4/64"]), Err(RestrictionError::BadCidr(_))));
        assert!(matches!(IpAllowlist::parse(&["0.0.0.0/0"]), Err(RestrictionError::TooBroad { .. })));
        assert!(matches!(IpAllowlist::parse(&["::/0"]), Err(RestrictionError::TooBroad { .. })));
        assert!(matches!(IpAllowlist::parse(&["::ffff:0.0.0.0/96"]), Err(RestrictionError::TooBroad { .. })));
        assert!(IpAllowlist::parse(&["10.0.0.0/8", "2001::/16"]).is_ok());
        let e = IpAllowlist::parse(&["203.0.113.5/24"]).unwrap_err();
        assert_eq!(e.to_string(), "\"203.0.113.5/24\" has host bits set; did you mean 203.0.113.0/24?");
    }

    #[test]
    fn empty_allowlist_allows_any_address_and_widening_is_detected() {
        let any = IpAllowlist::default();
        assert!(any.allows("192.0.2.1".parse().unwrap()));
        let narrow = IpAllowlist::parse(&["10.1.0.0/16"]).unwrap();
        let wide = IpAllowlist::parse(&["10.0.0.0/8"]).unwrap();
        assert!(wide.widens(&narrow));
        assert!(!narrow.widens(&wide));
        assert!(any.widens(&narrow));
        assert!(!narrow.widens(&any));
    }
}
