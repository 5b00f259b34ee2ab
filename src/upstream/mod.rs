//! Upstreams as the data path sees them: endpoints (where to connect) and groups (how to
//! choose among endpoints, with their timeouts, retries and limits).

pub mod balancer;
pub mod circuit;
pub mod connection;
pub mod dns;
pub mod health;
pub mod idle_watch;
pub mod local;
pub mod pool;
pub mod probe;
pub mod registry;
pub mod retry;
pub mod segmented;
pub mod signals;

use crate::compile::config::endpoint::{CircuitBreakerSpec, GroupKind};
use crate::compile::config::url::Scheme;
use crate::ids::{ApiId, EndpointId, UpstreamId};
use crate::upstream::health::SuspensionPolicy;
use crate::upstream::probe::HealthCheckSettings;

/// A distinct upstream server, as one snapshot numbers it.
#[derive(Clone, Debug)]
pub struct Endpoint {
    /// Its identity for the life of the process: health, pools and addresses are keyed by
    /// it, never by the snapshot's dense `EndpointId`.
    pub upstream: UpstreamId,
    pub scheme: Scheme,
    pub host: Box<str>,
    pub port: u16,
    /// The `Host` header value (port omitted when default).
    pub authority: Box<str>,
}

impl Endpoint {
    /// `http://host:port` for logs and tables.
    pub fn origin(&self) -> String {
        format!("{}://{}", self.scheme.as_str(), self.authority)
    }
}

/// One URL of a group: the endpoint and the path that prefixes the resource path.
#[derive(Clone, Debug)]
pub struct GroupMember {
    pub endpoint: EndpointId,
    pub base_path: Box<[u8]>,
}

/// Status-code retries of a group.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RetryPolicy {
    pub count: u8,
    pub status_codes: Box<[u16]>,
}

impl RetryPolicy {
    pub fn retries_on(&self, status: u16) -> bool {
        self.status_codes.contains(&status)
    }
}

/// An endpoint group: the URLs of one endpoint object and how to use them.
#[derive(Clone, Debug)]
pub struct Group {
    pub api: ApiId,
    pub kind: GroupKind,
    pub members: Box<[GroupMember]>,
    /// The whole upstream exchange, retries included.
    pub timeout_ms: u64,
    pub retry: Option<RetryPolicy>,
    pub circuit_breakers: Option<CircuitBreakerSpec>,
    /// `Basic ...` sent instead of the client's `Authorization` (securityConfig).
    pub authorization: Option<Box<[u8]>>,
    /// How long a failed member is avoided (gateway `suspension`, with `group_overrides`).
    pub suspension: SuspensionPolicy,
    /// Active health checks of the members; `None` for one-URL groups or when turned off.
    pub health_check: Option<HealthCheckSettings>,
    /// Members are reached with HTTP/2 (`x-wso2-http2-backend-enabled`), multiplexed on the
    /// shard's few connections per upstream (`src/h2/upstream.rs`).
    pub http2: bool,
}

impl Group {
    /// A stable identity across reloads: the API, the balancing type and the members.
    pub fn identity(&self, endpoints: &[Endpoint], api_base_path: &str) -> String {
        let mut key = format!("{api_base_path} {}", self.kind.as_str());
        if self.http2 {
            key.push_str(" h2");
        }
        for member in self.members.iter() {
            key.push(' ');
            key.push_str(&endpoints[member.endpoint.index()].origin());
            key.push_str(&String::from_utf8_lossy(&member.base_path));
        }
        key
    }
}
