//! Owned-buffer I/O helpers over monoio: append a read to a `Vec`, write a range of one,
//! each bounded by the connection's timer. A timed-out operation is cancelled and its buffer
//! lost with it, so callers close the connection after a timeout (they must anyway: bytes
//! may have been consumed).

use std::future::{poll_fn, Future};
use std::io;
use std::ops::Range;
use std::pin::{pin, Pin};
use std::task::Poll;
use std::time::{Duration, Instant};

use monoio::buf::{IoBuf, IoBufMut};
use monoio::io::{AsyncReadRent, AsyncWriteRent, AsyncWriteRentExt};
use monoio::time::Sleep;

/// Why an I/O step ended without its bytes.
#[derive(Debug)]
pub enum IoError {
    /// The deadline passed first.
    TimedOut,
    /// The peer closed the stream (a read returned 0).
    Closed,
    Io(io::Error),
}

impl std::fmt::Display for IoError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            IoError::TimedOut => f.write_str("timed out"),
            IoError::Closed => f.write_str("closed by the peer"),
            IoError::Io(e) => write!(f, "{e}"),
        }
    }
}

impl From<io::Error> for IoError {
    fn from(e: io::Error) -> Self {
        IoError::Io(e)
    }
}

/// A connection's one timer, re-armed for each timed step. monoio's `Sleep` is 640 bytes
/// (its entry is cache-padded for multi-threaded use); one per connection, allocated once,
/// keeps every future of the request path small and free of timer copies. A connection times
/// one step at a time, so one timer is enough. It never moves to another task: monoio's timer
/// entry keeps the first waker registered after it fired and never replaces it, so a timer
/// polled by a second task would wake the first.
#[derive(Default)]
pub struct Timer {
    /// Allocated on first use.
    sleep: Option<Pin<Box<Sleep>>>,
}

impl Timer {
    /// Arms the timer to fire `after` from now.
    pub fn arm_in(&mut self, after: Duration) -> Pin<&mut Sleep> {
        self.arm_at(crate::clock::now() + after)
    }

    /// Arms the timer to fire at `deadline`.
    pub fn arm_at(&mut self, deadline: Instant) -> Pin<&mut Sleep> {
        let sleep = self
            .sleep
            .get_or_insert_with(|| Box::pin(monoio::time::sleep_until(deadline.into())));
        sleep.as_mut().reset(deadline.into());
        sleep.as_mut()
    }
}

