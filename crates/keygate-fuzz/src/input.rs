//! A cursor over fuzz bytes that hands out small structured values.
//!
//! Hand-rolled rather than the `arbitrary` crate so that the stable workspace needs no new
//! dependency. Reads past the end yield zeros, so every byte string is a valid input and the
//! fuzzer's mutations always mean something.

/// Reads values from the front of a byte slice.
#[derive(Debug, Clone)]
pub struct Input<'a> {
    data: &'a [u8],
}

impl<'a> Input<'a> {
    /// A cursor at the start of `data`.
    #[must_use]
    pub fn new(data: &'a [u8]) -> Self {
        Self { data }
    }

    /// True if and only if every byte has been read.
    #[must_use]
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// The next byte, or 0 past the end.
    pub fn byte(&mut self) -> u8 {
        match self.data.split_first() {
            Some((&b, rest)) => {
                self.data = rest;
                b
            }
            None => 0,
        }
    }

    /// The next byte's low bit.
    pub fn bool(&mut self) -> bool {
        self.byte() & 1 == 1
    }

    /// The next `N` bytes (zero-padded past the end).
    pub fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        for b in &mut out {
            *b = self.byte();
        }
        out
    }

    /// The next two bytes, little-endian.
    pub fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    /// The next four bytes, little-endian.
    pub fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    /// The next eight bytes, little-endian.
    pub fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }

    /// A value in `0..n` (0 when `n` is 0), reading only as many bytes as `n` needs.
    pub fn below(&mut self, n: u64) -> u64 {
        match n {
            0 => 0,
            1..=256 => u64::from(self.byte()) % n,
            257..=65_536 => u64::from(self.u16()) % n,
            65_537..=4_294_967_296 => u64::from(self.u32()) % n,
            _ => self.u64() % n,
        }
    }

    /// An index into a collection of `len` items (`len` must be small).
    pub fn index(&mut self, len: usize) -> usize {
        usize::try_from(self.below(len as u64)).unwrap_or(0)
    }

    /// One of `items` (which must not be empty).
    pub fn choose<'b, T>(&mut self, items: &'b [T]) -> &'b T {
        let i = self.index(items.len());
        &items[i]
    }

    /// A length-prefixed slice of at most `max` bytes (shorter if the input ends first).
    pub fn bytes(&mut self, max: usize) -> &'a [u8] {
        let n = self.index(max + 1).min(self.data.len());
        let (head, rest) = self.data.split_at(n);
        self.data = rest;
        head
    }

    /// Everything not read yet.
    pub fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.data)
    }
}

/// A deterministic pseudo-random generator (SplitMix64) for the stable replay test and for
/// deterministic key material. Predictable by design: never for secrets.
#[derive(Debug, Clone)]
pub struct SplitMix64(pub u64);

impl SplitMix64 {
    /// The next 64 pseudo-random bits.
    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

impl keygate_auth::Entropy for SplitMix64 {
    fn fill(&mut self, dest: &mut [u8]) -> Result<(), keygate_auth::EntropyError> {
        for chunk in dest.chunks_mut(8) {
            let v = self.next_u64().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
        Ok(())
    }
}
