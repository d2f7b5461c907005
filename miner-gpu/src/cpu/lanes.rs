//! The vector "lane" abstraction the SHA-256d search kernel is written against: N
//! independent 32-bit lanes, one nonce per lane. Implemented for a plain `u32` (one lane,
//! the portable fallback), AVX2 (`__m256i`, 8 lanes) and AVX-512 (`__m512i`, 16 lanes).
//!
//! Every method is `#[inline(always)]` so that the whole kernel collapses into the single
//! `#[target_feature]` entry point that instantiates it; the intrinsics then compile with
//! that entry point's features. The methods are `unsafe` because calling the vector ones
//! on a CPU without the feature is undefined behaviour: only the entry points in
//! `cpu::kernel`, reached after runtime detection, call them.

/// N lanes of u32 with the operations SHA-256 needs. The SHA-256 functions (Σ0, Σ1, σ0,
/// σ1, Ch, Maj) are methods rather than being built from rotates and xors generically so
/// each instruction set can use its best form (AVX-512: native rotates and 3-input
/// `vpternlogd`; AVX2: shift/shift/or rotates).
pub(crate) trait Lanes: Copy {
    /// Number of lanes.
    const N: u32;
    unsafe fn splat(x: u32) -> Self;
    unsafe fn add(a: Self, b: Self) -> Self;
    /// `[0, 1, .., N-1]`, the per-lane nonce offset.
    unsafe fn lane_index() -> Self;
    /// Byte swap of each lane (little-endian header nonce → big-endian SHA word).
    unsafe fn bswap(a: Self) -> Self;
    unsafe fn bsig0(a: Self) -> Self;
    unsafe fn bsig1(e: Self) -> Self;
    unsafe fn ssig0(w: Self) -> Self;
    unsafe fn ssig1(w: Self) -> Self;
    unsafe fn ch(e: Self, f: Self, g: Self) -> Self;
    unsafe fn maj(a: Self, b: Self, c: Self) -> Self;
    /// Bit i set when lane i, read as an unsigned number, is ≤ `b`.
    unsafe fn le_mask(a: Self, b: u32) -> u32;
}

/// Portable fallback: one lane, plain integer code (correct on any CPU; LLVM may still
/// schedule it well, but it does one nonce at a time).
impl Lanes for u32 {
    const N: u32 = 1;
    #[inline(always)]
    unsafe fn splat(x: u32) -> Self {
        x
    }
    #[inline(always)]
    unsafe fn add(a: Self, b: Self) -> Self {
        a.wrapping_add(b)
    }
    #[inline(always)]
    unsafe fn lane_index() -> Self {
        0
    }
    #[inline(always)]
    unsafe fn bswap(a: Self) -> Self {
        a.swap_bytes()
    }
    #[inline(always)]
    unsafe fn bsig0(a: Self) -> Self {
        crate::sha256::bsig0(a)
    }
    #[inline(always)]
    unsafe fn bsig1(e: Self) -> Self {
        crate::sha256::bsig1(e)
    }
    #[inline(always)]
    unsafe fn ssig0(w: Self) -> Self {
        crate::sha256::ssig0(w)
    }
    #[inline(always)]
    unsafe fn ssig1(w: Self) -> Self {
        crate::sha256::ssig1(w)
    }
    #[inline(always)]
    unsafe fn ch(e: Self, f: Self, g: Self) -> Self {
        // (f ^ g) & e ^ g: three operations instead of four.
        ((f ^ g) & e) ^ g
    }
    #[inline(always)]
    unsafe fn maj(a: Self, b: Self, c: Self) -> Self {
        (a & b) | (c & (a | b))
    }
    #[inline(always)]
    unsafe fn le_mask(a: Self, b: u32) -> u32 {
        (a <= b) as u32
    }
}

#[cfg(target_arch = "x86_64")]
pub(crate) mod x86 {
    use super::Lanes;
    use std::arch::x86_64::*;

    /// 8 lanes in a 256-bit AVX2 register.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx2(__m256i);

    /// AVX2 has no vector rotate: `(x >> r) | (x << (32 - r))`.
    macro_rules! ror256 {
        ($x:expr, $r:literal) => {
            _mm256_or_si256(
                _mm256_srli_epi32::<$r>($x),
                _mm256_slli_epi32::<{ 32 - $r }>($x),
            )
        };
    }

