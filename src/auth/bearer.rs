//! `Authorization: Bearer <token>` parsing (RFC 6750 2.1).

use super::AuthError;

/// Returns the token of a `Bearer` credential. The scheme is case-insensitive and followed by
/// one or more spaces; surrounding spaces/tabs are ignored (they are optional whitespace around
/// a field value).
///
/// The token's characters are not checked here: [`check_b64token`] does that, and the
/// verifier calls it first. A token found in the cache by its exact bytes passed it when it
/// was verified, so a repeated token is never scanned byte by byte again (a JWT is ~1 KB).
///
/// Errors: `Missing` when there is no bearer token at all (empty value, another scheme such as
/// `Basic` or `Bearerabc`, or `Bearer` with nothing after it).
pub fn extract_bearer(value: &[u8]) -> Result<&[u8], AuthError> {
    const SCHEME: &[u8] = b"bearer";
    let value = trim_ows(value);
    if value.len() < SCHEME.len() || !value[..SCHEME.len()].eq_ignore_ascii_case(SCHEME) {
        return Err(AuthError::Missing);
    }
    let rest = &value[SCHEME.len()..];
    let token_start = rest.iter().position(|&b| b != b' ').unwrap_or(rest.len());
    let token = &rest[token_start..];
    if token_start == 0 || token.is_empty() {
        // "Bearerx..." is another scheme; bare "Bearer" has no token.
        return Err(AuthError::Missing);
    }
    Ok(token)
}

/// The token must be non-empty `b64token` characters (RFC 6750 2.1), so `Bearer Bearer x`,
/// `Bearer a b` and control characters are refused (`Malformed`).
pub fn check_b64token(token: &[u8]) -> Result<(), AuthError> {
    if is_b64token(token) {
        Ok(())
    } else {
        Err(AuthError::Malformed(
            "bearer token has spaces or characters outside b64token",
        ))
    }
}

fn trim_ows(mut value: &[u8]) -> &[u8] {
    while let [b' ' | b'\t', rest @ ..] = value {
        value = rest;
    }
    while let [rest @ .., b' ' | b'\t'] = value {
        value = rest;
    }
    value
}

/// `b64token = 1*( ALPHA / DIGIT / "-" / "." / "_" / "~" / "+" / "/" ) *"="`
fn is_b64token(token: &[u8]) -> bool {
    let body_len = token.len() - token.iter().rev().take_while(|&&b| b == b'=').count();
    // Padding may also appear inside a JWT (after each segment), so '=' is allowed anywhere
    // except as the whole token; the JWS parser decides what it means.
    body_len > 0
        && token.iter().all(|&b| {
            b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'+' | b'/' | b'=')
        })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What the request path applies: the credential's shape, then the token's characters.
    fn bearer(value: &[u8]) -> Result<&[u8], AuthError> {
        let token = extract_bearer(value)?;
        check_b64token(token)?;
        Ok(token)
    }

    #[test]
    fn extraction_alone_leaves_the_characters_to_the_check() {
        assert_eq!(extract_bearer(b"Bearer a b"), Ok(&b"a b"[..]));
        assert!(check_b64token(b"a b").is_err());
    }

    #[test]
    fn bearer_token_is_returned() {
        assert_eq!(bearer(b"Bearer abc.def.ghi"), Ok(&b"abc.def.ghi"[..]));
    }

    #[test]
    fn scheme_is_case_insensitive() {
        for value in [&b"bearer x"[..], b"BEARER x", b"BeArEr x"] {
            assert_eq!(bearer(value), Ok(&b"x"[..]));
        }
    }

    #[test]
    fn several_spaces_after_the_scheme_are_accepted() {
        assert_eq!(bearer(b"Bearer    a.b.c"), Ok(&b"a.b.c"[..]));
    }

    #[test]
    fn surrounding_whitespace_is_ignored() {
        assert_eq!(bearer(b" \tBearer a.b.c \t"), Ok(&b"a.b.c"[..]));
    }

    #[test]
    fn padded_token_is_accepted() {
        assert_eq!(bearer(b"Bearer a=.b==.c"), Ok(&b"a=.b==.c"[..]));
    }

    #[test]
    fn doubled_scheme_is_rejected() {
        assert!(matches!(
            bearer(b"Bearer Bearer x"),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn extra_segments_are_rejected() {
        assert!(matches!(
            bearer(b"Bearer a.b.c d"),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            bearer(b"Bearer a.b.c,x"),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            bearer(b"Bearer a.b\tc"),
            Err(AuthError::Malformed(_))
        ));
    }

    #[test]
    fn empty_or_missing_token_is_missing() {
        for value in [
            &b""[..],
            b"   ",
            b"Bearer",
            b"Bearer ",
            b"Bearer    ",
            b"bearer\t",
        ] {
            assert_eq!(bearer(value), Err(AuthError::Missing), "{value:?}");
        }
    }

    #[test]
    fn other_schemes_are_missing() {
        assert_eq!(
            bearer(b"Basic YWxhZGRpbjpvcGVuc2VzYW1l"),
            Err(AuthError::Missing)
        );
        assert_eq!(bearer(b"a.b.c"), Err(AuthError::Missing));
    }

    #[test]
    fn scheme_glued_to_token_is_another_scheme() {
        assert_eq!(bearer(b"Bearerabc"), Err(AuthError::Missing));
    }

    #[test]
    fn token_of_only_padding_is_rejected() {
        assert!(matches!(bearer(b"Bearer =="), Err(AuthError::Malformed(_))));
    }

    #[test]
    fn non_ascii_and_control_bytes_are_rejected() {
        assert!(matches!(
            bearer(b"Bearer a.b.\xffc"),
            Err(AuthError::Malformed(_))
        ));
        assert!(matches!(
            bearer(b"Bearer a.b.\x00c"),
            Err(AuthError::Malformed(_))
        ));
    }
}
