//! Idle keep-alive connections to the upstreams, kept per thread.
//!
//! `keygate serve` runs one single-threaded runtime per core: a connection
//! made on a thread is driven by a task of that thread, so it is only ever
//! handed to requests of that same thread. Checkout and return are then a
//! `RefCell` borrow and a `Vec` pop/push — no lock, no hashing, no
//! cross-thread wake-up — which is most of what a general-purpose client
//! pool costs per request. Connections are used most-recent first, so an
//! idle surplus ages out at the bottom of the stack.
//!
//! A connection goes back on the shelf as soon as its response head has
//! arrived; while its body still streams it is not ready and checkout passes
//! it by. Closed and expired connections are dropped when met; the fast
//! path's bare sockets are also swept once a second while any are idle.
//!
//! HTTP/2 upstreams need no shelf: each thread keeps one multiplexed
//! connection per upstream, handed out (cloned) to every request, until it
//! closes.
//!
//! A configuration reload that changes the upstreams builds a new pool and
//! drops the old one once its last request is done. The dropping thread
//! cannot reach the other threads' locals, so a dropped pool is listed as
//! retired and every thread closes that pool's connections the next time it
//! touches its shelves: an upstream that was removed or moved keeps no
//! connection in use. Noticing costs each checkout one relaxed atomic load.

use std::cell::{Cell, RefCell};
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use futures_util::FutureExt;
use hyper::client::conn::http1::SendRequest;
use tokio::io::Interest;
use tokio::net::TcpStream;

use super::body::LimitedBody;

pub type Sender = SendRequest<LimitedBody>;
pub type H2Sender = hyper::client::conn::http2::SendRequest<LimitedBody>;

struct Idle {
    sender: Sender,
    since: Instant,
}

/// The idle connections of one pool to one upstream, on one thread.
struct Shelf {
    pool: u64,
    upstream: usize,
    idle: Vec<Idle>,
}

/// The idle plain connections of one pool to one upstream, on one thread,
/// for the fast path (`fast::upstream`): bare sockets, no task behind them.
struct TcpShelf {
    pool: u64,
    upstream: usize,
    /// The pool's `idle_timeout`, for the sweep.
    idle_timeout: Duration,
    idle: Vec<(TcpStream, Instant)>,
}

/// How often a thread with idle plain connections looks through them for
/// those the upstream closed or that expired: no task watches a bare
/// socket, and a closed one would otherwise hold its descriptor until the
/// next checkout.
const SWEEP_EVERY: Duration = Duration::from_secs(1);

/// The HTTP/2 connection of one pool to one upstream, on one thread.
struct Multiplexed {
    pool: u64,
    upstream: usize,
    sender: H2Sender,
}

thread_local! {
    static SHELVES: RefCell<Vec<Shelf>> = const { RefCell::new(Vec::new()) };
    static MULTIPLEXED: RefCell<Vec<Multiplexed>> = const { RefCell::new(Vec::new()) };
    static TCP_SHELVES: RefCell<Vec<TcpShelf>> = const { RefCell::new(Vec::new()) };
    /// How many pools had been retired when this thread last pruned.
    static PRUNED_UP_TO: Cell<u64> = const { Cell::new(0) };
    /// This thread runs a sweep of its plain shelves (`SWEEP_EVERY`).
    static SWEEPING: Cell<bool> = const { Cell::new(false) };
}

static NEXT_POOL: AtomicU64 = AtomicU64::new(1);

/// Ids of dropped pools whose connections may still sit on other threads.
static RETIRED: Mutex<Vec<u64>> = Mutex::new(Vec::new());
/// `RETIRED`'s length, read without the lock.
static RETIRED_COUNT: AtomicU64 = AtomicU64::new(0);

/// Closes this thread's connections of retired pools, if a pool was
/// retired since this thread last looked.
fn prune_retired() {
    let retired = RETIRED_COUNT.load(Ordering::Relaxed);
    if PRUNED_UP_TO.with(Cell::get) == retired {
        return;
    }
    let Ok(ids) = RETIRED.lock() else { return };
    let _ = SHELVES.try_with(|shelves| {
        if let Ok(mut shelves) = shelves.try_borrow_mut() {
            shelves.retain(|s| !ids.contains(&s.pool));
        }
    });
    let _ = MULTIPLEXED.try_with(|shared| {
        if let Ok(mut shared) = shared.try_borrow_mut() {
            shared.retain(|m| !ids.contains(&m.pool));
        }
    });
    let _ = TCP_SHELVES.try_with(|shelves| {
        if let Ok(mut shelves) = shelves.try_borrow_mut() {
            shelves.retain(|s| !ids.contains(&s.pool));
        }
    });
    PRUNED_UP_TO.with(|seen| seen.set(ids.len() as u64));
}

