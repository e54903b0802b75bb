//! One instantiation's budget: how many objects it may instantiate, how
//! many generic events it may raise, how long it may run and how much
//! memory it may hold, and whether its client has gone away.
//!
//! A top-level instantiation ([`super::Engine::instantiate`], a delivery, an
//! API resolve) starts one [`Budget`] from the engine's [`BudgetLimits`].
//! Everything it triggers spends from that same budget: relationships,
//! `evm.instantiate`, and the deliveries of events raised inline and of
//! policies' `invoke` actions, which run as new roots on the same thread
//! and get the budget handed down explicitly (a clone of the `Arc`, in the
//! nested [`super::Runtime`]). So a nested delivery shares the outer
//! deadline instead of starting its own clock.
//!
//! The checks are cheap: an object or an event is one atomic increment and
//! a compare; the clock, the memory counter and the cancel flag are read
//! every [`CLOCK_EVERY`] objects and on every event. Once a budget has run
//! out it stays out: every later check fails at once with the same error,
//! so work that swallowed the first error (a policy action, a state's
//! `on_error`) winds down without doing more, and the top-level call
//! reports the budget as its error.
//!
//! Memory is the growth of this thread's net allocation
//! ([`automate_core::alloc::thread_net_bytes`]) since the budget started:
//! the whole instantiation, nested deliveries included, runs on the thread
//! that started it. Without the counting allocator installed it reads 0
//! and that limit never fires.

use std::sync::atomic::{AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

/// The clock, memory and cancel flag are read every this many objects.
pub const CLOCK_EVERY: u64 = 8;

/// What one top-level instantiation may spend (engine options; the
/// `engine:` section of automate.yaml).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetLimits {
    /// Objects instantiated, nested deliveries included.
    pub max_objects: u64,
    /// Generic events raised (`raise_evm_event`, policy `raise_event`).
    pub max_events: u64,
    /// Wall-clock time from the start of the top-level instantiation.
    pub max_time: Duration,
    /// Bytes the instantiation's thread may hold allocated beyond what it
    /// held at the start.
    pub max_memory: u64,
}

impl Default for BudgetLimits {
    /// Far above the shipped datastore's and ManageIQ's own flows (an
    /// event delivery instantiates a handful of objects and raises at most
    /// a few events).
    fn default() -> Self {
        BudgetLimits {
            max_objects: 10_000,
            max_events: 1_000,
            max_time: Duration::from_secs(120),
            max_memory: 1 << 30,
        }
    }
}

/// Which budget ran out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BudgetKind {
    /// More than `max_objects` objects instantiated.
    Objects,
    /// More than `max_events` generic events raised.
    Events,
    /// Running past `max_time`.
    Time,
    /// Holding more than `max_memory` bytes beyond the start.
    Memory,
    /// Not a limit: the caller (an API client that went away) cancelled.
    Cancelled,
}

impl BudgetKind {
    fn code(self) -> u8 {
        match self {
            BudgetKind::Objects => 1,
            BudgetKind::Events => 2,
            BudgetKind::Time => 3,
            BudgetKind::Memory => 4,
            BudgetKind::Cancelled => 5,
        }
    }

    fn from_code(code: u8) -> Option<BudgetKind> {
        Some(match code {
            1 => BudgetKind::Objects,
            2 => BudgetKind::Events,
            3 => BudgetKind::Time,
            4 => BudgetKind::Memory,
            5 => BudgetKind::Cancelled,
            _ => return None,
        })
    }

    /// The name used in messages and in the `engine:` configuration.
    pub fn name(self) -> &'static str {
        match self {
            BudgetKind::Objects => "objects",
            BudgetKind::Events => "events",
            BudgetKind::Time => "time",
            BudgetKind::Memory => "memory",
            BudgetKind::Cancelled => "cancelled",
        }
    }
}

/// A budget that ran out: which one and its limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BudgetExceeded {
    /// The budget that ran out.
    pub kind: BudgetKind,
    /// The limits it ran under (the message names the one exceeded).
    pub limits: BudgetLimits,
}

