//! Dense ids of the snapshot's tables. The data path indexes `Vec`s with them instead of
//! hashing names (DESIGN.md principle 1).

macro_rules! dense_id {
    ($(#[$doc:meta])* $name:ident) => {
        $(#[$doc])*
        #[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(pub u32);

        impl $name {
            #[inline]
            pub fn index(self) -> usize {
                self.0 as usize
            }

            /// The id of the element about to be pushed onto `table`.
            pub fn next<T>(table: &[T]) -> Self {
                Self(u32::try_from(table.len()).expect("fewer than 2^32 entries"))
            }
        }
    };
}

dense_id!(
    /// An API definition (one base path).
    ApiId
);
dense_id!(
    /// One operation: a path template and a method of an API.
    RouteId
);
dense_id!(
    /// An endpoint group: its URLs, balancing type and advanced settings.
    GroupId
);
dense_id!(
    /// A distinct upstream: scheme, host, port and TLS settings.
    EndpointId
);

/// A distinct upstream for the life of the process: (scheme, host, port, TLS settings),
/// interned once by [`crate::upstream::registry::Upstreams`]. Unlike the snapshot's dense ids
/// it never changes meaning across reloads: health, pools and per-shard caches are keyed by
/// it, and a pooled connection carries it.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct UpstreamId(pub u32);

impl UpstreamId {
    #[inline]
    pub fn index(self) -> usize {
        self.0 as usize
    }
}
