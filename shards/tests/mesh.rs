//! The mesh between real shard threads: every shard calls every other shard.

use std::rc::Rc;
use std::sync::mpsc;

use rayltics_shards::{
    Mesh, MeshOptions, Router, RuntimeOptions, Service, shard_for, spawn_shards,
};

struct Echo {
    id: usize,
}

impl Service for Echo {
    type Request = u64;
    type Response = (usize, u64);

    async fn handle(self: Rc<Self>, req: u64) -> (usize, u64) {
        (self.id, req * 2)
    }
}

fn run_all(shards: usize, options: MeshOptions, calls_per_peer: u64) -> Vec<(usize, u64, u64)> {
    let endpoints =
        Mesh::build::<rayltics_shards::router::Envelope<u64, (usize, u64)>>(shards, options)
            .expect("mesh");
    let (tx, rx) = mpsc::channel();
    let per_shard: Vec<_> = endpoints.into_iter().map(|e| (e, tx.clone())).collect();
    drop(tx);
    let handles = spawn_shards(
        &RuntimeOptions::default(),
        per_shard,
        move |id, (endpoint, tx)| async move {
            let router = Router::start(endpoint, Rc::new(Echo { id })).expect("router");
            let mut tasks = Vec::new();
            for peer in 0..router.shard_count() {
                for i in 0..calls_per_peer {
                    let router = router.clone();
                    tasks.push(monoio::spawn(async move {
                        let (who, doubled) = router.call(peer, i).await.expect("call");
                        assert_eq!(who, peer, "answered by the wrong shard");
                        assert_eq!(doubled, i * 2);
                    }));
                }
            }
            for t in tasks {
                t.await;
            }
            let stats = &router.stats()[id];
            tx.send((
                id,
                stats.sent.load(std::sync::atomic::Ordering::Relaxed),
                calls_per_peer,
            ))
            .unwrap();
            // Keep serving peers that are still calling us.
            monoio::time::sleep(std::time::Duration::from_millis(300)).await;
        },
    )
    .expect("spawn");
    let results: Vec<_> = rx.iter().collect();
    for h in handles {
        h.join().expect("shard thread");
    }
    results
}

#[test]
fn every_shard_answers_for_itself() {
    let results = run_all(3, MeshOptions::default(), 2_000);
    assert_eq!(results.len(), 3);
    for (_, sent, calls) in results {
        // Each shard sent calls to 2 peers and replied to 2 peers' calls.
        assert!(sent >= 2 * calls, "sent {sent}");
    }
}

#[test]
fn parks_and_wakes_without_spinning() {
    // spin 0: every idle moment parks, so every message after one must ring.
    let options = MeshOptions {
        ring_capacity: 8,
        spin_us: 0,
    };
    let results = run_all(2, options, 500);
    assert_eq!(results.len(), 2);
}

#[test]
fn ownership_is_in_range() {
    for n in 1..9 {
        for k in 0..1000 {
            assert!(shard_for(format!("k{k}").as_bytes(), n) < n);
        }
    }
}

#[test]
fn tiny_ring_default_spin() {
    let options = MeshOptions {
        ring_capacity: 8,
        ..MeshOptions::default()
    };
    assert_eq!(run_all(2, options, 500).len(), 2);
}

#[test]
fn big_ring_no_spin() {
    let options = MeshOptions {
        ring_capacity: 4096,
        spin_us: 0,
    };
    assert_eq!(run_all(2, options, 500).len(), 2);
}
