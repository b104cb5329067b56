//! The quota book syncing with a real store (a SQLite file, a fresh
//! PostgreSQL database), without a gateway: what a round sends when many
//! owners are in use, and how large a busy owner's reservation grows. On
//! SQLite (one node) no lease is written: nobody else would read it.

use keygate::clock::now_ms;
use keygate::config::StoreConfig;
use keygate::keys::{InlineId, Period, QuotaSpec};
use keygate::quota::{QuotaBook, Round};
use keygate::store::Store;
use sqlx::{PgPool, SqlitePool};

use super::kit::pg;

const SPEC: QuotaSpec = QuotaSpec { limit: 1_000_000, period: Period::Month };

struct Ledger {
    store: Store,
    url: String,
    _dir: tempfile::TempDir,
    _db: Option<pg::Database>,
}

async fn ledger(db: Option<pg::Database>) -> Ledger {
    let dir = tempfile::tempdir().expect("dir");
    let url = match &db {
        Some(db) => db.url(),
        None => format!("sqlite://{}", dir.path().join("ledger.db").display()),
    };
    let config = StoreConfig { url: url.clone(), ..StoreConfig::default() };
    let store = Store::connect(&config).await.expect("store");
    Ledger { store, url, _dir: dir, _db: db }
}

impl Ledger {
    /// Units spent in the ledger over `owners`' current periods.
    async fn used(&self, owners: &[InlineId]) -> u64 {
        let refs: Vec<(&str, QuotaSpec)> = owners.iter().map(|o| (o.as_str(), SPEC)).collect();
        self.store.quota_ledger(&refs, now_ms()).await.expect("ledger").values().map(|(used, _)| used).sum()
    }

    /// Whether the store keeps replicas' leases (PostgreSQL; SQLite serves
    /// one node).
    fn leases(&self) -> bool {
        !self.url.starts_with("sqlite:")
    }

    /// The units each replica holds ahead for `owner`.
    async fn held(&self, owner: &str) -> Vec<i64> {
        let sql = "SELECT held FROM quota_leases WHERE owner_id = $1 ORDER BY held";
        if self.url.starts_with("sqlite:") {
            let pool = SqlitePool::connect(&self.url).await.expect("sqlite");
            sqlx::query_scalar(sql).bind(owner).fetch_all(&pool).await.expect("leases")
        } else {
            let pool = PgPool::connect(&self.url).await.expect("postgres");
            sqlx::query_scalar(sql).bind(owner).fetch_all(&pool).await.expect("leases")
        }
    }
}

fn owner(i: usize) -> InlineId {
    InlineId::new(&format!("key_many{i:012}")).expect("id")
}

fn spend(book: &QuotaBook, owner: InlineId, cost: u64) -> bool {
    book.spend(Some((owner, SPEC)), None, cost, now_ms()).is_ok()
}

/// 600 owners in use: a round syncs every owner short of its reservation
/// at once, but a tick flushes at most 256 of the others, oldest first, and
/// a wake none, so a round's cost does not grow with the number of owners;
/// later ticks flush the rest and nothing is lost.
async fn a_round_flushes_at_most_a_batch_beyond_the_short(db: Option<pg::Database>) {
    let l = ledger(db).await;
    let book = QuotaBook::new(10);
    let owners: Vec<InlineId> = (0..600).map(owner).collect();
    // No reservation yet: more than half a block spent is short.
    for o in &owners {
        assert!(spend(&book, *o, 6));
    }
    book.round(&l.store, &l.store, Round::Tick).await;
    assert_eq!(l.used(&owners).await, 3_600, "every short owner is synced in the round");
    let leases = if l.leases() { vec![10] } else { Vec::new() };
    assert_eq!(l.held(owners[0].as_str()).await, leases, "each reserved a block (on PostgreSQL)");
    // One unit each: within the reservation, nobody is short.
    for o in &owners {
        assert!(spend(&book, *o, 1));
    }
    // A round a request wakes syncs only the owners that must be: here the
    // one gone short. The others wait for the ticks.
    assert!(spend(&book, owners[0], 5));
    book.round(&l.store, &l.store, Round::Wake).await;
    assert_eq!(l.used(&owners).await, 3_606, "a wake flushes nothing else");
    // Each tick takes the next 256 owners of the queue; the one the wake
    // synced is passed over when its turn comes.
    let mut before = 3_606;
    for _ in 0..2 {
        book.round(&l.store, &l.store, Round::Tick).await;
        let used = l.used(&owners).await;
        assert!((255..=256).contains(&(used - before)), "a batch a tick: {} flushed", used - before);
        before = used;
    }
    book.round(&l.store, &l.store, Round::Tick).await;
    assert_eq!(l.used(&owners).await, 4_205, "the rest in the next round");
    book.round(&l.store, &l.store, Round::Tick).await;
    assert_eq!(l.used(&owners).await, 4_205, "nothing counted twice");
    // Every owner's answer came back and was applied (on SQLite as one row
    // for the whole batch): the book counts each as the ledger does.
    for (i, o) in owners.iter().enumerate() {
        let want = if i == 0 { 12 } else { 7 };
        assert_eq!(book.usage(o, now_ms()).map(|(used, _)| used), Some(want), "owner {i}");
    }
    assert!(book.shared());
}

