//! The hand-written multi-lane SHA-256d nonce search.
//!
//! Why this exists instead of calling the `sha2` crate: a general-purpose SHA-256 hashes
//! one message at a time, re-pads it, redoes the first block and cannot share work
//! between nonces. On these machines without SHA-NI that is ~0.5–1 MH/s per header, about
//! ten times slower than this loop; even where `sha2` uses SHA-NI (the session machine
//! measured in BENCHMARKS.md) it stays ~3–4× behind the AVX-512 path. The tricks, each of
//! which is commented where it happens:
//!
//! 1. **Midstate** — the first 64 header bytes are compressed once per header
//!    ([`Prepared`]), not per nonce.
//! 2. **Nonce-independent work hoisted** — the nonce is message word W3 of the second
//!    block, so rounds 0..2, most of round 3 and the constant parts of the message
//!    schedule (W4..W15 are padding; W16, W17 and pieces of W18..W33 do not involve W3)
//!    are precomputed on the host.
//! 3. **Constant padding folded** — the second hash hashes a 32-byte message, so W8..W15
//!    are padding constants and round 0 starts from the fixed IV: `K[t] + W[t]` for those
//!    rounds, round 0 and the constant schedule terms are compile-time constants.
//! 4. **Lanes** — N nonces go through the same instruction stream in one vector register
//!    (8 with AVX2, 16 with AVX-512, 1 portable), chosen at run time. Where the CPU has
//!    the SHA extensions, [`Kernel::ShaNi`] (in `cpu::shani`, with the same tricks)
//!    interleaves 4 nonces through the SHA instructions instead.
//! 5. **Early reject, with the last rounds skipped** — only the most significant 32 bits of
//!    the hash (word H7 of the second hash) are needed to reject a nonce, and H7 is fixed
//!    once round 60 has produced `e`: rounds 61..63 and schedule words 61..63 are skipped.
//!    Lanes that survive are recomputed on the scalar reference path and compared in full.

use super::lanes::Lanes;
use crate::sha256::{Prepared, H2_A0, H2_E0, IV, K, KW1, KW2};

