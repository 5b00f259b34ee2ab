//! Header fields of a parsed head: their classification (computed once per field), the
//! hop-by-hop marking driven by `Connection`, and the framing decision from `Content-Length` and
//! `Transfer-Encoding`, which is where request smuggling is stopped. Shared by requests and
//! responses; both map a [`HeaderError`] to their own answer (400 or 502).

use super::{Span, Version};

/// What a header field is, as far as the gateway cares. Computed once when the head is parsed
/// (names compare case-insensitively, length first).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HeaderKind {
    Host,
    ContentLength,
    TransferEncoding,
    Connection,
    KeepAlive,
    ProxyConnection,
    Te,
    Trailer,
    Upgrade,
    ProxyAuthorization,
    /// The response-side twin of `Proxy-Authorization`; also hop-by-hop.
    ProxyAuthenticate,
    Expect,
    XForwardedFor,
    XForwardedProto,
    XForwardedHost,
    Authorization,
    /// Whether a response has one decides whether the gateway adds its own.
    Date,
    Other,
}

impl HeaderKind {
    /// Fields that only concern the next hop (RFC 9110 §7.6.1) and are never forwarded, whatever
    /// `Connection` says.
    pub const fn is_hop_by_hop(self) -> bool {
        matches!(
            self,
            HeaderKind::Connection
                | HeaderKind::KeepAlive
                | HeaderKind::ProxyConnection
                | HeaderKind::Te
                | HeaderKind::Trailer
                | HeaderKind::Upgrade
                | HeaderKind::ProxyAuthorization
                | HeaderKind::ProxyAuthenticate
        )
    }
}

/// Classifies a header name (case-insensitive). Length is compared first so that most names are
/// decided by one integer comparison.
pub fn classify_header(name: &[u8]) -> HeaderKind {
    let is = |known: &[u8]| name.eq_ignore_ascii_case(known);
    match name.len() {
        2 if is(b"te") => HeaderKind::Te,
        4 if is(b"host") => HeaderKind::Host,
        4 if is(b"date") => HeaderKind::Date,
        6 if is(b"expect") => HeaderKind::Expect,
        7 if is(b"trailer") => HeaderKind::Trailer,
        7 if is(b"upgrade") => HeaderKind::Upgrade,
        10 if is(b"connection") => HeaderKind::Connection,
        10 if is(b"keep-alive") => HeaderKind::KeepAlive,
        13 if is(b"authorization") => HeaderKind::Authorization,
        14 if is(b"content-length") => HeaderKind::ContentLength,
        15 if is(b"x-forwarded-for") => HeaderKind::XForwardedFor,
        16 if is(b"proxy-connection") => HeaderKind::ProxyConnection,
        16 if is(b"x-forwarded-host") => HeaderKind::XForwardedHost,
        17 if is(b"transfer-encoding") => HeaderKind::TransferEncoding,
        17 if is(b"x-forwarded-proto") => HeaderKind::XForwardedProto,
        18 if is(b"proxy-authenticate") => HeaderKind::ProxyAuthenticate,
        19 if is(b"proxy-authorization") => HeaderKind::ProxyAuthorization,
        _ => HeaderKind::Other,
    }
}

/// One header field line of a head, as offsets into the buffer the head was parsed from.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    pub name: Span,
    /// The field value without surrounding whitespace.
    pub value: Span,
    pub kind: HeaderKind,
    /// Must not be forwarded: its kind is hop-by-hop, or a `Connection` field names it.
    pub hop_by_hop: bool,
}

/// A fault in a head's field lines or framing headers. Every one of them ends the connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("{}", self.reason())]
pub enum HeaderError {
    BareCr,
    BareLf,
    ObsFold,
    SpaceBeforeColon,
    EmptyName,
    InvalidNameByte,
    MissingColon,
    InvalidValueByte,
    ContentLengthWithTransferEncoding,
    ConflictingContentLength,
    InvalidContentLength,
    UnsupportedTransferCoding,
    ChunkedNotFinal,
    ChunkedTwice,
    MalformedTransferEncoding,
    TransferEncodingInHttp10,
}

