//! A small RESP2 client for the rate-limit syncer thread: one connection, pipelined commands,
//! every exchange bounded by a deadline. Blocking std sockets are right here because the
//! syncer is a control-plane thread of its own: no shard ever runs this code. (The
//! maintained Redis clients on crates.io run on tokio or async-std, not monoio; the syncer
//! needs two commands, and this is under 300 lines tested against a real `redis-server`.)

use std::io::{self, Read, Write};
use std::net::{TcpStream, ToSocketAddrs};
use std::time::{Duration, Instant};

use crate::compile::config::gateway::RedisUrl;

/// Largest bulk string or array accepted from the server: the syncer's replies are integers,
/// so anything large is a wrong server, not data.
const MAX_ELEMENT: usize = 1 << 20;
/// Deepest nesting of arrays accepted.
const MAX_DEPTH: usize = 4;

/// A reply.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    Simple(String),
    Error(String),
    Integer(i64),
    Bulk(Option<Vec<u8>>),
    Array(Option<Vec<Reply>>),
}

/// Why an exchange failed.
#[derive(Debug, thiserror::Error)]
pub enum RedisError {
    #[error("{0}")]
    Io(#[from] io::Error),
    #[error("no answer within {0} ms")]
    Timeout(u128),
    #[error("not a Redis reply: {0}")]
    Protocol(&'static str),
    #[error("cannot resolve {0}")]
    Resolve(String),
}

/// One connection to Redis.
pub struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
    out: Vec<u8>,
    timeout: Duration,
}

impl Connection {
    /// Connects within `timeout` (name resolution included: this is a control-plane thread).
    pub fn connect(url: &RedisUrl, timeout: Duration) -> Result<Connection, RedisError> {
        let addrs: Vec<_> = (url.host.as_str(), url.port)
            .to_socket_addrs()
            .map_err(|_| RedisError::Resolve(format!("{}:{}", url.host, url.port)))?
            .collect();
        let mut last = RedisError::Resolve(format!("{}:{}", url.host, url.port));
        for addr in addrs {
            match TcpStream::connect_timeout(&addr, timeout) {
                Ok(stream) => {
                    stream.set_nodelay(true)?;
                    return Ok(Connection {
                        stream,
                        buf: Vec::with_capacity(512),
                        out: Vec::with_capacity(1024),
                        timeout,
                    });
                }
                Err(e) if e.kind() == io::ErrorKind::TimedOut => {
                    last = RedisError::Timeout(timeout.as_millis())
                }
                Err(e) => last = RedisError::Io(e),
            }
        }
        Err(last)
    }

