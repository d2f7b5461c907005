//! Per-header SHA-256d: our CPU kernels (multi-lane and SHA-NI) against the `sha2` crate,
//! same run.
//!
//! `cargo bench -p bitplace-miner-gpu --bench sha256d`

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use miner_gpu::{CpuBackend, Kernel, SearchControl, Work};
use std::hint::black_box;

const NONCES: u64 = 1 << 16;

fn header() -> [u8; 80] {
    let mut h = [0u8; 80];
    for (i, b) in h.iter_mut().enumerate() {
        *b = (i as u8).wrapping_mul(151).wrapping_add(7);
    }
    h
}

fn sha256d_per_header(c: &mut Criterion) {
    let mut g = c.benchmark_group("sha256d_per_header");
    g.throughput(Throughput::Elements(NONCES));
    g.sample_size(10);
    let base = header();

    // The reference: the general-purpose `sha2` crate, one header at a time.
    g.bench_function("sha2_one_shot", |b| {
        b.iter(|| {
            let mut h = base;
            let mut acc = 0u8;
            for nonce in 0..NONCES as u32 {
                h[76..].copy_from_slice(&nonce.to_le_bytes());
                acc ^= consensus::hash::sha256d(black_box(&h))[31];
            }
            acc
        })
    });

    // `sha2`'s block function with the midstate reused: the best a general-purpose
    // SHA-256 can do without a dedicated search loop.
    g.bench_function("sha2_midstate", |b| {
        let mut mid = [
            0x6a09e667u32,
            0xbb67ae85,
            0x3c6ef372,
            0xa54ff53a,
            0x510e527f,
            0x9b05688c,
            0x1f83d9ab,
            0x5be0cd19,
        ];
        let first: [u8; 64] = base[..64].try_into().unwrap();
        sha2::block_api::compress256(&mut mid, &[first]);
        b.iter(|| {
            let mut acc = 0u32;
            let mut tail = [0u8; 64];
            tail[..12].copy_from_slice(&base[64..76]);
            tail[16] = 0x80;
            tail[62..].copy_from_slice(&640u16.to_be_bytes());
            for nonce in 0..NONCES as u32 {
                tail[12..16].copy_from_slice(&nonce.to_le_bytes());
                let mut s = mid;
                sha2::block_api::compress256(&mut s, &[tail]);
                let mut second = [0u8; 64];
                for (i, w) in s.iter().enumerate() {
                    second[4 * i..4 * i + 4].copy_from_slice(&w.to_be_bytes());
                }
                second[32] = 0x80;
                second[62..].copy_from_slice(&256u16.to_be_bytes());
                let mut s2 = [
                    0x6a09e667u32,
                    0xbb67ae85,
                    0x3c6ef372,
                    0xa54ff53a,
                    0x510e527f,
                    0x9b05688c,
                    0x1f83d9ab,
                    0x5be0cd19,
                ];
                sha2::block_api::compress256(&mut s2, &[second]);
                acc ^= s2[7];
            }
            black_box(acc)
        })
    });

    // Ours, each kernel this CPU can run, one thread: portable, avx2, avx512 and, where
    // the CPU has the SHA extensions, shani (4 nonces interleaved through SHA-NI).
    let work = Work::new(base, [0u8; 32]);
    for kernel in Kernel::available() {
        let cpu = CpuBackend::with_kernel(kernel, 1);
        g.bench_with_input(
            BenchmarkId::new("bitplace", kernel.name()),
            &kernel,
            |b, _| {
                let mut start = 0u32;
                b.iter(|| {
                    let found = cpu.search(&work, start, NONCES, &SearchControl::new());
                    start = start.wrapping_add(NONCES as u32);
                    found
                })
            },
        );
    }
    g.finish();
}

criterion_group!(benches, sha256d_per_header);
criterion_main!(benches);