impl HeaderError {
    /// Short static text for logs and error bodies.
    pub const fn reason(self) -> &'static str {
        match self {
            HeaderError::BareCr => "CR not followed by LF",
            HeaderError::BareLf => "LF without CR",
            HeaderError::ObsFold => "header line starting with whitespace (obs-fold)",
            HeaderError::SpaceBeforeColon => "whitespace between header name and colon",
            HeaderError::EmptyName => "empty header name",
            HeaderError::InvalidNameByte => "invalid byte in header name",
            HeaderError::MissingColon => "header line without colon",
            HeaderError::InvalidValueByte => "control byte in header value",
            HeaderError::ContentLengthWithTransferEncoding => {
                "both Transfer-Encoding and Content-Length"
            }
            HeaderError::ConflictingContentLength => "Content-Length values differ",
            HeaderError::InvalidContentLength => "invalid Content-Length",
            HeaderError::UnsupportedTransferCoding => "transfer coding other than chunked",
            HeaderError::ChunkedNotFinal => "chunked is not the final transfer coding",
            HeaderError::ChunkedTwice => "chunked applied more than once",
            HeaderError::MalformedTransferEncoding => "malformed Transfer-Encoding",
            HeaderError::TransferEncodingInHttp10 => "Transfer-Encoding in an HTTP/1.0 message",
        }
    }
}

/// `tchar` of RFC 9110 §5.6.2: the bytes of header names, methods and transfer codings.
pub(crate) fn is_tchar(byte: u8) -> bool {
    matches!(byte,
        b'a'..=b'z' | b'A'..=b'Z' | b'0'..=b'9'
        | b'!' | b'#' | b'$' | b'%' | b'&' | b'\'' | b'*' | b'+'
        | b'-' | b'.' | b'^' | b'_' | b'`' | b'|' | b'~')
}

/// Bytes allowed inside a field value (RFC 9110 §5.5): HTAB, SP, VCHAR, obs-text.
pub(crate) fn is_field_value_byte(byte: u8) -> bool {
    matches!(byte, b'\t' | b' '..=0x7e | 0x80..=0xff)
}

pub(crate) fn trim_ows(mut bytes: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = bytes {
        bytes = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = bytes {
        bytes = rest;
    }
    bytes
}

/// Elements of a comma-separated field value, whitespace-trimmed. Empty elements are yielded
/// too: the framing headers treat them as errors, `Connection` skips them.
pub(crate) fn list_elements(value: &[u8]) -> impl Iterator<Item = &[u8]> {
    value.split(|&b| b == b',').map(trim_ows)
}

/// Fills `out` with the classified fields httparse found in `buf`.
pub(crate) fn collect_headers(buf: &[u8], parsed: &[httparse::Header<'_>], out: &mut Vec<Header>) {
    out.clear();
    out.extend(parsed.iter().map(|field| {
        let kind = classify_header(field.name.as_bytes());
        Header {
            name: Span::of(buf, field.name.as_bytes()),
            value: Span::of(buf, field.value),
            kind,
            hop_by_hop: kind.is_hop_by_hop(),
        }
    }));
}

/// The persistence options found in `Connection` fields.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct ConnectionOptions {
    pub close: bool,
    pub keep_alive: bool,
    /// `Connection: upgrade`.
    pub upgrade: bool,
}

/// Reads the `Connection` fields and marks every field they name as hop-by-hop.
pub(crate) fn apply_connection(buf: &[u8], headers: &mut [Header]) -> ConnectionOptions {
    let mut options = ConnectionOptions::default();
    for i in 0..headers.len() {
        if headers[i].kind != HeaderKind::Connection {
            continue;
        }
        for option in list_elements(headers[i].value.slice(buf)) {
            if option.eq_ignore_ascii_case(b"close") {
                options.close = true;
            } else if option.eq_ignore_ascii_case(b"keep-alive") {
                // Keep-Alive is hop-by-hop already; nothing to mark.
                options.keep_alive = true;
            } else if option.eq_ignore_ascii_case(b"upgrade") {
                // Upgrade is hop-by-hop already.
                options.upgrade = true;
            } else if !option.is_empty() {
                for header in headers.iter_mut() {
                    if header.name.slice(buf).eq_ignore_ascii_case(option) {
                        header.hop_by_hop = true;
                    }
                }
            }
        }
    }
    options
}

/// What the framing headers of a message declare, after validation.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Framing {
    pub content_length: Option<u64>,
    pub chunked: bool,
}

