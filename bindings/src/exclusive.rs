//! One call at a time on a session or a chat: a second call fails with `Busy` instead of
//! queueing, unless the running one was cancelled (then the new one waits for it to wind down,
//! at most one layer of work, so "stop, then send" needs no waiting in the app).

use crate::error::PocketLmError;
use pocketlm_core::session::CancelHandle;
use std::ops::{Deref, DerefMut};
use std::sync::{Mutex, MutexGuard, TryLockError};

pub(crate) struct Exclusive<T> {
    inner: Mutex<T>,
    /// The cancel token of the call holding `inner`, if any.
    running: Mutex<Option<CancelHandle>>,
}

/// The value while one call holds it; dropping it frees it for the next call.
pub(crate) struct Held<'a, T> {
    // Declared first so it is dropped first: `running` is cleared before the lock is released.
    _running: RunningSlot<'a>,
    value: MutexGuard<'a, T>,
}

struct RunningSlot<'a>(&'a Mutex<Option<CancelHandle>>);

impl Drop for RunningSlot<'_> {
    fn drop(&mut self) {
        *lock_ignoring_poison(self.0) = None;
    }
}

fn lock_ignoring_poison<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    // A panic inside an earlier call was caught by `guard`; the state is still consistent (the
    // cache length only advances after a whole forward pass).
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl<T> Exclusive<T> {
    pub(crate) fn new(value: T) -> Self {
        Exclusive { inner: Mutex::new(value), running: Mutex::new(None) }
    }

    /// Takes the value for a call watching `token` (see the module comment).
    pub(crate) fn acquire(&self, token: &CancelHandle) -> Result<Held<'_, T>, PocketLmError> {
        let value = match self.inner.try_lock() {
            Ok(g) => g,
            Err(TryLockError::Poisoned(p)) => p.into_inner(),
            Err(TryLockError::WouldBlock) => {
                let holder = lock_ignoring_poison(&self.running).clone();
                if holder.is_some_and(|t| !t.is_cancelled()) {
                    return Err(PocketLmError::Busy { message: "another call is running on this session".into() });
                }
                lock_ignoring_poison(&self.inner)
            }
        };
        *lock_ignoring_poison(&self.running) = Some(token.clone());
        Ok(Held { _running: RunningSlot(&self.running), value })
    }

    /// Cancels the call running now, if any.
    pub(crate) fn cancel_running(&self) {
        if let Some(t) = lock_ignoring_poison(&self.running).as_ref() {
            t.cancel();
        }
    }

    /// Cancels a running call, waits for it, then runs `f` on the value.
    pub(crate) fn after_cancelling<R>(&self, f: impl FnOnce(&mut T) -> R) -> Result<R, PocketLmError> {
        self.cancel_running();
        let mut held = self.acquire(&CancelHandle::new())?;
        Ok(f(&mut held))
    }
}

impl<T> Deref for Held<'_, T> {
    type Target = T;
    fn deref(&self) -> &T {
        &self.value
    }
}

impl<T> DerefMut for Held<'_, T> {
    fn deref_mut(&mut self) -> &mut T {
        &mut self.value
    }
}
