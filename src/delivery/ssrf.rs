//! The SSRF guard: webhooks may only reach public addresses.
//!
//! Every send (deliveries and Test Webhook) resolves the host through [`GuardedResolver`],
//! which refuses the whole lookup when any address is in a blocked range, and hands reqwest
//! only the addresses it checked: there is no second lookup to race. Literal IP hosts, which
//! reqwest does not resolve, are checked by [`TargetPolicy::check_url`] before sending.
//! `BERTH_ALLOWED_TARGET_CIDRS` opens chosen ranges (e.g. `127.0.0.0/8` for local work).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use ipnet::IpNet;

/// Which targets are allowed.
#[derive(Debug, Clone, Default)]
pub struct TargetPolicy {
    allowed: Vec<IpNet>,
}

/// Why an address was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{ip} is a {range} address, which webhooks may not reach (see BERTH_ALLOWED_TARGET_CIDRS)")]
pub struct Blocked {
    pub ip: IpAddr,
    pub range: &'static str,
}

impl TargetPolicy {
    /// Parses a comma-separated list of CIDRs (`127.0.0.0/8,::1/128`); a bare address counts as
    /// a single-address network.
    pub fn parse(text: &str) -> Result<TargetPolicy, String> {
        let mut allowed = Vec::new();
        for part in text.split(',').map(str::trim).filter(|p| !p.is_empty()) {
            let net = part
                .parse::<IpNet>()
                .or_else(|_| part.parse::<IpAddr>().map(IpNet::from))
                .map_err(|_| format!("`{part}` is not a CIDR such as 127.0.0.0/8"))?;
            allowed.push(net);
        }
        Ok(TargetPolicy { allowed })
    }

    pub fn allowed(&self) -> &[IpNet] {
        &self.allowed
    }

    /// Refuses `ip` when it is in a blocked range and not explicitly allowed.
    pub fn check(&self, ip: IpAddr) -> Result<(), Blocked> {
        if self.allowed.iter().any(|n| n.contains(&ip)) {
            return Ok(());
        }
        // An IPv4 address in IPv6 clothing is judged as the IPv4 address it carries.
        if let IpAddr::V6(v6) = ip
            && let Some(v4) = embedded_v4(v6)
            && self.allowed.iter().any(|n| n.contains(&IpAddr::V4(v4)))
        {
            return Ok(());
        }
        match blocked_range(ip) {
            Some(range) => Err(Blocked { ip, range }),
            None => Ok(()),
        }
    }

    /// Checks a URL whose host is a literal IP address; other hosts are checked when resolved.
    pub fn check_url(&self, url: &url::Url) -> Result<(), Blocked> {
        match url.host() {
            Some(url::Host::Ipv4(v4)) => self.check(IpAddr::V4(v4)),
            Some(url::Host::Ipv6(v6)) => self.check(IpAddr::V6(v6)),
            _ => Ok(()),
        }
    }
}

/// The IPv4 address inside an IPv4-mapped (`::ffff:a.b.c.d`) or IPv4-compatible (`::a.b.c.d`)
/// IPv6 address.
fn embedded_v4(v6: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = v6.segments();
    if s[..5] == [0, 0, 0, 0, 0] && (s[5] == 0xffff || s[5] == 0) {
        let [a, b] = s[6].to_be_bytes();
        let [c, d] = s[7].to_be_bytes();
        let v4 = Ipv4Addr::new(a, b, c, d);
        // `::` and `::1` are not IPv4-compatible addresses.
        if s[5] == 0 && u32::from(v4) <= 1 {
            return None;
        }
        return Some(v4);
    }
    None
}

/// The name of the blocked range `ip` is in, if any.
pub fn blocked_range(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => blocked_v4(v4),
        IpAddr::V6(v6) => blocked_v6(v6),
    }
}

fn in_v4(ip: Ipv4Addr, net: [u8; 4], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u32::MAX << (32 - prefix)
    };
    (u32::from(ip) & mask) == (u32::from(Ipv4Addr::from(net)) & mask)
}

fn blocked_v4(ip: Ipv4Addr) -> Option<&'static str> {
    const RANGES: &[([u8; 4], u32, &str)] = &[
        ([0, 0, 0, 0], 8, "unspecified (this-network)"),
        ([10, 0, 0, 0], 8, "private"),
        ([100, 64, 0, 0], 10, "carrier-grade NAT"),
        ([127, 0, 0, 0], 8, "loopback"),
        ([169, 254, 0, 0], 16, "link-local"),
        ([172, 16, 0, 0], 12, "private"),
        ([192, 0, 0, 0], 24, "IETF protocol assignment"),
        ([192, 0, 2, 0], 24, "documentation"),
        ([192, 88, 99, 0], 24, "6to4 relay anycast"),
        ([192, 168, 0, 0], 16, "private"),
        ([198, 18, 0, 0], 15, "benchmarking"),
        ([198, 51, 100, 0], 24, "documentation"),
        ([203, 0, 113, 0], 24, "documentation"),
        ([224, 0, 0, 0], 4, "multicast"),
        ([240, 0, 0, 0], 4, "reserved"),
        ([255, 255, 255, 255], 32, "broadcast"),
    ];
    // 255.255.255.255 is inside 240/4; name it precisely.
    if ip == Ipv4Addr::BROADCAST {
        return Some("broadcast");
    }
    RANGES
        .iter()
        .find(|(net, prefix, _)| in_v4(ip, *net, *prefix))
        .map(|(_, _, name)| *name)
}

