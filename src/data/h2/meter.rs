//! The per-connection frame budget of an HTTP/2 client connection: the defences the `h2` crate
//! does not have, decided from the frame headers of the bytes going each way (never their
//! payload). `h2` answers every PING and SETTINGS frame and ignores PRIORITY frames and
//! unknown frame types without a limit (its own defences cover rapid resets of streams not
//! yet accepted, CONTINUATION floods and empty DATA frames), so a client can make the gateway
//! do work in proportion to frames that carry no request. Here:
//!
//! - **control frames** (SETTINGS, PING, PRIORITY, WINDOW_UPDATE, unknown types) draw from a
//!   bucket of `max_control_frames` that every useful frame (request HEADERS, DATA with a
//!   payload either way, response HEADERS) refills by [`REFILL_PER_USEFUL_FRAME`];
//! - **client resets** (RST_STREAM, CVE-2023-44487) draw from a bucket of
//!   `max_client_resets` that every completed stream (END_STREAM sent) refills by one;
//! - **empty frames**: more than `max_empty_frames` DATA, HEADERS or CONTINUATION frames in a
//!   row without payload and without END_STREAM.
//!
//! Buckets, not rates: the limits are counts of frames, refilled by work, so no clock is read.

/// Control frames a useful frame pays for: a flow-control update per DATA frame for the
/// stream and one for the connection, a BDP ping (gRPC) and one to spare.
pub const REFILL_PER_USEFUL_FRAME: u32 = 4;

/// The 24 bytes a client connection starts with (RFC 9113 §3.4).
pub const CLIENT_PREFACE_LEN: usize = 24;

const FRAME_HEADER_LEN: usize = 9;

const DATA: u8 = 0x0;
const HEADERS: u8 = 0x1;
const RST_STREAM: u8 = 0x3;
const SETTINGS: u8 = 0x4;
const PING: u8 = 0x6;
const GOAWAY: u8 = 0x7;
#[cfg(test)]
const WINDOW_UPDATE: u8 = 0x8;
const CONTINUATION: u8 = 0x9;
const END_STREAM: u8 = 0x1;
const ACK: u8 = 0x1;

/// The limits of one connection (from `http2:` in the gateway config).
#[derive(Clone, Copy, Debug)]
pub struct Budget {
    pub max_control_frames: u32,
    pub max_client_resets: u32,
    pub max_empty_frames: u32,
}

/// Which budget a client exhausted.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Violation {
    ControlFlood,
    RapidReset,
    EmptyFrames,
}

impl Violation {
    /// For logs and the metric label.
    pub fn label(self) -> &'static str {
        match self {
            Violation::ControlFlood => "control_frame_flood",
            Violation::RapidReset => "rapid_reset",
            Violation::EmptyFrames => "empty_frame_flood",
        }
    }
}

/// Walks one direction's byte stream frame by frame, holding a partial frame header.
#[derive(Debug, Default)]
struct FrameWalker {
    /// Bytes still to skip: the preface, or the payload of the current frame.
    skip: usize,
    header: [u8; FRAME_HEADER_LEN],
    have: usize,
}

/// A frame header: type, flags, payload length.
#[derive(Clone, Copy, Debug)]
struct FrameHead {
    kind: u8,
    flags: u8,
    len: usize,
}

impl FrameWalker {
    fn after_preface() -> FrameWalker {
        FrameWalker {
            skip: CLIENT_PREFACE_LEN,
            ..FrameWalker::default()
        }
    }

    /// Calls `on_frame` for each frame header completed in `bytes`.
    fn walk(&mut self, mut bytes: &[u8], mut on_frame: impl FnMut(FrameHead)) {
        while !bytes.is_empty() {
            if self.skip > 0 {
                let n = self.skip.min(bytes.len());
                self.skip -= n;
                bytes = &bytes[n..];
                continue;
            }
            let n = (FRAME_HEADER_LEN - self.have).min(bytes.len());
            self.header[self.have..self.have + n].copy_from_slice(&bytes[..n]);
            self.have += n;
            bytes = &bytes[n..];
            if self.have == FRAME_HEADER_LEN {
                self.have = 0;
                let h = &self.header;
                let head = FrameHead {
                    len: (usize::from(h[0]) << 16) | (usize::from(h[1]) << 8) | usize::from(h[2]),
                    kind: h[3],
                    flags: h[4],
                };
                self.skip = head.len;
                on_frame(head);
            }
        }
    }
}

/// The budget state of one client connection.
#[derive(Debug)]
pub struct FrameMeter {
    budget: Budget,
    inbound: FrameWalker,
    outbound: FrameWalker,
    control_left: u32,
    resets_left: u32,
    empty_in_a_row: u32,
    tripped: Option<Violation>,
}

impl FrameMeter {
    pub fn new(budget: Budget) -> FrameMeter {
        FrameMeter {
            budget,
            inbound: FrameWalker::after_preface(),
            outbound: FrameWalker::default(),
            control_left: budget.max_control_frames,
            resets_left: budget.max_client_resets,
            empty_in_a_row: 0,
            tripped: None,
        }
    }

    /// The first budget exhausted, if any (it stays exhausted).
    pub fn violation(&self) -> Option<Violation> {
        self.tripped
    }

    /// Accounts for bytes received from the client (after TLS).
    pub fn inbound(&mut self, bytes: &[u8]) {
        let mut walker = std::mem::take(&mut self.inbound);
        walker.walk(bytes, |frame| self.on_inbound(frame));
        self.inbound = walker;
    }

    /// Accounts for bytes sent to the client (before TLS).
    pub fn outbound(&mut self, bytes: &[u8]) {
        let mut walker = std::mem::take(&mut self.outbound);
        walker.walk(bytes, |frame| self.on_outbound(frame));
        self.outbound = walker;
    }