#[tokio::test]
async fn a_round_flushes_at_most_a_batch_beyond_the_short_on_sqlite() {
    a_round_flushes_at_most_a_batch_beyond_the_short(None).await;
}

#[tokio::test]
async fn a_round_flushes_at_most_a_batch_beyond_the_short_on_postgres() {
    let Some(db) = pg::fresh().await else { return };
    a_round_flushes_at_most_a_batch_beyond_the_short(Some(db)).await;
}

/// A busy owner reserves about a second of its spending, at most 64
/// blocks, so it comes back for more a few times a second; what it may
/// spend beyond the reservation stays one block.
async fn a_busy_owner_reserves_more_but_credit_stays_one_block(db: pg::Database) {
    let l = ledger(Some(db)).await;
    let book = QuotaBook::new(10);
    let o = owner(1);
    assert!(spend(&book, o, 1));
    book.round(&l.store, &l.store, Round::Tick).await;
    assert_eq!(l.held(o.as_str()).await, vec![10]);
    // 19 units in a few ms: the block of 10 and 9 of credit.
    assert!(spend(&book, o, 19));
    book.round(&l.store, &l.store, Round::Tick).await;
    let held = l.held(o.as_str()).await;
    let [held] = held[..] else { panic!("one lease: {held:?}") };
    // 19 units since the last sync: over 10 a second unless the round took
    // 1.9 s; at most 64 blocks however fast.
    assert!((11..=640).contains(&held), "grown with the spending, capped at 64 blocks: {held}");
    let held = u64::try_from(held).expect("positive");
    // The reservation, then one block of credit, then wait for the store.
    assert!(spend(&book, o, held));
    assert!(spend(&book, o, 10));
    assert!(!spend(&book, o, 1), "credit beyond the reservation is one block");
    book.round(&l.store, &l.store, Round::Tick).await;
    assert!(spend(&book, o, 1));
    assert_eq!(l.used(&[o]).await, 1 + 19 + held + 10);
    // A second replica sees the first one's reservation as taken.
    let other = QuotaBook::new(10);
    assert!(spend(&other, o, 1));
    other.round(&l.store, &l.store, Round::Tick).await;
    assert_eq!(l.held(o.as_str()).await.len(), 2, "both replicas hold a lease");
}

#[tokio::test]
async fn a_busy_owner_reserves_more_but_credit_stays_one_block_on_postgres() {
    let Some(db) = pg::fresh().await else { return };
    a_busy_owner_reserves_more_but_credit_stays_one_block(db).await;
}

/// SQLite serves one node: its syncs write the spending and no lease, so a
/// flush is two statements (the write, and its rows read back as one); the
/// reservation is still sized and kept in the book, and spending stays
/// exact. The flushes of ordinary spending go
/// through the usage flush's connection (`Store::for_background_writes`,
/// as `keygate serve` runs them), the rest through the store's pool.
#[tokio::test]
async fn one_node_on_sqlite_writes_spending_and_no_lease() {
    let l = ledger(None).await;
    let bulk = l.store.for_background_writes(&StoreConfig { url: l.url.clone(), ..StoreConfig::default() }).await;
    let book = QuotaBook::new(10);
    book.set_sole(true);
    let o = owner(1);
    for _ in 0..5 {
        assert!(spend(&book, o, 7));
        book.round(&l.store, &bulk, Round::Tick).await;
    }
    assert_eq!(l.used(&[o]).await, 35);
    book.round(&l.store, &bulk, Round::Renew).await;
    assert_eq!(l.held(o.as_str()).await, Vec::<i64>::new(), "no lease on one node");
    // Far beyond any reservation: one node never waits for the store.
    assert!(spend(&book, o, 500));
    book.round(&l.store, &bulk, Round::Tick).await;
    assert_eq!(l.used(&[o]).await, 535);
    let (used, remaining) = book.usage(&o, now_ms()).expect("counted");
    assert_eq!((used, remaining), (535, SPEC.limit - 535));
}
