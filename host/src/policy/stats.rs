//! What the policy costs, from the host's own timing: decisions counted,
//! one in [`TIME_ONE_IN`] timed on the thread's CPU clock.

use std::time::{Duration, Instant};

/// What the policy has cost so far, from the host's own timing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct PolicyStats {
    /// Decisions made (trapped ones included).
    pub decisions: u64,
    /// CPU time spent in them: instance checkout, moving event and facts
    /// into the guest, the guest's code, and the actions back out.
    /// Estimated, and only ever growing: one decision in [`TIME_ONE_IN`] is
    /// timed and counts for that many.
    pub cpu_ns: u64,
}

/// One decision in this many is timed. The thread CPU clock is a system
/// call: reading it around every decision made each one 1-3 µs dearer in the
/// micro-benchmark, a fifth of a warm decision.
pub const TIME_ONE_IN: u64 = 8;

/// Whether decision number `n` is timed: one in [`TIME_ONE_IN`], chosen by
/// the top bits of a Weyl sequence, so that the choice cannot lock onto a
/// period in the traffic (flows taking turns, say) as every n-th would.
pub(super) fn timed(n: u64) -> bool {
    n.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 61 == 0
}

/// Runs `f` and says how long it took: its thread CPU time, or the wall
/// time read inside that window when less.
///
/// The thread CPU clock is a system call, and the part of it that runs after
/// it reads the clock (and before, in the second read) would count as the
/// policy's: about 0.9 µs with cold caches, measured, against decisions of
/// 15-25 µs. So the wall clock (vDSO, ~25 ns) is read inside that window too,
/// and the smaller of the two counts: the wall time when the thread ran
/// throughout, the CPU time when it was preempted in between.
pub(super) fn cpu_timed<T>(f: impl FnOnce() -> T) -> (T, Duration) {
    let cpu = || {
        cpu_time::ThreadTime::try_now()
            .ok()
            .map(|t| t.as_duration())
    };
    let cpu_before = cpu();
    let wall_before = Instant::now();
    let out = f();
    let wall = wall_before.elapsed();
    let cpu = cpu_before.zip(cpu()).and_then(|(a, z)| z.checked_sub(a));
    (out, cpu.map_or(wall, |c| c.min(wall)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_decision_in_eight_is_timed_whatever_the_traffic_s_period() {
        let n = 80_000;
        let all = (0..n).filter(|&i| timed(i)).count() as f64;
        let expected = n as f64 / TIME_ONE_IN as f64;
        assert!((all - expected).abs() < expected * 0.02, "{all} of {n}");
        // Flows taking turns (periods 2 to 16): each flow still gets its
        // share, where every eighth decision would time one flow only.
        for period in 2..=16u64 {
            for flow in 0..period {
                let of_flow = (0..n).filter(|i| i % period == flow);
                let count = of_flow.clone().count() as f64;
                let timed_count = of_flow.filter(|&i| timed(i)).count() as f64;
                let share = timed_count / count;
                assert!(
                    (share - 1.0 / TIME_ONE_IN as f64).abs() < 0.02,
                    "period {period}, flow {flow}: {share}"
                );
            }
        }
    }
}
