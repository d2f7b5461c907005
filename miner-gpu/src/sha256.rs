//! Scalar SHA-256 pieces shared by every backend: the round constants, a plain
//! compression function (the reference the vector and GPU kernels are checked against,
//! and what re-verifies every reported nonce), and [`Prepared`], the per-header
//! precomputation the search kernels start from.
//!
//! Why precompute at all: an 80-byte header is two SHA-256 blocks, and the nonce sits in
//! the second one (bytes 76..80). The first 64 bytes never change during a search, so
//! their compression (the "midstate") is done once per header instead of once per nonce —
//! that alone removes a third of the work of a naive SHA-256d. Inside the second block the
//! nonce is message word 3, so rounds 0..2 and parts of round 3 and of the message
//! schedule are identical for every nonce too; they are folded into constants here.

use consensus::header::HEADER_SIZE;

/// SHA-256 round constants (FIPS 180-4 §4.2.2).
pub const K: [u32; 64] = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
];

/// SHA-256 initial hash value (FIPS 180-4 §5.3.3).
pub const IV: [u32; 8] = [
    0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19,
];

#[inline(always)]
pub const fn bsig0(x: u32) -> u32 {
    x.rotate_right(2) ^ x.rotate_right(13) ^ x.rotate_right(22)
}
#[inline(always)]
pub const fn bsig1(x: u32) -> u32 {
    x.rotate_right(6) ^ x.rotate_right(11) ^ x.rotate_right(25)
}
#[inline(always)]
pub const fn ssig0(x: u32) -> u32 {
    x.rotate_right(7) ^ x.rotate_right(18) ^ (x >> 3)
}
#[inline(always)]
pub const fn ssig1(x: u32) -> u32 {
    x.rotate_right(17) ^ x.rotate_right(19) ^ (x >> 10)
}
#[inline(always)]
pub const fn ch(e: u32, f: u32, g: u32) -> u32 {
    (e & f) ^ (!e & g)
}
#[inline(always)]
pub const fn maj(a: u32, b: u32, c: u32) -> u32 {
    (a & b) ^ (a & c) ^ (b & c)
}

/// One SHA-256 round on a state `[a..h]` with `kw = K[t] + W[t]`.
#[inline(always)]
pub const fn round(s: [u32; 8], kw: u32) -> [u32; 8] {
    let t1 = s[7]
        .wrapping_add(bsig1(s[4]))
        .wrapping_add(ch(s[4], s[5], s[6]))
        .wrapping_add(kw);
    let t2 = bsig0(s[0]).wrapping_add(maj(s[0], s[1], s[2]));
    [
        t1.wrapping_add(t2),
        s[0],
        s[1],
        s[2],
        s[3].wrapping_add(t1),
        s[4],
        s[5],
        s[6],
    ]
}

/// The SHA-256 compression function on 16 big-endian message words.
pub fn compress(state: [u32; 8], block: &[u32; 16]) -> [u32; 8] {
    let mut w = [0u32; 64];
    w[..16].copy_from_slice(block);
    for t in 16..64 {
        w[t] = ssig1(w[t - 2])
            .wrapping_add(w[t - 7])
            .wrapping_add(ssig0(w[t - 15]))
            .wrapping_add(w[t - 16]);
    }
    let mut s = state;
    for t in 0..64 {
        s = round(s, K[t].wrapping_add(w[t]));
    }
    let mut out = state;
    for i in 0..8 {
        out[i] = out[i].wrapping_add(s[i]);
    }
    out
}

/// Big-endian words of a 64-byte block.
pub fn be_words(bytes: &[u8]) -> [u32; 16] {
    let mut w = [0u32; 16];
    for (i, c) in bytes.chunks_exact(4).take(16).enumerate() {
        w[i] = u32::from_be_bytes(c.try_into().expect("4 bytes"));
    }
    w
}

