//! The account's share of the gateway's gauges (docs/operations.md):
//! controllers online, and foreign sessions by state. The task brings it up
//! to date after each event, and takes it back when it ends.

use super::{Account, wit};

/// The session states, as the metrics label them, in [`index`] order.
const STATES: [&str; 5] = ["connecting", "online", "reconnecting", "failed", "closed"];

fn index(s: wit::SessionState) -> usize {
    match s {
        wit::SessionState::Connecting => 0,
        wit::SessionState::Online => 1,
        wit::SessionState::Reconnecting => 2,
        wit::SessionState::Failed => 3,
        wit::SessionState::Closed => 4,
    }
}

/// What one account adds to the gauges now.
#[derive(Default)]
pub(super) struct Shown {
    controllers: i64,
    sessions: [i64; STATES.len()],
}

impl Account {
    /// Brings the account's share of the gauges up to date (to nothing
    /// once the task ends).
    pub(super) fn show(&mut self, ending: bool) {
        let metrics = &self.env.metrics;
        let controllers = if ending {
            0
        } else {
            self.controllers.count() as i64
        };
        metrics
            .controllers
            .inc_by(controllers - self.shown.controllers);
        self.shown.controllers = controllers;
        let mut now = [0i64; STATES.len()];
        if !ending {
            for s in self.sessions.values() {
                now[index(s.state)] += 1;
            }
        }
        for (i, state) in STATES.into_iter().enumerate() {
            let change = now[i] - self.shown.sessions[i];
            if change != 0 {
                metrics
                    .sessions
                    .get_or_create(&crate::metrics::State { state })
                    .inc_by(change);
            }
        }
        self.shown.sessions = now;
    }
}
