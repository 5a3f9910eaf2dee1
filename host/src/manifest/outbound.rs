//! Entries of a step's `allowed_outbound_hosts`.

/// One entry of `allowed_outbound_hosts`: `http://host[:port]` or
/// `https://host[:port]` (the scheme's port when none is given); a host of
/// `*.example.com` allows its subdomains.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboundHost {
    /// `http` or `https`.
    pub scheme: String,
    /// Lower-case host name or address, or `*.domain`.
    pub host: String,
    /// The port.
    pub port: u16,
}

impl OutboundHost {
    /// Parses one allow-list entry.
    pub fn parse(entry: &str) -> Result<OutboundHost, String> {
        let (scheme, rest) = entry
            .split_once("://")
            .ok_or("must look like https://host or http://host:port")?;
        let default_port = match scheme {
            "http" => 80,
            "https" => 443,
            _ => return Err(format!("scheme `{scheme}` is not http or https")),
        };
        if rest.contains(['/', '?', '#', '@']) {
            return Err("only scheme, host and port; no path, query or user".into());
        }
        // An IPv6 address is bracketed: [::1]:8080.
        let (host, port) = match rest.strip_prefix('[') {
            Some(v6) => {
                let (addr, after) = v6.split_once(']').ok_or("unclosed [ in the host")?;
                (&rest[..addr.len() + 2], after.strip_prefix(':'))
            }
            None => match rest.rsplit_once(':') {
                Some((host, port)) => (host, Some(port)),
                None => (rest, None),
            },
        };
        let port = match port {
            Some(p) => p
                .parse::<u16>()
                .map_err(|_| format!("port `{p}` is not a number from 0 to 65535"))?,
            None => default_port,
        };
        if host.is_empty() {
            return Err("names no host".into());
        }
        Ok(OutboundHost {
            scheme: scheme.to_string(),
            host: host.to_ascii_lowercase(),
            port,
        })
    }

    /// Whether a request to `scheme://host:port` is allowed by this entry.
    pub fn allows(&self, scheme: &str, host: &str, port: u16) -> bool {
        let host = host.to_ascii_lowercase();
        let host_matches = match self.host.strip_prefix("*.") {
            Some(domain) => host.ends_with(&format!(".{domain}")),
            None => host == self.host,
        };
        self.scheme == scheme && self.port == port && host_matches
    }
}