/// Polls `future` until it completes or `timer` fires (`None`). Both are pinned by the
/// caller where they stand: nothing is moved into a wrapper.
pub async fn race<F: Future>(
    mut future: Pin<&mut F>,
    mut timer: Pin<&mut Sleep>,
) -> Option<F::Output> {
    poll_fn(|cx| {
        if let Poll::Ready(output) = future.as_mut().poll(cx) {
            return Poll::Ready(Some(output));
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Which of two futures finished first.
pub enum Either<A, B> {
    Left(A),
    Right(B),
}

/// Polls both futures until one completes; `first` is polled first. Both are pinned by the
/// caller where they stand.
pub async fn select2<F: Future, G: Future>(
    mut first: Pin<&mut F>,
    mut second: Pin<&mut G>,
) -> Either<F::Output, G::Output> {
    poll_fn(|cx| {
        if let Poll::Ready(output) = first.as_mut().poll(cx) {
            return Poll::Ready(Either::Left(output));
        }
        match second.as_mut().poll(cx) {
            Poll::Ready(output) => Poll::Ready(Either::Right(output)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Reads into the spare capacity of `buf` (appending), making sure at least `min_spare`
/// bytes are free first, until `timer` fires. Returns the number of bytes read; end of
/// stream is `Closed`.
pub async fn read_more<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    min_spare: usize,
    timer: Pin<&mut Sleep>,
) -> Result<usize, IoError> {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let (len, cap) = (buf.len(), buf.capacity());
    let read = pin!(stream.read(std::mem::take(buf).slice_mut(len..cap)));
    match race(read, timer).await {
        None => Err(IoError::TimedOut),
        Some((result, slice)) => {
            *buf = slice.into_inner();
            match result {
                Ok(0) => Err(IoError::Closed),
                Ok(n) => Ok(n),
                Err(e) => Err(IoError::Io(e)),
            }
        }
    }
}

/// Like [`read_more`] without a timer, for callers already under a deadline, and reading
/// at most `at_most` bytes.
pub async fn read_more_untimed<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    min_spare: usize,
    at_most: usize,
) -> Result<usize, IoError> {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let (len, cap) = (buf.len(), buf.capacity());
    let end = cap.min(len.saturating_add(at_most));
    let (result, slice) = stream.read(std::mem::take(buf).slice_mut(len..end)).await;
    *buf = slice.into_inner();
    match result {
        Ok(0) => Err(IoError::Closed),
        Ok(n) => Ok(n),
        Err(e) => Err(IoError::Io(e)),
    }
}

/// Writes `buf[range]` completely, until `timer` fires.
pub async fn write_range<S: AsyncWriteRent>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    range: Range<usize>,
    timer: Pin<&mut Sleep>,
) -> Result<(), IoError> {
    if range.is_empty() {
        return Ok(());
    }
    let write = pin!(stream.write_all(std::mem::take(buf).slice(range)));
    match race(write, timer).await {
        None => Err(IoError::TimedOut),
        Some((result, slice)) => {
            *buf = slice.into_inner();
            result.map(|_| ()).map_err(IoError::Io)
        }
    }
}

/// Writes all of `buf`, until `timer` fires.
pub async fn write_all<S: AsyncWriteRent>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    timer: Pin<&mut Sleep>,
) -> Result<(), IoError> {
    let len = buf.len();
    write_range(stream, buf, 0..len, timer).await
}

/// Writes all of `buf` without a timer, for callers already under a deadline.
pub async fn write_all_untimed<S: AsyncWriteRent>(
    stream: &mut S,
    buf: &mut Vec<u8>,
) -> Result<(), IoError> {
    if buf.is_empty() {
        return Ok(());
    }
    let len = buf.len();
    let (result, slice) = stream.write_all(std::mem::take(buf).slice(0..len)).await;
    *buf = slice.into_inner();
    result.map(|_| ()).map_err(IoError::Io)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slice_mut_reads_append_after_existing_bytes() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut timer = Timer::default();
            let mut source: &[u8] = b"world";
            let mut buf = b"hello ".to_vec();
            let n = read_more(
                &mut source,
                &mut buf,
                16,
                timer.arm_in(Duration::from_secs(1)),
            )
            .await
            .unwrap();
            assert_eq!(n, 5);
            assert_eq!(buf, b"hello world");
            let mut empty: &[u8] = b"";
            assert!(matches!(
                read_more(
                    &mut empty,
                    &mut buf,
                    16,
                    timer.arm_in(Duration::from_secs(1))
                )
                .await,
                Err(IoError::Closed)
            ));
            assert_eq!(
                buf, b"hello world",
                "a closed read leaves the buffer intact"
            );
        });
    }

    /// An in-memory writer that takes at most 2 bytes per write, to exercise `write_all`.
    struct TrickleSink(Vec<u8>);

    impl AsyncWriteRent for TrickleSink {
        fn write<T: IoBuf>(
            &mut self,
            buf: T,
        ) -> impl std::future::Future<Output = monoio::BufResult<usize, T>> {
            // SAFETY: read_ptr/bytes_init describe the initialised bytes of `buf`.
            let bytes = unsafe { std::slice::from_raw_parts(buf.read_ptr(), buf.bytes_init()) };
            let n = bytes.len().min(2);
            self.0.extend_from_slice(&bytes[..n]);
            async move { (Ok(n), buf) }
        }

        async fn writev<T: monoio::buf::IoVecBuf>(&mut self, _: T) -> monoio::BufResult<usize, T> {
            unimplemented!("not used")
        }

        async fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }

        async fn shutdown(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn write_range_writes_only_the_range_and_returns_the_buffer() {
        let mut rt = monoio::RuntimeBuilder::<monoio::LegacyDriver>::new()
            .enable_timer()
            .build()
            .unwrap();
        rt.block_on(async {
            let mut timer = Timer::default();
            let mut sink = TrickleSink(Vec::new());
            let mut buf = b"0123456789".to_vec();
            write_range(
                &mut sink,
                &mut buf,
                2..7,
                timer.arm_in(Duration::from_secs(1)),
            )
            .await
            .unwrap();
            assert_eq!(sink.0, b"23456");
            assert_eq!(buf, b"0123456789");
        });
    }
}
