//! `http2:` in `gateway.yaml`: whether the listeners speak HTTP/2 (ALPN `h2`, prior-knowledge
//! h2c) and the limits and defences of every HTTP/2 connection, client and upstream side.
//! Plain data and validation only; `src/h2/` applies it.

use serde::Deserialize;

/// HTTP/2 settings. Every field is documented in `config/README.md`.
#[derive(Clone, Debug, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, default)]
pub struct Http2 {
    /// HTTPS listeners offer ALPN `h2` (next to `http/1.1`).
    pub enabled: bool,
    /// Plain listeners accept HTTP/2 with prior knowledge (the client preface).
    pub h2c: bool,
    /// Streams a client may have open at once on one connection (SETTINGS_MAX_CONCURRENT_STREAMS).
    pub max_concurrent_streams: u32,
    /// Largest header list accepted (SETTINGS_MAX_HEADER_LIST_SIZE); absent: the HTTP/1.1
    /// head limit, `limits.max_request_head_bytes`.
    pub max_header_list_bytes: Option<u32>,
    /// Initial flow-control window of each stream: request body bytes a client may send ahead
    /// of the gateway forwarding them.
    pub stream_window_bytes: u32,
    /// Flow-control window of the whole connection: request body bytes buffered per
    /// connection, all streams together.
    pub connection_window_bytes: u32,
    /// Largest frame payload accepted (SETTINGS_MAX_FRAME_SIZE).
    pub max_frame_bytes: u32,
    /// Response bytes queued per stream before the client's window opens; a full queue holds
    /// the upstream read back.
    pub max_send_buffer_bytes: u32,
    /// Streams reset by the client before the gateway accepted them, held at once (h2's own
    /// rapid-reset defence); over it: `GOAWAY ENHANCE_YOUR_CALM`.
    pub max_pending_accept_reset_streams: u32,
    /// Streams the gateway had to reset for protocol errors of the client, per connection;
    /// over it: `GOAWAY ENHANCE_YOUR_CALM`.
    pub max_local_error_reset_streams: u32,
    /// Rapid reset (CVE-2023-44487): streams the client reset, minus the streams that
    /// completed, may not exceed this; over it: `GOAWAY ENHANCE_YOUR_CALM`.
    pub max_client_resets: u32,
    /// SETTINGS, PING, PRIORITY, WINDOW_UPDATE and RST_STREAM frames a client may send beyond
    /// the useful frames of the connection (request HEADERS, DATA either way); over it:
    /// `GOAWAY ENHANCE_YOUR_CALM`.
    pub max_control_frames: u32,
    /// Consecutive frames without payload and without END_STREAM (empty DATA, HEADERS or
    /// CONTINUATION) a client may send; over it: `GOAWAY ENHANCE_YOUR_CALM`.
    pub max_empty_frames: u32,
    /// HTTP/2 connections each shard keeps to one `x-wso2-http2-backend-enabled` upstream;
    /// requests are multiplexed over them.
    pub upstream_connections: u32,
    /// Streams the gateway opens at once on one upstream connection (also bounded by what
    /// the upstream announces).
    pub upstream_max_streams: u32,
}

impl Default for Http2 {
    fn default() -> Self {
        Self {
            enabled: true,
            h2c: true,
            max_concurrent_streams: 100,
            max_header_list_bytes: None,
            stream_window_bytes: 256 * 1024,
            connection_window_bytes: 1024 * 1024,
            max_frame_bytes: 16 * 1024,
            max_send_buffer_bytes: 64 * 1024,
            max_pending_accept_reset_streams: 20,
            max_local_error_reset_streams: 1024,
            max_client_resets: 200,
            max_control_frames: 1000,
            max_empty_frames: 100,
            upstream_connections: 2,
            upstream_max_streams: 100,
        }
    }
}

impl Http2 {
    /// The header list limit in force: the configured one or the HTTP/1.1 head limit.
    pub fn header_list_limit(&self, max_request_head_bytes: usize) -> u32 {
        self.max_header_list_bytes
            .unwrap_or_else(|| u32::try_from(max_request_head_bytes).unwrap_or(u32::MAX))
    }

    /// The first field out of range, as `(field, problem)`.
    pub fn validate(&self) -> Result<(), (&'static str, &'static str)> {
        // RFC 9113 §6.5.2 and §6.9.1 bound these; h2 panics on some out-of-range values.
        const MAX_WINDOW: u32 = (1 << 31) - 1;
        if self.max_concurrent_streams == 0 {
            return Err(("http2.max_concurrent_streams", "must be greater than 0"));
        }
        if !(65_535..=MAX_WINDOW).contains(&self.stream_window_bytes) {
            return Err((
                "http2.stream_window_bytes",
                "must be between 65535 and 2147483647",
            ));
        }
        if !(65_535..=MAX_WINDOW).contains(&self.connection_window_bytes) {
            return Err((
                "http2.connection_window_bytes",
                "must be between 65535 and 2147483647",
            ));
        }
        if !(16_384..=16_777_215).contains(&self.max_frame_bytes) {
            return Err((
                "http2.max_frame_bytes",
                "must be between 16384 and 16777215",
            ));
        }
        if self.max_send_buffer_bytes == 0 {
            return Err(("http2.max_send_buffer_bytes", "must be greater than 0"));
        }
        if self.max_header_list_bytes == Some(0) {
            return Err(("http2.max_header_list_bytes", "must be greater than 0"));
        }
        if self.upstream_connections == 0 {
            return Err(("http2.upstream_connections", "must be greater than 0"));
        }
        if self.upstream_max_streams == 0 {
            return Err(("http2.upstream_max_streams", "must be greater than 0"));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_valid_and_the_header_list_follows_the_head_limit() {
        let http2 = Http2::default();
        assert_eq!(http2.validate(), Ok(()));
        assert_eq!(http2.header_list_limit(60 * 1024), 60 * 1024);
        let set = Http2 {
            max_header_list_bytes: Some(8192),
            ..Http2::default()
        };
        assert_eq!(set.header_list_limit(60 * 1024), 8192);
    }

    #[test]
    fn the_section_parses_and_errors_name_the_field() {
        use crate::compile::config::gateway::GatewayConfig;
        let file = std::path::Path::new("gateway.yaml");
        let config =
            GatewayConfig::parse(file, "http2:\n  max_concurrent_streams: 7\n  h2c: false\n")
                .unwrap();
        assert_eq!(config.http2.max_concurrent_streams, 7);
        assert!(!config.http2.h2c && config.http2.enabled);
        let error = GatewayConfig::parse(file, "http2:\n  max_frame_bytes: 100\n")
            .unwrap_err()
            .to_string();
        assert!(error.contains("http2.max_frame_bytes"), "{error}");
        let unknown = GatewayConfig::parse(file, "http2:\n  streams: 1\n")
            .unwrap_err()
            .to_string();
        assert!(unknown.contains("streams"), "{unknown}");
    }

    #[test]
    fn out_of_range_windows_and_frames_are_refused() {
        let small = Http2 {
            stream_window_bytes: 1000,
            ..Http2::default()
        };
        assert_eq!(small.validate().unwrap_err().0, "http2.stream_window_bytes");
        let frame = Http2 {
            max_frame_bytes: 1 << 24,
            ..Http2::default()
        };
        assert_eq!(frame.validate().unwrap_err().0, "http2.max_frame_bytes");
    }
}
