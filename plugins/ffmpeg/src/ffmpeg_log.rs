//! Routes libav*'s log through the host's logger, and remembers the last
//! error line per thread so that a failed call can say *why* (x264 explains
//! a refused profile only in its log, never in the return code).

use deliver_plugin_api::plugin::{level, log};
use ffmpeg_next::ffi;
use std::cell::RefCell;

thread_local! {
    static LAST_ERROR: RefCell<Option<String>> = const { RefCell::new(None) };
    /// Warnings and errors logged on this thread while a capture is active.
    static CAPTURE: RefCell<Option<Vec<(i32, String)>>> = const { RefCell::new(None) };
    /// Captured lines are kept from the host's log (see [`capture_quiet`]).
    static QUIET: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Starts collecting this thread's warnings and errors.
pub(crate) fn capture_start() {
    CAPTURE.with(|c| *c.borrow_mut() = Some(Vec::new()));
}

/// Like [`capture_start`], but warnings and errors are only collected, not
/// logged: a probe that expects refusals (no GPU here) explains them in one
/// line of its own rather than as libav* errors in the host's log.
pub(crate) fn capture_quiet() {
    capture_start();
    QUIET.with(|q| q.set(true));
}

/// Stops collecting; returns `(av_level, line)` pairs in order.
pub(crate) fn capture_end() -> Vec<(i32, String)> {
    QUIET.with(|q| q.set(false));
    CAPTURE.with(|c| c.borrow_mut().take()).unwrap_or_default()
}

/// The last error libav* logged on this thread, cleared by reading it.
pub(crate) fn take_last_error() -> Option<String> {
    LAST_ERROR.with(|l| l.borrow_mut().take())
}

/// Forgets an earlier error so it is not blamed for a later failure.
pub(crate) fn clear_last_error() {
    LAST_ERROR.with(|l| *l.borrow_mut() = None);
}

fn forward(av_level: i32, line: &str) {
    let line = line.trim_end();
    if line.is_empty() {
        return;
    }
    let lvl = match av_level {
        l if l <= ffi::AV_LOG_ERROR => level::ERROR,
        l if l <= ffi::AV_LOG_WARNING => level::WARN,
        l if l <= ffi::AV_LOG_INFO => level::DEBUG,
        _ => level::TRACE,
    };
    if av_level <= ffi::AV_LOG_ERROR {
        LAST_ERROR.with(|l| *l.borrow_mut() = Some(line.to_owned()));
    }
    if av_level <= ffi::AV_LOG_WARNING {
        CAPTURE.with(|c| {
            if let Some(v) = c.borrow_mut().as_mut() {
                v.push((av_level, line.to_owned()));
            }
        });
    }
    if QUIET.with(std::cell::Cell::get) {
        log(level::TRACE, "ffmpeg", line);
        return;
    }
    log(lvl, "ffmpeg", line);
}

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod imp {
    use super::forward;
    use ffmpeg_next::ffi;
    use std::cell::{Cell, RefCell};
    use std::ffi::{c_char, c_int, c_void, CStr};

    thread_local! {
        /// libav* may build one line from several calls; it is sent whole.
        static PARTIAL: RefCell<String> = const { RefCell::new(String::new()) };
        static PRINT_PREFIX: Cell<c_int> = const { Cell::new(1) };
    }

    // The va_list parameter type differs between targets, which is why this
    // forwarding is compiled only where the bindings' type is known.
    unsafe extern "C" fn callback(
        avcl: *mut c_void,
        av_level: c_int,
        fmt: *const c_char,
        vl: *mut ffi::__va_list_tag,
    ) {
        // SAFETY: plain getter.
        if av_level > unsafe { ffi::av_log_get_level() } {
            return;
        }
        let mut buf = [0 as c_char; 1024];
        let mut prefix = PRINT_PREFIX.with(Cell::get);
        // SAFETY: forwards FFmpeg's own arguments; the buffer size matches.
        unsafe {
            ffi::av_log_format_line2(
                avcl,
                av_level,
                fmt,
                vl,
                buf.as_mut_ptr(),
                buf.len() as c_int,
                &mut prefix,
            )
        };
        PRINT_PREFIX.with(|p| p.set(prefix));
        // SAFETY: av_log_format_line2 always NUL-terminates.
        let text = unsafe { CStr::from_ptr(buf.as_ptr()) }.to_string_lossy();
        // A panic must not unwind into C; logging is best effort.
        let _ = std::panic::catch_unwind(|| {
            PARTIAL.with(|p| {
                let mut p = p.borrow_mut();
                p.push_str(&text);
                if p.ends_with('\n') {
                    forward(av_level, &p);
                    p.clear();
                }
            })
        });
    }

    pub(super) fn install() {
        // SAFETY: the callback is thread-safe (thread-local state only).
        unsafe {
            ffi::av_log_set_level(ffi::AV_LOG_INFO);
            ffi::av_log_set_callback(Some(callback));
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod imp {
    pub(super) fn install() {
        // FFmpeg keeps logging to stderr here; errors still carry the code.
        let _ = super::forward;
    }
}

/// Replaces libav*'s stderr logger by the host's.
pub(crate) fn install() {
    imp::install();
}
