//! Probation: a freshly swapped-in policy that keeps trapping is sent
//! back, and the previous one decides again.

use super::engine::Core;
use super::{Loaded, PolicyEvent};
use std::sync::Arc;
use std::sync::atomic::Ordering;

/// How a freshly swapped-in policy is watched: if it traps
/// [`ROLLBACK_TRAPS`] times within its first [`PROBATION_DECISIONS`]
/// decisions, the previous policy comes back.
#[derive(Default)]
pub(super) struct Probation {
    decisions: u32,
    traps: u32,
}

/// Traps that send a new policy back (see [`Probation`]).
pub const ROLLBACK_TRAPS: u32 = 3;
/// Decisions a new policy is on probation for.
pub const PROBATION_DECISIONS: u32 = 100;

impl Core {
    /// Counts a decision of a policy on probation; rolls back to the
    /// previous policy when the new one traps too often.
    pub(super) fn on_probation(&self, loaded: &Arc<Loaded>, trapped: bool) {
        // A decision that races a swap may go uncounted: probation counts
        // the new policy's decisions, and this one was not among them.
        if !self.probation_open.load(Ordering::Acquire) {
            return;
        }
        let mut previous = self.previous.lock().unwrap_or_else(|p| p.into_inner());
        if previous.is_none() || !Arc::ptr_eq(loaded, &self.current()) {
            return;
        }
        let mut p = self.probation.lock().unwrap_or_else(|p| p.into_inner());
        p.decisions += 1;
        p.traps += u32::from(trapped);
        if p.traps >= ROLLBACK_TRAPS
            && let Some(back) = previous.take()
        {
            self.probation_open.store(false, Ordering::Release);
            *self.current.write().unwrap_or_else(|p| p.into_inner()) = back.clone();
            tracing::error!(policy = %loaded.name, back_to = %back.name, traps = p.traps, "new policy keeps trapping; rolled back");
            let _ = self.events.send(PolicyEvent::RolledBack {
                from: loaded.name.clone(),
                to: back.name.clone(),
            });
        } else if p.decisions >= PROBATION_DECISIONS {
            // Passed: it is the policy now, with nothing to go back to.
            previous.take();
            self.probation_open.store(false, Ordering::Release);
        }
    }
}
