//! The consensus byte encoding, version 1.
//!
//! Everything that is hashed or signed is encoded with these primitives, never with a
//! serde format, so the bytes are fixed by this file alone:
//! - integers are little-endian fixed width (`u8`, `u32`, `u64`);
//! - lengths are Bitcoin's CompactSize (1, 3, 5 or 9 bytes), minimally encoded;
//! - hashes are 32 raw bytes in internal order, addresses 20 raw bytes, ed25519 public keys
//!   32 bytes and signatures 64 bytes.
//!
//! Decoders are strict: non-minimal lengths, trailing bytes and lengths past the input are
//! errors, so whatever decodes re-encodes to exactly the same bytes.

/// Why bytes did not decode.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    #[error("unexpected end of data: needed {needed} more bytes")]
    UnexpectedEnd { needed: usize },
    #[error("non-minimal CompactSize length")]
    NonMinimalLength,
    #[error("length {0} exceeds the limit")]
    LengthTooLarge(u64),
    #[error("{0} trailing bytes after the encoded value")]
    TrailingBytes(usize),
    #[error("unknown {what} tag {tag}")]
    UnknownTag { what: &'static str, tag: u8 },
    #[error("unsupported {what} version {version}")]
    UnsupportedVersion { what: &'static str, version: u32 },
    #[error("invalid value: {0}")]
    Invalid(&'static str),
}

/// Upper bound on any collection length read from the wire, far above every limit the
/// rules allow, so a hostile length can never make a decoder allocate gigabytes.
pub const MAX_DECODE_LEN: u64 = 1 << 24;

/// Appends consensus bytes to a buffer.
pub trait Encode {
    fn encode_to(&self, out: &mut Vec<u8>);

    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::new();
        self.encode_to(&mut out);
        out
    }
}

/// Reads a value from consensus bytes.
pub trait Decode: Sized {
    fn decode_from(r: &mut Reader<'_>) -> Result<Self, DecodeError>;

    /// Decodes a value that must use all of `bytes`.
    fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader::new(bytes);
        let v = Self::decode_from(&mut r)?;
        r.finish()?;
        Ok(v)
    }
}

/// A cursor over input bytes.
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0 }
    }

    pub fn position(&self) -> usize {
        self.pos
    }

    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    pub fn bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.remaining() < n {
            return Err(DecodeError::UnexpectedEnd {
                needed: n - self.remaining(),
            });
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    pub fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.bytes(N)?);
        Ok(a)
    }

    pub fn u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.array::<1>()?[0])
    }

    pub fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    pub fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    /// A minimally encoded CompactSize.
    pub fn compact_size(&mut self) -> Result<u64, DecodeError> {
        let v = match self.u8()? {
            n @ 0..=0xfc => return Ok(n as u64),
            0xfd => u16::from_le_bytes(self.array()?) as u64,
            0xfe => u32::from_le_bytes(self.array()?) as u64,
            0xff => self.u64()?,
        };
        if v < minimum_for_width(v) {
            return Err(DecodeError::NonMinimalLength);
        }
        Ok(v)
    }

    /// A CompactSize collection length, bounded by `max`.
    pub fn length(&mut self, max: u64) -> Result<usize, DecodeError> {
        let n = self.compact_size()?;
        if n > max.min(MAX_DECODE_LEN) {
            return Err(DecodeError::LengthTooLarge(n));
        }
        Ok(n as usize)
    }

    /// A length-prefixed byte string.
    pub fn var_bytes(&mut self, max: u64) -> Result<&'a [u8], DecodeError> {
        let n = self.length(max)?;
        self.bytes(n)
    }

    /// Errors unless every byte was consumed.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            n => Err(DecodeError::TrailingBytes(n)),
        }
    }
}

/// The smallest value that needs the width `v` was written with (so smaller is non-minimal).
fn minimum_for_width(v: u64) -> u64 {
    match v {
        0..=0xffff => 0xfd,
        0x1_0000..=0xffff_ffff => 0x1_0000,
        _ => 0x1_0000_0000,
    }
}

/// How many bytes [`put_compact_size`] writes for `n`.
pub fn compact_size_len(n: u64) -> usize {
    match n {
        0..=0xfc => 1,
        0xfd..=0xffff => 3,
        0x1_0000..=0xffff_ffff => 5,
        _ => 9,
    }
}

pub fn put_compact_size(out: &mut Vec<u8>, n: u64) {
    match n {
        0..=0xfc => out.push(n as u8),
        0xfd..=0xffff => {
            out.push(0xfd);
            out.extend_from_slice(&(n as u16).to_le_bytes());
        }
        0x1_0000..=0xffff_ffff => {
            out.push(0xfe);
            out.extend_from_slice(&(n as u32).to_le_bytes());
        }
        _ => {
            out.push(0xff);
            out.extend_from_slice(&n.to_le_bytes());
        }
    }
}

pub fn put_var_bytes(out: &mut Vec<u8>, bytes: &[u8]) {
    put_compact_size(out, bytes.len() as u64);
    out.extend_from_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #[test]
        fn compact_size_round_trips(n in any::<u64>()) {
            let mut out = Vec::new();
            put_compact_size(&mut out, n);
            let mut r = Reader::new(&out);
            prop_assert_eq!(r.compact_size().unwrap(), n);
            prop_assert!(r.finish().is_ok());
            prop_assert_eq!(compact_size_len(n), out.len());
        }
    }

    #[test]
    fn non_minimal_compact_size_is_rejected() {
        let mut r = Reader::new(&[0xfd, 0x10, 0x00]);
        assert_eq!(r.compact_size(), Err(DecodeError::NonMinimalLength));
    }

    #[test]
    fn huge_length_is_rejected_before_allocation() {
        let mut r = Reader::new(&[0xff, 0, 0, 0, 0, 0, 0, 0, 1]);
        assert!(matches!(
            r.length(u64::MAX),
            Err(DecodeError::LengthTooLarge(_))
        ));
    }
}
