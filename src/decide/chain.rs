//! Chain budgets: how deep a chain may nest (call-backs through the gateway), how many calls it
//! may make, and how many in a time window (fan-out). Pure: the caller passes the time.

use std::collections::VecDeque;

/// Limits of one chain; `None` is unlimited.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Budgets {
    /// Deepest nesting: a call made by an upstream while serving a call is one deeper.
    pub max_depth: Option<u32>,
    /// Most calls in the chain's life.
    pub max_calls: Option<u32>,
    /// Most calls within `window_ms`.
    pub max_fanout: Option<u32>,
    /// The fan-out window.
    pub window_ms: u64,
}

impl Budgets {
    /// Keep the tighter of each limit.
    pub fn tighten(&mut self, depth: Option<u32>, calls: Option<u32>, fanout: Option<u32>) {
        let min = |a: Option<u32>, b: Option<u32>| match (a, b) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        self.max_depth = min(self.max_depth, depth);
        self.max_calls = min(self.max_calls, calls);
        self.max_fanout = min(self.max_fanout, fanout);
    }
}

/// Which budget a call would exceed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Breach {
    /// Nested deeper than allowed.
    Depth { depth: u32, max: u32 },
    /// More calls than allowed in the chain.
    Calls { calls: u32, max: u32 },
    /// More calls than allowed in the window.
    Fanout {
        calls: u32,
        max: u32,
        window_ms: u64,
    },
}

impl Breach {
    /// The stable reason code.
    pub fn code(self) -> &'static str {
        match self {
            Self::Depth { .. } => "chain_depth_exceeded",
            Self::Calls { .. } => "chain_calls_exceeded",
            Self::Fanout { .. } => "chain_fanout_exceeded",
        }
    }
}

impl std::fmt::Display for Breach {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Depth { depth, max } => {
                write!(f, "chain depth {depth} exceeds the maximum {max}")
            }
            Self::Calls { calls, max } => {
                write!(
                    f,
                    "call {calls} of the chain exceeds the maximum {max} calls"
                )
            }
            Self::Fanout {
                calls,
                max,
                window_ms,
            } => write!(
                f,
                "{calls} calls within {window_ms} ms exceed the fan-out maximum {max}"
            ),
        }
    }
}

/// What the gateway remembers of a chain.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ChainState {
    /// The domain the chain is bound to (the domain of its first call; a handoff moves it).
    pub domain: Option<String>,
    /// Calls admitted so far.
    pub calls: u32,
    /// When the admitted calls of the current window started (ms).
    pub recent: VecDeque<u64>,
}

impl ChainState {
    /// Admit one call at `depth` and time `now_ms` if every budget allows it (and count it);
    /// otherwise say which budget it breaks (and count nothing).
    pub fn admit(&mut self, depth: u32, budgets: &Budgets, now_ms: u64) -> Result<(), Breach> {
        if let Some(max) = budgets.max_depth
            && depth > max
        {
            return Err(Breach::Depth { depth, max });
        }
        let calls = self.calls.saturating_add(1);
        if let Some(max) = budgets.max_calls
            && calls > max
        {
            return Err(Breach::Calls { calls, max });
        }
        while self
            .recent
            .front()
            .is_some_and(|t| now_ms.saturating_sub(*t) >= budgets.window_ms)
        {
            self.recent.pop_front();
        }
        let in_window = u32::try_from(self.recent.len())
            .unwrap_or(u32::MAX)
            .saturating_add(1);
        if let Some(max) = budgets.max_fanout
            && in_window > max
        {
            return Err(Breach::Fanout {
                calls: in_window,
                max,
                window_ms: budgets.window_ms,
            });
        }
        self.calls = calls;
        self.recent.push_back(now_ms);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn budgets() -> Budgets {
        Budgets {
            max_depth: Some(2),
            max_calls: Some(5),
            max_fanout: Some(3),
            window_ms: 1000,
        }
    }

    #[test]
    fn depth_calls_and_fanout() {
        let mut s = ChainState::default();
        let b = budgets();
        assert_eq!(s.admit(3, &b, 0), Err(Breach::Depth { depth: 3, max: 2 }));
        assert_eq!(s.calls, 0, "a refused call is not counted");
        for t in [0, 10, 20] {
            s.admit(0, &b, t).unwrap();
        }
        assert_eq!(
            s.admit(0, &b, 30),
            Err(Breach::Fanout {
                calls: 4,
                max: 3,
                window_ms: 1000
            })
        );
        // The window slides.
        s.admit(0, &b, 1005).unwrap();
        s.admit(2, &b, 1015).unwrap();
        assert_eq!(
            s.admit(0, &b, 3000),
            Err(Breach::Calls { calls: 6, max: 5 })
        );
    }

    #[test]
    fn tighter_of_global_and_rule() {
        let mut b = budgets();
        b.tighten(Some(1), None, Some(10));
        assert_eq!(b.max_depth, Some(1));
        assert_eq!(b.max_calls, Some(5));
        assert_eq!(b.max_fanout, Some(3));
    }
}