/// One gateway's pool: its identity among the shelves and its limits.
#[derive(Debug)]
pub struct Pool {
    id: u64,
    max_idle: usize,
    idle_timeout: Duration,
}

impl Pool {
    /// `max_idle` connections per upstream and thread at most; idle longer
    /// than `idle_timeout`, a connection is closed instead of reused.
    pub fn new(max_idle: usize, idle_timeout: Duration) -> Self {
        Pool { id: NEXT_POOL.fetch_add(1, Ordering::Relaxed), max_idle, idle_timeout }
    }

    /// A connection to `upstream` that is ready for a request, if this
    /// thread has one. `now` is the caller's clock reading (the request's
    /// start), to spare one here.
    pub fn checkout(&self, upstream: usize, now: Instant) -> Option<Sender> {
        prune_retired();
        SHELVES.with(|shelves| {
            let mut shelves = shelves.borrow_mut();
            let shelf = shelves.iter_mut().find(|s| s.pool == self.id && s.upstream == upstream)?;
            let mut i = shelf.idle.len();
            while i > 0 {
                i -= 1;
                let idle = &shelf.idle[i];
                if idle.sender.is_closed() || now.saturating_duration_since(idle.since) > self.idle_timeout {
                    shelf.idle.remove(i);
                } else if idle.sender.is_ready() {
                    return Some(shelf.idle.remove(i).sender);
                }
            }
            None
        })
    }

    /// Shelves a connection whose response head has arrived. Past
    /// `max_idle` it is dropped, and hyper closes it once its response is
    /// done.
    pub fn put(&self, upstream: usize, sender: Sender, now: Instant) {
        if sender.is_closed() || self.max_idle == 0 {
            return;
        }
        SHELVES.with(|shelves| {
            let mut shelves = shelves.borrow_mut();
            let index = match shelves.iter().position(|s| s.pool == self.id && s.upstream == upstream) {
                Some(i) => i,
                None => {
                    shelves.push(Shelf { pool: self.id, upstream, idle: Vec::new() });
                    shelves.len() - 1
                }
            };
            let idle = &mut shelves[index].idle;
            // The bottom of the stack is the longest idle.
            if idle.first().is_some_and(|oldest| now.saturating_duration_since(oldest.since) > self.idle_timeout) {
                idle.remove(0);
            }
            if idle.len() < self.max_idle {
                idle.push(Idle { sender, since: now });
            }
        });
    }

    /// This thread's open HTTP/2 connection to `upstream`, if any.
    pub fn shared_h2(&self, upstream: usize) -> Option<H2Sender> {
        prune_retired();
        MULTIPLEXED.with(|shared| {
            let mut shared = shared.borrow_mut();
            let i = shared.iter().position(|m| m.pool == self.id && m.upstream == upstream)?;
            if shared[i].sender.is_closed() {
                shared.swap_remove(i);
                return None;
            }
            Some(shared[i].sender.clone())
        })
    }

    /// Makes `sender` this thread's HTTP/2 connection to `upstream`.
    pub fn share_h2(&self, upstream: usize, sender: H2Sender) {
        MULTIPLEXED.with(|shared| {
            let mut shared = shared.borrow_mut();
            match shared.iter_mut().find(|m| m.pool == self.id && m.upstream == upstream) {
                Some(m) => m.sender = sender,
                None => shared.push(Multiplexed { pool: self.id, upstream, sender }),
            }
        });
    }

    /// Stops sharing this thread's HTTP/2 connection to `upstream` (it is
    /// going away); requests under way on it finish.
    pub fn forget_h2(&self, upstream: usize) {
        MULTIPLEXED.with(|shared| shared.borrow_mut().retain(|m| m.pool != self.id || m.upstream != upstream));
    }

    /// Idle connections of this pool on the calling thread (tests).
    pub fn idle_here(&self) -> usize {
        SHELVES.with(|shelves| shelves.borrow().iter().filter(|s| s.pool == self.id).map(|s| s.idle.len()).sum())
    }

