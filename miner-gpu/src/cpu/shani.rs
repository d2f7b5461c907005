//! SHA-256d nonce search on the x86 SHA extensions (SHA-NI), several nonces interleaved.
//!
//! SHA-NI does two SHA-256 rounds per `sha256rnds2` instruction on a state held in two
//! XMM registers (`ABEF` and `CDGH`), and computes the message schedule four words at a
//! time with `sha256msg1`/`sha256msg2`. One message is a single dependency chain: every
//! `sha256rnds2` needs the previous one's result, so a lone hash runs at the instruction's
//! *latency* and leaves the SHA unit idle most cycles (one reason the `sha2` crate, which
//! hashes one message at a time, is ~3–5× behind this kernel on the same CPU).
//! Nonces are independent, so this kernel carries `N` of them ("streams") through the
//! same code with their instructions interleaved: while one stream's round waits for its
//! input, the others' rounds issue, and the unit runs at its *throughput* instead.
//!
//! Everything the multi-lane kernel ([`super::kernel`]) precomputes is reused:
//!
//! 1. **Midstate** — the first 64 header bytes are compressed once per header
//!    ([`Prepared::mid`]).
//! 2. **Rounds 0..3 done on the host** — the search starts from the state before round 4
//!    ([`Prepared::a4`]..), adding the nonce word W3 into `a` and `e`.
//! 3. **Constant padding** — W4..W15 of the first hash and W8..W15 of the second are
//!    padding, so `K + W` for those rounds is a constant; W16..W19 of the first hash come
//!    from [`Prepared`] plus the nonce terms σ0(W3) and W3, so the schedule starts there.
//! 4. **Early reject, last rounds skipped** — only H7 of the second hash (the top 32
//!    bits of the hash as a number) is needed to reject a nonce, and it is `e` after
//!    round 60: the second hash stops after the `sha256rnds2` of rounds 60 and 61, whose
//!    new `f` is that `e` (rounds 62, 63 are never computed).
//!
//! Candidates (top word ≤ the target's top word) are reported exactly as the multi-lane
//! kernel reports them: in nonce order, to be re-verified in full on the scalar path.
//!
//! Tried and dropped, as measured slower or no faster on the session VM (Zen 4, where a
//! microbenchmark shows the message instructions slowing `sha256rnds2` down when mixed
//! with it, but not by their full cost): running the second hash in odd round pairs
//! after an arithmetic round 0 (one `sha256rnds2` fewer, but an `alignr` per pair; with
//! the folding below ~8% slower); folding the `sha256msg1` of padding words into
//! per-header constants (no change); computing `sha256msg2` with AVX-512VL rotates
//! instead (~30% slower). Figures in BENCHMARKS.md.

use crate::sha256::{ssig0, Prepared, IV, K, KW1, KW2};
use std::arch::x86_64::*;

/// Nonces interleaved per step. `sha256rnds2` measured ~4× slower as a dependent chain
/// than as independent instructions on the session VM (AMD EPYC, Zen 4), so at least 4
/// streams are needed to keep it busy; more only add register pressure. One thread, MH/s
/// per CPU-second (the AVX-512VL build, see [`scan_avx512vl`]): 2 streams 29.5, 4
/// streams 36.1, 6 streams 32.8, 8 streams 31.5 (SSE-only build: 28, 30, -, 26.5).
pub(crate) const STREAMS: usize = 4;

/// `[x0, x1, x2, x3]` with `x0` in the lowest lane.
#[inline(always)]
unsafe fn v4(x0: u32, x1: u32, x2: u32, x3: u32) -> __m128i {
    _mm_setr_epi32(x0 as i32, x1 as i32, x2 as i32, x3 as i32)
}

/// `K[4i..4i+4]`.
#[inline(always)]
unsafe fn kv(i: usize) -> __m128i {
    debug_assert!(i < 16);
    // SAFETY (of the read): K has 64 words; i < 16.
    _mm_loadu_si128(K.as_ptr().add(4 * i).cast())
}