impl std::fmt::Display for BudgetExceeded {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let l = &self.limits;
        match self.kind {
            BudgetKind::Objects => write!(
                f,
                "the objects budget ran out: more than {} objects instantiated \
                 (engine.max_objects)",
                l.max_objects
            ),
            BudgetKind::Events => write!(
                f,
                "the events budget ran out: more than {} events raised (engine.max_events)",
                l.max_events
            ),
            BudgetKind::Time => write!(
                f,
                "the time budget ran out: running longer than {} s (engine.max_seconds)",
                l.max_time.as_secs_f64()
            ),
            BudgetKind::Memory => write!(
                f,
                "the memory budget ran out: holding more than {} MiB (engine.max_memory_mb)",
                l.max_memory >> 20
            ),
            BudgetKind::Cancelled => write!(f, "cancelled: the client went away"),
        }
    }
}

/// A flag a caller sets to stop an instantiation it no longer waits for
/// (checked with the budget's clock).
#[derive(Debug, Clone, Default)]
pub struct Cancel(Arc<AtomicBool>);

impl Cancel {
    /// A flag not yet set.
    pub fn new() -> Cancel {
        Cancel::default()
    }

    /// Sets the flag: the instantiation fails with
    /// [`BudgetKind::Cancelled`] at its next clock check. Clones share it.
    pub fn cancel(&self) {
        self.0.store(true, Ordering::Relaxed);
    }

    /// Whether [`Cancel::cancel`] has been called on this flag or a clone.
    pub fn is_cancelled(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }

    /// A guard that cancels when dropped, unless [`CancelOnDrop::disarm`]ed
    /// first: held by an async handler, it cancels the blocking work when
    /// the handler's future is dropped (the client disconnected).
    pub fn on_drop(&self) -> CancelOnDrop {
        CancelOnDrop(Some(self.clone()))
    }
}

/// Cancels its [`Cancel`] when dropped while armed.
#[derive(Debug)]
pub struct CancelOnDrop(Option<Cancel>);

impl CancelOnDrop {
    /// The work finished: dropping no longer cancels.
    pub fn disarm(mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        if let Some(c) = self.0.take() {
            c.cancel();
        }
    }
}

struct Shared {
    limits: BudgetLimits,
    deadline: Option<Instant>,
    mem_start: i64,
    objects: AtomicU64,
    events: AtomicU64,
    /// 0 while the budget holds, else the [`BudgetKind`] code that ran out.
    tripped: AtomicU8,
    /// The budget that ran out has been logged.
    reported: AtomicBool,
    cancel: Option<Cancel>,
}

/// The budget of one top-level instantiation, shared by everything it
/// triggers (clones share the counters).
#[derive(Clone)]
pub struct Budget(Arc<Shared>);

impl std::fmt::Debug for Budget {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Budget")
            .field("limits", &self.0.limits)
            .field("objects", &self.objects())
            .field("events", &self.events())
            .field("tripped", &self.tripped())
            .finish()
    }
}

impl Budget {
    /// Starts a budget now, on the thread that will run the instantiation.
    pub fn start(limits: BudgetLimits, cancel: Option<Cancel>) -> Budget {
        Budget(Arc::new(Shared {
            limits,
            deadline: Instant::now().checked_add(limits.max_time),
            mem_start: automate_core::alloc::thread_net_bytes(),
            objects: AtomicU64::new(0),
            events: AtomicU64::new(0),
            tripped: AtomicU8::new(0),
            reported: AtomicBool::new(false),
            cancel,
        }))
    }

    /// The limits the budget was started with.
    pub fn limits(&self) -> &BudgetLimits {
        &self.0.limits
    }

    /// Objects instantiated so far.
    pub fn objects(&self) -> u64 {
        self.0.objects.load(Ordering::Relaxed)
    }

    /// Events raised so far.
    pub fn events(&self) -> u64 {
        self.0.events.load(Ordering::Relaxed)
    }

    /// The deadline of the whole instantiation (`None`: too far to name).
    pub fn deadline(&self) -> Option<Instant> {
        self.0.deadline
    }

    /// The budget that ran out, if one has.
    pub fn tripped(&self) -> Option<BudgetExceeded> {
        BudgetKind::from_code(self.0.tripped.load(Ordering::Relaxed)).map(|kind| BudgetExceeded {
            kind,
            limits: self.0.limits,
        })
    }

    /// Spends one object.
    #[inline]
    pub fn object(&self) -> Result<(), BudgetExceeded> {
        self.already()?;
        let n = self.0.objects.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.0.limits.max_objects {
            return Err(self.trip(BudgetKind::Objects));
        }
        if n % CLOCK_EVERY == 0 {
            self.check()?;
        }
        Ok(())
    }

