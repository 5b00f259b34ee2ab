//! What a route demands before a request is forwarded, compiled at load from the definition's
//! security requirements: credential alternatives (any one suffices, OpenAPI's OR), the
//! scopes each needs (all of them, OpenAPI's AND) and the API's mutual TLS. Scopes are bits
//! in a table built once per snapshot, so a check is a few word operations: no allocation, no
//! string comparison per request.

use std::collections::HashMap;

/// Every scope some route of a snapshot requires, numbered. A token's `scope` claim is read
/// through it: scopes no route requires cannot change a decision and are not kept.
#[derive(Clone, Debug, Default)]
pub struct ScopeTable {
    index: HashMap<Box<str>, u32>,
}

impl ScopeTable {
    pub fn new() -> Self {
        Self::default()
    }

    /// Scopes known.
    pub fn len(&self) -> usize {
        self.index.len()
    }

    pub fn is_empty(&self) -> bool {
        self.index.is_empty()
    }

    /// The set of `names`, numbering the ones not seen before (load time).
    pub fn require<'a>(&mut self, names: impl IntoIterator<Item = &'a str>) -> ScopeSet {
        let mut set = ScopeSet::default();
        for name in names {
            let next = self.index.len() as u32;
            let bit = *self.index.entry(name.into()).or_insert(next);
            set.insert(bit);
        }
        set
    }

    /// The known scopes among `names` (a token's claim, when it is verified).
    pub fn granted<'a>(&self, names: impl IntoIterator<Item = &'a str>) -> ScopeSet {
        let mut set = ScopeSet::default();
        for name in names {
            if let Some(&bit) = self.index.get(name) {
                set.insert(bit);
            }
        }
        set
    }
}

/// A set of scopes of one `ScopeTable`, as bits.
#[derive(Clone, Debug, Default, PartialEq, Eq, Hash)]
pub struct ScopeSet(Box<[u64]>);

impl ScopeSet {
    fn insert(&mut self, bit: u32) {
        let word = (bit / 64) as usize;
        if word >= self.0.len() {
            let mut words = self.0.to_vec();
            words.resize(word + 1, 0);
            self.0 = words.into_boxed_slice();
        }
        self.0[word] |= 1 << (bit % 64);
    }

    /// No scope at all (a requirement without scopes).
    pub fn is_empty(&self) -> bool {
        self.0.iter().all(|&w| w == 0)
    }

    /// Whether every scope of `required` is in this set.
    #[inline]
    pub fn contains_all(&self, required: &ScopeSet) -> bool {
        required
            .0
            .iter()
            .enumerate()
            .all(|(i, &want)| want & !self.0.get(i).copied().unwrap_or(0) == 0)
    }
}

/// How a token is presented, which decides the issuers that may have signed it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TokenUse {
    /// `Bearer` in the API's token header: issuers without `api_key: true`.
    Bearer,
    /// A JWT-format API key in a header or query parameter: issuers with `api_key: true`.
    ApiKey,
}

/// Where one alternative's credential is read from.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum Credential {
    /// `Bearer <token>` in the API's token header (`x-wso2-auth-header`).
    Bearer,
    /// An API key in this request header (name lower-cased).
    ApiKeyHeader(Box<str>),
    /// An API key in this query parameter (name as written, compared exactly).
    ApiKeyQuery(Box<str>),
}

impl Credential {
    pub fn token_use(&self) -> TokenUse {
        match self {
            Credential::Bearer => TokenUse::Bearer,
            Credential::ApiKeyHeader(_) | Credential::ApiKeyQuery(_) => TokenUse::ApiKey,
        }
    }
}

/// One way to satisfy a route: a credential carrying all of `scopes`.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Alternative {
    pub credential: Credential,
    pub scopes: ScopeSet,
}

/// A secured route's demands on the request's credentials.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct AccessPolicy {
    /// Tried in order; the first one whose credential is present, valid and carries its
    /// scopes admits the request.
    pub alternatives: Box<[Alternative]>,
    /// A verified client certificate alone admits the request (`x-wso2-mutual-ssl:
    /// mandatory` with application security optional).
    pub application_optional: bool,
}

/// An API's mutual TLS: how much a verified client certificate matters, and which ones.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MutualTlsPolicy {
    /// Without an accepted certificate the request gets 401. `false` (`optional`): a
    /// certificate is never required and application security decides, as in Choreo Connect.
    pub mandatory: bool,
    /// SHA-256 of the API's own certificates (an apictl project's `Client-certificates/`):
    /// the client's certificate must be one of them. Empty: any certificate that chains to
    /// `tls.client_ca` is accepted.
    pub pinned: Box<[[u8; 32]]>,
}

/// What the HTTPS listener learnt about the client's certificate in the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ClientCertificate {
    /// SHA-256 of the end-entity certificate (DER).
    pub fingerprint: [u8; 32],
    /// It chains to `tls.client_ca` (rather than only being one of some API's own
    /// certificates).
    pub chains_to_client_ca: bool,
}

impl MutualTlsPolicy {
    /// Whether `presented` is a certificate this API accepts.
    pub fn accepts(&self, presented: &ClientCertificate) -> bool {
        if self.pinned.is_empty() {
            presented.chains_to_client_ca
        } else {
            self.pinned.contains(&presented.fingerprint)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_token_needs_every_required_scope() {
        let mut table = ScopeTable::new();
        let read_write = table.require(["read", "write"]);
        let read = table.require(["read"]);
        assert_eq!(table.len(), 2);
        let granted = table.granted(["read", "other", "write"]);
        assert!(granted.contains_all(&read_write));
        assert!(granted.contains_all(&read));
        let only_read = table.granted(["read"]);
        assert!(only_read.contains_all(&read));
        assert!(!only_read.contains_all(&read_write));
        assert!(ScopeSet::default().contains_all(&ScopeSet::default()));
        assert!(!ScopeSet::default().contains_all(&read));
    }

    #[test]
    fn scope_sets_span_several_words() {
        let mut table = ScopeTable::new();
        let names: Vec<String> = (0..150).map(|i| format!("s{i}")).collect();
        let all = table.require(names.iter().map(String::as_str));
        let last = table.require(["s149"]);
        let granted = table.granted(["s149"]);
        assert!(granted.contains_all(&last));
        assert!(!granted.contains_all(&all));
        assert!(table
            .granted(names.iter().map(String::as_str))
            .contains_all(&all));
        assert!(!table.granted(["s0"]).contains_all(&last));
    }

    #[test]
    fn pinned_certificates_are_matched_exactly_and_others_need_the_gateway_ca() {
        let presented = ClientCertificate {
            fingerprint: [7; 32],
            chains_to_client_ca: false,
        };
        let pinned = MutualTlsPolicy {
            mandatory: true,
            pinned: vec![[7; 32]].into(),
        };
        assert!(pinned.accepts(&presented));
        let ca_only = MutualTlsPolicy {
            mandatory: true,
            pinned: Box::default(),
        };
        assert!(!ca_only.accepts(&presented), "another API's certificate");
        assert!(ca_only.accepts(&ClientCertificate {
            chains_to_client_ca: true,
            ..presented
        }));
        assert!(!pinned.accepts(&ClientCertificate {
            fingerprint: [8; 32],
            chains_to_client_ca: true,
        }));
    }
}