/// A state `a..h` in the SHA-NI register layout: `(ABEF, CDGH)`, i.e. lanes `[f, e, b, a]`
/// and `[h, g, d, c]` (lowest lane first), as `sha256rnds2` expects.
#[inline(always)]
unsafe fn to_sha_layout(s: [u32; 8]) -> (__m128i, __m128i) {
    (v4(s[5], s[4], s[1], s[0]), v4(s[7], s[6], s[3], s[2]))
}

/// The next four schedule words `M[i]` from the previous sixteen, `M[i-4]..M[i-1]`
/// (`W[t] = σ1(W[t-2]) + W[t-7] + σ0(W[t-15]) + W[t-16]`): `sha256msg1` adds the σ0
/// terms to `W[t-16]`, the `alignr` picks `W[t-7]`, `sha256msg2` adds the σ1 terms
/// (which chain through the two words it produces first).
#[inline(always)]
unsafe fn schedule(m4: __m128i, m3: __m128i, m2: __m128i, m1: __m128i) -> __m128i {
    _mm_sha256msg2_epu32(
        _mm_add_epi32(_mm_sha256msg1_epu32(m4, m3), _mm_alignr_epi8::<4>(m1, m2)),
        m1,
    )
}

/// Per-header vectors, built once per [`scan_impl`] call.
struct Consts {
    /// State before round 4 without the nonce, SHA-NI layout.
    abef4: __m128i,
    cdgh4: __m128i,
    /// Selects the `a` and `e` lanes of ABEF (the nonce word is added to both).
    mask_ae: __m128i,
    /// W16..W19 of the first hash without the nonce terms: `[W16, W17, c18, c19]`.
    m4: __m128i,
    /// The midstate, SHA-NI layout (added to the first hash's state at its end).
    mid_abef: __m128i,
    mid_cdgh: __m128i,
    /// The SHA-256 IV, SHA-NI layout (the second hash's initial state).
    iv_abef: __m128i,
    iv_cdgh: __m128i,
}

impl Consts {
    #[inline(always)]
    unsafe fn new(p: &Prepared) -> Consts {
        let (abef4, cdgh4) = to_sha_layout([p.a4, p.b4, p.c4, p.d4, p.e4, p.f4, p.g4, p.h4]);
        let (mid_abef, mid_cdgh) = to_sha_layout(p.mid);
        let (iv_abef, iv_cdgh) = to_sha_layout(IV);
        Consts {
            abef4,
            cdgh4,
            mask_ae: v4(0, u32::MAX, 0, u32::MAX),
            m4: v4(p.w16, p.w17, p.c18, p.c19),
            mid_abef,
            mid_cdgh,
            iv_abef,
            iv_cdgh,
        }
    }
}

/// Four rounds on every stream, `kw[j]` holding `K[t..t+4] + W[t..t+4]` of stream j.
///
/// Each `sha256rnds2` of a stream depends on that stream's previous one; the loops go
/// over the streams *inside* each half so that N independent instructions are issued
/// back to back and their latencies overlap (the whole point of the streams).
#[inline(always)]
unsafe fn rounds4<const N: usize>(
    abef: &mut [__m128i; N],
    cdgh: &mut [__m128i; N],
    kw: &[__m128i; N],
) {
    // `sha256rnds2(cdgh, abef, kw)` returns the new ABEF; the old ABEF is the new CDGH.
    // The two halves swap which variable holds which, so after both they are back.
    for j in 0..N {
        cdgh[j] = _mm_sha256rnds2_epu32(cdgh[j], abef[j], kw[j]);
    }
    for j in 0..N {
        abef[j] = _mm_sha256rnds2_epu32(abef[j], cdgh[j], _mm_shuffle_epi32::<0x0E>(kw[j]));
    }
}

/// Four rounds whose `K + W` is the same compile-time constant for every stream
/// (padding words): both halves are constants, no shuffle.
#[inline(always)]
unsafe fn rounds4_const<const N: usize>(
    abef: &mut [__m128i; N],
    cdgh: &mut [__m128i; N],
    kw: [u32; 4],
) {
    let lo = v4(kw[0], kw[1], 0, 0);
    let hi = v4(kw[2], kw[3], 0, 0);
    for j in 0..N {
        cdgh[j] = _mm_sha256rnds2_epu32(cdgh[j], abef[j], lo);
    }
    for j in 0..N {
        abef[j] = _mm_sha256rnds2_epu32(abef[j], cdgh[j], hi);
    }
}

