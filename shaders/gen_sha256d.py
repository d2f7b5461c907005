#!/usr/bin/env python3
"""Generates shaders/sha256d.wgsl: the fully unrolled SHA-256d nonce search kernel.

Why generate: the rounds must be unrolled over plain scalars (a loop over runtime-indexed
arrays for K and the message schedule runs 10-30x slower on real and software GPUs), and
writing ~120 unrolled rounds with their hoisted constants by hand is error-prone. The
same derivation as the CPU kernel (miner-gpu/src/cpu/kernel.rs) is applied; the output
is committed and loaded with include_str!, and the tests check it against the CPU hash.

Run: python3 shaders/gen_sha256d.py > shaders/sha256d.wgsl
"""

M = 0xFFFFFFFF
K = [
    0x428a2f98, 0x71374491, 0xb5c0fbcf, 0xe9b5dba5, 0x3956c25b, 0x59f111f1, 0x923f82a4, 0xab1c5ed5,
    0xd807aa98, 0x12835b01, 0x243185be, 0x550c7dc3, 0x72be5d74, 0x80deb1fe, 0x9bdc06a7, 0xc19bf174,
    0xe49b69c1, 0xefbe4786, 0x0fc19dc6, 0x240ca1cc, 0x2de92c6f, 0x4a7484aa, 0x5cb0a9dc, 0x76f988da,
    0x983e5152, 0xa831c66d, 0xb00327c8, 0xbf597fc7, 0xc6e00bf3, 0xd5a79147, 0x06ca6351, 0x14292967,
    0x27b70a85, 0x2e1b2138, 0x4d2c6dfc, 0x53380d13, 0x650a7354, 0x766a0abb, 0x81c2c92e, 0x92722c85,
    0xa2bfe8a1, 0xa81a664b, 0xc24b8b70, 0xc76c51a3, 0xd192e819, 0xd6990624, 0xf40e3585, 0x106aa070,
    0x19a4c116, 0x1e376c08, 0x2748774c, 0x34b0bcb5, 0x391c0cb3, 0x4ed8aa4a, 0x5b9cca4f, 0x682e6ff3,
    0x748f82ee, 0x78a5636f, 0x84c87814, 0x8cc70208, 0x90befffa, 0xa4506ceb, 0xbef9a3f7, 0xc67178f2,
]
IV = [0x6a09e667, 0xbb67ae85, 0x3c6ef372, 0xa54ff53a, 0x510e527f, 0x9b05688c, 0x1f83d9ab, 0x5be0cd19]


def rotr(x, n):
    return ((x >> n) | (x << (32 - n))) & M


def bsig0(x):
    return rotr(x, 2) ^ rotr(x, 13) ^ rotr(x, 22)


def bsig1(x):
    return rotr(x, 6) ^ rotr(x, 11) ^ rotr(x, 25)


def ssig0(x):
    return rotr(x, 7) ^ rotr(x, 18) ^ (x >> 3)


def ssig1(x):
    return rotr(x, 17) ^ rotr(x, 19) ^ (x >> 10)


def ch(e, f, g):
    return ((e & f) ^ (~e & g)) & M


def maj(a, b, c):
    return (a & b) ^ (a & c) ^ (b & c)


def lit(x):
    return f"0x{x & M:08x}u"


out = []


def emit(s=""):
    out.append(("        " + s) if s else "")


def rnd(t, kw, A, E, p, full=True):
    """Round t in SSA form: defines e(t+1) and, when `full`, a(t+1)."""
    emit(f"let {p}t{t} = {E[t - 3]} + bsig1({E[t]}) + ch({E[t]}, {E[t - 1]}, {E[t - 2]}) + {kw};")
    E[t + 1] = f"{p}e{t + 1}"
    emit(f"let {p}e{t + 1} = {A[t - 3]} + {p}t{t};")
    if full:
        A[t + 1] = f"{p}a{t + 1}"
        emit(f"let {p}a{t + 1} = {p}t{t} + bsig0({A[t]}) + maj({A[t]}, {A[t - 1]}, {A[t - 2]});")


def general(w, t):
    return f"ssig1({w}{t - 2}) + {w}{t - 7} + ssig0({w}{t - 15}) + {w}{t - 16}"


