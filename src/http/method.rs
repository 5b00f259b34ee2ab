//! HTTP request methods as a small enum: the route table indexes by it and the proxy asks it
//! whether a request may be replayed.

/// A request method. `Other` covers extension methods, which no route can name.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Method {
    Get,
    Put,
    Post,
    Delete,
    Options,
    Head,
    Patch,
    Trace,
    Connect,
    Other,
}

/// How many methods an OpenAPI operation can name (`get` .. `trace`); they index route tables.
pub const ROUTABLE_METHODS: usize = 8;

impl Method {
    /// The routable methods in index order.
    pub const ROUTABLE: [Method; ROUTABLE_METHODS] = [
        Method::Get,
        Method::Put,
        Method::Post,
        Method::Delete,
        Method::Options,
        Method::Head,
        Method::Patch,
        Method::Trace,
    ];

    /// Parses a request-line method token (case-sensitive, as RFC 9110 says).
    pub fn from_bytes(token: &[u8]) -> Method {
        match token {
            b"GET" => Method::Get,
            b"PUT" => Method::Put,
            b"POST" => Method::Post,
            b"DELETE" => Method::Delete,
            b"OPTIONS" => Method::Options,
            b"HEAD" => Method::Head,
            b"PATCH" => Method::Patch,
            b"TRACE" => Method::Trace,
            b"CONNECT" => Method::Connect,
            _ => Method::Other,
        }
    }

    /// The method an OpenAPI path-item key names (`get`, `post`, ...).
    pub fn from_operation_key(key: &str) -> Option<Method> {
        Method::ROUTABLE.into_iter().find(|m| {
            m.as_str().eq_ignore_ascii_case(key) && key.bytes().all(|b| b.is_ascii_lowercase())
        })
    }

    /// Index into a route table, for the methods an operation can name.
    pub fn route_index(self) -> Option<usize> {
        match self {
            Method::Connect | Method::Other => None,
            m => Some(m as usize),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Method::Get => "GET",
            Method::Put => "PUT",
            Method::Post => "POST",
            Method::Delete => "DELETE",
            Method::Options => "OPTIONS",
            Method::Head => "HEAD",
            Method::Patch => "PATCH",
            Method::Trace => "TRACE",
            Method::Connect => "CONNECT",
            Method::Other => "OTHER",
        }
    }

    /// Safe to send again after a failure on a reused connection (RFC 9110 9.2.2).
    pub fn is_idempotent(self) -> bool {
        matches!(
            self,
            Method::Get
                | Method::Head
                | Method::Put
                | Method::Delete
                | Method::Options
                | Method::Trace
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn route_indices_are_dense_and_match_the_routable_order() {
        for (i, m) in Method::ROUTABLE.into_iter().enumerate() {
            assert_eq!(m.route_index(), Some(i));
        }
        assert_eq!(Method::Connect.route_index(), None);
        assert_eq!(Method::Other.route_index(), None);
    }

    #[test]
    fn operation_keys_are_lower_case_method_names() {
        assert_eq!(Method::from_operation_key("get"), Some(Method::Get));
        assert_eq!(Method::from_operation_key("trace"), Some(Method::Trace));
        assert_eq!(Method::from_operation_key("GET"), None);
        assert_eq!(Method::from_operation_key("parameters"), None);
        assert_eq!(Method::from_operation_key("connect"), None);
    }

    #[test]
    fn request_methods_are_case_sensitive() {
        assert_eq!(Method::from_bytes(b"GET"), Method::Get);
        assert_eq!(Method::from_bytes(b"get"), Method::Other);
    }
}