/// Schedule group `i` (words `4i..4i+4`) into the rotating slot `m[i % 4]`, then its four
/// rounds. `i` is a literal at every call, so all indexing is resolved at compile time.
#[inline(always)]
unsafe fn group<const N: usize>(
    abef: &mut [__m128i; N],
    cdgh: &mut [__m128i; N],
    m: &mut [[__m128i; N]; 4],
    i: usize,
) {
    let k = kv(i);
    let mut kw = [_mm_setzero_si128(); N];
    for j in 0..N {
        let w = schedule(
            m[i % 4][j],
            m[(i + 1) % 4][j],
            m[(i + 2) % 4][j],
            m[(i + 3) % 4][j],
        );
        m[i % 4][j] = w;
        kw[j] = _mm_add_epi32(w, k);
    }
    rounds4(abef, cdgh, &kw);
}

/// H7 of the second hash (big-endian word, as SHA-256 produces it) for the `N` nonces
/// `base, base+1, ..` (wrapping).
#[inline(always)]
unsafe fn sha256d_h7<const N: usize>(c: &Consts, base: u32) -> [u32; N] {
    let zero = _mm_setzero_si128();
    let mut abef = [zero; N];
    let mut cdgh = [c.cdgh4; N];
    // Rotating window of four schedule groups per stream.
    let mut m = [[zero; N]; 4];
    // The schedule groups, written out (not a loop) so every slot index `i % 4` is a
    // literal and the window lives in registers rather than in an indexed array.
    macro_rules! groups {
        ($($i:literal)*) => {
            $(group(&mut abef, &mut cdgh, &mut m, $i);)*
        };
    }

    // ---- First hash, second block, from round 4.
    for j in 0..N {
        // The header stores the nonce little-endian; SHA-256 reads big-endian words.
        let w3 = base.wrapping_add(j as u32).swap_bytes();
        let w3v = _mm_set1_epi32(w3 as i32);
        abef[j] = _mm_add_epi32(c.abef4, _mm_and_si128(w3v, c.mask_ae));
        // W16..W19 = [W16, W17, c18 + σ0(W3), c19 + W3]: only the last two involve the
        // nonce. The slot of group 4 is `m[0]`.
        m[0][j] = _mm_add_epi32(c.m4, v4(0, 0, ssig0(w3), w3));
    }
    // Rounds 4..15: W4..W15 are padding, K + W is constant.
    rounds4_const(&mut abef, &mut cdgh, [KW1[4], KW1[5], KW1[6], KW1[7]]);
    rounds4_const(&mut abef, &mut cdgh, [KW1[8], KW1[9], KW1[10], KW1[11]]);
    rounds4_const(&mut abef, &mut cdgh, [KW1[12], KW1[13], KW1[14], KW1[15]]);
    // Rounds 16..19 from the precomputed group 4.
    let k = kv(4);
    let mut kw = [zero; N];
    for j in 0..N {
        kw[j] = _mm_add_epi32(m[0][j], k);
    }
    rounds4(&mut abef, &mut cdgh, &kw);
    // Groups 1..3 (W4..W15, padding) in their slots for the schedule of groups 5..7.
    // Group 0 (it holds W0..W2, which `Prepared` does not keep) is only needed for
    // group 4, computed above.
    m[1] = [v4(0x8000_0000, 0, 0, 0); N];
    m[2] = [zero; N];
    m[3] = [v4(0, 0, 0, 640); N];
    groups!(5 6 7 8 9 10 11 12 13 14 15);
    // Add the chaining value, then reorder ABEF/CDGH to the digest words [a, b, c, d] and
    // [e, f, g, h]: they are W0..W7 of the second hash's block.
    for j in 0..N {
        let s0 = _mm_add_epi32(abef[j], c.mid_abef); // [f, e, b, a]
        let s1 = _mm_add_epi32(cdgh[j], c.mid_cdgh); // [h, g, d, c]
        let t0 = _mm_shuffle_epi32::<0x1B>(s0); // [a, b, e, f]
        let t1 = _mm_shuffle_epi32::<0xB1>(s1); // [g, h, c, d]
        m[0][j] = _mm_blend_epi16::<0xF0>(t0, t1); // [a, b, c, d]
        m[1][j] = _mm_alignr_epi8::<8>(t1, t0); // [e, f, g, h]
    }

    // ---- Second hash: one block, the 32-byte digest plus constant padding, from the IV.
    abef = [c.iv_abef; N];
    cdgh = [c.iv_cdgh; N];
    // Rounds 0..7: W0..W7 are the digest.
    for (i, slot) in [m[0], m[1]].iter().enumerate() {
        let k = kv(i);
        for j in 0..N {
            kw[j] = _mm_add_epi32(slot[j], k);
        }
        rounds4(&mut abef, &mut cdgh, &kw);
    }
    // Rounds 8..15: W8 = 0x80000000, W9..W14 = 0, W15 = 256.
    rounds4_const(&mut abef, &mut cdgh, [KW2[8], KW2[9], KW2[10], KW2[11]]);
    rounds4_const(&mut abef, &mut cdgh, [KW2[12], KW2[13], KW2[14], KW2[15]]);
    m[2] = [v4(0x8000_0000, 0, 0, 0); N];
    m[3] = [v4(0, 0, 0, 256); N];
    groups!(4 5 6 7 8 9 10 11 12 13 14);
    // Group 15, rounds 60 and 61 only: the new `f` they leave (lane 0 of ABEF) is `e`
    // after round 60, which rounds 61..63 would only shift into `h`. H7 = that + IV[7].
    let k = kv(15);
    let mut h7 = [0u32; N];
    for j in 0..N {
        let w = schedule(m[3][j], m[0][j], m[1][j], m[2][j]);
        let abef_new = _mm_sha256rnds2_epu32(cdgh[j], abef[j], _mm_add_epi32(w, k));
        h7[j] = (_mm_cvtsi128_si32(abef_new) as u32).wrapping_add(IV[7]);
    }
    h7
}