/// Most significant word of the SHA-256d hash (H7 of the second hash, big-endian word
/// as SHA-256 produces it) for N nonces at once; `w3` is the byte-swapped nonce per lane.
#[inline(always)]
unsafe fn sha256d_h7<L: Lanes>(p: &Prepared, w3: L) -> L {
    // One round with the variables passed in rotated order, so the state never moves
    // between registers: only `d` (becoming the new e) and `h` (the new a) are written.
    macro_rules! rnd {
        ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $kw:expr) => {{
            let kw = $kw;
            let t1 = L::add(L::add(L::add($h, L::bsig1($e)), L::ch($e, $f, $g)), kw);
            $d = L::add($d, t1);
            $h = L::add(L::add(t1, L::bsig0($a)), L::maj($a, $b, $c));
        }};
    }
    // A round of which only the new `e` is needed (see the end of the second hash).
    macro_rules! rnd_e {
        ($a:ident, $b:ident, $c:ident, $d:ident, $e:ident, $f:ident, $g:ident, $h:ident, $kw:expr) => {{
            let kw = $kw;
            let t1 = L::add(L::add(L::add($h, L::bsig1($e)), L::ch($e, $f, $g)), kw);
            $d = L::add($d, t1);
        }};
    }
    // Eight rounds: after them every variable holds its original role again.
    macro_rules! r8 {
        ($a:ident $b:ident $c:ident $d:ident $e:ident $f:ident $g:ident $h:ident;
         $k0:expr, $k1:expr, $k2:expr, $k3:expr, $k4:expr, $k5:expr, $k6:expr, $k7:expr) => {{
            rnd!($a, $b, $c, $d, $e, $f, $g, $h, $k0);
            rnd!($h, $a, $b, $c, $d, $e, $f, $g, $k1);
            rnd!($g, $h, $a, $b, $c, $d, $e, $f, $k2);
            rnd!($f, $g, $h, $a, $b, $c, $d, $e, $k3);
            rnd!($e, $f, $g, $h, $a, $b, $c, $d, $k4);
            rnd!($d, $e, $f, $g, $h, $a, $b, $c, $k5);
            rnd!($c, $d, $e, $f, $g, $h, $a, $b, $k6);
            rnd!($b, $c, $d, $e, $f, $g, $h, $a, $k7);
        }};
    }
    // A scalar (same in every lane) K+W: one broadcast, folded into the add by the
    // compiler where the ISA allows (AVX-512 embedded broadcast).
    macro_rules! kc {
        ($x:expr) => {
            L::splat($x)
        };
    }
    let mut w = [L::splat(0); 64];
    // General schedule word t, stored and returned as K[t] + W[t].
    macro_rules! wg {
        ($t:expr) => {{
            w[$t] = L::add(
                L::add(L::ssig1(w[$t - 2]), w[$t - 7]),
                L::add(L::ssig0(w[$t - 15]), w[$t - 16]),
            );
            L::add(L::splat(K[$t]), w[$t])
        }};
    }
    // Schedule word t given by an explicit (partly constant) expression.
    macro_rules! ws {
        ($t:expr, $v:expr) => {{
            w[$t] = $v;
            L::add(L::splat(K[$t]), w[$t])
        }};
    }
    let add = |a: L, b: L| L::add(a, b);
    let s1 = |x: L| L::ssig1(x);
    let s0 = |x: L| L::ssig0(x);

    // ---- First hash, second block. Rounds 0..3 were done on the host except for adding
    // W3 (the nonce) into a and e.
    let mut a = add(kc!(p.a4), w3);
    let mut b = kc!(p.b4);
    let mut c = kc!(p.c4);
    let mut d = kc!(p.d4);
    let mut e = add(kc!(p.e4), w3);
    let mut f = kc!(p.f4);
    let mut g = kc!(p.g4);
    let mut h = kc!(p.h4);
    // Rounds 4..11: W4..W11 are padding, K+W is a compile-time constant.
    r8!(a b c d e f g h;
        kc!(KW1[4]), kc!(KW1[5]), kc!(KW1[6]), kc!(KW1[7]),
        kc!(KW1[8]), kc!(KW1[9]), kc!(KW1[10]), kc!(KW1[11]));
    // Rounds 12..19: W16, W17 depend only on the header; W18, W19 are a constant plus
    // one nonce term each (σ0(W3) and W3).
    r8!(a b c d e f g h;
        kc!(KW1[12]), kc!(KW1[13]), kc!(KW1[14]), kc!(KW1[15]),
        kc!(p.kw16), kc!(p.kw17),
        ws!(18, add(kc!(p.c18), s0(w3))),
        ws!(19, add(kc!(p.c19), w3)));
    // Rounds 20..27: the zero padding words drop out of the schedule.
    r8!(a b c d e f g h;
        ws!(20, add(s1(w[18]), kc!(0x8000_0000))),
        ws!(21, s1(w[19])),
        ws!(22, add(s1(w[20]), kc!(640))),
        ws!(23, add(s1(w[21]), kc!(p.w16))),
        ws!(24, add(s1(w[22]), kc!(p.w17))),
        ws!(25, add(s1(w[23]), w[18])),
        ws!(26, add(s1(w[24]), w[19])),
        ws!(27, add(s1(w[25]), w[20])));
    // Rounds 28..35: W30..W33 still have constant terms (c30..c32, W17).
    r8!(a b c d e f g h;
        ws!(28, add(s1(w[26]), w[21])),
        ws!(29, add(s1(w[27]), w[22])),
        ws!(30, add(add(s1(w[28]), w[23]), kc!(p.c30))),
        ws!(31, add(add(s1(w[29]), w[24]), kc!(p.c31))),
        ws!(32, add(add(s1(w[30]), w[25]), kc!(p.c32))),
        ws!(33, add(add(s1(w[31]), w[26]), add(s0(w[18]), kc!(p.w17)))),
        wg!(34), wg!(35));
    r8!(a b c d e f g h; wg!(36), wg!(37), wg!(38), wg!(39), wg!(40), wg!(41), wg!(42), wg!(43));
    r8!(a b c d e f g h; wg!(44), wg!(45), wg!(46), wg!(47), wg!(48), wg!(49), wg!(50), wg!(51));
    r8!(a b c d e f g h; wg!(52), wg!(53), wg!(54), wg!(55), wg!(56), wg!(57), wg!(58), wg!(59));
    rnd!(a, b, c, d, e, f, g, h, wg!(60));
    rnd!(h, a, b, c, d, e, f, g, wg!(61));
    rnd!(g, h, a, b, c, d, e, f, wg!(62));
    rnd!(f, g, h, a, b, c, d, e, wg!(63));
    // After 60 rounds (not a multiple of 8) the roles sit four places on: a is in `e`.
    let x = [
        add(e, kc!(p.mid[0])),
        add(f, kc!(p.mid[1])),
        add(g, kc!(p.mid[2])),
        add(h, kc!(p.mid[3])),
        add(a, kc!(p.mid[4])),
        add(b, kc!(p.mid[5])),
        add(c, kc!(p.mid[6])),
        add(d, kc!(p.mid[7])),
    ];

    // ---- Second hash: one block, the 32-byte first hash plus constant padding. Round 0
    // from the fixed IV is a compile-time constant plus W0.
    w[..8].copy_from_slice(&x);
    let mut a = add(kc!(H2_A0), x[0]);
    let mut b = kc!(IV[0]);
    let mut c = kc!(IV[1]);
    let mut d = kc!(IV[2]);
    let mut e = add(kc!(H2_E0), x[0]);
    let mut f = kc!(IV[4]);
    let mut g = kc!(IV[5]);
    let mut h = kc!(IV[6]);
    macro_rules! kv {
        ($t:expr) => {
            L::add(L::splat(K[$t]), w[$t])
        };
    }
    // Rounds 1..8: W1..W7 are the first hash's words, W8 is padding.
    r8!(a b c d e f g h;
        kv!(1), kv!(2), kv!(3), kv!(4), kv!(5), kv!(6), kv!(7), kc!(KW2[8]));
    r8!(a b c d e f g h;
        kc!(KW2[9]), kc!(KW2[10]), kc!(KW2[11]), kc!(KW2[12]),
        kc!(KW2[13]), kc!(KW2[14]), kc!(KW2[15]),
        // W16 = σ0(W1) + W0: σ1(W14) and W9 are zero.
        ws!(16, add(s0(w[1]), w[0])));
    r8!(a b c d e f g h;
        ws!(17, add(add(s0(w[2]), w[1]), kc!(crate::sha256::ssig1(256)))),
        ws!(18, add(add(s1(w[16]), s0(w[3])), w[2])),
        ws!(19, add(add(s1(w[17]), s0(w[4])), w[3])),
        ws!(20, add(add(s1(w[18]), s0(w[5])), w[4])),
        ws!(21, add(add(s1(w[19]), s0(w[6])), w[5])),
        ws!(22, add(add(s1(w[20]), s0(w[7])), add(w[6], kc!(256)))),
        ws!(23, add(add(s1(w[21]), w[16]), add(w[7], kc!(crate::sha256::ssig0(0x8000_0000))))),
        ws!(24, add(add(s1(w[22]), w[17]), kc!(0x8000_0000))));
    r8!(a b c d e f g h;
        ws!(25, add(s1(w[23]), w[18])),
        ws!(26, add(s1(w[24]), w[19])),
        ws!(27, add(s1(w[25]), w[20])),
        ws!(28, add(s1(w[26]), w[21])),
        ws!(29, add(s1(w[27]), w[22])),
        ws!(30, add(add(s1(w[28]), w[23]), kc!(crate::sha256::ssig0(256)))),
        ws!(31, add(add(s1(w[29]), w[24]), add(s0(w[16]), kc!(256)))),
        wg!(32));
    r8!(a b c d e f g h; wg!(33), wg!(34), wg!(35), wg!(36), wg!(37), wg!(38), wg!(39), wg!(40));
    r8!(a b c d e f g h; wg!(41), wg!(42), wg!(43), wg!(44), wg!(45), wg!(46), wg!(47), wg!(48));
    r8!(a b c d e f g h; wg!(49), wg!(50), wg!(51), wg!(52), wg!(53), wg!(54), wg!(55), wg!(56));
    // Rounds 57..59: the `a` they would produce only reaches H7 through rounds 61..63
    // (an `a` becomes `d` three rounds later and `d` feeds `e`), so only `e` is computed.
    rnd_e!(a, b, c, d, e, f, g, h, wg!(57));
    rnd_e!(h, a, b, c, d, e, f, g, wg!(58));
    rnd_e!(g, h, a, b, c, d, e, f, wg!(59));
    // Round 60, only its T1: the final H7 is e after round 60 (it then shifts e→f→g→h
    // through rounds 61..63, which therefore need not be computed) plus IV[7].
    // Roles now: a=f, b=g, c=h, d=a, e=b, f=c, g=d, h=e.
    let t1 = add(add(add(e, L::bsig1(b)), L::ch(b, c, d)), wg!(60));
    add(add(a, t1), kc!(IV[7]))
}

