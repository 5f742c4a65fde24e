//! The server's slots: N sessions over the one memory-mapped model, each keeping the KV cache
//! of the last conversation it served, and a bounded queue of requests waiting for one.
//!
//! A request takes the free slot whose cached tokens share the longest prefix with its prompt,
//! so the next turn of a chat (which repeats the whole history) lands where its history is
//! cached and prefills only the new turn.

use super::api::ApiError;
use axum::http::StatusCode;
use pocketlm_core::session::Session;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

pub struct Slots {
    /// `None` while a request holds the session.
    sessions: Mutex<Vec<Option<Session>>>,
    free: Arc<Semaphore>,
    waiting: AtomicUsize,
    max_queue: usize,
}

/// A session taken from the pool; dropping it gives the session back.
pub struct Slot {
    pool: Arc<Slots>,
    index: usize,
    session: Option<Session>,
    _permit: OwnedSemaphorePermit,
}

impl Slot {
    pub fn session(&mut self) -> &mut Session {
        self.session.as_mut().expect("a slot holds its session until dropped")
    }
}

impl Drop for Slot {
    fn drop(&mut self) {
        let mut v = self.pool.sessions.lock().unwrap_or_else(|p| p.into_inner());
        v[self.index] = self.session.take();
    }
}

/// Counts a request as queued for as long as it waits (also if its client goes away).
struct Queued<'a>(&'a AtomicUsize);

impl Drop for Queued<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl Slots {
    pub fn new(sessions: Vec<Session>, max_queue: usize) -> Arc<Self> {
        let n = sessions.len();
        Arc::new(Slots {
            sessions: Mutex::new(sessions.into_iter().map(Some).collect()),
            free: Arc::new(Semaphore::new(n)),
            waiting: AtomicUsize::new(0),
            max_queue,
        })
    }

    pub fn total(&self) -> usize {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).len()
    }

    pub fn busy(&self) -> usize {
        self.sessions.lock().unwrap_or_else(|p| p.into_inner()).iter().filter(|s| s.is_none()).count()
    }

    pub fn queued(&self) -> usize {
        self.waiting.load(Ordering::Acquire)
    }

    /// A free slot, waiting in the queue if there is room in it; 503 with Retry-After if not.
    pub async fn acquire(self: &Arc<Self>, prompt: &[u32]) -> Result<Slot, ApiError> {
        let permit = match self.free.clone().try_acquire_owned() {
            Ok(p) => p,
            Err(_) => {
                if self.waiting.fetch_add(1, Ordering::AcqRel) >= self.max_queue {
                    self.waiting.fetch_sub(1, Ordering::AcqRel);
                    let mut e = ApiError::status(
                        StatusCode::SERVICE_UNAVAILABLE,
                        "server_error",
                        format!(
                            "all {} slots are busy and {} requests are queued; retry later",
                            self.total(),
                            self.max_queue
                        ),
                    );
                    e.retry_after = Some(1);
                    return Err(e);
                }
                let _queued = Queued(&self.waiting);
                self.free.clone().acquire_owned().await.map_err(|_| {
                    ApiError::status(StatusCode::SERVICE_UNAVAILABLE, "server_error", "the server is shutting down")
                })?
            }
        };
        let mut v = self.sessions.lock().unwrap_or_else(|p| p.into_inner());
        let index = v
            .iter()
            .enumerate()
            .filter_map(|(i, s)| s.as_ref().map(|s| (i, common_prefix(s.tokens(), prompt))))
            .max_by_key(|&(i, n)| (n, std::cmp::Reverse(i)))
            .map(|(i, _)| i)
            .expect("a permit means a free session");
        let session = v[index].take();
        Ok(Slot { pool: self.clone(), index, session, _permit: permit })
    }
}

fn common_prefix(a: &[u32], b: &[u32]) -> usize {
    a.iter().zip(b).take_while(|(x, y)| x == y).count()
}