fn in_v6(ip: Ipv6Addr, net: [u16; 8], prefix: u32) -> bool {
    let mask = if prefix == 0 {
        0
    } else {
        u128::MAX << (128 - prefix)
    };
    (u128::from(ip) & mask) == (u128::from(Ipv6Addr::from(net)) & mask)
}

fn blocked_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if ip.is_unspecified() {
        return Some("unspecified");
    }
    if ip.is_loopback() {
        return Some("loopback");
    }
    if let Some(v4) = embedded_v4(ip) {
        return blocked_v4(v4);
    }
    const RANGES: &[([u16; 8], u32, &str)] = &[
        ([0x64, 0xff9b, 0, 0, 0, 0, 0, 0], 96, "NAT64"),
        ([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48, "NAT64 (local-use)"),
        ([0x100, 0, 0, 0, 0, 0, 0, 0], 64, "discard-only"),
        ([0x2001, 0, 0, 0, 0, 0, 0, 0], 32, "Teredo"),
        ([0x2001, 0x2, 0, 0, 0, 0, 0, 0], 48, "benchmarking"),
        ([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32, "documentation"),
        ([0x2001, 0x10, 0, 0, 0, 0, 0, 0], 28, "ORCHID"),
        ([0x2002, 0, 0, 0, 0, 0, 0, 0], 16, "6to4"),
        ([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20, "documentation"),
        ([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7, "unique-local"),
        ([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10, "link-local"),
        ([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10, "site-local"),
        ([0xff00, 0, 0, 0, 0, 0, 0, 0], 8, "multicast"),
    ];
    RANGES
        .iter()
        .find(|(net, prefix, _)| in_v6(ip, *net, *prefix))
        .map(|(_, _, name)| *name)
}

/// A failed lookup.
#[derive(Debug, thiserror::Error)]
#[error("cannot resolve {host}: {message}")]
pub struct DnsFailure {
    pub host: String,
    pub message: String,
}

/// reqwest's resolver: looks the host up once, refuses it when any address is blocked, and
/// returns exactly the checked addresses for reqwest to connect to.
#[derive(Debug, Clone)]
pub struct GuardedResolver {
    pub policy: Arc<TargetPolicy>,
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let policy = self.policy.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host.as_str(), 0))
                .await
                .map_err(|e| {
                    Box::new(DnsFailure {
                        host: host.clone(),
                        message: e.to_string(),
                    }) as Box<dyn std::error::Error + Send + Sync>
                })?
                .collect();
            if addrs.is_empty() {
                return Err(Box::new(DnsFailure {
                    host,
                    message: "no addresses".into(),
                })
                    as Box<dyn std::error::Error + Send + Sync>);
            }
            for a in &addrs {
                policy
                    .check(a.ip())
                    .map_err(|b| Box::new(b) as Box<dyn std::error::Error + Send + Sync>)?;
            }
            Ok(Box::new(addrs.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn blocked(s: &str) -> bool {
        TargetPolicy::default().check(s.parse().unwrap()).is_err()
    }

    #[test]
    fn every_forbidden_range_is_refused() {
        for ip in [
            "127.0.0.1",
            "127.255.255.254",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "100.64.0.1",
            "100.127.255.255",
            "224.0.0.1",
            "239.255.255.250",
            "0.0.0.0",
            "0.1.2.3",
            "255.255.255.255",
            "192.0.2.10",
            "198.51.100.7",
            "203.0.113.9",
            "198.18.0.1",
            "240.0.0.1",
            "::1",
            "::",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "64:ff9b::a9fe:a9fe",
            "64:ff9b::808:808",
            "2002:7f00:1::1",
            "2001::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.0.0.1",
            "::127.0.0.1",
            "::10.0.0.1",
            "fec0::1",
        ] {
            assert!(blocked(ip), "{ip} must be blocked");
        }
    }

    #[test]
    fn public_addresses_pass() {
        for ip in [
            "8.8.8.8",
            "1.1.1.1",
            "140.82.112.3",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
        ] {
            assert!(!blocked(ip), "{ip} must pass");
        }
    }

    #[test]
    fn allow_list_opens_ranges_including_mapped_forms() {
        let p = TargetPolicy::parse("127.0.0.0/8, ::1").unwrap();
        assert!(p.check("127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check("::1".parse().unwrap()).is_ok());
        assert!(p.check("::ffff:127.0.0.1".parse().unwrap()).is_ok());
        assert!(p.check("10.0.0.1".parse().unwrap()).is_err());
        assert!(TargetPolicy::parse("nonsense").is_err());
    }

    #[test]
    fn literal_urls_are_checked() {
        let p = TargetPolicy::default();
        let u = url::Url::parse("http://[::ffff:7f00:1]:8080/x").unwrap();
        assert!(p.check_url(&u).is_err());
        let u = url::Url::parse("http://169.254.169.254/latest/meta-data").unwrap();
        assert_eq!(p.check_url(&u).unwrap_err().range, "link-local");
        let u = url::Url::parse("https://example.com/").unwrap();
        assert!(p.check_url(&u).is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_a_name_that_resolves_to_loopback() {
        use reqwest::dns::Resolve;
        let r = GuardedResolver {
            policy: Arc::new(TargetPolicy::default()),
        };
        let name: reqwest::dns::Name = "localhost".parse().unwrap();
        let err = match r.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        assert!(err.downcast_ref::<Blocked>().is_some(), "{err}");
    }
}