/// SHA-256d of an 80-byte header with `nonce` substituted, by the scalar reference path.
/// Used to re-verify every nonce a kernel reports before it is trusted.
pub fn sha256d_header(header: &[u8; HEADER_SIZE], nonce: u32) -> [u8; 32] {
    let mid = compress(IV, &be_words(&header[..64]));
    let mut tail = [0u8; 64];
    tail[..12].copy_from_slice(&header[64..76]);
    tail[12..16].copy_from_slice(&nonce.to_le_bytes());
    tail[16] = 0x80;
    tail[62..64].copy_from_slice(&640u16.to_be_bytes());
    let h1 = compress(mid, &be_words(&tail));
    let mut block2 = [0u32; 16];
    block2[..8].copy_from_slice(&h1);
    block2[8] = 0x8000_0000;
    block2[15] = 256;
    let h2 = compress(IV, &block2);
    let mut out = [0u8; 32];
    for (i, w) in h2.iter().enumerate() {
        out[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
    }
    out
}

/// Whether a digest (internal byte order, i.e. a little-endian 256-bit number) is ≤ the
/// target (same order).
pub fn meets(hash: &[u8; 32], target: &[u8; 32]) -> bool {
    for i in (0..32).rev() {
        if hash[i] != target[i] {
            return hash[i] < target[i];
        }
    }
    true
}

/// Message-schedule constants of the first hash's second block that never depend on the
/// header: W4 = 0x80000000 (padding bit), W5..W14 = 0, W15 = 640 (message length in bits).
pub const PAD1: [u32; 16] = [0, 0, 0, 0, 0x8000_0000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 640];

/// `K[t] + W[t]` for rounds 4..15 of the first hash's second block: all constant.
pub const KW1: [u32; 16] = {
    let mut kw = [0u32; 16];
    let mut t = 4;
    while t < 16 {
        kw[t] = K[t].wrapping_add(PAD1[t]);
        t += 1;
    }
    kw
};

/// `K[t] + W[t]` for rounds 8..15 of the second hash (the padding of a 32-byte message:
/// W8 = 0x80000000, W9..W14 = 0, W15 = 256): all constant.
pub const KW2: [u32; 16] = {
    let mut kw = [0u32; 16];
    let mut t = 8;
    while t < 16 {
        let w = match t {
            8 => 0x8000_0000,
            15 => 256,
            _ => 0,
        };
        kw[t] = K[t].wrapping_add(w);
        t += 1;
    }
    kw
};

/// Round 0 of the second hash starts from the fixed IV, so everything but `W0` is a
/// constant: after it, `a = H2_A0 + W0` and `e = H2_E0 + W0`.
pub const H2_T1_0: u32 = IV[7]
    .wrapping_add(bsig1(IV[4]))
    .wrapping_add(ch(IV[4], IV[5], IV[6]))
    .wrapping_add(K[0]);
pub const H2_A0: u32 = H2_T1_0
    .wrapping_add(bsig0(IV[0]))
    .wrapping_add(maj(IV[0], IV[1], IV[2]));
pub const H2_E0: u32 = IV[3].wrapping_add(H2_T1_0);

/// Everything about one header that the nonce search needs, computed once per header.
///
/// Field names follow FIPS 180-4: the second block of the first hash has message words
/// W0 (last 4 bytes of the merkle root), W1 (time), W2 (bits), W3 (the nonce, byte-swapped
/// because SHA-256 reads big-endian words and the header stores it little-endian).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(C)]
pub struct Prepared {
    /// State after compressing the first 64 header bytes.
    pub mid: [u32; 8],
    /// State before round 4 minus the nonce: `a = a4 + W3`, `e = e4 + W3`; `b, c, d` and
    /// `f, g, h` are used as they are.
    pub a4: u32,
    pub b4: u32,
    pub c4: u32,
    pub d4: u32,
    pub e4: u32,
    pub f4: u32,
    pub g4: u32,
    pub h4: u32,
    /// `K[16] + W16` and `K[17] + W17`: W16 and W17 do not involve the nonce.
    pub kw16: u32,
    pub kw17: u32,
    /// W16 and W17 themselves (they feed later schedule words).
    pub w16: u32,
    pub w17: u32,
    /// W18 = `c18 + σ0(W3)` with `c18 = σ1(W16) + W2` (W11 = 0).
    pub c18: u32,
    /// W19 = `c19 + W3` with `c19 = σ1(W17) + σ0(W4)` (W12 = 0).
    pub c19: u32,
    /// Nonce-independent tails of W30, W31, W32 (the rest of their terms are vectors).
    pub c30: u32,
    pub c31: u32,
    pub c32: u32,
    /// Most significant 32 bits of the target (as a little-endian 256-bit number), for the
    /// early reject: a hash whose top word exceeds it cannot meet the target.
    pub target_top: u32,
}

impl Prepared {
    pub fn new(header: &[u8; HEADER_SIZE], target: &[u8; 32]) -> Prepared {
        let mid = compress(IV, &be_words(&header[..64]));
        let tail = be_words(&{
            let mut b = [0u8; 64];
            b[..16].copy_from_slice(&header[64..80]);
            b
        });
        let (w0, w1, w2) = (tail[0], tail[1], tail[2]);
        // Rounds 0..2 use W0..W2 only: the same for every nonce.
        let mut s = mid;
        s = round(s, K[0].wrapping_add(w0));
        s = round(s, K[1].wrapping_add(w1));
        s = round(s, K[2].wrapping_add(w2));
        // Round 3 = T1 (everything but W3) + W3; T2 does not involve W3 at all.
        let t1_base = s[7]
            .wrapping_add(bsig1(s[4]))
            .wrapping_add(ch(s[4], s[5], s[6]))
            .wrapping_add(K[3]);
        let t2 = bsig0(s[0]).wrapping_add(maj(s[0], s[1], s[2]));
        let w16 = ssig0(w1).wrapping_add(w0);
        let w17 = ssig1(640).wrapping_add(ssig0(w2)).wrapping_add(w1);
        Prepared {
            mid,
            a4: t1_base.wrapping_add(t2),
            b4: s[0],
            c4: s[1],
            d4: s[2],
            e4: s[3].wrapping_add(t1_base),
            f4: s[4],
            g4: s[5],
            h4: s[6],
            kw16: K[16].wrapping_add(w16),
            kw17: K[17].wrapping_add(w17),
            w16,
            w17,
            c18: ssig1(w16).wrapping_add(w2),
            c19: ssig1(w17).wrapping_add(ssig0(0x8000_0000)),
            c30: ssig0(640),
            c31: ssig0(w16).wrapping_add(640),
            c32: ssig0(w17).wrapping_add(w16),
            target_top: u32::from_le_bytes(target[28..32].try_into().expect("4 bytes")),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use sha2::{Digest, Sha256};

    fn sha256_bytes(data: &[u8]) -> [u8; 32] {
        // Padding for a one- or two-block message, through our `compress`.
        let mut msg = data.to_vec();
        msg.push(0x80);
        while msg.len() % 64 != 56 {
            msg.push(0);
        }
        msg.extend_from_slice(&((data.len() as u64) * 8).to_be_bytes());
        let mut s = IV;
        for block in msg.chunks_exact(64) {
            s = compress(s, &be_words(block));
        }
        let mut out = [0u8; 32];
        for (i, w) in s.iter().enumerate() {
            out[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
        }
        out
    }

    #[test]
    fn fips_180_4_vectors() {
        assert_eq!(
            hex::encode(sha256_bytes(b"abc")),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(
            hex::encode(sha256_bytes(b"")),
            "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855"
        );
        assert_eq!(
            hex::encode(sha256_bytes(
                b"abcdbcdecdefdefgefghfghighijhijkijkljklmklmnlmnomnopnopq"
            )),
            "248d6a61d20638b8e5c026930c3e6039a33ce45964ff2167f6ecedd419db06c1"
        );
    }

    #[test]
    fn compress_matches_sha2_crate() {
        let data: Vec<u8> = (0..=255u8).cycle().take(119).collect();
        for len in [0, 1, 55, 56, 63, 64, 80, 119] {
            assert_eq!(
                sha256_bytes(&data[..len]),
                <[u8; 32]>::from(Sha256::digest(&data[..len])),
                "len {len}"
            );
        }
    }

    #[test]
    fn header_hash_matches_engine() {
        let mut h = [0u8; 80];
        for (i, b) in h.iter_mut().enumerate() {
            *b = (i as u8).wrapping_mul(37).wrapping_add(11);
        }
        for nonce in [0u32, 1, 0xdead_beef, u32::MAX] {
            let mut full = h;
            full[76..].copy_from_slice(&nonce.to_le_bytes());
            assert_eq!(sha256d_header(&h, nonce), consensus::hash::sha256d(&full));
        }
    }

    #[test]
    fn meets_compares_as_little_endian_numbers() {
        let mut t = [0u8; 32];
        t[31] = 0x10;
        let mut h = [0xffu8; 32];
        h[31] = 0x0f;
        assert!(meets(&h, &t));
        h[31] = 0x10;
        assert!(!meets(&h, &t));
        assert!(meets(&t, &t));
    }
}
