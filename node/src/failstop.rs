//! Fail-stop: the one way the node ends when one of its own invariants breaks. A leaf
//! module, so that the chain (a refused store write) and the node (a poisoned lock)
//! both use it without importing each other.

use std::sync::{Mutex, MutexGuard};

/// Stops the node because one of its own invariants broke (never because of what a peer
/// or client sent): a poisoned lock, a write the chain store refused. It panics with
/// `reason`; the `cairn-node` binary's panic hook logs every panic at error level and
/// exits the process at once with status 70, so no other thread goes on with state
/// the failure may have left half-updated (see ARCHITECTURE.md, "Fail-stop").
#[track_caller]
pub fn fail_stop(reason: std::fmt::Arguments<'_>) -> ! {
    panic!("fail-stop: {reason}")
}

/// Locks `mutex`, stopping the node if a thread panicked while holding it. (In the
/// binary that cannot be seen: its panic hook exits before the panicking thread unwinds
/// and releases the lock.)
#[track_caller]
pub(crate) fn lock_or_stop<'a, T>(mutex: &'a Mutex<T>, what: &str) -> MutexGuard<'a, T> {
    match mutex.lock() {
        Ok(guard) => guard,
        Err(_) => fail_stop(format_args!("{what} lock poisoned: a thread panicked while holding it")),
    }
}

/// [`lock_or_stop`] without waiting: `None` while another thread holds `mutex`. For
/// threads that must not block on it (see [`crate::node::Node::try_submit_transfer`]).
#[track_caller]
pub(crate) fn try_lock_or_stop<'a, T>(mutex: &'a Mutex<T>, what: &str) -> Option<MutexGuard<'a, T>> {
    match mutex.try_lock() {
        Ok(guard) => Some(guard),
        Err(std::sync::TryLockError::WouldBlock) => None,
        Err(std::sync::TryLockError::Poisoned(_)) => {
            fail_stop(format_args!("{what} lock poisoned: a thread panicked while holding it"))
        }
    }
}
