//! Criterion: connecting a block of 1,000 signed transactions, next to ed25519-dalek's
//! single and batch verification of the same number of signatures.

use benchkit::Bench;
use criterion::{criterion_group, criterion_main, BatchSize, Criterion, Throughput};
use ed25519_dalek::{Signature, VerifyingKey};

const TXS: usize = 1_000;

fn connect(c: &mut Criterion) {
    let mut g = c.benchmark_group("connect_block");
    g.sample_size(10)
        .throughput(Throughput::Elements(TXS as u64));
    g.bench_function("1000_signed_txs_in_memory", |b| {
        b.iter_batched(
            || {
                let bench = Bench::open(None);
                let coins = bench.fund(TXS);
                let block = bench.full_block(&coins);
                (bench, block)
            },
            |(bench, block)| bench.engine.submit_block(block).unwrap(),
            BatchSize::PerIteration,
        )
    });
    let bench = Bench::open(None);
    let block = bench.full_block(&bench.fund(TXS));
    let items = benchkit::signature_items(&block.txs[1..]);
    g.bench_function("ref_ed25519_verify_strict_single_thread", |b| {
        b.iter(|| {
            items
                .iter()
                .for_each(|(m, s, k)| k.verify_strict(m, s).unwrap())
        })
    });
    g.bench_function("ref_ed25519_verify_batch_single_thread", |b| {
        b.iter(|| {
            let msgs: Vec<&[u8]> = items.iter().map(|x| &x.0[..]).collect();
            let sigs: Vec<Signature> = items.iter().map(|x| x.1).collect();
            let keys: Vec<VerifyingKey> = items.iter().map(|x| x.2).collect();
            ed25519_dalek::verify_batch(&msgs, &sigs, &keys).unwrap()
        })
    });
    g.finish();
}

criterion_group!(benches, connect);
criterion_main!(benches);