    fn on_inbound(&mut self, frame: FrameHead) {
        let end_stream = frame.flags & END_STREAM != 0;
        match frame.kind {
            DATA | HEADERS | CONTINUATION => {
                if frame.len == 0 && !(end_stream && frame.kind != CONTINUATION) {
                    self.empty_in_a_row += 1;
                    if self.empty_in_a_row > self.budget.max_empty_frames {
                        self.trip(Violation::EmptyFrames);
                    }
                } else {
                    self.empty_in_a_row = 0;
                }
                if frame.kind != CONTINUATION && frame.len > 0 {
                    self.refill_control();
                }
            }
            RST_STREAM => {
                if self.resets_left == 0 {
                    self.trip(Violation::RapidReset);
                } else {
                    self.resets_left -= 1;
                }
            }
            // Acknowledgements answer the gateway's own frames.
            SETTINGS | PING if frame.flags & ACK != 0 => {}
            GOAWAY => {}
            // SETTINGS, PING, PRIORITY, WINDOW_UPDATE and unknown (ignored) types.
            _ => {
                if self.control_left == 0 {
                    self.trip(Violation::ControlFlood);
                } else {
                    self.control_left -= 1;
                }
            }
        }
    }

    fn on_outbound(&mut self, frame: FrameHead) {
        if matches!(frame.kind, DATA | HEADERS) {
            if frame.len > 0 {
                self.refill_control();
            }
            if frame.flags & END_STREAM != 0 {
                self.resets_left = (self.resets_left + 1).min(self.budget.max_client_resets);
            }
        }
    }

    fn refill_control(&mut self) {
        self.control_left = self
            .control_left
            .saturating_add(REFILL_PER_USEFUL_FRAME)
            .min(self.budget.max_control_frames);
    }

    fn trip(&mut self, violation: Violation) {
        self.tripped.get_or_insert(violation);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PREFACE: &[u8] = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n";

    fn frame(kind: u8, flags: u8, stream: u32, payload: &[u8]) -> Vec<u8> {
        let len = payload.len();
        let mut out = vec![(len >> 16) as u8, (len >> 8) as u8, len as u8, kind, flags];
        out.extend_from_slice(&stream.to_be_bytes());
        out.extend_from_slice(payload);
        out
    }

    fn budget() -> Budget {
        Budget {
            max_control_frames: 10,
            max_client_resets: 3,
            max_empty_frames: 2,
        }
    }

    #[test]
    fn pings_beyond_the_budget_trip_even_split_across_reads() {
        let mut meter = FrameMeter::new(budget());
        let mut bytes = PREFACE.to_vec();
        for _ in 0..10 {
            bytes.extend(frame(PING, 0, 0, &[0; 8]));
        }
        // One byte at a time: frame headers straddle reads.
        for b in &bytes {
            meter.inbound(std::slice::from_ref(b));
        }
        assert_eq!(meter.violation(), None, "exactly the budget is allowed");
        meter.inbound(&frame(SETTINGS, 0, 0, &[]));
        assert_eq!(meter.violation(), Some(Violation::ControlFlood));
    }

    #[test]
    fn acks_are_free_and_useful_frames_refill_control() {
        let mut meter = FrameMeter::new(budget());
        meter.inbound(PREFACE);
        for _ in 0..100 {
            meter.inbound(&frame(PING, ACK, 0, &[0; 8]));
            meter.inbound(&frame(SETTINGS, ACK, 0, &[]));
        }
        for _ in 0..100 {
            // A DATA frame each way pays for a window update and a ping (and two to spare).
            meter.inbound(&frame(DATA, 0, 1, b"x"));
            meter.outbound(&frame(DATA, 0, 1, b"y"));
            for _ in 0..8 {
                meter.inbound(&frame(WINDOW_UPDATE, 0, 0, &[0, 0, 1, 0]));
            }
        }
        assert_eq!(meter.violation(), None);
    }

    #[test]
    fn resets_beyond_completed_streams_trip_rapid_reset() {
        let mut meter = FrameMeter::new(budget());
        meter.inbound(PREFACE);
        for stream in 0..10u32 {
            meter.inbound(&frame(HEADERS, 0x5, 2 * stream + 1, b"hdr"));
            // Completed streams pay for resets of later ones.
            meter.outbound(&frame(HEADERS, END_STREAM | 0x4, 2 * stream + 1, b"resp"));
            meter.inbound(&frame(RST_STREAM, 0, 2 * stream + 1, &[0, 0, 0, 8]));
        }
        assert_eq!(meter.violation(), None);
        for stream in 10..14u32 {
            meter.inbound(&frame(HEADERS, 0x5, 2 * stream + 1, b"hdr"));
            meter.inbound(&frame(RST_STREAM, 0, 2 * stream + 1, &[0, 0, 0, 8]));
        }
        assert_eq!(meter.violation(), Some(Violation::RapidReset));
    }

    #[test]
    fn empty_frames_in_a_row_trip_but_payload_and_end_stream_do_not() {
        let mut meter = FrameMeter::new(budget());
        meter.inbound(PREFACE);
        meter.inbound(&frame(DATA, 0, 1, b""));
        meter.inbound(&frame(DATA, 0, 1, b""));
        meter.inbound(&frame(DATA, 0, 1, b"x"));
        meter.inbound(&frame(DATA, END_STREAM, 1, b""));
        meter.inbound(&frame(DATA, 0, 3, b""));
        assert_eq!(meter.violation(), None);
        meter.inbound(&frame(CONTINUATION, 0, 3, b""));
        meter.inbound(&frame(DATA, 0, 3, b""));
        assert_eq!(meter.violation(), Some(Violation::EmptyFrames));
    }
}