/// Scans `blocks * N` consecutive nonces from `start` (wrapping past 2^32) and pushes,
/// in nonce order, every nonce whose hash's top 32 bits are ≤ `p.target_top`
/// (candidates, still to be checked in full) — the multi-lane kernel's contract.
#[inline(always)]
unsafe fn scan_impl<const N: usize>(p: &Prepared, start: u32, blocks: u32, out: &mut Vec<u32>) {
    let c = Consts::new(p);
    let mut base = start;
    for _ in 0..blocks {
        let h7 = sha256d_h7::<N>(&c, base);
        for (j, h) in h7.iter().enumerate() {
            // H7 is a big-endian word; the hash is compared as a little-endian number,
            // whose top 32 bits are H7 byte-swapped.
            if h.swap_bytes() <= p.target_top {
                out.push(base.wrapping_add(j as u32));
            }
        }
        base = base.wrapping_add(N as u32);
    }
}

/// [`scan_impl`] with only the SHA and SSE features: 16 XMM registers.
///
/// # Safety
/// The CPU must support SHA, SSE4.1 and SSSE3.
#[target_feature(enable = "sha,sse2,ssse3,sse4.1")]
unsafe fn scan_sse(p: &Prepared, start: u32, blocks: u32, out: &mut Vec<u32>) {
    scan_impl::<STREAMS>(p, start, blocks, out)
}

/// [`scan_impl`] compiled with AVX-512VL as well: the same source, but the compiler may
/// use xmm16..xmm31 (EVEX encodings) for everything that is not a SHA instruction.
///
/// Why: the SHA instructions exist only in the legacy SSE encoding, which reaches xmm0..
/// xmm15 and takes its `K + W` in xmm0. Four streams hold 2 registers of state and 4 of
/// schedule window each (24) besides `K + W` and constants, so with 16 registers the
/// kernel spills (~560 stack accesses per 4 nonces in the disassembly); with 32 the
/// schedule, `K + W` and constants can live in xmm16..31 (~80 stack accesses). Measured on the session VM, 4 streams: 30.3 MH/s per
/// CPU-second with SSE only, 31.5 with AVX (VEX, still 16 registers), 36.3 with
/// AVX-512VL.
///
/// # Safety
/// The CPU must support SHA, SSE4.1, SSSE3, AVX-512F and AVX-512VL.
#[target_feature(enable = "sha,sse2,ssse3,sse4.1,avx,avx2,avx512f,avx512vl")]
unsafe fn scan_avx512vl(p: &Prepared, start: u32, blocks: u32, out: &mut Vec<u32>) {
    scan_impl::<STREAMS>(p, start, blocks, out)
}

