//! Deterministic, plausible-looking identifiers.
//!
//! Replaying the command journal must reproduce every id, so nothing here reads a clock or a random
//! source: ids are bijective mixes of sequence numbers (hence unique) or hashes of their inputs.

/// The splitmix64 finaliser: a bijection on `u64`, so distinct inputs give distinct outputs.
#[must_use]
pub(crate) fn mix64(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// FNV-1a over bytes: a stable (not cryptographic) hash for deriving addresses from their inputs.
#[must_use]
pub(crate) fn fnv1a(parts: &[&[u8]]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for part in parts {
        for &b in *part {
            h ^= u64::from(b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
        // Separator so that ("ab","c") and ("a","bc") differ.
        h ^= 0xff;
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    h
}

const BASE62: &[u8; 62] = b"0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz";

/// The client order id Binance would generate: 22 base62 characters, here unique per order id.
#[must_use]
pub(crate) fn client_order_id(order_id: u64, salt: u64) -> String {
    let v = (u128::from(mix64(order_id ^ salt.rotate_left(17))) << 64) | u128::from(mix64(order_id ^ salt));
    base62_digits(v).iter().map(|&b| char::from(b)).collect()
}

/// The 22 base62 digits of `v` (2^128 < 62^22), most significant first. Two 128-bit divisions
/// split it into chunks of at most ten digits that fit a u64, whose digits then come from 64-bit
/// divisions (a 128-bit division per digit was most of the cost of a new order's id).
fn base62_digits(v: u128) -> [u8; 22] {
    const TEN_DIGITS: u128 = 62u128.pow(10);
    let high = v / TEN_DIGITS;
    let low = (v - high * TEN_DIGITS) as u64;
    // high < 2^128 / 62^10 < 62^12: its top two digits, then ten more.
    let top = high / TEN_DIGITS;
    let middle = (high - top * TEN_DIGITS) as u64;
    let mut out = [b'0'; 22];
    let (first, rest) = out.split_at_mut(2);
    let (second, third) = rest.split_at_mut(10);
    for (slot, mut x) in [(third, low), (second, middle), (first, top as u64)] {
        for digit in slot.iter_mut().rev() {
            *digit = BASE62.get((x % 62) as usize).copied().unwrap_or(b'0');
            x /= 62;
        }
    }
    out
}

/// `n` lower-case hex characters derived from `seed` (a stream of mixes).
#[must_use]
pub(crate) fn hex_stream(seed: u64, n: usize) -> String {
    alphabet_stream(seed, n, b"0123456789abcdef")
}

/// `n` characters from `alphabet` derived from `seed`.
#[must_use]
pub(crate) fn alphabet_stream(seed: u64, n: usize, alphabet: &[u8]) -> String {
    let mut s = String::with_capacity(n);
    let mut counter = 0u64;
    let mut word = 0u64;
    let mut left = 0u32;
    let len = alphabet.len().max(1) as u64;
    while s.len() < n {
        if left == 0 {
            word = mix64(seed ^ mix64(counter));
            counter += 1;
            left = 8;
        }
        let idx = ((word & 0xff) % len) as usize;
        word >>= 8;
        left -= 1;
        s.push(char::from(alphabet.get(idx).copied().unwrap_or(b'0')));
    }
    s
}

/// A withdrawal id like Binance's: 32 hex characters; unique per sequence number.
#[must_use]
pub(crate) fn withdrawal_id(seq: u64) -> String {
    format!("{:016x}{:016x}", mix64(seq ^ 0x5EED_0001), mix64(seq))
}

/// A deposit id like Binance's: a decimal number; unique per sequence number.
#[must_use]
pub(crate) fn deposit_id(seq: u64) -> String {
    mix64(seq ^ 0xDE90_5170).to_string()
}

/// A transaction hash in the style of the network (`0x`-prefixed for EVM chains).
#[must_use]
pub(crate) fn tx_hash(network: &str, seed: u64) -> String {
    match network {
        "ETH" | "BSC" => format!("0x{}", hex_stream(seed, 64)),
        _ => hex_stream(seed, 64),
    }
}

/// A deposit address in the style of the network, derived from the account, coin and network.
#[must_use]
pub(crate) fn deposit_address(account: i64, coin: &str, network: &str) -> String {
    let seed = fnv1a(&[&account.to_le_bytes(), coin.as_bytes(), network.as_bytes()]);
    match network {
        "BTC" => format!("bc1q{}", alphabet_stream(seed, 38, b"qpzry9x8gf2tvdw0s3jn54khce6mua7l")),
        "TRX" => {
            format!("T{}", alphabet_stream(seed, 33, b"123456789ABCDEFGHJKLMNPQRSTUVWXYZabcdefghijkmnopqrstuvwxyz"))
        }
        _ => format!("0x{}", hex_stream(seed, 40)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    #[test]
    fn generated_ids_have_binance_shapes_and_do_not_repeat() {
        let ids: BTreeSet<String> = (1..2000).map(|i| client_order_id(i, 7)).collect();
        assert_eq!(ids.len(), 1999);
        assert!(ids.iter().all(|s| s.len() == 22 && s.bytes().all(|b| b.is_ascii_alphanumeric())));
        let w: BTreeSet<String> = (1..2000).map(withdrawal_id).collect();
        assert_eq!(w.len(), 1999);
        assert!(w.iter().all(|s| s.len() == 32));
        assert!(deposit_address(1, "ETH", "ETH").starts_with("0x"));
        assert_eq!(deposit_address(1, "ETH", "ETH").len(), 42);
        assert_eq!(deposit_address(1, "USDT", "TRX").len(), 34);
        assert_eq!(deposit_address(1, "BTC", "BTC"), deposit_address(1, "BTC", "BTC"));
        assert_ne!(deposit_address(1, "BTC", "BTC"), deposit_address(2, "BTC", "BTC"));
        assert_eq!(tx_hash("ETH", 3).len(), 66);
    }

    /// The digits as first computed, one 128-bit division per digit: journals replay the ids
    /// generated with it, so the faster version must give exactly the same ones.
    fn digits_one_by_one(mut x: u128) -> [u8; 22] {
        let mut out = [b'0'; 22];
        for slot in out.iter_mut().rev() {
            *slot = BASE62[(x % 62) as usize];
            x /= 62;
        }
        out
    }

    #[test]
    fn client_order_ids_are_the_ones_generated_before() {
        let mut edges = vec![0, 1, 61, 62, u128::MAX, u128::MAX - 1, u128::from(u64::MAX)];
        for k in 1..22 {
            let p = 62u128.pow(k);
            edges.extend([p - 1, p, p + 1]);
        }
        for v in edges {
            assert_eq!(base62_digits(v), digits_one_by_one(v), "{v}");
        }
        for salt in [0, 7, 0x6b65_7967_6174_6501, 0x6b65_7967_6174_6502, u64::MAX] {
            for i in (0..20_000).chain([u64::MAX - 1, u64::MAX]) {
                let v = (u128::from(mix64(i ^ salt.rotate_left(17))) << 64) | u128::from(mix64(i ^ salt));
                assert_eq!(base62_digits(v), digits_one_by_one(v), "order {i}, salt {salt}");
            }
        }
        // One id as the first implementation generated it, kept literally.
        assert_eq!(client_order_id(1, 0x6b65_7967_6174_6501), "5ww9acfjKFR6vYJw9gU50l");
    }
}