    /// An idle plain connection to `upstream` of this thread's, most recent
    /// first, that has not expired (the fast path's). Whether the upstream
    /// closed it is for the caller to check.
    pub fn checkout_tcp(&self, upstream: usize, now: Instant) -> Option<TcpStream> {
        prune_retired();
        TCP_SHELVES.with(|shelves| {
            let mut shelves = shelves.borrow_mut();
            let shelf = shelves.iter_mut().find(|s| s.pool == self.id && s.upstream == upstream)?;
            while let Some((stream, since)) = shelf.idle.pop() {
                if now.saturating_duration_since(since) <= self.idle_timeout {
                    return Some(stream);
                }
                // The rest are older still.
                shelf.idle.clear();
            }
            None
        })
    }

    /// Shelves a plain connection whose exchange is complete; past
    /// `max_idle` it is closed.
    pub fn put_tcp(&self, upstream: usize, stream: TcpStream, now: Instant) {
        if self.max_idle == 0 {
            return;
        }
        TCP_SHELVES.with(|shelves| {
            let mut shelves = shelves.borrow_mut();
            let index = match shelves.iter().position(|s| s.pool == self.id && s.upstream == upstream) {
                Some(i) => i,
                None => {
                    shelves.push(TcpShelf {
                        pool: self.id,
                        upstream,
                        idle_timeout: self.idle_timeout,
                        idle: Vec::new(),
                    });
                    shelves.len() - 1
                }
            };
            let idle = &mut shelves[index].idle;
            if idle.first().is_some_and(|(_, since)| now.saturating_duration_since(*since) > self.idle_timeout) {
                idle.remove(0);
            }
            if idle.len() < self.max_idle {
                idle.push((stream, now));
            }
        });
        start_sweep();
    }

    /// Idle plain connections of this pool on the calling thread (tests).
    pub fn idle_tcp_here(&self) -> usize {
        TCP_SHELVES.with(|shelves| shelves.borrow().iter().filter(|s| s.pool == self.id).map(|s| s.idle.len()).sum())
    }
}

/// Whether an idle plain connection is still usable: the upstream has
/// neither closed it nor sent anything unasked. Costs a read only when the
/// socket was reported readable.
pub fn still_open(stream: &TcpStream) -> bool {
    match stream.ready(Interest::READABLE).now_or_never() {
        None => true,
        Some(Err(_)) => false,
        Some(Ok(_)) => {
            let mut probe = [0u8; 1];
            matches!(stream.try_read(&mut probe), Err(e) if e.kind() == io::ErrorKind::WouldBlock)
        }
    }
}

/// Starts this thread's sweep of its plain shelves, unless it runs. Only on
/// a single-threaded runtime (`keygate serve`'s proxy threads): on a
/// multi-threaded one the task could wake on another thread, whose shelves
/// are not these.
fn start_sweep() {
    if SWEEPING.with(Cell::get) {
        return;
    }
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    if runtime.runtime_flavor() != tokio::runtime::RuntimeFlavor::CurrentThread {
        return;
    }
    SWEEPING.with(|s| s.set(true));
    runtime.spawn(async {
        loop {
            tokio::time::sleep(SWEEP_EVERY).await;
            if !sweep() {
                break;
            }
        }
        SWEEPING.with(|s| s.set(false));
    });
}

/// Closes this thread's idle plain connections that expired or that the
/// upstream closed; whether any are left.
fn sweep() -> bool {
    let now = Instant::now();
    TCP_SHELVES.with(|shelves| {
        let Ok(mut shelves) = shelves.try_borrow_mut() else { return true };
        for shelf in shelves.iter_mut() {
            let timeout = shelf.idle_timeout;
            shelf.idle.retain(|(stream, since)| now.saturating_duration_since(*since) <= timeout && still_open(stream));
        }
        shelves.iter().any(|s| !s.idle.is_empty())
    })
}

