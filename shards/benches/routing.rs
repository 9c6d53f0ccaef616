//! Cost of `shard_for` (the stable ownership hash) against std's SipHash
//! (`DefaultHasher`) modulo the shard count, in the same run.

use std::hash::{DefaultHasher, Hash, Hasher};

use criterion::{Criterion, criterion_group, criterion_main};
use rayltics_shards::shard_for;

fn routing(c: &mut Criterion) {
    let keys: Vec<String> = (0..1024).map(|i| format!("sku-{i:08}")).collect();
    let mut group = c.benchmark_group("shard_for/1024 keys");
    group.bench_function("shard_for (xxh3)", |b| {
        b.iter(|| {
            keys.iter()
                .map(|k| shard_for(std::hint::black_box(k.as_bytes()), 8))
                .sum::<usize>()
        })
    });
    group.bench_function("baseline: SipHash % n", |b| {
        b.iter(|| {
            keys.iter()
                .map(|k| {
                    let mut h = DefaultHasher::new();
                    std::hint::black_box(k.as_bytes()).hash(&mut h);
                    (h.finish() % 8) as usize
                })
                .sum::<usize>()
        })
    });
    group.finish();
}

criterion_group!(benches, routing);
criterion_main!(benches);