/// Whether this CPU can run the SHA-NI kernel.
pub(crate) fn supported() -> bool {
    is_x86_feature_detected!("sha")
        && is_x86_feature_detected!("sse4.1")
        && is_x86_feature_detected!("ssse3")
}

fn has_avx512vl() -> bool {
    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512vl")
}

/// Scans `blocks * STREAMS` nonces from `start` (see [`scan_impl`]), with the widest
/// register file this CPU offers.
///
/// # Panics
/// If the CPU lacks SHA-NI ([`supported`]).
pub(crate) fn scan(p: &Prepared, start: u32, blocks: u32, out: &mut Vec<u32>) {
    assert!(supported(), "CPU lacks SHA-NI");
    if has_avx512vl() {
        // SAFETY: SHA, SSE4.1, SSSE3 (above), AVX-512 F and VL (just checked) are present.
        unsafe { scan_avx512vl(p, start, blocks, out) }
    } else {
        // SAFETY: SHA, SSE4.1 and SSSE3 are present (checked above).
        unsafe { scan_sse(p, start, blocks, out) }
    }
}

#[cfg(test)]
mod tests {
    //! Both register-file builds against the scalar reference (the integration tests in
    //! `tests/cpu.rs` reach only the one [`scan`] picks on the machine running them).
    use super::*;
    use crate::sha256::sha256d_header;

    type ScanFn = unsafe fn(&Prepared, u32, u32, &mut Vec<u32>);

    fn builds() -> Vec<(&'static str, ScanFn)> {
        let mut v: Vec<(&'static str, ScanFn)> = Vec::new();
        if supported() {
            v.push(("sse", scan_sse));
            if has_avx512vl() {
                v.push(("avx512vl", scan_avx512vl));
            } else {
                eprintln!("SHA-NI kernel: no AVX-512VL on this CPU, its build is NOT tested");
            }
        }
        v
    }

    /// Every nonce whose top hash word is ≤ `top`, by the scalar reference.
    fn reference(header: &[u8; 80], top: u32, start: u32, count: u32) -> Vec<u32> {
        (0..count)
            .map(|i| start.wrapping_add(i))
            .filter(|&n| {
                let h = sha256d_header(header, n);
                u32::from_le_bytes(h[28..32].try_into().unwrap()) <= top
            })
            .collect()
    }

    #[test]
    fn both_builds_match_the_reference() {
        let builds = builds();
        if !supported() {
            eprintln!("SHA-NI absent on this CPU: the SHA-NI kernel is NOT tested");
            return;
        }
        let mut x = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = move || {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x
        };
        for round in 0..8 {
            let mut header = [0u8; 80];
            for b in header.iter_mut() {
                *b = next() as u8;
            }
            // ~1/32 of nonces pass; the start puts the 2^32 wrap inside the range in
            // the first rounds.
            let top = u32::MAX / 32;
            let start = if round < 2 {
                u32::MAX - 700
            } else {
                next() as u32
            };
            let mut target = [0xffu8; 32];
            target[28..].copy_from_slice(&top.to_le_bytes());
            let p = Prepared::new(&header, &target);
            let blocks = 1500 / STREAMS as u32;
            let want = reference(&header, top, start, blocks * STREAMS as u32);
            assert!(!want.is_empty());
            for (name, f) in &builds {
                let mut got = Vec::new();
                // SAFETY: `builds` lists only what this CPU supports.
                unsafe { f(&p, start, blocks, &mut got) };
                assert_eq!(got, want, "{name} round {round}");
            }
        }
    }
}
