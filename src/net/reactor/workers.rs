//! The threads that run request handlers: started as requests come, up to a bound, and let
//! go after a while without work. A request that finds every thread busy is refused rather
//! than queued: a handler may wait on another node, and a queue behind it could wait on
//! this one (DESIGN.md section 4: nothing may deadlock when every node is busy).

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

use super::super::THREAD_STACK;

/// A unit of work.
pub(super) type Job = Box<dyn FnOnce() + Send>;

/// How long a thread waits for work before it ends.
const IDLE_EXIT: Duration = Duration::from_secs(10);

/// A bounded set of handler threads.
pub(super) struct Workers {
    inner: Arc<Inner>,
}

struct Inner {
    name: String,
    max: usize,
    state: Mutex<State>,
    work: Condvar,
}

#[derive(Default)]
struct State {
    jobs: VecDeque<Job>,
    /// Threads waiting for work.
    idle: usize,
    threads: HashMap<u64, JoinHandle<()>>,
    /// Threads that have ended and can be joined.
    ended: Vec<u64>,
    next: u64,
    stop: bool,
}

impl Workers {
    /// Up to `max` threads named after `name`.
    pub fn new(name: &str, max: usize) -> Workers {
        Workers {
            inner: Arc::new(Inner {
                name: format!("{name}-work"),
                max: max.max(1),
                state: Mutex::new(State::default()),
                work: Condvar::new(),
            }),
        }
    }

    /// Runs `job` on a free thread, starting one if none is free and the bound allows.
    /// Gives the job back when every thread is busy (or the set is stopping).
    pub fn run(&self, job: Job) -> Result<(), Job> {
        let ended = {
            let mut state = self.inner.state.lock();
            if state.stop {
                return Err(job);
            }
            let ended: Vec<JoinHandle<()>> = std::mem::take(&mut state.ended)
                .iter()
                .filter_map(|id| state.threads.remove(id))
                .collect();
            if state.idle > state.jobs.len() {
                state.jobs.push_back(job);
                self.inner.work.notify_one();
            } else if state.threads.len() < self.inner.max {
                // Queued for the new thread (or any that frees up first) to take.
                state.jobs.push_back(job);
                let id = state.next;
                state.next += 1;
                let inner = Arc::clone(&self.inner);
                let spawned = thread::Builder::new()
                    .name(self.inner.name.clone())
                    .stack_size(THREAD_STACK)
                    .spawn(move || inner.serve(id));
                match spawned {
                    Ok(handle) => {
                        state.threads.insert(id, handle);
                    }
                    Err(e) => {
                        log::warn!("{}: cannot start a thread: {e}", self.inner.name);
                        if let Some(job) = state.jobs.pop_back() {
                            return Err(job);
                        }
                    }
                }
            } else {
                return Err(job);
            }
            ended
        };
        for handle in ended {
            let _ = handle.join();
        }
        Ok(())
    }

    /// Threads running now.
    #[cfg(test)]
    pub fn threads(&self) -> usize {
        self.inner.state.lock().threads.len()
    }

    /// Lets the running jobs finish, then joins every thread. Idempotent.
    pub fn shutdown(&self) {
        let threads: Vec<JoinHandle<()>> = {
            let mut state = self.inner.state.lock();
            state.stop = true;
            state.jobs.clear();
            state.ended.clear();
            state.threads.drain().map(|(_, t)| t).collect()
        };
        self.inner.work.notify_all();
        for t in threads {
            let _ = t.join();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.shutdown();
    }
}

impl Inner {
    /// A thread's life: the jobs that come, until it idles out or the set stops.
    fn serve(&self, id: u64) {
        // Bounded: each pass runs a job, or ends the thread after a wait without one.
        loop {
            let job = {
                let mut state = self.state.lock();
                if state.jobs.is_empty() && !state.stop {
                    state.idle += 1;
                    let _ = self.work.wait_for(&mut state, IDLE_EXIT);
                    state.idle -= 1;
                }
                match state.jobs.pop_front() {
                    Some(job) if !state.stop => job,
                    _ => {
                        if !state.stop {
                            state.ended.push(id);
                        }
                        return;
                    }
                }
            };
            // A handler that panics loses its request, not the thread or the server.
            if std::panic::catch_unwind(std::panic::AssertUnwindSafe(job)).is_err() {
                log::error!("{}: a request handler panicked", self.name);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::mpsc;

    #[test]
    fn jobs_run_on_at_most_the_bound_and_the_rest_are_given_back() {
        let workers = Workers::new("test", 2);
        let (release, gate) = mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let ran = Arc::new(AtomicUsize::new(0));
        let started = Arc::new(AtomicUsize::new(0));
        let blocking = |gate: Arc<Mutex<mpsc::Receiver<()>>>, ran: Arc<AtomicUsize>| -> Job {
            let started = Arc::clone(&started);
            Box::new(move || {
                started.fetch_add(1, Ordering::SeqCst);
                let _ = gate.lock().recv_timeout(Duration::from_secs(10));
                ran.fetch_add(1, Ordering::SeqCst);
            })
        };
        for _ in 0..2 {
            assert!(workers
                .run(blocking(Arc::clone(&gate), Arc::clone(&ran)))
                .is_ok());
        }
        assert!(
            workers
                .run(blocking(Arc::clone(&gate), Arc::clone(&ran)))
                .is_err(),
            "a third while two are busy"
        );
        assert_eq!(workers.threads(), 2);
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while started.load(Ordering::SeqCst) < 2 && std::time::Instant::now() < deadline {
            thread::sleep(Duration::from_millis(1));
        }
        release.send(()).unwrap();
        release.send(()).unwrap();
        workers.shutdown();
        assert_eq!(ran.load(Ordering::SeqCst), 2);
        assert!(workers.run(Box::new(|| {})).is_err(), "stopped");
    }

    #[test]
    fn a_panicking_job_loses_only_itself() {
        let workers = Workers::new("test", 1);
        let (done, finished) = mpsc::channel();
        assert!(workers.run(Box::new(|| panic!("a handler bug"))).is_ok());
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        // The one thread takes the next job once the panic is caught.
        let mut sent = false;
        while !sent && std::time::Instant::now() < deadline {
            let done = done.clone();
            sent = workers
                .run(Box::new(move || done.send(()).unwrap()))
                .is_ok();
            thread::yield_now();
        }
        assert!(sent);
        finished.recv_timeout(Duration::from_secs(10)).unwrap();
    }
}
