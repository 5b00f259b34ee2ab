//! API keys in query strings: finding one, and taking it out of the query that goes upstream
//! (a key is a credential for the gateway, never for the backend or its logs). Both work on
//! the request's own bytes, in place: nothing is allocated.

/// The value of the first `name=value` parameter of `query` (the part after `?`), as sent
/// (not percent-decoded: a JWT needs no encoding). `None` when absent or empty.
pub fn find_query_param<'q>(query: &'q [u8], name: &[u8]) -> Option<&'q [u8]> {
    query.split(|&b| b == b'&').find_map(|pair| {
        let value = pair.strip_prefix(name)?.strip_prefix(b"=")?;
        (!value.is_empty()).then_some(value)
    })
}

/// Removes every `name` parameter (`name`, `name=` or `name=value`) from `query` in place,
/// keeping the others in order, and returns the new length of the query.
pub fn remove_query_param(query: &mut [u8], name: &[u8]) -> usize {
    let mut write = 0;
    let mut read = 0;
    while read <= query.len() {
        let end = query[read..]
            .iter()
            .position(|&b| b == b'&')
            .map_or(query.len(), |i| read + i);
        let pair = &query[read..end];
        let matches = pair == name
            || (pair.len() > name.len() && pair.starts_with(name) && pair[name.len()] == b'=');
        if !matches && !pair.is_empty() {
            if write > 0 {
                query[write] = b'&';
                write += 1;
            }
            query.copy_within(read..end, write);
            write += end - read;
        }
        read = end + 1;
    }
    write
}

#[cfg(test)]
mod tests {
    use super::*;

    fn removed(query: &str, name: &str) -> String {
        let mut bytes = query.as_bytes().to_vec();
        let len = remove_query_param(&mut bytes, name.as_bytes());
        String::from_utf8(bytes[..len].to_vec()).unwrap()
    }

    #[test]
    fn finds_the_first_non_empty_value_by_exact_name() {
        let query = b"a=1&apikey=k.e.y&apikey=other&b";
        assert_eq!(find_query_param(query, b"apikey"), Some(&b"k.e.y"[..]));
        assert_eq!(find_query_param(b"xapikey=1&apikeyx=2", b"apikey"), None);
        assert_eq!(find_query_param(b"apikey=&apikey", b"apikey"), None);
        assert_eq!(find_query_param(b"", b"apikey"), None);
    }

    #[test]
    fn removes_every_occurrence_and_keeps_the_rest_in_order() {
        assert_eq!(removed("apikey=k", "apikey"), "");
        assert_eq!(removed("a=1&apikey=k&b=2", "apikey"), "a=1&b=2");
        assert_eq!(removed("apikey=k&a=1", "apikey"), "a=1");
        assert_eq!(removed("a=1&apikey=k", "apikey"), "a=1");
        assert_eq!(removed("apikey=1&a&apikey&apikey=&b=2", "apikey"), "a&b=2");
        assert_eq!(
            removed("apikeyx=1&xapikey=2", "apikey"),
            "apikeyx=1&xapikey=2"
        );
        assert_eq!(removed("a=1&&b=2", "apikey"), "a=1&b=2");
    }
}