# ---- First hash, second block: rounds 0..3 were done on the host except W3 (the nonce).
emit("// First hash, second block. The host did rounds 0..2 and round 3 without W3.")
emit("let w3 = bswap(nonce);")
A = {4: "a4", 3: "P_B4", 2: "P_C4", 1: "P_D4"}
E = {4: "e4", 3: "P_F4", 2: "P_G4", 1: "P_H4"}
emit("let a4 = P_A4 + w3;")
emit("let e4 = P_E4 + w3;")
pad1 = [0] * 16
pad1[4] = 0x80000000
pad1[15] = 640
w1 = {
    18: "P_C18 + ssig0(w3)",
    19: "P_C19 + w3",
    20: f"ssig1(w18) + {lit(0x80000000)}",
    21: "ssig1(w19)",
    22: f"ssig1(w20) + {lit(640)}",
    23: "ssig1(w21) + P_W16",
    24: "ssig1(w22) + P_W17",
    30: f"ssig1(w28) + w23 + {lit(ssig0(640))}",
    31: "ssig1(w29) + w24 + P_C31",
    32: "ssig1(w30) + w25 + P_C32",
    33: "ssig1(w31) + w26 + ssig0(w18) + P_W17",
}
for t in range(25, 30):
    w1[t] = f"ssig1(w{t - 2}) + w{t - 7}"
for t in range(4, 64):
    if t < 16:
        # W4..W15 are padding: K + W is a literal.
        kw = lit(K[t] + pad1[t])
    elif t == 16:
        kw = "P_KW16"
    elif t == 17:
        kw = "P_KW17"
    else:
        emit(f"let w{t} = {w1.get(t, general('w', t))};")
        kw = f"w{t} + {lit(K[t])}"
    rnd(t, kw, A, E, "")
emit("// The first hash: final state plus the midstate.")
for i, (v, m) in enumerate([(A[64], 0), (A[63], 1), (A[62], 2), (A[61], 3), (E[64], 4), (E[63], 5), (E[62], 6), (E[61], 7)]):
    emit(f"let v{i} = {v} + P_MID{m};")

# ---- Second hash: a 32-byte message, constant padding, fixed IV.
emit("")
emit("// Second hash. Round 0 from the fixed IV is a constant plus W0.")
t1_0 = (IV[7] + bsig1(IV[4]) + ch(IV[4], IV[5], IV[6]) + K[0]) & M
a0c = (t1_0 + bsig0(IV[0]) + maj(IV[0], IV[1], IV[2])) & M
e0c = (IV[3] + t1_0) & M
A = {1: "qa1", 0: lit(IV[0]), -1: lit(IV[1]), -2: lit(IV[2])}
E = {1: "qe1", 0: lit(IV[4]), -1: lit(IV[5]), -2: lit(IV[6])}
emit(f"let qa1 = v0 + {lit(a0c)};")
emit(f"let qe1 = v0 + {lit(e0c)};")
pad2 = [0] * 16
pad2[8] = 0x80000000
pad2[15] = 256
w2 = {
    16: "ssig0(v1) + v0",
    17: f"ssig0(v2) + v1 + {lit(ssig1(256))}",
    22: f"ssig1(v20) + ssig0(v7) + v6 + {lit(256)}",
    23: f"ssig1(v21) + v16 + v7 + {lit(ssig0(0x80000000))}",
    24: f"ssig1(v22) + v17 + {lit(0x80000000)}",
    30: f"ssig1(v28) + v23 + {lit(ssig0(256))}",
    31: f"ssig1(v29) + v24 + ssig0(v16) + {lit(256)}",
}
for t in range(18, 22):
    w2[t] = f"ssig1(v{t - 2}) + ssig0(v{t - 15}) + v{t - 16}"
for t in range(25, 30):
    w2[t] = f"ssig1(v{t - 2}) + v{t - 7}"
for t in range(1, 61):
    if 8 <= t < 16:
        kw = lit(K[t] + pad2[t])
    elif t < 8:
        kw = f"v{t} + {lit(K[t])}"
    else:
        emit(f"let v{t} = {w2.get(t, general('v', t))};")
        kw = f"v{t} + {lit(K[t])}"
    if t == 57:
        emit("// Rounds 57..60 only need e: H7 = e(61) + IV7, and the a values they would")
        emit("// produce reach H7 only through rounds 61..63, which are skipped.")
    rnd(t, kw, A, E, "q", full=t < 57)
emit(f"let h7 = qe61 + {lit(IV[7])};")

body = "\n".join(out)