    /// Spends one raised event (and reads the clock: an event is costly).
    pub fn event(&self) -> Result<(), BudgetExceeded> {
        self.already()?;
        let n = self.0.events.fetch_add(1, Ordering::Relaxed) + 1;
        if n > self.0.limits.max_events {
            return Err(self.trip(BudgetKind::Events));
        }
        self.check()
    }

    /// Reads the cancel flag, the clock and the memory counter.
    pub fn check(&self) -> Result<(), BudgetExceeded> {
        self.already()?;
        if self.0.cancel.as_ref().is_some_and(Cancel::is_cancelled) {
            return Err(self.trip(BudgetKind::Cancelled));
        }
        if self.0.deadline.is_some_and(|d| Instant::now() >= d) {
            return Err(self.trip(BudgetKind::Time));
        }
        let held = automate_core::alloc::thread_net_bytes().wrapping_sub(self.0.mem_start);
        if held > 0 && held as u64 > self.0.limits.max_memory {
            return Err(self.trip(BudgetKind::Memory));
        }
        Ok(())
    }

    /// True the first time it is called after the budget ran out: the
    /// caller logs the budget (once per top-level instantiation).
    pub fn take_report(&self) -> bool {
        self.tripped().is_some() && !self.0.reported.swap(true, Ordering::Relaxed)
    }

    #[inline]
    fn already(&self) -> Result<(), BudgetExceeded> {
        match self.tripped() {
            None => Ok(()),
            Some(error) => Err(error),
        }
    }

    /// Marks `kind` as run out, unless another budget ran out first (that
    /// one is the error).
    fn trip(&self, kind: BudgetKind) -> BudgetExceeded {
        let kind = match self.0.tripped.compare_exchange(
            0,
            kind.code(),
            Ordering::Relaxed,
            Ordering::Relaxed,
        ) {
            Ok(_) => kind,
            Err(code) => BudgetKind::from_code(code).unwrap_or(kind),
        };
        BudgetExceeded {
            kind,
            limits: self.0.limits,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn limits(objects: u64, events: u64) -> BudgetLimits {
        BudgetLimits {
            max_objects: objects,
            max_events: events,
            ..BudgetLimits::default()
        }
    }

    #[test]
    fn objects_run_out_once_and_stay_out() {
        let b = Budget::start(limits(3, 10), None);
        for _ in 0..3 {
            assert!(b.object().is_ok());
        }
        let e = b.object().unwrap_err();
        assert_eq!(e.kind, BudgetKind::Objects);
        assert!(e.to_string().contains("more than 3 objects"), "{e}");
        // Sticky: every later check fails, naming the first budget.
        assert_eq!(b.event().unwrap_err().kind, BudgetKind::Objects);
        assert_eq!(b.tripped().map(|e| e.kind), Some(BudgetKind::Objects));
        // Reported once.
        assert!(b.take_report());
        assert!(!b.clone().take_report());
    }

    #[test]
    fn clones_share_the_counters() {
        let b = Budget::start(limits(100, 2), None);
        let nested = b.clone();
        assert!(b.event().is_ok());
        assert!(nested.event().is_ok());
        assert_eq!(b.event().unwrap_err().kind, BudgetKind::Events);
        assert_eq!(nested.events(), 3);
    }

    #[test]
    fn time_and_cancel_are_checked() {
        let b = Budget::start(
            BudgetLimits {
                max_time: Duration::ZERO,
                ..BudgetLimits::default()
            },
            None,
        );
        assert_eq!(b.check().unwrap_err().kind, BudgetKind::Time);

        let cancel = Cancel::new();
        let b = Budget::start(BudgetLimits::default(), Some(cancel.clone()));
        assert!(b.check().is_ok());
        let guard = cancel.on_drop();
        drop(guard);
        assert_eq!(b.check().unwrap_err().kind, BudgetKind::Cancelled);

        let cancel = Cancel::new();
        cancel.on_drop().disarm();
        assert!(!cancel.is_cancelled());
    }

    #[test]
    fn a_huge_time_limit_has_no_deadline_and_no_panic() {
        let b = Budget::start(
            BudgetLimits {
                max_time: Duration::MAX,
                ..BudgetLimits::default()
            },
            None,
        );
        assert!(b.deadline().is_none());
        assert!(b.check().is_ok());
    }
}
