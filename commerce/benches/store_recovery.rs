//! Start-up of a shard's commerce store: journal recovery plus replay of
//! every record through `ShardData::apply`, i.e. what a node does before it
//! serves.
//!
//! Writes `RECORDS` (default 1,000,000) journal records the way flash-sale
//! purchases make them (per purchase: the sale reservation, the order, its
//! event and its idempotency record = 4 records), then times `Store::open`
//! cold (segments evicted from the page cache) and warm, without a snapshot
//! (the worst case: everything is replayed).
//!
//! `cargo bench -p rayltics-commerce --bench store_recovery`

use std::path::Path;
use std::time::{Duration, Instant};

use rayltics_commerce::model::{
    IdempotencyRec, OrderRec, OrderStatus, ProductRec, ReservationRec, SaleRec,
};
use rayltics_commerce::{Change, Store};
use rayltics_journal::JournalOptions;

fn evict(dir: &Path) {
    use std::os::fd::AsRawFd;
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if !path.is_file() {
            continue;
        }
        let file = std::fs::File::open(&path).unwrap();
        file.sync_data().unwrap();
        // SAFETY: a valid open descriptor; the advice has no memory effects.
        let rc = unsafe { libc::posix_fadvise(file.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED) };
        assert_eq!(rc, 0, "posix_fadvise");
    }
}

fn purchase(i: u64) -> Vec<Change> {
    let order_id = format!("01900000-0000-7000-8000-{i:012}");
    let user_id = format!("01900000-0000-7000-9000-{:012}", i % 10_000);
    let now = 1_795_000_000_000 + i as i64;
    let order = OrderRec {
        id: order_id.clone(),
        user_id: user_id.clone(),
        status: OrderStatus::Pending,
        items: vec![rayltics_commerce::model::Line {
            sku: "flash-1".into(),
            quantity: 1,
            price_cents: 500,
        }],
        total_cents: 500,
        currency: "USD".into(),
        sale_id: Some("sale-1".into()),
        created_at: now,
        updated_at: now,
        expires_at: now + 900_000,
    };
    vec![
        Change::Reserved(ReservationRec {
            order_id: order_id.clone(),
            user_id: user_id.clone(),
            sku: "flash-1".into(),
            quantity: 1,
            sale_id: Some("sale-1".into()),
            expires_at: now + 900_000,
        }),
        Change::OrderPut(order),
        Change::Event(rayltics_commerce::model::EventRec {
            offset: i + 1,
            id: format!("01900000-0000-7000-a000-{i:012}"),
            topic: "rayltics.orders".into(),
            key: order_id,
            kind: "order.created".into(),
            at: now,
            payload: vec![b'x'; 200],
        }),
        Change::IdempotencySaved {
            user_id,
            key: format!("key-{i}"),
            rec: IdempotencyRec {
                fingerprint: [7; 32],
                status: 201,
                order_id: format!("order-{i}"),
                at: now,
            },
        },
    ]
}

fn options() -> JournalOptions {
    JournalOptions {
        sync: false,
        ..JournalOptions::default()
    }
}

fn write(root: &Path, records: u64) {
    monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
        .build()
        .unwrap()
        .block_on(async {
            let (store, _) = Store::open(root, 0, options(), u64::MAX).unwrap();
            monoio::spawn(store.flusher());
            let setup = vec![
                Change::ProductPut(ProductRec {
                    sku: "flash-1".into(),
                    name: "Flash".into(),
                    description: "A product on sale".into(),
                    price_cents: 1000,
                    currency: "USD".into(),
                    category: "sale".into(),
                    attributes_json: "{}".into(),
                    created_at: 0,
                    updated_at: 0,
                }),
                Change::SaleCreated(SaleRec {
                    id: "sale-1".into(),
                    sku: "flash-1".into(),
                    quantity: u32::MAX,
                    price_cents: 500,
                    currency: "USD".into(),
                    starts_at: 0,
                    ends_at: i64::MAX,
                    per_user_limit: u32::MAX,
                }),
            ];
            store.commit(setup).await.unwrap();
            let purchases = records / 4;
            let mut batch = Vec::new();
            for i in 0..purchases {
                batch.extend(purchase(i));
                if batch.len() >= 4096 {
                    store.commit(std::mem::take(&mut batch)).await.unwrap();
                }
            }
            store.commit(batch).await.unwrap();
            store.close().await.unwrap();
        });
}

fn open(root: &Path) -> (Duration, usize) {
    let t = Instant::now();
    let (store, report) = Store::open(root, 0, options(), u64::MAX).unwrap();
    let elapsed = t.elapsed();
    drop(store);
    (elapsed, report.replayed)
}

fn main() {
    let records: u64 = std::env::var("RECORDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000);
    let root = std::env::temp_dir().join(format!("rayltics-store-recovery-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&root);
    write(&root, records);
    let dir = rayltics_journal::shard_dir(&root, 0);
    let bytes: u64 = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.metadata().ok())
        .map(|m| m.len())
        .sum();
    println!(
        "store recovery: {records} records, {:.1} MiB of journal",
        bytes as f64 / (1 << 20) as f64
    );
    for round in 0..3 {
        evict(&dir);
        let (cold, n) = open(&root);
        let (warm, _) = open(&root);
        println!(
            "  round {round}: cold {:.3} s, warm {:.3} s ({n} records replayed, {:.2} M records/s warm)",
            cold.as_secs_f64(),
            warm.as_secs_f64(),
            n as f64 / warm.as_secs_f64() / 1e6
        );
    }
    if std::env::var_os("BREAKDOWN").is_some() {
        let t = Instant::now();
        let (j, rec) = rayltics_journal::Journal::<Change>::open(&root, 0, options()).unwrap();
        let opened = t.elapsed();
        let mut changes = Vec::with_capacity(rec.len());
        for r in rec.records() {
            changes.push(r.deserialize().unwrap());
        }
        let decoded = t.elapsed();
        drop(rec);
        drop(j);
        let mut data = rayltics_commerce::state::ShardData::new();
        let t2 = Instant::now();
        for c in changes {
            data.apply(c);
        }
        println!(
            "  breakdown: journal open {:.3} s, deserialize {:.3} s, apply {:.3} s",
            opened.as_secs_f64(),
            (decoded - opened).as_secs_f64(),
            t2.elapsed().as_secs_f64()
        );
    }
    let _ = std::fs::remove_dir_all(&root);
}