HEADER = """// SHA-256d nonce search over an 80-byte block header.
// GENERATED by shaders/gen_sha256d.py -- edit the generator, not this file.
//
// Each invocation tries NONCES_PER_INVOCATION consecutive nonces (amortises the launch
// and parameter loads; the rounds themselves are straight-line code). Why the code looks
// like this:
// - Midstate: the host compresses the first 64 header bytes once per header (P_MID*).
// - Hoisting: the nonce is message word W3 of the second block, so the host also did
//   rounds 0..2 and round 3 minus W3 (P_A4 .. P_H4) and the nonce-independent schedule
//   terms (P_KW16, P_KW17, P_W16, P_W17, P_C18 .. P_C32). Padding words are literals.
// - Fully unrolled over scalars in SSA form (a(t), e(t); b,c,d / f,g,h are the previous
//   a / e values): runtime-indexed arrays for K or the schedule run 10-30x slower.
// - Second hash: the 32-byte message's padding and the fixed IV are literals; round 0 is
//   a constant plus W0.
// - Early reject: only the hash's most significant word (H7, byte-swapped) is compared
//   with the target's top word; rounds 61..63 and the a-half of rounds 57..60 are never
//   computed. Survivors are appended through an atomic counter and the host re-checks
//   every one of them in full on the CPU.
// - No u64 (WGSL has none); u32 addition wraps, as SHA-256 wants, and nonce = start +
//   offset wraps past 2^32 the same way.

// Both set per pipeline by the host (miner_gpu::gpu::DispatchConfig), which measures a
// few combinations at start and keeps the fastest.
override NONCES_PER_INVOCATION: u32 = 32u;
override WORKGROUP_SIZE: u32 = 64u;

// The host's precomputation (miner_gpu::sha256::Prepared), only what the kernel reads,
// in the order of miner_gpu::gpu::kernel_params: [0..8] midstate, [8..16] state before
// round 4 minus W3, [16] K16+W16, [17] K17+W17, [18] W16, [19] W17, [20] c18, [21] c19,
// [22] c31, [23] c32, [24] the target's top word; then [25] first nonce, [26] nonces in
// this dispatch, [27] capacity of results.nonces. (c30 is a constant, a literal below.)
// A storage buffer, not a uniform: array<u32> in a uniform buffer would need a 16-byte
// stride.
@group(0) @binding(0) var<storage, read> params: array<u32, 28>;

struct Results {
    count: atomic<u32>,
    nonces: array<u32>,
}
@group(0) @binding(1) var<storage, read_write> results: Results;

fn rotr(x: u32, n: u32) -> u32 { return (x >> n) | (x << (32u - n)); }
fn bsig0(x: u32) -> u32 { return rotr(x, 2u) ^ rotr(x, 13u) ^ rotr(x, 22u); }
fn bsig1(x: u32) -> u32 { return rotr(x, 6u) ^ rotr(x, 11u) ^ rotr(x, 25u); }
fn ssig0(x: u32) -> u32 { return rotr(x, 7u) ^ rotr(x, 18u) ^ (x >> 3u); }
fn ssig1(x: u32) -> u32 { return rotr(x, 17u) ^ rotr(x, 19u) ^ (x >> 10u); }
// Ch and Maj in their 3- and 4-operation forms.
fn ch(e: u32, f: u32, g: u32) -> u32 { return g ^ (e & (f ^ g)); }
fn maj(a: u32, b: u32, c: u32) -> u32 { return (a & b) | (c & (a | b)); }
// WGSL has no byte-swap builtin. The header stores the nonce little-endian while SHA-256
// reads big-endian words; the hash is compared as a little-endian number.
fn bswap(x: u32) -> u32 {
    return (x << 24u) | ((x << 8u) & 0x00ff0000u) | ((x >> 8u) & 0x0000ff00u) | (x >> 24u);
}

// Dispatches larger than 65,535 workgroups in x (the portable limit) continue in y: the
// invocation's place is y * (the x extent in invocations) + x.
@compute @workgroup_size(WORKGROUP_SIZE)
fn main(@builtin(global_invocation_id) gid: vec3<u32>, @builtin(num_workgroups) groups: vec3<u32>) {
    let P_MID0 = params[0]; let P_MID1 = params[1]; let P_MID2 = params[2]; let P_MID3 = params[3];
    let P_MID4 = params[4]; let P_MID5 = params[5]; let P_MID6 = params[6]; let P_MID7 = params[7];
    let P_A4 = params[8]; let P_B4 = params[9]; let P_C4 = params[10]; let P_D4 = params[11];
    let P_E4 = params[12]; let P_F4 = params[13]; let P_G4 = params[14]; let P_H4 = params[15];
    let P_KW16 = params[16]; let P_KW17 = params[17]; let P_W16 = params[18]; let P_W17 = params[19];
    let P_C18 = params[20]; let P_C19 = params[21]; let P_C31 = params[22]; let P_C32 = params[23];
    let target_top = params[24];
    let start = params[25];
    let count = params[26];
    let capacity = params[27];
    let invocation = gid.y * (groups.x * WORKGROUP_SIZE) + gid.x;
    let first = invocation * NONCES_PER_INVOCATION;
    for (var i = 0u; i < NONCES_PER_INVOCATION; i = i + 1u) {
        let offset = first + i;
        if (offset >= count) {
            break;
        }
        let nonce = start + offset;
"""

FOOTER = """
        if (bswap(h7) <= target_top) {
            // Several winners per dispatch are kept: each takes its own slot.
            let slot = atomicAdd(&results.count, 1u);
            if (slot < capacity) {
                results.nonces[slot] = nonce;
            }
        }
    }
}
"""

print(HEADER + body + FOOTER, end="")
