//! A connection task's panic closes that connection, not the shard.

use std::future::Future;
use std::panic::AssertUnwindSafe;
use std::pin::Pin;
use std::rc::Rc;
use std::task::{Context, Poll};

use super::ShardContext;

/// Runs a connection task, turning a panic into a closed connection instead of a dead shard.
pub(super) struct CatchUnwind<F> {
    pub(super) inner: F,
    pub(super) ctx: Rc<ShardContext>,
}

impl<F: Future<Output = ()>> Future for CatchUnwind<F> {
    type Output = ();

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // SAFETY: `inner` is structurally pinned: it is never moved out of `self`, and
        // `CatchUnwind` has no Drop impl that could move it.
        let this = unsafe { self.get_unchecked_mut() };
        let ctx = &this.ctx;
        let inner = unsafe { Pin::new_unchecked(&mut this.inner) };
        // Every connection task is polled through here: the request path's clock readings
        // are shared within the poll (`crate::clock`).
        let _clock = crate::clock::PollScope::enter();
        match std::panic::catch_unwind(AssertUnwindSafe(|| inner.poll(cx))) {
            Ok(poll) => poll,
            Err(panic) => {
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|s| (*s).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                ctx.with_metrics(|m| m.panics.inc());
                log::error!(
                    "shard {}: a connection task panicked and was closed: {message}",
                    ctx.index
                );
                Poll::Ready(())
            }
        }
    }
}
