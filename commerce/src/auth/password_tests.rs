//! Tests of [`PasswordHasher`] with real argon2id and small parameters.

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use futures::executor::block_on;

use super::*;

const FAST: Argon2Params = Argon2Params {
    memory_kib: 1024,
    iterations: 1,
    parallelism: 1,
};

fn hasher(threads: usize, queue: usize, params: Argon2Params) -> PasswordHasher {
    PasswordHasher::start(threads, queue, params).expect("start hasher")
}

#[test]
fn default_params_are_owasp() {
    let p = Argon2Params::default();
    assert_eq!((p.memory_kib, p.iterations, p.parallelism), (19_456, 2, 1));
}

#[test]
fn handle_is_send_sync_clone() {
    fn check<T: Send + Sync + Clone + 'static>() {}
    check::<PasswordHasher>();
}

#[test]
fn hash_verify_roundtrip() {
    let h = hasher(2, 8, FAST);
    let phc = block_on(h.hash("correct horse".into())).unwrap();
    assert!(phc.starts_with("$argon2id$v=19$m=1024,t=1,p=1$"), "{phc}");
    assert!(block_on(h.verify("correct horse".into(), phc.clone())).unwrap());
    let again = block_on(h.hash("correct horse".into())).unwrap();
    assert_ne!(phc, again, "salts must be random");
}

#[test]
fn wrong_password_is_false() {
    let h = hasher(1, 4, FAST);
    let phc = block_on(h.hash("right".into())).unwrap();
    assert!(!block_on(h.verify("wrong".into(), phc)).unwrap());
}

#[test]
fn malformed_phc_is_an_error_not_a_panic() {
    let h = hasher(1, 8, FAST);
    let bad = [
        "",
        "not a hash",
        "$argon2id$v=19$m=1024,t=1,p=1$",
        "$argon2id$v=19$m=1024,t=1,p=1$c2FsdHNhbHQ$!!!",
        "$pbkdf2-sha256$i=1000$c2FsdHNhbHQ$aGFzaGhhc2g",
        "$argon2id$v=19$m=4294967295,t=1,p=1$c2FsdHNhbHRzYWx0$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    ];
    for phc in bad {
        let r = block_on(h.verify("pw".into(), phc.into()));
        assert!(matches!(r, Err(AuthError::Hash(_))), "{phc:?} -> {r:?}");
    }
    // The pool survives.
    let phc = block_on(h.hash("pw".into())).unwrap();
    assert!(block_on(h.verify("pw".into(), phc)).unwrap());
}

#[test]
fn verify_dummy_spends_a_verify_and_fails_nothing() {
    let h = hasher(1, 4, FAST);
    assert!(block_on(h.verify_dummy("anything".into())).is_ok());
    // The dummy hash is well-formed and matches no password.
    assert!(!block_on(h.verify("".into(), h.inner.dummy_phc.clone())).unwrap());
}

#[test]
fn full_queue_is_busy_immediately() {
    let h = hasher(
        1,
        1,
        Argon2Params {
            memory_kib: 8192,
            ..FAST
        },
    );
    let started = Instant::now();
    let futs: Vec<_> = (0..8).map(|i| h.hash(format!("pw{i}"))).collect();
    let results = block_on(futures::future::join_all(futs));
    let busy = results
        .iter()
        .filter(|r| matches!(r, Err(AuthError::Busy)))
        .count();
    let ok = results.iter().filter(|r| r.is_ok()).count();
    assert!(busy >= 6, "1 running + 1 queued at most: {results:?}");
    assert!(ok >= 1, "{results:?}");
    assert_eq!(busy + ok, 8);
    assert!(started.elapsed() < Duration::from_secs(30));
}

#[test]
fn bad_config_is_rejected() {
    assert!(matches!(
        PasswordHasher::start(0, 1, FAST),
        Err(AuthError::Config(_))
    ));
    let tiny = Argon2Params {
        memory_kib: 1,
        ..FAST
    };
    assert!(matches!(
        PasswordHasher::start(1, 1, tiny),
        Err(AuthError::Config(_))
    ));
}

#[test]
fn workers_exit_when_last_handle_drops() {
    let h = hasher(3, 4, FAST);
    let rx = h.inner.rx.clone();
    let h2 = h.clone();
    drop(h);
    assert!(block_on(h2.hash("still alive".into())).is_ok());
    drop(h2);
    let deadline = Instant::now() + Duration::from_secs(10);
    while rx.upgrade().is_some() {
        assert!(Instant::now() < deadline, "workers did not exit");
        std::thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn verify_inside_monoio_keeps_the_loop_responsive() {
    // A timer task must keep firing while the hash runs elsewhere. (A task that
    // busy-yields would not do: monoio re-queues a self-woken task at the
    // front, so it would starve every other task, the awaiting one included.)
    let h = hasher(
        1,
        4,
        // Enough work that the hash outlasts several 1 ms ticks in a
        // release build too (8 MiB took 3 ms there: one tick, a flaky fail).
        Argon2Params {
            memory_kib: 32_768,
            ..FAST
        },
    );
    let phc = block_on(h.hash("pw".into())).unwrap();
    let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .enable_timer()
        .build()
        .unwrap();
    rt.block_on(async move {
        let ticks = Rc::new(Cell::new(0u64));
        let done = Rc::new(Cell::new(false));
        let ticker = monoio::spawn({
            let (ticks, done) = (Rc::clone(&ticks), Rc::clone(&done));
            async move {
                while !done.get() {
                    monoio::time::sleep(Duration::from_millis(1)).await;
                    ticks.set(ticks.get() + 1);
                }
            }
        });
        let started = Instant::now();
        let ok = h.verify("pw".into(), phc).await.unwrap();
        let (during, took) = (ticks.get(), started.elapsed());
        done.set(true);
        ticker.await;
        assert!(ok);
        assert!(during >= 3, "the loop stalled: {during} ticks in {took:?}");
    });
}
