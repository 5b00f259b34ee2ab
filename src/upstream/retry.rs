//! What happens after an attempt on an upstream failed or answered: the one retry policy of
//! the data path (BEHAVIOUR.md 3). Pure: it sees facts about the request and the attempt,
//! never a socket, so every combination is unit-tested here.
//!
//! An attempt fails with an [`UpstreamError`] that knows its retry class (Pingora's
//! `RetryType`): whether anything was sent, whether the endpoint is to blame, and what the
//! client is told when nothing more can be tried. [`after_failure`] turns the error and the
//! facts into the next step; [`after_status`] decides whether an upstream answer listed in
//! `retryConfig` is tried again.

use crate::error::GatewayError;
use crate::upstream::health::FailureCause;
use crate::upstream::RetryPolicy;

/// Why one attempt on one endpoint produced no usable response head.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UpstreamError {
    /// No connection: refused, unreachable, connect timeout, TLS handshake failure. Nothing
    /// was sent.
    Connect,
    /// A reused pooled connection closed or reset before any response byte: the server
    /// closed it while idle. Not the endpoint's fault.
    StaleReuse,
    /// A fresh connection closed or reset before any response byte, after the request went.
    ClosedBeforeResponse,
    /// No response head within the attempt's time (a frozen, black-holed or slow endpoint).
    AttemptTimeout,
    /// Another request had the endpoint suspended while this one waited for its first
    /// response byte: it leaves instead of waiting out its own attempt timeout.
    EndpointSuspended,
    /// The upstream sent bytes that are not an HTTP response.
    BadResponse,
    /// The request body could not be sent completely (the connection broke mid-body).
    BrokenMidRequest,
}

/// What a failed attempt means for trying again.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RetryClass {
    /// Nothing reached the upstream: any request may go to the next member.
    NothingSent,
    /// A pooled connection was stale: an idempotent request may be replayed on a fresh one.
    StaleConnection,
    /// The request (or part of it) went and no answer came: only an idempotent request with
    /// a replayable body may be sent again, to another member.
    SentWithoutAnswer,
    /// Nothing can be tried again.
    Final,
}

impl UpstreamError {
    pub fn retry_class(self) -> RetryClass {
        match self {
            UpstreamError::Connect => RetryClass::NothingSent,
            UpstreamError::StaleReuse => RetryClass::StaleConnection,
            UpstreamError::ClosedBeforeResponse
            | UpstreamError::AttemptTimeout
            | UpstreamError::EndpointSuspended => RetryClass::SentWithoutAnswer,
            UpstreamError::BadResponse | UpstreamError::BrokenMidRequest => RetryClass::Final,
        }
    }

    /// Whether the endpoint is failed (suspended) for it, and why. A stale pooled connection
    /// is the pool's matter; a garbage answer is an answer; a request that left a suspended
    /// endpoint adds nothing to the failure that suspended it.
    pub fn endpoint_failure(self) -> Option<FailureCause> {
        match self {
            UpstreamError::Connect => Some(FailureCause::Connect),
            UpstreamError::ClosedBeforeResponse | UpstreamError::AttemptTimeout => {
                Some(FailureCause::Response)
            }
            UpstreamError::StaleReuse
            | UpstreamError::EndpointSuspended
            | UpstreamError::BadResponse
            | UpstreamError::BrokenMidRequest => None,
        }
    }

    /// The client's answer when this is the last failure.
    pub fn answer(self) -> GatewayError {
        match self {
            UpstreamError::Connect => GatewayError::UpstreamUnavailable,
            UpstreamError::AttemptTimeout | UpstreamError::EndpointSuspended => {
                GatewayError::UpstreamTimeout
            }
            UpstreamError::StaleReuse
            | UpstreamError::ClosedBeforeResponse
            | UpstreamError::BadResponse
            | UpstreamError::BrokenMidRequest => GatewayError::BadUpstreamResponse,
        }
    }

    /// The client's answer when the request could have moved on but every member was tried:
    /// as for a dead group (`503`), or a timeout (`504`).
    pub fn exhausted_answer(self) -> GatewayError {
        match self {
            UpstreamError::Connect | UpstreamError::ClosedBeforeResponse => {
                GatewayError::UpstreamUnavailable
            }
            other => other.answer(),
        }
    }

