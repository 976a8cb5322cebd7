//! Things that undo themselves when dropped, so that no code path (a clean leave, a
//! dropped socket, a panic in a handler) can forget to: counting something alive
//! ([`TaskGuard`]) and running a clean-up ([`OnDrop`]).
//!
//! A leaf module: the registry hands these out, and what holds them (rooms, peer
//! connections, tasks) needs no import of the registry, which keeps the module graph
//! free of circles.

use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::Arc;

/// Counts a live thing in a gauge for exactly as long as the guard lives, so a task or
/// connection cannot end without being uncounted.
#[derive(Debug)]
pub struct TaskGuard(Arc<AtomicI64>);

impl TaskGuard {
    pub fn new(gauge: &Arc<AtomicI64>) -> Self {
        gauge.fetch_add(1, Ordering::AcqRel);
        Self(Arc::clone(gauge))
    }
}

impl Drop for TaskGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

/// Runs a closure once, when dropped (or at `run`, whichever comes first).
pub struct OnDrop(Option<Box<dyn FnOnce() + Send>>);

impl OnDrop {
    pub fn new(f: impl FnOnce() + Send + 'static) -> Self {
        Self(Some(Box::new(f)))
    }

    /// Runs the clean-up now instead of at drop.
    pub fn run(&mut self) {
        if let Some(f) = self.0.take() {
            f();
        }
    }
}

impl Drop for OnDrop {
    fn drop(&mut self) {
        self.run();
    }
}

impl std::fmt::Debug for OnDrop {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_some() {
            "OnDrop(armed)"
        } else {
            "OnDrop(done)"
        })
    }
}

/// Reads a gauge (a count of live things).
pub fn gauge(g: &AtomicI64) -> i64 {
    g.load(Ordering::Acquire)
}
