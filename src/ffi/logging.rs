//! `pastry_set_log_callback`: the library's `log` records handed to a C function.
//!
//! The library logs through the `log` crate; a Rust program picks its logger (such as
//! env_logger), a C program has none. This installs one, once per process, that passes
//! each record at or above the chosen level to the program's callback, from whichever
//! library thread made it, several at once.

use std::cell::Cell;
use std::ffi::{c_char, c_void};

use log::{LevelFilter, Log, Metadata, Record};
use parking_lot::RwLock;

use super::{c_string, guard, Failure, PastryStatus};

/// How severe a log record is; `PASTRY_LOG_LEVEL_OFF` turns the callback off. Values are
/// fixed.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PastryLogLevel {
    /// No records.
    Off = 0,
    /// Failures the library could not recover from for a request or a peer.
    Error = 1,
    /// Something wrong that the library worked around (a peer lost, a bad frame).
    Warn = 2,
    /// Joins, departures, the node's life.
    Info = 3,
    /// Protocol decisions, useful to follow a request.
    Debug = 4,
    /// Everything.
    Trace = 5,
}

/// Receives one log record: its level, its target (the library's module, such as
/// `pastry::node::driver`) and its message, both NUL-terminated and valid only during the
/// call. Called from the library's threads, several at once: it must be thread-safe, and
/// must not call `pastry_set_log_callback`.
pub type PastryLogCallback = Option<
    unsafe extern "C" fn(
        user: *mut c_void,
        level: PastryLogLevel,
        target: *const c_char,
        message: *const c_char,
    ),
>;

/// The callback and its argument, while one is set.
#[derive(Clone, Copy)]
struct Target {
    callback: unsafe extern "C" fn(*mut c_void, PastryLogLevel, *const c_char, *const c_char),
    /// The program's pointer, handed back untouched.
    user: usize,
}

static TARGET: RwLock<Option<Target>> = RwLock::new(None);

thread_local! {
    /// Set while this thread is in the callback: setting it from there would deadlock.
    static IN_CALLBACK: Cell<bool> = const { Cell::new(false) };
}

/// The logger installed in the `log` crate.
struct Bridge;

static BRIDGE: Bridge = Bridge;

impl Log for Bridge {
    fn enabled(&self, metadata: &Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        // Held while the callback runs, so that turning it off waits for calls under way;
        // recursive, so that a record made inside the callback never waits on a writer.
        let target = TARGET.read_recursive();
        let Some(Target { callback, user }) = *target else {
            return;
        };
        let level = match record.level() {
            log::Level::Error => PastryLogLevel::Error,
            log::Level::Warn => PastryLogLevel::Warn,
            log::Level::Info => PastryLogLevel::Info,
            log::Level::Debug => PastryLogLevel::Debug,
            log::Level::Trace => PastryLogLevel::Trace,
        };
        let module = c_string(record.target().to_owned());
        let message = c_string(record.args().to_string());
        IN_CALLBACK.with(|c| c.set(true));
        // SAFETY: the program promised a callable function when it set it.
        unsafe {
            callback(
                user as *mut c_void,
                level,
                module.as_ptr(),
                message.as_ptr(),
            )
        };
        IN_CALLBACK.with(|c| c.set(false));
    }

    fn flush(&self) {}
}

/// Sends the library's log records at `level` and above (a `PastryLogLevel` value) to
/// `callback`, with `user` passed back untouched; replaces any callback set before. A NULL
/// `callback` or `PASTRY_LOG_LEVEL_OFF` turns logging off: once this returns, the old
/// callback is not called again (calls under way have ended). Returns `PASTRY_STATUS_OK`,
/// `_INVALID_ARGUMENT` (an unknown level, or a call from inside the callback), or `_OTHER`
/// when the process already has another logger (a Rust program that installed its own).
///
/// # Safety
/// `callback` is NULL or a function that is thread-safe and callable until logging is
/// turned off or replaced.
#[no_mangle]
pub unsafe extern "C" fn pastry_set_log_callback(
    level: u32,
    callback: PastryLogCallback,
    user: *mut c_void,
) -> PastryStatus {
    guard(|| {
        let filter = match level {
            0 => LevelFilter::Off,
            1 => LevelFilter::Error,
            2 => LevelFilter::Warn,
            3 => LevelFilter::Info,
            4 => LevelFilter::Debug,
            5 => LevelFilter::Trace,
            _ => return Err(Failure::invalid(format!("log level {level} is not 0..=5"))),
        };
        if IN_CALLBACK.with(Cell::get) {
            return Err(Failure::invalid(
                "pastry_set_log_callback called from inside the log callback",
            ));
        }
        let target = match callback {
            Some(callback) if filter != LevelFilter::Off => Some(Target {
                callback,
                user: user as usize,
            }),
            _ => None,
        };
        if target.is_some() && log::set_logger(&BRIDGE).is_err() && !installed() {
            return Err(Failure(
                PastryStatus::Other,
                "this process already has another logger".into(),
            ));
        }
        *TARGET.write() = target;
        // Another logger's level (a Rust program's) is not this function's to change.
        if installed() {
            log::set_max_level(if target.is_some() {
                filter
            } else {
                LevelFilter::Off
            });
        }
        Ok(())
    })
}

/// Whether the logger the `log` crate has is this bridge (set by an earlier call).
fn installed() -> bool {
    std::ptr::addr_eq(log::logger() as *const dyn Log, &BRIDGE as *const Bridge)
}
