//! Process signals, handled synchronously by the main thread: SIGHUP reloads, SIGTERM and
//! SIGINT drain and exit. The signals are blocked in every thread (shards inherit the mask),
//! so they are only ever delivered to the `sigwait` below; shards are never interrupted.

use std::io;

/// What the main thread was asked to do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Signal {
    Reload,
    Terminate,
}

const HANDLED: [libc::c_int; 3] = [libc::SIGHUP, libc::SIGTERM, libc::SIGINT];

fn handled_set() -> libc::sigset_t {
    // SAFETY: sigemptyset initialises the set before sigaddset touches it; both only write
    // to the local value.
    unsafe {
        let mut set = std::mem::zeroed::<libc::sigset_t>();
        libc::sigemptyset(&mut set);
        for signal in HANDLED {
            libc::sigaddset(&mut set, signal);
        }
        set
    }
}

/// Blocks the handled signals in the calling thread and in threads it spawns later. Call
/// before starting shards.
pub fn block() -> io::Result<()> {
    let set = handled_set();
    // SAFETY: `set` is an initialised signal set; a null old-set pointer is allowed.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::from_raw_os_error(rc))
    }
}

/// Waits for the next handled signal.
pub fn wait() -> io::Result<Signal> {
    let set = handled_set();
    let mut signal: libc::c_int = 0;
    // SAFETY: `set` is initialised and `signal` is a valid out-pointer.
    let rc = unsafe { libc::sigwait(&set, &mut signal) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(if signal == libc::SIGHUP {
        Signal::Reload
    } else {
        Signal::Terminate
    })
}
