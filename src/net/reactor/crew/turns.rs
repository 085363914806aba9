//! The leader's turns: the crew's poller waited on, and a turn taken at each reactor whose
//! sockets have something; and the chores that are due.

use std::io;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Weak};
use std::thread;
use std::time::{Duration, Instant};

use super::{may_block, Crew, Job, Master, WAKER};
use crate::net::reactor::{reactor_of, Ready, Shared, SWEEP};

impl Crew {
    /// One turn of the leader: waits for the sockets of the crew's reactors to have
    /// something (at most `wait`, polling for the crew's `spin` of it before sleeping), and
    /// takes a turn at each reactor whose sockets have, or that asked for one, noting in
    /// `opened` the requests read.
    /// Every reactor gets a turn once a sweep's interval, for its deadlines.
    pub(super) fn turn(&self, m: &mut Master, opened: &mut Vec<Job>, wait: Duration) {
        let wait = if m.again.is_empty() {
            wait.min(SWEEP.saturating_sub(m.swept.elapsed()))
        } else {
            Duration::ZERO
        };
        let start = Instant::now();
        let mut polled = Ok(());
        let (poll, events) = (&mut m.poll, &mut m.events);
        events.clear();
        let most = Duration::from_nanos(self.spin.load(Ordering::Relaxed));
        crate::net::spin::spin(m.polling.now(most).min(wait), || {
            polled = poll.poll(events, Some(Duration::ZERO));
            polled.is_err() || !events.is_empty()
        });
        if polled.is_ok() && m.events.is_empty() {
            let slept = Instant::now();
            let left = wait.saturating_sub(start.elapsed());
            polled = m.poll.poll(&mut m.events, Some(left));
            if !wait.is_zero() {
                m.polling.slept(most, slept.elapsed());
            }
        }
        if let Err(e) = polled {
            if e.kind() != io::ErrorKind::Interrupted {
                log::warn!("waiting on the reactors failed: {e}");
                thread::sleep(Duration::from_millis(20));
            }
            return;
        }
        // Sorted by token, each reactor's sockets' readiness lies together.
        m.ready.clear();
        let events = m.events.iter().filter(|e| e.token() != WAKER);
        m.ready.extend(events.map(Ready::of));
        m.ready.sort_unstable_by_key(|r| r.token);
        let mut turns = std::mem::take(&mut m.again);
        turns.extend(m.ready.iter().map(|r| reactor_of(r.token)));
        turns.append(&mut self.poked.lock());
        if m.swept.elapsed() >= SWEEP {
            m.swept = Instant::now();
            turns.extend(self.reactors.lock().keys().copied());
        }
        turns.sort_unstable();
        turns.dedup();
        for token in turns {
            let start = m.ready.partition_point(|r| reactor_of(r.token) < token);
            let end = m.ready.partition_point(|r| reactor_of(r.token) <= token);
            let reactor = self.reactors.lock().get(&token).and_then(Weak::upgrade);
            // A reactor gone since leaves nothing to read: its sockets are closed.
            if reactor.is_some_and(|r| r.take_turn(&m.ready[start..end], opened)) {
                m.again.push(token);
            }
        }
    }

    /// One turn of at most `wait`, taken by the leader while the request it serves waits
    /// on a connection: an answer that comes soon is read with no follower woken to lead,
    /// and no hand-over of the connection. Requests the turn brought are queued, and the
    /// lead passes to a follower to serve them. `false` when no turn was taken: a follower
    /// the watch woke holds the poller.
    pub(in crate::net::reactor) fn lead_meanwhile(self: &Arc<Self>, wait: Duration) -> bool {
        let mut opened = Vec::new();
        let Some(mut master) = self.master.try_lock() else {
            return false;
        };
        self.turn(&mut master, &mut opened, wait);
        drop(master);
        if !opened.is_empty() {
            self.take_requests(&mut opened);
            may_block();
        }
        true
    }

    /// Queues the reactors' chores due at `now`, with threads woken for them.
    pub(in crate::net::reactor) fn run_chores(self: &Arc<Self>, now: Instant) {
        let reactors: Vec<Arc<Shared>> = self
            .reactors
            .lock()
            .values()
            .filter_map(Weak::upgrade)
            .collect();
        let mut due = Vec::new();
        for reactor in reactors {
            for chore in reactor.due_chores(now) {
                due.push(Job::Chore(Arc::clone(&reactor), chore));
            }
        }
        if !due.is_empty() {
            self.state.lock().jobs.extend(due);
            self.wake_for_jobs();
        }
    }
}
