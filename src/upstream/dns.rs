//! Resolving endpoint host names, off the data path: at load for upstreams never resolved,
//! then every `upstream.dns_refresh_ms` by the control plane's refresher thread
//! (`control::dns_refresh`; lookups block, a shard never makes one). Names listed in `upstream.hosts_file` resolve from that file,
//! re-read at every refresh (static overrides, as `/etc/hosts` or curl's `--resolve`); the
//! others through the system resolver. A failed lookup keeps the last good addresses.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr, ToSocketAddrs};
use std::path::Path;

use crate::ids::UpstreamId;
use crate::upstream::registry::{LookupEvent, Upstreams};

/// Names mapped to addresses by a hosts file (`ADDRESS NAME [NAME...]`, `#` comments).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct HostsFile {
    names: HashMap<String, Vec<IpAddr>>,
}

impl HostsFile {
    /// Reads `path`; a missing or unreadable file is an error (the caller decides).
    pub fn read(path: &Path) -> Result<HostsFile, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read hosts file {}: {e}", path.display()))?;
        Ok(HostsFile::parse(&text))
    }

    /// Lines that do not start with an address are ignored, as resolvers do.
    pub fn parse(text: &str) -> HostsFile {
        let mut names: HashMap<String, Vec<IpAddr>> = HashMap::new();
        for line in text.lines() {
            let line = line.split('#').next().unwrap_or("");
            let mut fields = line.split_whitespace();
            let Some(Ok(addr)) = fields.next().map(str::parse::<IpAddr>) else {
                continue;
            };
            for name in fields {
                let entry = names.entry(name.to_ascii_lowercase()).or_default();
                if !entry.contains(&addr) {
                    entry.push(addr);
                }
            }
        }
        HostsFile { names }
    }

    pub fn lookup(&self, host: &str) -> Option<&[IpAddr]> {
        self.names
            .get(&host.to_ascii_lowercase())
            .map(Vec::as_slice)
    }
}

/// The addresses of `host:port`: an address literal as is, a hosts-file name from the file,
/// any other name from the system resolver (blocking).
pub fn resolve(
    host: &str,
    port: u16,
    hosts: Option<&HostsFile>,
) -> Result<Vec<SocketAddr>, String> {
    let bare = host.trim_start_matches('[').trim_end_matches(']');
    if let Ok(ip) = bare.parse::<IpAddr>() {
        return Ok(vec![SocketAddr::new(ip, port)]);
    }
    if let Some(ips) = hosts.and_then(|h| h.lookup(host)) {
        return Ok(ips.iter().map(|&ip| SocketAddr::new(ip, port)).collect());
    }
    match (host, port).to_socket_addrs() {
        Ok(addrs) => {
            let addrs: Vec<SocketAddr> = addrs.collect();
            if addrs.is_empty() {
                Err(format!("{host}: no addresses"))
            } else {
                Ok(addrs)
            }
        }
        Err(e) => Err(format!("{host}: {e}")),
    }
}

/// Whether a host needs lookups at all (address literals never change).
pub fn is_name(host: &str) -> bool {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse::<IpAddr>()
        .is_err()
}

/// Resolves `id` and records the result, logging what changed.
pub fn refresh_one(
    upstreams: &Upstreams,
    id: UpstreamId,
    host: &str,
    port: u16,
    hosts: Option<&HostsFile>,
) {
    match upstreams.record_lookup(id, resolve(host, port, hosts)) {
        Some(LookupEvent::Changed(addrs)) => log::info!(
            "dns: {host} now resolves to {}",
            addrs
                .iter()
                .map(ToString::to_string)
                .collect::<Vec<_>>()
                .join(", ")
        ),
        Some(LookupEvent::Failed(error)) => {
            log::warn!("dns: lookup failed ({error}); keeping the last good addresses")
        }
        Some(LookupEvent::Recovered) => log::info!("dns: {host} resolves again"),
        None => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_files_map_names_case_insensitively_and_skip_comments() {
        let hosts = HostsFile::parse(
            "# comment\n127.0.0.2 svc.test Other\n::1 svc.test # trailing\nnot-an-ip name\n",
        );
        assert_eq!(
            hosts.lookup("SVC.test").unwrap(),
            &[
                "127.0.0.2".parse::<IpAddr>().unwrap(),
                "::1".parse().unwrap()
            ]
        );
        assert_eq!(hosts.lookup("other").unwrap().len(), 1);
        assert!(hosts.lookup("name").is_none());
    }

    #[test]
    fn literals_resolve_to_themselves_and_names_through_the_file_first() {
        let hosts = HostsFile::parse("127.0.0.9 localhost\n");
        assert_eq!(
            resolve("127.0.0.1", 80, None).unwrap(),
            vec!["127.0.0.1:80".parse().unwrap()]
        );
        assert_eq!(
            resolve("[::1]", 81, None).unwrap(),
            vec!["[::1]:81".parse().unwrap()]
        );
        assert_eq!(
            resolve("localhost", 82, Some(&hosts)).unwrap(),
            vec!["127.0.0.9:82".parse().unwrap()]
        );
        assert!(resolve("no-such-host.invalid", 80, None).is_err());
        assert!(!is_name("10.0.0.1") && !is_name("[::1]") && is_name("svc"));
    }
}
