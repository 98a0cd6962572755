//! Number formatting without `core::fmt`.
//!
//! The guest kernel cannot use `core::fmt`: the precompiled `core` library
//! formats with SSE instructions, which end the VM on hosts that emulate
//! supervisor code. These helpers write into a byte buffer with integer
//! operations only; the host uses them too so both sides print alike.

/// A fixed-capacity byte buffer that silently truncates when full.
pub struct ByteBuf<const N: usize> {
    buf: [u8; N],
    len: usize,
}

impl<const N: usize> Default for ByteBuf<N> {
    fn default() -> Self {
        Self::new()
    }
}

impl<const N: usize> ByteBuf<N> {
    /// An empty buffer.
    pub const fn new() -> Self {
        ByteBuf { buf: [0; N], len: 0 }
    }

    /// The bytes written so far.
    pub fn as_bytes(&self) -> &[u8] {
        &self.buf[..self.len]
    }

    /// Number of bytes written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Appends bytes, truncating at capacity.
    pub fn push_bytes(&mut self, s: &[u8]) -> &mut Self {
        for &b in s {
            if self.len == N {
                break;
            }
            self.buf[self.len] = b;
            self.len += 1;
        }
        self
    }

    /// Appends a string.
    pub fn push_str(&mut self, s: &str) -> &mut Self {
        self.push_bytes(s.as_bytes())
    }

    /// Appends an unsigned decimal number.
    pub fn push_u64(&mut self, v: u64) -> &mut Self {
        let mut tmp = [0u8; 20];
        let n = fmt_u64(v, &mut tmp);
        self.push_bytes(&tmp[20 - n..])
    }

    /// Appends a signed decimal number.
    pub fn push_i64(&mut self, v: i64) -> &mut Self {
        if v < 0 {
            self.push_bytes(b"-");
        }
        self.push_u64(v.unsigned_abs())
    }

    /// Appends `0x` and a lower-case hexadecimal number.
    pub fn push_hex(&mut self, v: u64) -> &mut Self {
        let mut tmp = [0u8; 16];
        let n = fmt_hex(v, &mut tmp);
        self.push_bytes(b"0x").push_bytes(&tmp[16 - n..])
    }
}

/// Writes `v` in decimal right-aligned into `out`; returns the digit count.
pub fn fmt_u64(mut v: u64, out: &mut [u8; 20]) -> usize {
    let mut i = 20;
    loop {
        i -= 1;
        out[i] = b'0' + (v % 10) as u8;
        v /= 10;
        if v == 0 {
            return 20 - i;
        }
    }
}

/// Writes `v` in hexadecimal right-aligned into `out`; returns the digit count.
pub fn fmt_hex(mut v: u64, out: &mut [u8; 16]) -> usize {
    let mut i = 16;
    loop {
        i -= 1;
        let d = (v & 0xf) as u8;
        out[i] = if d < 10 { b'0' + d } else { b'a' + d - 10 };
        v >>= 4;
        if v == 0 {
            return 16 - i;
        }
    }
}

/// Parses an unsigned decimal number; `None` on empty input, a non-digit or overflow.
pub fn parse_u64(s: &[u8]) -> Option<u64> {
    if s.is_empty() {
        return None;
    }
    let mut v: u64 = 0;
    for &c in s {
        if !c.is_ascii_digit() {
            return None;
        }
        v = v.checked_mul(10)?.checked_add((c - b'0') as u64)?;
    }
    Some(v)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats() {
        let mut b = ByteBuf::<64>::new();
        b.push_str("x=").push_u64(0).push_str(" ").push_i64(-42).push_str(" ").push_hex(0xdead_beef);
        b.push_str(" ").push_u64(u64::MAX);
        assert_eq!(b.as_bytes(), b"x=0 -42 0xdeadbeef 18446744073709551615");
    }

    #[test]
    fn truncates() {
        let mut b = ByteBuf::<4>::new();
        b.push_str("hello");
        assert_eq!(b.as_bytes(), b"hell");
    }

    #[test]
    fn parses() {
        assert_eq!(parse_u64(b"123"), Some(123));
        assert_eq!(parse_u64(b""), None);
        assert_eq!(parse_u64(b"1a"), None);
        assert_eq!(parse_u64(b"18446744073709551616"), None);
    }
}