/// Scans `blocks * L::N` consecutive nonces from `start` (wrapping past 2^32) and pushes
/// every nonce whose hash's top 32 bits are ≤ `p.target_top` (candidates, still to be
/// checked in full).
#[inline(always)]
unsafe fn scan<L: Lanes>(p: &Prepared, start: u32, blocks: u32, out: &mut Vec<u32>) {
    let lane = L::lane_index();
    let mut base = start;
    for _ in 0..blocks {
        let nonce = L::add(L::splat(base), lane);
        let h7 = sha256d_h7::<L>(p, L::bswap(nonce));
        // H7 as SHA-256 emits it is big-endian; the hash is compared as a little-endian
        // number, whose top 32 bits are H7 byte-swapped.
        let mut mask = L::le_mask(L::bswap(h7), p.target_top);
        while mask != 0 {
            out.push(base.wrapping_add(mask.trailing_zeros()));
            mask &= mask - 1;
        }
        base = base.wrapping_add(L::N);
    }
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx512f,avx512bw")]
unsafe fn scan_avx512(p: &Prepared, start: u32, blocks: u32, out: &mut Vec<u32>) {
    scan::<super::lanes::x86::Avx512>(p, start, blocks, out)
}

#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2")]
unsafe fn scan_avx2(p: &Prepared, start: u32, blocks: u32, out: &mut Vec<u32>) {
    scan::<super::lanes::x86::Avx2>(p, start, blocks, out)
}

fn scan_portable(p: &Prepared, start: u32, blocks: u32, out: &mut Vec<u32>) {
    // SAFETY: the u32 lanes use no target features.
    unsafe { scan::<u32>(p, start, blocks, out) }
}

/// Which instruction set the CPU search runs on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// One lane of plain integer code: runs anywhere.
    Portable,
    /// 8 lanes, AVX2.
    Avx2,
    /// 16 lanes, AVX-512 F + BW.
    Avx512,
    /// The x86 SHA extensions, several nonces interleaved (see `cpu::shani`).
    ShaNi,
}