    /// For logs: what happened.
    pub fn describe(self) -> &'static str {
        match self {
            UpstreamError::Connect => "connect failed",
            UpstreamError::StaleReuse => "pooled connection closed by the server",
            UpstreamError::ClosedBeforeResponse => "closed before any response byte",
            UpstreamError::AttemptTimeout => "no response within the attempt timeout",
            UpstreamError::EndpointSuspended => "endpoint suspended while waiting",
            UpstreamError::BadResponse => "malformed response",
            UpstreamError::BrokenMidRequest => "connection broke while sending the body",
        }
    }
}

/// What is known about the request and the group when an attempt failed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Facts {
    /// GET, HEAD, PUT, DELETE, OPTIONS, TRACE.
    pub idempotent: bool,
    /// The whole body is buffered, so it can be sent again.
    pub replayable: bool,
    /// A member of the plan has not been tried yet.
    pub member_left: bool,
    /// The route deadline has not passed.
    pub time_left: bool,
    /// The group's `maxRetries` breaker has room for one more retry.
    pub retry_budget: bool,
}

/// The next step after a failed attempt.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The same member again, on a new connection (a stale pooled one was replaced).
    FreshConnection,
    /// The next member of the plan.
    NextMember,
    /// Stop and answer the client with this.
    Answer(GatewayError),
}

/// The retry policy for failures (BEHAVIOUR.md 3, "Retry on the next endpoint" and "Attempt
/// timeout"): a request moves on when it is safe to send again and something is left to
/// try, within the route deadline and the retry breaker.
pub fn after_failure(error: UpstreamError, facts: Facts) -> Decision {
    if !facts.time_left {
        return Decision::Answer(match error {
            UpstreamError::Connect | UpstreamError::AttemptTimeout => GatewayError::UpstreamTimeout,
            other => other.answer(),
        });
    }
    let safe_to_resend = facts.idempotent && facts.replayable;
    let may_move = match error.retry_class() {
        RetryClass::Final => return Decision::Answer(error.answer()),
        RetryClass::StaleConnection if safe_to_resend => return Decision::FreshConnection,
        RetryClass::StaleConnection => return Decision::Answer(error.answer()),
        RetryClass::NothingSent => true,
        RetryClass::SentWithoutAnswer => safe_to_resend,
    };
    if !may_move {
        return Decision::Answer(error.answer());
    }
    if !facts.member_left {
        return Decision::Answer(error.exhausted_answer());
    }
    if !facts.retry_budget {
        // Over `maxRetries`: the breaker's answer, as for every breaker overflow.
        return Decision::Answer(GatewayError::UpstreamOverflow);
    }
    Decision::NextMember
}

/// What is known when an upstream answered with a status.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct StatusFacts {
    /// Status retries already made for this request.
    pub retries: u8,
    pub replayable: bool,
    /// The backoff before the retry ends before the route deadline.
    pub backoff_fits: bool,
    pub retry_budget: bool,
}

/// Whether to retry after the upstream answered `status`; a retry goes to the next eligible
/// member after the one that answered. Anything but a retry relays the answer: a real
/// upstream answer is never turned into a gateway error (not even over `maxRetries`).
pub fn after_status(status: u16, retry: Option<&RetryPolicy>, facts: StatusFacts) -> bool {
    let Some(retry) = retry else { return false };
    retry.retries_on(status)
        && facts.retries < retry.count
        && facts.replayable
        && facts.backoff_fits
        && facts.retry_budget
}

#[cfg(test)]
mod tests {
    use super::*;

    const ERRORS: [UpstreamError; 7] = [
        UpstreamError::Connect,
        UpstreamError::StaleReuse,
        UpstreamError::ClosedBeforeResponse,
        UpstreamError::AttemptTimeout,
        UpstreamError::EndpointSuspended,
        UpstreamError::BadResponse,
        UpstreamError::BrokenMidRequest,
    ];

    /// Every combination of the five facts.
    fn all_facts() -> impl Iterator<Item = Facts> {
        (0..32u8).map(|bits| Facts {
            idempotent: bits & 1 != 0,
            replayable: bits & 2 != 0,
            member_left: bits & 4 != 0,
            time_left: bits & 8 != 0,
            retry_budget: bits & 16 != 0,
        })
    }

