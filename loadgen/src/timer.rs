//! A microsecond-precise sleep for the open-loop dispatcher.
//!
//! monoio's timer wheel ticks in whole milliseconds, and its park timeout is computed from
//! the floored current tick, so `sleep_until(t)` wakes anywhere in `[t, t + 2 ms)`. For a
//! profiler that measures latency from the intended send time that would add up to 2 ms of
//! pure generator error to every corrected latency of a fast server.
//!
//! Instead each worker arms a `timerfd` (CLOCK_MONOTONIC, absolute, nanosecond resolution)
//! and waits for it to become readable through monoio's readiness API (io_uring `PollAdd`,
//! or epoll on the legacy driver). monoio 0.2 only exposes readiness waits on its socket
//! types, so the timerfd is wrapped in a `monoio::net::TcpStream` that is used for nothing
//! but `readable()`: no socket call is ever made on it. If the timerfd cannot be created,
//! the coarse monoio timer is used and the run says so.

use std::io;
use std::os::fd::{FromRawFd, RawFd};
use std::time::{Duration, Instant};

pub struct PreciseTimer {
    inner: Option<TimerFd>,
}

struct TimerFd {
    fd: RawFd,
    /// Only for `readable()`; owns and closes the fd.
    stream: monoio::net::TcpStream,
    base: Instant,
    base_ts: libc::timespec,
}

impl Default for PreciseTimer {
    fn default() -> Self {
        Self::new()
    }
}

impl PreciseTimer {
    /// Must be called inside a monoio runtime.
    pub fn new() -> PreciseTimer {
        PreciseTimer {
            inner: TimerFd::new().ok(),
        }
    }

    /// A timer that always uses monoio's millisecond wheel (for comparison and tests).
    pub fn coarse() -> PreciseTimer {
        PreciseTimer { inner: None }
    }

    pub fn is_precise(&self) -> bool {
        self.inner.is_some()
    }

    /// Sleeps until `when` (returns at once if it has passed).
    pub async fn sleep_until(&mut self, when: Instant) {
        if Instant::now() >= when {
            return;
        }
        match &mut self.inner {
            Some(t) => {
                if t.arm(when).is_err() {
                    monoio::time::sleep_until(monoio::time::Instant::from_std(when)).await;
                    return;
                }
                // A readiness wait can return early on the legacy driver; loop until due.
                while Instant::now() < when {
                    if t.stream.readable(false).await.is_err() {
                        monoio::time::sleep_until(monoio::time::Instant::from_std(when)).await;
                        return;
                    }
                    if Instant::now() < when {
                        // Spurious: re-arm (this also clears the expiration count).
                        let _ = t.arm(when);
                    }
                }
            }
            None => monoio::time::sleep_until(monoio::time::Instant::from_std(when)).await,
        }
    }
}

impl TimerFd {
    fn new() -> io::Result<TimerFd> {
        // SAFETY: plain syscalls; the fd is checked and then owned by `stream`.
        let fd = unsafe {
            libc::timerfd_create(
                libc::CLOCK_MONOTONIC,
                libc::TFD_NONBLOCK | libc::TFD_CLOEXEC,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        let base = Instant::now();
        let mut base_ts = libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        };
        // SAFETY: valid out-pointer. std's Instant is CLOCK_MONOTONIC on Linux too.
        unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut base_ts) };
        // SAFETY: `fd` is a fresh, owned descriptor; the TcpStream takes ownership and
        // closes it on drop. Only `readable()` is called on it (see the module docs).
        let std_stream = unsafe { std::net::TcpStream::from_raw_fd(fd) };
        let stream = monoio::net::TcpStream::from_std(std_stream)?;
        Ok(TimerFd {
            fd,
            stream,
            base,
            base_ts,
        })
    }

    fn arm(&mut self, when: Instant) -> io::Result<()> {
        let off = when.saturating_duration_since(self.base);
        let ts = add(self.base_ts, off);
        let spec = libc::itimerspec {
            it_interval: libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            },
            it_value: ts,
        };
        // SAFETY: valid fd and pointers. Re-arming resets the expiration count, so the
        // fd is unreadable again until the new deadline.
        let r = unsafe {
            libc::timerfd_settime(
                self.fd,
                libc::TFD_TIMER_ABSTIME,
                &spec,
                std::ptr::null_mut(),
            )
        };
        if r < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

fn add(ts: libc::timespec, d: Duration) -> libc::timespec {
    let mut sec = ts.tv_sec + d.as_secs() as libc::time_t;
    let mut nsec = ts.tv_nsec + d.subsec_nanos() as libc::c_long;
    if nsec >= 1_000_000_000 {
        sec += 1;
        nsec -= 1_000_000_000;
    }
    // Never zero: a zero it_value disarms the timer.
    if sec == 0 && nsec == 0 {
        nsec = 1;
    }
    libc::timespec {
        tv_sec: sec,
        tv_nsec: nsec,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wakes_on_time_and_never_early() {
        let mut rt = monoio::RuntimeBuilder::<monoio::FusionDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut t = PreciseTimer::new();
            assert!(t.is_precise());
            for i in 0..20u64 {
                let when = Instant::now() + Duration::from_micros(300 + i * 37);
                t.sleep_until(when).await;
                assert!(Instant::now() >= when);
            }
            // A deadline in the past returns at once.
            t.sleep_until(Instant::now() - Duration::from_millis(1))
                .await;
        });
    }
}
