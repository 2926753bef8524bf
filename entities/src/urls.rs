//! The rules for URLs users give omega to call (webhook endpoints; later attachments): https
//! only, and never an address inside the deployment's network (private, loopback,
//! link-local, …), so that omega cannot be made to probe or attack its own neighbours (SSRF).
//! A deployment that means to call such addresses (tests, private installations) lifts both
//! rules with `OMEGA_ALLOW_PRIVATE_URLS=true`.
//!
//! A name is checked when it is given and again, address by address, at every call (the
//! workers resolve through [`UrlPolicy::public_addrs`]), since a name can be re-pointed.
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use url::{Host, Url};

use crate::{Error, Result};

/// Whether user-given URLs may point anywhere.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct UrlPolicy {
    pub allow_private: bool,
}

impl UrlPolicy {
    /// The URL, if its form is allowed: absolute, https (http too when private URLs are
    /// allowed), without credentials, and not naming a non-public address literally. Names
    /// are resolved by [`UrlPolicy::check_resolved`].
    pub fn parse(&self, text: &str) -> Result<Url> {
        let url = Url::parse(text).map_err(|e| Error::Invalid(format!("not a URL: {e}")))?;
        match url.scheme() {
            "https" => {}
            "http" if self.allow_private => {}
            _ => return Err(Error::Invalid("the URL must be https".into())),
        }
        if !url.username().is_empty() || url.password().is_some() {
            return Err(Error::Invalid(
                "the URL must not carry credentials; sign with the endpoint's secret".into(),
            ));
        }
        let literal = match url.host() {
            None => return Err(Error::Invalid("the URL has no host".into())),
            Some(Host::Ipv4(ip)) => Some(IpAddr::V4(ip)),
            Some(Host::Ipv6(ip)) => Some(IpAddr::V6(ip)),
            Some(Host::Domain(_)) => None,
        };
        if let Some(ip) = literal
            && !self.allow_private
            && !is_public(ip)
        {
            return Err(private(ip));
        }
        Ok(url)
    }

    /// As [`UrlPolicy::parse`], and the host's name resolves, to public addresses only.
    pub async fn check_resolved(&self, text: &str) -> Result<Url> {
        let url = self.parse(text)?;
        if let Some(Host::Domain(name)) = url.host() {
            let port = url.port_or_known_default().unwrap_or(443);
            self.public_addrs(name, port).await?;
        }
        Ok(url)
    }

    /// The addresses `name` resolves to, refused if any is not public (unless allowed).
    pub async fn public_addrs(&self, name: &str, port: u16) -> Result<Vec<SocketAddr>> {
        let addrs: Vec<SocketAddr> = tokio::net::lookup_host((name, port))
            .await
            .map_err(|e| Error::Invalid(format!("the host {name:?} does not resolve: {e}")))?
            .collect();
        if addrs.is_empty() {
            return Err(Error::Invalid(format!("the host {name:?} has no address")));
        }
        if !self.allow_private
            && let Some(bad) = addrs.iter().find(|a| !is_public(a.ip()))
        {
            return Err(private(bad.ip()));
        }
        Ok(addrs)
    }
}

fn private(ip: IpAddr) -> Error {
    Error::Invalid(format!(
        "the URL leads to {ip}, a private, loopback or otherwise non-public address"
    ))
}

/// Whether an address is on the public internet: not private, loopback, link-local,
/// shared (carrier NAT), reserved, documentation, benchmarking, multicast or unspecified.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_public_v4(v4),
            None => is_public_v6(v6),
        },
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    !(ip.is_private()
        || ip.is_loopback()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_documentation()
        || ip.is_multicast()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space, RFC 6598
        || (a == 192 && b == 0 && c == 0) // IETF protocol assignments
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, RFC 2544
        || a >= 240) // reserved
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    let first = ip.segments()[0];
    !(ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local, fc00::/7
        || (first & 0xffc0) == 0xfe80 // link-local, fe80::/10
        || (first == 0x2001 && ip.segments()[1] == 0x0db8) // documentation
        || (first == 0x0064 && ip.segments()[1] == 0xff9b) // NAT64 (may reach IPv4 inside)
        || ip.segments()[..6] == [0, 0, 0, 0, 0, 0]) // IPv4-compatible (deprecated)
}

#[cfg(test)]
mod tests {
    use super::*;

    const STRICT: UrlPolicy = UrlPolicy {
        allow_private: false,
    };
    const LOOSE: UrlPolicy = UrlPolicy {
        allow_private: true,
    };

    #[test]
    fn only_public_addresses_are_public() {
        for ip in ["8.8.8.8", "1.1.1.1", "2606:4700::1111", "::ffff:8.8.8.8"] {
            assert!(is_public(ip.parse().unwrap()), "{ip}");
        }
        for ip in [
            "127.0.0.1",
            "10.1.2.3",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "198.18.0.1",
            "::1",
            "::",
            "fe80::1",
            "fd00::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "64:ff9b::a00:1",
        ] {
            assert!(!is_public(ip.parse().unwrap()), "{ip}");
        }
    }

    #[test]
    fn the_form_of_a_url_is_checked() {
        assert!(STRICT.parse("https://hooks.example.com/omega").is_ok());
        for bad in [
            "http://hooks.example.com/omega",
            "ftp://hooks.example.com/",
            "https://user:pass@hooks.example.com/",
            "https://127.0.0.1/hook",
            "https://[::1]/hook",
            "https://169.254.169.254/latest/meta-data",
            "https://10.0.0.5:8443/",
            "not a url",
            "/relative",
        ] {
            assert!(STRICT.parse(bad).is_err(), "{bad}");
        }
        assert!(LOOSE.parse("http://127.0.0.1:8080/hook").is_ok());
        assert!(LOOSE.parse("ftp://127.0.0.1/").is_err());
    }

    #[tokio::test]
    async fn names_that_resolve_inside_are_refused() {
        let err = STRICT
            .check_resolved("https://localhost/hook")
            .await
            .unwrap_err();
        assert!(err.to_string().contains("non-public"), "{err}");
        assert!(LOOSE.check_resolved("http://localhost/hook").await.is_ok());
    }
}