    /// The rules of BEHAVIOUR.md 3, written out independently of `after_failure`.
    fn expected(error: UpstreamError, f: Facts) -> Decision {
        use Decision::*;
        use UpstreamError::*;
        if !f.time_left {
            return Answer(match error {
                Connect | AttemptTimeout | EndpointSuspended => GatewayError::UpstreamTimeout,
                StaleReuse | ClosedBeforeResponse | BadResponse | BrokenMidRequest => {
                    GatewayError::BadUpstreamResponse
                }
            });
        }
        let resend = f.idempotent && f.replayable;
        match error {
            BadResponse | BrokenMidRequest => Answer(GatewayError::BadUpstreamResponse),
            StaleReuse if resend => FreshConnection,
            StaleReuse => Answer(GatewayError::BadUpstreamResponse),
            Connect if !f.member_left => Answer(GatewayError::UpstreamUnavailable),
            Connect if !f.retry_budget => Answer(GatewayError::UpstreamOverflow),
            Connect => NextMember,
            ClosedBeforeResponse if !resend => Answer(GatewayError::BadUpstreamResponse),
            ClosedBeforeResponse if !f.member_left => Answer(GatewayError::UpstreamUnavailable),
            AttemptTimeout | EndpointSuspended if !resend || !f.member_left => {
                Answer(GatewayError::UpstreamTimeout)
            }
            _ if !f.retry_budget => Answer(GatewayError::UpstreamOverflow),
            _ => NextMember,
        }
    }

    #[test]
    fn every_error_and_every_combination_of_facts_follows_the_rules() {
        for error in ERRORS {
            for facts in all_facts() {
                assert_eq!(
                    after_failure(error, facts),
                    expected(error, facts),
                    "{error:?} with {facts:?}"
                );
            }
        }
    }

    #[test]
    fn a_connect_failure_moves_on_whatever_the_method_and_body() {
        let facts = Facts {
            idempotent: false,
            replayable: false,
            member_left: true,
            time_left: true,
            retry_budget: true,
        };
        assert_eq!(
            after_failure(UpstreamError::Connect, facts),
            Decision::NextMember
        );
    }

    #[test]
    fn a_timed_out_post_whose_bytes_went_gets_504_never_a_resend() {
        let facts = Facts {
            idempotent: false,
            replayable: true,
            member_left: true,
            time_left: true,
            retry_budget: true,
        };
        assert_eq!(
            after_failure(UpstreamError::AttemptTimeout, facts),
            Decision::Answer(GatewayError::UpstreamTimeout)
        );
        let get = Facts {
            idempotent: true,
            ..facts
        };
        assert_eq!(
            after_failure(UpstreamError::AttemptTimeout, get),
            Decision::NextMember
        );
        let streamed_get = Facts {
            replayable: false,
            ..get
        };
        assert_eq!(
            after_failure(UpstreamError::AttemptTimeout, streamed_get),
            Decision::Answer(GatewayError::UpstreamTimeout)
        );
    }

    #[test]
    fn errors_know_whether_the_endpoint_is_to_blame() {
        use FailureCause::*;
        let blamed: Vec<_> = ERRORS.iter().map(|e| e.endpoint_failure()).collect();
        assert_eq!(
            blamed,
            [
                Some(Connect),
                None,
                Some(Response),
                Some(Response),
                None,
                None,
                None
            ]
        );
    }

    fn policy(count: u8, codes: &[u16]) -> RetryPolicy {
        RetryPolicy {
            count,
            status_codes: codes.into(),
        }
    }

    #[test]
    fn a_listed_status_is_retried_while_count_body_deadline_and_budget_allow() {
        let retry = policy(2, &[503]);
        for bits in 0..16u8 {
            for retries in 0..4u8 {
                let facts = StatusFacts {
                    retries,
                    replayable: bits & 1 != 0,
                    backoff_fits: bits & 2 != 0,
                    retry_budget: bits & 4 != 0,
                };
                let listed = bits & 8 != 0;
                let status = if listed { 503 } else { 500 };
                let expected = listed
                    && retries < 2
                    && facts.replayable
                    && facts.backoff_fits
                    && facts.retry_budget;
                assert_eq!(
                    after_status(status, Some(&retry), facts),
                    expected,
                    "{status} {facts:?}"
                );
            }
        }
        let facts = StatusFacts {
            retries: 0,
            replayable: true,
            backoff_fits: true,
            retry_budget: true,
        };
        assert!(!after_status(503, None, facts), "no retryConfig, no retry");
        assert!(!after_status(503, Some(&policy(0, &[503])), facts));
    }
}