    impl Lanes for Avx2 {
        const N: u32 = 8;
        #[inline(always)]
        unsafe fn splat(x: u32) -> Self {
            Avx2(_mm256_set1_epi32(x as i32))
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            Avx2(_mm256_add_epi32(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn lane_index() -> Self {
            Avx2(_mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7))
        }
        #[inline(always)]
        unsafe fn bswap(a: Self) -> Self {
            let m = _mm256_setr_epi8(
                3, 2, 1, 0, 7, 6, 5, 4, 11, 10, 9, 8, 15, 14, 13, 12, 3, 2, 1, 0, 7, 6, 5, 4, 11,
                10, 9, 8, 15, 14, 13, 12,
            );
            Avx2(_mm256_shuffle_epi8(a.0, m))
        }
        #[inline(always)]
        unsafe fn bsig0(a: Self) -> Self {
            let x = a.0;
            Avx2(_mm256_xor_si256(
                _mm256_xor_si256(ror256!(x, 2), ror256!(x, 13)),
                ror256!(x, 22),
            ))
        }
        #[inline(always)]
        unsafe fn bsig1(e: Self) -> Self {
            let x = e.0;
            Avx2(_mm256_xor_si256(
                _mm256_xor_si256(ror256!(x, 6), ror256!(x, 11)),
                ror256!(x, 25),
            ))
        }
        #[inline(always)]
        unsafe fn ssig0(w: Self) -> Self {
            let x = w.0;
            Avx2(_mm256_xor_si256(
                _mm256_xor_si256(ror256!(x, 7), ror256!(x, 18)),
                _mm256_srli_epi32::<3>(x),
            ))
        }
        #[inline(always)]
        unsafe fn ssig1(w: Self) -> Self {
            let x = w.0;
            Avx2(_mm256_xor_si256(
                _mm256_xor_si256(ror256!(x, 17), ror256!(x, 19)),
                _mm256_srli_epi32::<10>(x),
            ))
        }
        #[inline(always)]
        unsafe fn ch(e: Self, f: Self, g: Self) -> Self {
            Avx2(_mm256_xor_si256(
                _mm256_and_si256(_mm256_xor_si256(f.0, g.0), e.0),
                g.0,
            ))
        }
        #[inline(always)]
        unsafe fn maj(a: Self, b: Self, c: Self) -> Self {
            Avx2(_mm256_or_si256(
                _mm256_and_si256(a.0, b.0),
                _mm256_and_si256(c.0, _mm256_or_si256(a.0, b.0)),
            ))
        }
        #[inline(always)]
        unsafe fn le_mask(a: Self, b: u32) -> u32 {
            // No unsigned compare in AVX2: a ≤ b ⟺ max(a, b) == b.
            let bv = _mm256_set1_epi32(b as i32);
            let eq = _mm256_cmpeq_epi32(_mm256_max_epu32(a.0, bv), bv);
            _mm256_movemask_ps(_mm256_castsi256_ps(eq)) as u32
        }
    }

    /// 16 lanes in a 512-bit AVX-512 register.
    #[derive(Clone, Copy)]
    pub(crate) struct Avx512(__m512i);

    /// Three-input XOR in one `vpternlogd` (truth table 0x96).
    #[inline(always)]
    unsafe fn xor3(a: __m512i, b: __m512i, c: __m512i) -> __m512i {
        _mm512_ternarylogic_epi32::<0x96>(a, b, c)
    }

    impl Lanes for Avx512 {
        const N: u32 = 16;
        #[inline(always)]
        unsafe fn splat(x: u32) -> Self {
            Avx512(_mm512_set1_epi32(x as i32))
        }
        #[inline(always)]
        unsafe fn add(a: Self, b: Self) -> Self {
            Avx512(_mm512_add_epi32(a.0, b.0))
        }
        #[inline(always)]
        unsafe fn lane_index() -> Self {
            Avx512(_mm512_setr_epi32(
                0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15,
            ))
        }
        #[inline(always)]
        unsafe fn bswap(a: Self) -> Self {
            let m = _mm512_set4_epi32(0x0c0d0e0f, 0x08090a0b, 0x04050607, 0x00010203);
            Avx512(_mm512_shuffle_epi8(a.0, m))
        }
        // Native rotates (`vprord`) and a single ternary-logic op per Σ/σ: 4 instructions
        // where AVX2 needs 8.
        #[inline(always)]
        unsafe fn bsig0(a: Self) -> Self {
            let x = a.0;
            Avx512(xor3(
                _mm512_ror_epi32::<2>(x),
                _mm512_ror_epi32::<13>(x),
                _mm512_ror_epi32::<22>(x),
            ))
        }
        #[inline(always)]
        unsafe fn bsig1(e: Self) -> Self {
            let x = e.0;
            Avx512(xor3(
                _mm512_ror_epi32::<6>(x),
                _mm512_ror_epi32::<11>(x),
                _mm512_ror_epi32::<25>(x),
            ))
        }
        #[inline(always)]
        unsafe fn ssig0(w: Self) -> Self {
            let x = w.0;
            Avx512(xor3(
                _mm512_ror_epi32::<7>(x),
                _mm512_ror_epi32::<18>(x),
                _mm512_srli_epi32::<3>(x),
            ))
        }
        #[inline(always)]
        unsafe fn ssig1(w: Self) -> Self {
            let x = w.0;
            Avx512(xor3(
                _mm512_ror_epi32::<17>(x),
                _mm512_ror_epi32::<19>(x),
                _mm512_srli_epi32::<10>(x),
            ))
        }
        // Ch and Maj are each one `vpternlogd` (truth tables 0xCA and 0xE8).
        #[inline(always)]
        unsafe fn ch(e: Self, f: Self, g: Self) -> Self {
            Avx512(_mm512_ternarylogic_epi32::<0xCA>(e.0, f.0, g.0))
        }
        #[inline(always)]
        unsafe fn maj(a: Self, b: Self, c: Self) -> Self {
            Avx512(_mm512_ternarylogic_epi32::<0xE8>(a.0, b.0, c.0))
        }
        #[inline(always)]
        unsafe fn le_mask(a: Self, b: u32) -> u32 {
            _mm512_cmple_epu32_mask(a.0, _mm512_set1_epi32(b as i32)) as u32
        }
    }
}