/// Validates `Transfer-Encoding` and `Content-Length` together (RFC 9112 §6.1, §6.3), stricter
/// than the RFC wherever it leaves a choice, because a proxy that frames a message differently
/// from its upstream is a smuggling vector:
/// - `Transfer-Encoding` in HTTP/1.0, or together with `Content-Length`: error;
/// - the coding list (all fields joined) must be exactly one `chunked` (any case, OWS around);
///   other codings, parameters, quotes and empty elements are errors;
/// - `Content-Length` elements must be `1*DIGIT` fitting a u64; repeated fields or list elements
///   with the same value count as one (RFC 9112 §6.3 allows it; the value is re-rendered once
///   when forwarding), different values are an error.
pub(crate) fn parse_framing(
    buf: &[u8],
    headers: &[Header],
    version: Version,
) -> Result<Framing, HeaderError> {
    let has = |kind| headers.iter().any(|h| h.kind == kind);
    if has(HeaderKind::TransferEncoding) {
        if version == Version::Http10 {
            return Err(HeaderError::TransferEncodingInHttp10);
        }
        if has(HeaderKind::ContentLength) {
            return Err(HeaderError::ContentLengthWithTransferEncoding);
        }
        parse_transfer_codings(buf, headers)?;
        return Ok(Framing {
            content_length: None,
            chunked: true,
        });
    }
    let mut content_length = None;
    for header in headers
        .iter()
        .filter(|h| h.kind == HeaderKind::ContentLength)
    {
        for element in list_elements(header.value.slice(buf)) {
            let value = parse_decimal(element).ok_or(HeaderError::InvalidContentLength)?;
            match content_length {
                Some(seen) if seen != value => return Err(HeaderError::ConflictingContentLength),
                _ => content_length = Some(value),
            }
        }
    }
    Ok(Framing {
        content_length,
        chunked: false,
    })
}

/// Succeeds only when the joined coding list is exactly `chunked`.
fn parse_transfer_codings(buf: &[u8], headers: &[Header]) -> Result<(), HeaderError> {
    let mut chunked = false;
    for header in headers
        .iter()
        .filter(|h| h.kind == HeaderKind::TransferEncoding)
    {
        for coding in list_elements(header.value.slice(buf)) {
            // Parameters (`;`), quotes, inner whitespace and control bytes all fail here.
            if coding.is_empty() || !coding.iter().all(|&b| is_tchar(b)) {
                return Err(HeaderError::MalformedTransferEncoding);
            }
            let is_chunked = coding.eq_ignore_ascii_case(b"chunked");
            if chunked {
                return Err(if is_chunked {
                    HeaderError::ChunkedTwice
                } else {
                    HeaderError::ChunkedNotFinal
                });
            }
            if !is_chunked {
                return Err(HeaderError::UnsupportedTransferCoding);
            }
            chunked = true;
        }
    }
    Ok(())
}

/// `1*DIGIT` as a u64; no sign, no whitespace, no overflow.
pub(crate) fn parse_decimal(digits: &[u8]) -> Option<u64> {
    if digits.is_empty() {
        return None;
    }
    digits.iter().try_fold(0u64, |value, &byte| {
        if !byte.is_ascii_digit() {
            return None;
        }
        value.checked_mul(10)?.checked_add(u64::from(byte - b'0'))
    })
}

/// Names the first fault in CRLF-terminated field lines (up to and excluding the blank line).
/// Only called after httparse refused a head, to turn its coarse error into a precise one.
pub(crate) fn diagnose_field_lines(lines: &[u8]) -> Option<HeaderError> {
    for line in lines.split(|&b| b == b'\n') {
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.is_empty() {
            break;
        }
        if let Some(fault) = diagnose_field_line(line) {
            return Some(fault);
        }
    }
    None
}