    /// Sends every command in one write and reads one reply each, all within the timeout.
    pub fn exchange(&mut self, commands: &[Vec<Vec<u8>>]) -> Result<Vec<Reply>, RedisError> {
        let deadline = Instant::now() + self.timeout;
        self.out.clear();
        for command in commands {
            encode(&mut self.out, command);
        }
        let remaining = |deadline: Instant, timeout: Duration| {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                Err(RedisError::Timeout(timeout.as_millis()))
            } else {
                Ok(left)
            }
        };
        self.stream
            .set_write_timeout(Some(remaining(deadline, self.timeout)?))?;
        self.stream
            .write_all(&self.out)
            .map_err(|e| timed_out(e, self.timeout))?;
        let mut replies = Vec::with_capacity(commands.len());
        let mut parsed = 0;
        while replies.len() < commands.len() {
            if let Some((reply, used)) = parse(&self.buf[parsed..], 0)? {
                parsed += used;
                replies.push(reply);
                continue;
            }
            self.stream
                .set_read_timeout(Some(remaining(deadline, self.timeout)?))?;
            let mut chunk = [0u8; 4096];
            let n = self
                .stream
                .read(&mut chunk)
                .map_err(|e| timed_out(e, self.timeout))?;
            if n == 0 {
                return Err(RedisError::Io(io::ErrorKind::UnexpectedEof.into()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        self.buf.drain(..parsed);
        Ok(replies)
    }
}

fn timed_out(e: io::Error, timeout: Duration) -> RedisError {
    match e.kind() {
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut => {
            RedisError::Timeout(timeout.as_millis())
        }
        _ => RedisError::Io(e),
    }
}

/// Appends `args` as a RESP array of bulk strings.
pub fn encode(out: &mut Vec<u8>, args: &[Vec<u8>]) {
    out.push(b'*');
    out.extend_from_slice(args.len().to_string().as_bytes());
    out.extend_from_slice(b"\r\n");
    for arg in args {
        out.push(b'$');
        out.extend_from_slice(arg.len().to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
        out.extend_from_slice(arg);
        out.extend_from_slice(b"\r\n");
    }
}

/// One reply from the start of `buf`: `None` until it is complete, else the reply and the
/// bytes it took.
pub fn parse(buf: &[u8], depth: usize) -> Result<Option<(Reply, usize)>, RedisError> {
    let Some(line_end) = buf.windows(2).position(|w| w == b"\r\n") else {
        if buf.len() > MAX_ELEMENT {
            return Err(RedisError::Protocol("line too long"));
        }
        return Ok(None);
    };
    let Some((&kind, line)) = buf[..line_end].split_first() else {
        return Err(RedisError::Protocol("empty line"));
    };
    let text = || {
        std::str::from_utf8(line)
            .map(str::to_owned)
            .map_err(|_| RedisError::Protocol("line is not UTF-8"))
    };
    let number = || -> Result<i64, RedisError> {
        std::str::from_utf8(line)
            .ok()
            .and_then(|t| t.parse().ok())
            .ok_or(RedisError::Protocol("bad number"))
    };
    let after_line = line_end + 2;
    match kind {
        b'+' => Ok(Some((Reply::Simple(text()?), after_line))),
        b'-' => Ok(Some((Reply::Error(text()?), after_line))),
        b':' => Ok(Some((Reply::Integer(number()?), after_line))),
        b'$' => {
            let len = number()?;
            if len < 0 {
                return Ok(Some((Reply::Bulk(None), after_line)));
            }
            let len = usize::try_from(len).map_err(|_| RedisError::Protocol("bad length"))?;
            if len > MAX_ELEMENT {
                return Err(RedisError::Protocol("bulk string too long"));
            }
            let end = after_line + len;
            if buf.len() < end + 2 {
                return Ok(None);
            }
            if &buf[end..end + 2] != b"\r\n" {
                return Err(RedisError::Protocol("bulk string not terminated"));
            }
            Ok(Some((
                Reply::Bulk(Some(buf[after_line..end].to_vec())),
                end + 2,
            )))
        }
        b'*' => {
            let len = number()?;
            if len < 0 {
                return Ok(Some((Reply::Array(None), after_line)));
            }
            if depth >= MAX_DEPTH || len as u64 > MAX_ELEMENT as u64 {
                return Err(RedisError::Protocol("array too large or too deep"));
            }
            let mut items = Vec::new();
            let mut at = after_line;
            for _ in 0..len {
                match parse(&buf[at..], depth + 1)? {
                    Some((item, used)) => {
                        items.push(item);
                        at += used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), at)))
        }
        _ => Err(RedisError::Protocol("unknown reply type")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_are_arrays_of_bulk_strings() {
        let mut out = Vec::new();
        encode(
            &mut out,
            &[b"INCRBY".to_vec(), b"k 1".to_vec(), b"5".to_vec()],
        );
        assert_eq!(out, b"*3\r\n$6\r\nINCRBY\r\n$3\r\nk 1\r\n$1\r\n5\r\n");
    }

    #[test]
    fn replies_parse_whole_or_not_at_all() {
        assert_eq!(
            parse(b":42\r\n+OK\r\n", 0).unwrap(),
            Some((Reply::Integer(42), 5))
        );
        assert_eq!(
            parse(b"+PONG\r\n", 0).unwrap(),
            Some((Reply::Simple("PONG".into()), 7))
        );
        assert_eq!(
            parse(b"-ERR no\r\n", 0).unwrap(),
            Some((Reply::Error("ERR no".into()), 9))
        );
        assert_eq!(parse(b"$3\r\nab", 0).unwrap(), None);
        assert_eq!(
            parse(b"$3\r\nabc\r\n", 0).unwrap(),
            Some((Reply::Bulk(Some(b"abc".to_vec())), 9))
        );
        assert_eq!(parse(b"$-1\r\n", 0).unwrap(), Some((Reply::Bulk(None), 5)));
        assert_eq!(
            parse(b"*2\r\n:1\r\n$1\r\nx\r\n", 0).unwrap(),
            Some((
                Reply::Array(Some(vec![
                    Reply::Integer(1),
                    Reply::Bulk(Some(b"x".to_vec()))
                ])),
                15
            ))
        );
        assert_eq!(parse(b"*2\r\n:1\r\n", 0).unwrap(), None);
        assert_eq!(parse(b":4", 0).unwrap(), None);
    }

    #[test]
    fn garbage_is_a_protocol_error_never_a_panic() {
        for bad in [
            &b"?x\r\n"[..],
            b":x\r\n",
            b"$abc\r\n",
            b"$2\r\nabcd\r\n",
            b"$99999999999\r\n",
            b"*9999999999\r\n",
            b"\r\n",
            b"*1\r\n*1\r\n*1\r\n*1\r\n*1\r\n:1\r\n",
        ] {
            assert!(parse(bad, 0).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }
}