impl Kernel {
    /// The kernel expected to be fastest from the CPU's features alone: the last of
    /// [`Kernel::available`]. [`Kernel::calibrate`] measures instead.
    pub fn detect() -> Kernel {
        Kernel::available()
            .into_iter()
            .last()
            .unwrap_or(Kernel::Portable)
    }

    /// The fastest kernel on this very CPU, measured: each kernel [`Kernel::available`]
    /// offers (the portable one only when alone) scans the same nonces a few times, in
    /// turn, and the best time wins (~50 ms in all). Why measure instead of trusting the
    /// order of [`Kernel::detect`]: which of SHA-NI and AVX-512 is faster depends on the
    /// microarchitecture (the SHA instructions' latency and throughput, AVX-512 clocks),
    /// and guessing wrong costs a miner its speed for as long as it runs.
    pub fn calibrate() -> Kernel {
        const NONCES: u32 = 1 << 17;
        const ROUNDS: usize = 3;
        let mut candidates = Kernel::available();
        if candidates.len() > 1 {
            candidates.retain(|k| *k != Kernel::Portable);
        }
        let prepared = Prepared::new(&[0x5a; 80], &[0; 32]);
        let mut best = vec![std::time::Duration::MAX; candidates.len()];
        let mut found = Vec::new();
        for round in 0..ROUNDS {
            for (k, best) in candidates.iter().zip(&mut best) {
                let t0 = std::time::Instant::now();
                k.scan(&prepared, round as u32 * NONCES, NONCES, &mut found);
                *best = (*best).min(t0.elapsed());
                found.clear();
            }
        }
        let expected = Kernel::detect();
        let time_of = |k: Kernel| candidates.iter().position(|c| *c == k).map(|i| best[i]);
        let (fastest, fastest_time) = candidates
            .iter()
            .copied()
            .zip(best.iter().copied())
            .min_by_key(|(_, t)| *t)
            .unwrap_or((expected, std::time::Duration::ZERO));
        // Within 5 % the measurement is noise: keep the expected kernel, so the choice
        // does not flip from run to run on a machine where two are about equal.
        match time_of(expected) {
            Some(t) if t.as_secs_f64() <= fastest_time.as_secs_f64() * 1.05 => expected,
            _ => fastest,
        }
    }