fn diagnose_field_line(line: &[u8]) -> Option<HeaderError> {
    if matches!(line[0], b' ' | b'\t') {
        return Some(HeaderError::ObsFold);
    }
    let name_len = line.iter().position(|&b| !is_tchar(b));
    let Some(name_len) = name_len else {
        return Some(HeaderError::MissingColon);
    };
    match line[name_len] {
        b':' if name_len == 0 => return Some(HeaderError::EmptyName),
        b':' => {}
        b' ' | b'\t' => {
            let after_space = trim_ows(&line[name_len..]);
            return Some(if after_space.first() == Some(&b':') {
                HeaderError::SpaceBeforeColon
            } else {
                HeaderError::InvalidNameByte
            });
        }
        _ if !line.contains(&b':') => return Some(HeaderError::MissingColon),
        _ => return Some(HeaderError::InvalidNameByte),
    }
    let value = &line[name_len + 1..];
    if !value.iter().all(|&b| is_field_value_byte(b)) {
        return Some(HeaderError::InvalidValueByte);
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Parses `fields` (CRLF-terminated lines) with httparse into classified headers.
    fn headers_of(fields: &[u8]) -> Vec<Header> {
        let mut slots = [httparse::EMPTY_HEADER; 16];
        let parsed = match httparse::parse_headers(fields, &mut slots) {
            Ok(httparse::Status::Complete((_, parsed))) => parsed,
            other => panic!("fixture does not parse: {other:?}"),
        };
        let mut headers = Vec::new();
        collect_headers(fields, parsed, &mut headers);
        headers
    }

    fn framing(fields: &[u8], version: Version) -> Result<Framing, HeaderError> {
        parse_framing(fields, &headers_of(fields), version)
    }

    fn length(n: u64) -> Result<Framing, HeaderError> {
        Ok(Framing {
            content_length: Some(n),
            chunked: false,
        })
    }

    const CHUNKED: Result<Framing, HeaderError> = Ok(Framing {
        content_length: None,
        chunked: true,
    });

    #[test]
    fn classifies_known_names_case_insensitively() {
        let cases: [(&[u8], HeaderKind); 18] = [
            (b"Host", HeaderKind::Host),
            (b"content-length", HeaderKind::ContentLength),
            (b"TRANSFER-ENCODING", HeaderKind::TransferEncoding),
            (b"Connection", HeaderKind::Connection),
            (b"Keep-Alive", HeaderKind::KeepAlive),
            (b"Proxy-Connection", HeaderKind::ProxyConnection),
            (b"TE", HeaderKind::Te),
            (b"Trailer", HeaderKind::Trailer),
            (b"Upgrade", HeaderKind::Upgrade),
            (b"Proxy-Authorization", HeaderKind::ProxyAuthorization),
            (b"Proxy-Authenticate", HeaderKind::ProxyAuthenticate),
            (b"Expect", HeaderKind::Expect),
            (b"DATE", HeaderKind::Date),
            (b"X-Forwarded-For", HeaderKind::XForwardedFor),
            (b"x-forwarded-proto", HeaderKind::XForwardedProto),
            (b"X-FORWARDED-HOST", HeaderKind::XForwardedHost),
            (b"Authorization", HeaderKind::Authorization),
            (b"Accept", HeaderKind::Other),
        ];
        for (name, kind) in cases {
            assert_eq!(
                classify_header(name),
                kind,
                "{}",
                String::from_utf8_lossy(name)
            );
        }
    }

    #[test]
    fn near_miss_names_are_other() {
        for name in [
            &b"Hosts"[..],
            b"Hos",
            b"Content-Lengthx",
            b"Transfer_Encoding",
            b"T",
            b"",
            b"X-Forwarded-Fo",
        ] {
            assert_eq!(classify_header(name), HeaderKind::Other);
        }
    }

    #[test]
    fn hop_by_hop_kinds_are_marked_on_collection() {
        let headers = headers_of(b"Upgrade: h2c\r\nTE: trailers\r\nAccept: */*\r\n\r\n");
        assert!(headers[0].hop_by_hop);
        assert!(headers[1].hop_by_hop);
        assert!(!headers[2].hop_by_hop);
    }

    #[test]
    fn connection_tokens_mark_named_headers_hop_by_hop() {
        let fields = b"Connection: X-Foo , x-bar\r\nX-Foo: 1\r\nX-Bar: 2\r\nX-Baz: 3\r\n\r\n";
        let mut headers = headers_of(fields);
        let options = apply_connection(fields, &mut headers);
        assert_eq!(options, ConnectionOptions::default());
        let marked: Vec<bool> = headers.iter().map(|h| h.hop_by_hop).collect();
        assert_eq!(marked, [true, true, true, false]);
    }

    #[test]
    fn connection_close_and_keep_alive_are_read_from_all_fields() {
        let fields = b"Connection: Keep-Alive\r\nConnection: foo, CLOSE\r\n\r\n";
        let mut headers = headers_of(fields);
        let options = apply_connection(fields, &mut headers);
        assert!(options.close);
        assert!(options.keep_alive);
    }

    #[test]
    fn no_framing_headers_means_no_body_declared() {
        assert_eq!(
            framing(b"Accept: */*\r\n\r\n", Version::Http11),
            Ok(Framing::default())
        );
    }

    #[test]
    fn content_length_is_read() {
        assert_eq!(
            framing(b"Content-Length: 42\r\n\r\n", Version::Http11),
            length(42)
        );
        assert_eq!(
            framing(b"Content-Length: 0\r\n\r\n", Version::Http11),
            length(0)
        );
        assert_eq!(
            framing(b"Content-Length: 007\r\n\r\n", Version::Http11),
            length(7)
        );
        assert_eq!(
            framing(
                b"Content-Length: 18446744073709551615\r\n\r\n",
                Version::Http11
            ),
            length(u64::MAX)
        );
    }

    #[test]
    fn identical_content_lengths_count_as_one() {
        assert_eq!(
            framing(
                b"Content-Length: 5\r\nContent-Length: 5\r\n\r\n",
                Version::Http11
            ),
            length(5)
        );
        assert_eq!(
            framing(b"Content-Length: 5, 5\r\n\r\n", Version::Http11),
            length(5)
        );
        assert_eq!(
            framing(b"Content-Length: 5,05\r\n\r\n", Version::Http11),
            length(5)
        );
    }

    #[test]
    fn rejects_differing_content_lengths() {
        for fields in [
            &b"Content-Length: 5\r\nContent-Length: 6\r\n\r\n"[..],
            b"Content-Length: 5, 6\r\n\r\n",
            b"Content-Length: 5\r\nContent-Length: 5, 0\r\n\r\n",
        ] {
            assert_eq!(
                framing(fields, Version::Http11),
                Err(HeaderError::ConflictingContentLength)
            );
        }
    }

    #[test]
    fn rejects_invalid_content_length_values() {
        for value in [
            &b"abc"[..],
            b"-5",
            b"+5",
            b"0x5",
            b"5a",
            b"5 5",
            b"5\t5",
            b"",
            b"5,",
            b",5",
            b"\"5\"",
            b"1e3",
            b"18446744073709551616",
            b"99999999999999999999999",
        ] {
            let mut fields = b"Content-Length: ".to_vec();
            fields.extend_from_slice(value);
            fields.extend_from_slice(b"\r\n\r\n");
            assert_eq!(
                framing(&fields, Version::Http11),
                Err(HeaderError::InvalidContentLength),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn transfer_encoding_chunked_is_accepted_in_any_case_with_ows() {
        for value in [
            &b"chunked"[..],
            b"Chunked",
            b"CHUNKED",
            b"chunked \t",
            b"\tchunked",
        ] {
            let mut fields = b"Transfer-Encoding:".to_vec();
            fields.extend_from_slice(value);
            fields.extend_from_slice(b"\r\n\r\n");
            assert_eq!(framing(&fields, Version::Http11), CHUNKED);
        }
    }

    #[test]
    fn rejects_transfer_encoding_with_content_length() {
        assert_eq!(
            framing(
                b"Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n",
                Version::Http11
            ),
            Err(HeaderError::ContentLengthWithTransferEncoding)
        );
    }

    #[test]
    fn rejects_transfer_encoding_in_http10() {
        assert_eq!(
            framing(b"Transfer-Encoding: chunked\r\n\r\n", Version::Http10),
            Err(HeaderError::TransferEncodingInHttp10)
        );
    }

    fn te(value: &[u8]) -> Result<Framing, HeaderError> {
        let mut fields = b"Transfer-Encoding: ".to_vec();
        fields.extend_from_slice(value);
        fields.extend_from_slice(b"\r\n\r\n");
        framing(&fields, Version::Http11)
    }

    #[test]
    fn rejects_transfer_codings_other_than_chunked() {
        for value in [
            &b"gzip"[..],
            b"identity",
            b"xchunked",
            b"chunkedx",
            b"gzip, chunked",
        ] {
            assert_eq!(
                te(value),
                Err(HeaderError::UnsupportedTransferCoding),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn rejects_chunked_not_last() {
        assert_eq!(te(b"chunked, gzip"), Err(HeaderError::ChunkedNotFinal));
        assert_eq!(
            framing(
                b"Transfer-Encoding: chunked\r\nTransfer-Encoding: gzip\r\n\r\n",
                Version::Http11
            ),
            Err(HeaderError::ChunkedNotFinal)
        );
    }

    #[test]
    fn rejects_chunked_twice() {
        assert_eq!(te(b"chunked, chunked"), Err(HeaderError::ChunkedTwice));
        assert_eq!(
            framing(
                b"Transfer-Encoding: chunked\r\nTransfer-Encoding: Chunked\r\n\r\n",
                Version::Http11
            ),
            Err(HeaderError::ChunkedTwice)
        );
    }

    #[test]
    fn rejects_obfuscated_transfer_encoding() {
        for value in [
            &b"chunked;x"[..],
            b"chunked ;q=1",
            b"\"chunked\"",
            b"chunk ed",
            b"chunked, ",
            b", chunked",
            b"",
            b"chunked\xa0",
        ] {
            assert_eq!(
                te(value),
                Err(HeaderError::MalformedTransferEncoding),
                "{}",
                String::from_utf8_lossy(value)
            );
        }
    }

    #[test]
    fn decimal_parsing_bounds() {
        assert_eq!(parse_decimal(b"0"), Some(0));
        assert_eq!(parse_decimal(b"18446744073709551615"), Some(u64::MAX));
        assert_eq!(parse_decimal(b"18446744073709551616"), None);
        assert_eq!(parse_decimal(b""), None);
        assert_eq!(parse_decimal(b" 1"), None);
    }

    #[test]
    fn diagnoses_each_field_line_fault() {
        let cases: [(&[u8], HeaderError); 8] = [
            (b"A: b\r\n folded\r\n\r\n", HeaderError::ObsFold),
            (b"\tA: b\r\n\r\n", HeaderError::ObsFold),
            (b"A : b\r\n\r\n", HeaderError::SpaceBeforeColon),
            (b": b\r\n\r\n", HeaderError::EmptyName),
            (b"A\x00: b\r\n\r\n", HeaderError::InvalidNameByte),
            (b"A B: c\r\n\r\n", HeaderError::InvalidNameByte),
            (b"NoColon\r\n\r\n", HeaderError::MissingColon),
            (b"A: b\x00c\r\n\r\n", HeaderError::InvalidValueByte),
        ];
        for (lines, fault) in cases {
            assert_eq!(
                diagnose_field_lines(lines),
                Some(fault),
                "{}",
                String::from_utf8_lossy(lines)
            );
        }
        assert_eq!(diagnose_field_lines(b"A: b\r\nC: \x80\td\r\n\r\n"), None);
    }
}
