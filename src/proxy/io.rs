//! Owned-buffer I/O helpers over monoio: append a read to a `Vec`, write a range of one,
//! each bounded by a deadline. A timed-out operation is cancelled and its buffer lost with
//! it, so callers close the connection after a timeout (they must anyway: bytes may have
//! been consumed).

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

/// Polls `future` until it completes or `timer` fires (`None`). Both are pinned by the
/// caller where they stand: wrapping a future in `monoio::time::timeout` moves it (twice,
/// with `.await`), and on the request path those copies of large futures add up.
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

/// Reads into the spare capacity of `buf` (appending), making sure at least `min_spare`
/// bytes are free first. Returns the number of bytes read; end of stream is `Closed`.
pub async fn read_more<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    min_spare: usize,
    timeout: Duration,
) -> Result<usize, IoError> {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let (len, cap) = (buf.len(), buf.capacity());
    let read = pin!(stream.read(std::mem::take(buf).slice_mut(len..cap)));
    let timer = pin!(monoio::time::sleep(timeout));
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

/// Like [`read_more`] without a timer of its own, for callers already under a deadline.
pub async fn read_more_untimed<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    min_spare: usize,
) -> Result<usize, IoError> {
    if buf.capacity() - buf.len() < min_spare {
        buf.reserve(min_spare);
    }
    let (len, cap) = (buf.len(), buf.capacity());
    let (result, slice) = stream.read(std::mem::take(buf).slice_mut(len..cap)).await;
    *buf = slice.into_inner();
    match result {
        Ok(0) => Err(IoError::Closed),
        Ok(n) => Ok(n),
        Err(e) => Err(IoError::Io(e)),
    }
}

/// Writes all of `buf` without a timer of its own, for callers already under a deadline.
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

/// Like [`read_more`] with an absolute deadline.
pub async fn read_more_until<S: AsyncReadRent>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    min_spare: usize,
    deadline: Instant,
) -> Result<usize, IoError> {
    let left = deadline.saturating_duration_since(Instant::now());
    if left.is_zero() {
        return Err(IoError::TimedOut);
    }
    read_more(stream, buf, min_spare, left).await
}

/// Writes `buf[range]` completely.
pub async fn write_range<S: AsyncWriteRent>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    range: Range<usize>,
    timeout: Duration,
) -> Result<(), IoError> {
    if range.is_empty() {
        return Ok(());
    }
    let write = pin!(stream.write_all(std::mem::take(buf).slice(range)));
    let timer = pin!(monoio::time::sleep(timeout));
    match race(write, timer).await {
        None => Err(IoError::TimedOut),
        Some((result, slice)) => {
            *buf = slice.into_inner();
            result.map(|_| ()).map_err(IoError::Io)
        }
    }
}

/// Writes all of `buf`.
pub async fn write_all<S: AsyncWriteRent>(
    stream: &mut S,
    buf: &mut Vec<u8>,
    timeout: Duration,
) -> Result<(), IoError> {
    let len = buf.len();
    write_range(stream, buf, 0..len, timeout).await
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
            let mut source: &[u8] = b"world";
            let mut buf = b"hello ".to_vec();
            let n = read_more(&mut source, &mut buf, 16, Duration::from_secs(1))
                .await
                .unwrap();
            assert_eq!(n, 5);
            assert_eq!(buf, b"hello world");
            let mut empty: &[u8] = b"";
            assert!(matches!(
                read_more(&mut empty, &mut buf, 16, Duration::from_secs(1)).await,
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
            let mut sink = TrickleSink(Vec::new());
            let mut buf = b"0123456789".to_vec();
            write_range(&mut sink, &mut buf, 2..7, Duration::from_secs(1))
                .await
                .unwrap();
            assert_eq!(sink.0, b"23456");
            assert_eq!(buf, b"0123456789");
        });
    }
}