impl Drop for Pool {
    /// Closes this pool's idle connections on the dropping thread, and
    /// lists it as retired so that the other threads close theirs.
    fn drop(&mut self) {
        if let Ok(mut ids) = RETIRED.lock() {
            ids.push(self.id);
            RETIRED_COUNT.store(ids.len() as u64, Ordering::Relaxed);
        }
        // `try_with`: the thread may be exiting and its locals gone.
        let _ = SHELVES.try_with(|shelves| {
            if let Ok(mut shelves) = shelves.try_borrow_mut() {
                shelves.retain(|s| s.pool != self.id);
            }
        });
        let _ = MULTIPLEXED.try_with(|shared| {
            if let Ok(mut shared) = shared.try_borrow_mut() {
                shared.retain(|m| m.pool != self.id);
            }
        });
        let _ = TCP_SHELVES.try_with(|shelves| {
            if let Ok(mut shelves) = shelves.try_borrow_mut() {
                shelves.retain(|s| s.pool != self.id);
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use std::convert::Infallible;

    use bytes::Bytes;
    use http_body_util::Empty;
    use hyper_util::rt::TokioIo;

    use super::*;

    /// A connection to an in-memory HTTP/1.1 server answering 200.
    async fn connection() -> Sender {
        let (client, server) = tokio::io::duplex(4096);
        let service =
            hyper::service::service_fn(|_| async { Ok::<_, Infallible>(http::Response::new(Empty::<Bytes>::new())) });
        tokio::spawn(hyper::server::conn::http1::Builder::new().serve_connection(TokioIo::new(server), service));
        let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(client)).await.expect("handshake");
        tokio::spawn(conn);
        sender
    }

    #[tokio::test]
    async fn a_shelved_connection_is_reused_until_it_expires() {
        let pool = Pool::new(4, Duration::from_secs(60));
        let now = Instant::now();
        assert!(pool.checkout(0, now).is_none());
        pool.put(0, connection().await, now);
        // The connection's task says it is ready once it has run.
        tokio::task::yield_now().await;
        assert!(pool.checkout(1, now).is_none(), "shelves are per upstream");
        let sender = pool.checkout(0, now).expect("the shelved connection");
        assert_eq!(pool.idle_here(), 0);
        pool.put(0, sender, now);
        assert!(pool.checkout(0, now + Duration::from_secs(61)).is_none(), "idle too long");
        assert_eq!(pool.idle_here(), 0, "the expired connection is dropped");
    }

    #[tokio::test]
    async fn no_more_than_max_idle_are_kept_and_other_pools_are_apart() {
        let pool = Pool::new(1, Duration::from_secs(60));
        let other = Pool::new(1, Duration::from_secs(60));
        let now = Instant::now();
        pool.put(0, connection().await, now);
        pool.put(0, connection().await, now);
        assert_eq!(pool.idle_here(), 1);
        assert_eq!(other.idle_here(), 0);
        drop(pool);
        assert_eq!(SHELVES.with(|s| s.borrow().iter().filter(|s| !s.idle.is_empty()).count()), 0);
    }

    #[tokio::test]
    async fn a_plain_connection_the_upstream_closed_is_swept_while_idle() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
        let addr = listener.local_addr().expect("addr");
        let pool = Pool::new(4, Duration::from_secs(90));
        let now = Instant::now();
        let closing = TcpStream::connect(addr).await.expect("connect");
        let (closed_by_upstream, _) = listener.accept().await.expect("accept");
        let open = TcpStream::connect(addr).await.expect("connect");
        let (_kept, _) = listener.accept().await.expect("accept");
        pool.put_tcp(0, closing, now);
        pool.put_tcp(0, open, now);
        assert_eq!(pool.idle_tcp_here(), 2);
        drop(closed_by_upstream);
        // No checkout comes: the sweep closes it on its own.
        tokio::time::sleep(SWEEP_EVERY * 2 + Duration::from_millis(200)).await;
        assert_eq!(pool.idle_tcp_here(), 1, "the closed one is gone, the open one kept");
    }

    #[test]
    fn a_pool_dropped_on_another_thread_closes_its_connections_here() {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
        runtime.block_on(async {
            let pool = Pool::new(4, Duration::from_secs(60));
            let id = pool.id;
            let now = Instant::now();
            let sender = connection().await;
            pool.put(0, sender, now);
            assert_eq!(pool.idle_here(), 1);
            // A reload drops the old pool wherever its last request ended.
            std::thread::spawn(move || drop(pool)).join().expect("drop on another thread");
            let other = Pool::new(4, Duration::from_secs(60));
            assert!(other.checkout(0, now).is_none());
            let left =
                SHELVES.with(|s| s.borrow().iter().filter(|s| s.pool == id).map(|s| s.idle.len()).sum::<usize>());
            assert_eq!(left, 0, "the retired pool's connection is closed on this thread");
        });
    }
}