    /// Every kernel this CPU can run, slowest first.
    ///
    /// SHA-NI comes last, ahead of AVX-512, because it measured faster where both exist
    /// (session VM, AMD EPYC Zen 4, one thread: ~36 against ~33 MH/s per CPU-second, see
    /// BENCHMARKS.md). On CPUs with SHA-NI and no AVX-512 (e.g. Zen 2/3) its SSE-only
    /// build (~30 here) is about twice the AVX2 kernel. `--kernel` overrides the choice.
    pub fn available() -> Vec<Kernel> {
        #[allow(unused_mut)]
        let mut v = vec![Kernel::Portable];
        #[cfg(target_arch = "x86_64")]
        {
            if is_x86_feature_detected!("avx2") {
                v.push(Kernel::Avx2);
            }
            if is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw") {
                v.push(Kernel::Avx512);
            }
            if super::shani::supported() {
                v.push(Kernel::ShaNi);
            }
        }
        v
    }

    /// Nonces per step.
    pub fn lanes(self) -> u32 {
        match self {
            Kernel::Portable => 1,
            Kernel::Avx2 => 8,
            Kernel::Avx512 => 16,
            #[cfg(target_arch = "x86_64")]
            Kernel::ShaNi => super::shani::STREAMS as u32,
            #[cfg(not(target_arch = "x86_64"))]
            Kernel::ShaNi => 1,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            Kernel::Portable => "portable",
            Kernel::Avx2 => "avx2",
            Kernel::Avx512 => "avx512",
            Kernel::ShaNi => "shani",
        }
    }

    /// Candidate nonces (top hash word ≤ target's top word) among `count` nonces from
    /// `start`, wrapping past 2^32. Candidates must be verified in full by the caller.
    pub fn scan(self, p: &Prepared, start: u32, count: u32, out: &mut Vec<u32>) {
        let lanes = self.lanes();
        let blocks = count / lanes;
        let rest = count % lanes;
        match self {
            Kernel::Portable => scan_portable(p, start, blocks, out),
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx2 => {
                assert!(is_x86_feature_detected!("avx2"), "CPU lacks AVX2");
                // SAFETY: AVX2 is present (checked above).
                unsafe { scan_avx2(p, start, blocks, out) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::Avx512 => {
                assert!(
                    is_x86_feature_detected!("avx512f") && is_x86_feature_detected!("avx512bw"),
                    "CPU lacks AVX-512"
                );
                // SAFETY: AVX-512 F and BW are present (checked above).
                unsafe { scan_avx512(p, start, blocks, out) }
            }
            #[cfg(target_arch = "x86_64")]
            Kernel::ShaNi => super::shani::scan(p, start, blocks, out),
            #[cfg(not(target_arch = "x86_64"))]
            _ => scan_portable(p, start, blocks, out),
        }
        if rest > 0 {
            scan_portable(p, start.wrapping_add(blocks * lanes), rest, out);
        }
    }
}
