//! The SSRF guard: webhooks may only reach public addresses.
//!
//! Every send (deliveries and Test Webhook) resolves the host through [`GuardedResolver`],
//! which refuses the whole lookup when any address is in a blocked range, and hands reqwest
//! only the addresses it checked: there is no second lookup to race. Literal IP hosts, which
//! reqwest does not resolve, are checked by [`TargetPolicy::check_url`] before sending.
//! `BERTH_ALLOWED_TARGET_CIDRS` opens chosen ranges (e.g. `127.0.0.0/8` for local work).
//!
//! An IPv6 address that carries an IPv4 address ([`Embedding`]: IPv4-mapped, -compatible and
//! -translated, NAT64, 6to4, Teredo, ISATAP) is allowed only if every IPv4 address it carries
//! is: an IPv4 range opened by the allow-list opens it in every form, an allowed IPv6 range
//! never opens a blocked IPv4 address carried inside it. The direct forms (mapped, compatible,
//! translated), which the host's own stack sends to the IPv4 address, are judged as that
//! address alone. The relayed forms (NAT64, 6to4, Teredo) go through a translator or relay
//! Berth cannot see: their IPv6 range stays blocked as a whole unless the allow-list opens it.

use std::fmt;
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
pub struct Blocked {
    pub ip: IpAddr,
    /// The blocked range: of `ip`, or of the IPv4 address it carries (see `via`).
    pub range: &'static str,
    /// When `ip` is an IPv6 form of a blocked IPv4 address: the form and that address.
    pub via: Option<(Embedding, Ipv4Addr)>,
}

impl fmt::Display for Blocked {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.via {
            Some((form, v4)) => write!(
                f,
                "{} is the {} form of {v4}, a {} address, which webhooks may not reach \
                 (see BERTH_ALLOWED_TARGET_CIDRS)",
                self.ip,
                form.name(),
                self.range
            ),
            None => write!(
                f,
                "{} is a {} address, which webhooks may not reach (see \
                 BERTH_ALLOWED_TARGET_CIDRS)",
                self.ip, self.range
            ),
        }
    }
}

/// How an IPv6 address carries an IPv4 address.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Embedding {
    /// `::ffff:a.b.c.d` (`::ffff:0:0/96`).
    Mapped,
    /// `::a.b.c.d` (`::/96`, deprecated).
    Compatible,
    /// `::ffff:0:a.b.c.d` (`::ffff:0:0:0/96`, SIIT).
    Translated,
    /// `64:ff9b::a.b.c.d` (`64:ff9b::/96`).
    Nat64,
    /// `64:ff9b:1::/48`, at any RFC 6052 position.
    Nat64Local,
    /// `2002:aabb:ccdd::/48`.
    SixToFour,
    /// `2001:0:…` (`2001::/32`): the server address, and the client's, inverted.
    Teredo,
    /// An interface identifier `0:5efe:a.b.c.d` or `200:5efe:a.b.c.d` under any prefix.
    Isatap,
}

impl Embedding {
    pub fn name(self) -> &'static str {
        match self {
            Embedding::Mapped => "IPv4-mapped",
            Embedding::Compatible => "IPv4-compatible",
            Embedding::Translated => "IPv4-translated",
            Embedding::Nat64 => "NAT64",
            Embedding::Nat64Local => "NAT64 (local-use)",
            Embedding::SixToFour => "6to4",
            Embedding::Teredo => "Teredo",
            Embedding::Isatap => "ISATAP",
        }
    }

    /// The host's own stack sends these to the IPv4 address: they are that address.
    fn direct(self) -> bool {
        matches!(
            self,
            Embedding::Mapped | Embedding::Compatible | Embedding::Translated
        )
    }
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

    fn opens(&self, ip: IpAddr) -> bool {
        self.allowed.iter().any(|n| n.contains(&ip))
    }

    /// Refuses `ip` when it is in a blocked range and not explicitly allowed, or when it is an
    /// IPv6 form of a blocked IPv4 address (see the module's documentation).
    pub fn check(&self, ip: IpAddr) -> Result<(), Blocked> {
        let v6 = match ip {
            IpAddr::V4(v4) => {
                return match blocked_v4(v4) {
                    Some(range) if !self.opens(ip) => Err(Blocked {
                        ip,
                        range,
                        via: None,
                    }),
                    _ => Ok(()),
                };
            }
            IpAddr::V6(v6) => v6,
        };
        if let Some((form, carried)) = embedded(v6) {
            for v4 in carried {
                if let Some(range) = blocked_v4(v4)
                    && !self.opens(IpAddr::V4(v4))
                {
                    return Err(Blocked {
                        ip,
                        range,
                        via: Some((form, v4)),
                    });
                }
            }
            if form.direct() {
                return Ok(());
            }
        }
        match blocked_v6(v6) {
            Some(range) if !self.opens(ip) => Err(Blocked {
                ip,
                range,
                via: None,
            }),
            _ => Ok(()),
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

fn v4_at(b: &[u8; 16], at: [usize; 4]) -> Ipv4Addr {
    Ipv4Addr::new(b[at[0]], b[at[1]], b[at[2]], b[at[3]])
}

/// The IPv4 addresses an IPv6 address carries, and how; `None` for an ordinary address.
pub fn embedded(v6: Ipv6Addr) -> Option<(Embedding, Vec<Ipv4Addr>)> {
    let s = v6.segments();
    let b = v6.octets();
    let last = v4_at(&b, [12, 13, 14, 15]);
    if s[..5] == [0; 5] && s[5] == 0xffff {
        return Some((Embedding::Mapped, vec![last]));
    }
    // `::` and `::1` are not IPv4-compatible addresses.
    if s[..6] == [0; 6] && u32::from(last) > 1 {
        return Some((Embedding::Compatible, vec![last]));
    }
    if s[..4] == [0; 4] && s[4] == 0xffff && s[5] == 0 {
        return Some((Embedding::Translated, vec![last]));
    }
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return Some((Embedding::Nat64, vec![last]));
    }
    if s[..3] == [0x64, 0xff9b, 1] {
        // RFC 6052 §2.2: the prefix length is the translator's choice, so every position
        // whose suffix is zero (as that format requires) is a possible reading.
        let zero = |from: usize| b[from..].iter().all(|&x| x == 0);
        let mut carried = vec![last];
        if zero(13) {
            carried.push(v4_at(&b, [9, 10, 11, 12]));
        }
        if zero(12) {
            carried.push(v4_at(&b, [7, 9, 10, 11]));
        }
        if zero(11) {
            carried.push(v4_at(&b, [6, 7, 9, 10]));
        }
        return Some((Embedding::Nat64Local, carried));
    }
    if s[0] == 0x2002 {
        return Some((Embedding::SixToFour, vec![v4_at(&b, [2, 3, 4, 5])]));
    }
    if s[..2] == [0x2001, 0] {
        let client = Ipv4Addr::from(!u32::from(last));
        return Some((Embedding::Teredo, vec![v4_at(&b, [4, 5, 6, 7]), client]));
    }
    if (s[4] == 0 || s[4] == 0x0200) && s[5] == 0x5efe {
        return Some((Embedding::Isatap, vec![last]));
    }
    None
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
    fn every_ipv6_form_of_a_blocked_ipv4_address_is_refused() {
        // Each form of 127.0.0.1, 10.0.0.1 and 169.254.169.254, with the form it is read as.
        let cases: &[(&str, Embedding, &str)] = &[
            ("::ffff:0:127.0.0.1", Embedding::Translated, "127.0.0.1"),
            ("::ffff:0:7f00:1", Embedding::Translated, "127.0.0.1"),
            ("::ffff:0:10.0.0.1", Embedding::Translated, "10.0.0.1"),
            (
                "::ffff:0:169.254.169.254",
                Embedding::Translated,
                "169.254.169.254",
            ),
            ("::ffff:127.0.0.1", Embedding::Mapped, "127.0.0.1"),
            ("::127.0.0.1", Embedding::Compatible, "127.0.0.1"),
            ("64:ff9b::127.0.0.1", Embedding::Nat64, "127.0.0.1"),
            ("64:ff9b::a9fe:a9fe", Embedding::Nat64, "169.254.169.254"),
            ("64:ff9b:1::10.0.0.1", Embedding::Nat64Local, "10.0.0.1"),
            ("2002:7f00:1::1", Embedding::SixToFour, "127.0.0.1"),
            (
                "2002:a9fe:a9fe:1::8",
                Embedding::SixToFour,
                "169.254.169.254",
            ),
            // Teredo: server 65.54.227.120, client 127.0.0.1 stored inverted.
            (
                "2001:0:4136:e378:8000:63bf:80ff:fffe",
                Embedding::Teredo,
                "127.0.0.1",
            ),
            // Teredo: server 10.0.0.1.
            (
                "2001:0:a00:1:8000:63bf:f7f7:f7f7",
                Embedding::Teredo,
                "10.0.0.1",
            ),
            // ISATAP under a public prefix.
            ("2606:4700::5efe:7f00:1", Embedding::Isatap, "127.0.0.1"),
            ("2606:4700::200:5efe:a00:1", Embedding::Isatap, "10.0.0.1"),
        ];
        // Opening the IPv6 ranges themselves does not open the IPv4 addresses they carry.
        let v6_ranges = TargetPolicy::parse(
            "::ffff:0:0/96,::/96,::ffff:0:0:0/96,64:ff9b::/96,64:ff9b:1::/48,2002::/16,\
             2001::/32,2606:4700::/32",
        )
        .unwrap();
        for policy in [TargetPolicy::default(), v6_ranges] {
            for (ip, form, v4) in cases {
                let err = policy
                    .check(ip.parse().unwrap())
                    .expect_err(&format!("{ip} must be refused"));
                let v4: Ipv4Addr = v4.parse().unwrap();
                assert_eq!(err.via, Some((*form, v4)), "{ip}");
                assert!(err.to_string().contains(&v4.to_string()), "{err}");
            }
        }
        let err = TargetPolicy::default()
            .check("::ffff:0:127.0.0.1".parse().unwrap())
            .unwrap_err();
        assert_eq!(err.range, "loopback");
        assert_eq!(
            err.to_string(),
            "::ffff:0:7f00:1 is the IPv4-translated form of 127.0.0.1, a loopback address, \
             which webhooks may not reach (see BERTH_ALLOWED_TARGET_CIDRS)"
        );
    }

    #[test]
    fn an_allowed_ipv4_range_opens_its_direct_forms_only() {
        let p = TargetPolicy::parse("127.0.0.0/8").unwrap();
        for ip in ["::ffff:127.0.0.1", "::127.0.0.1", "::ffff:0:127.0.0.1"] {
            assert!(p.check(ip.parse().unwrap()).is_ok(), "{ip} must pass");
        }
        // Relayed forms stay blocked as ranges until they are opened themselves.
        for (ip, range) in [
            ("64:ff9b::127.0.0.1", "NAT64"),
            ("64:ff9b:1::127.0.0.1", "NAT64 (local-use)"),
            ("2002:7f00:1::1", "6to4"),
            ("2001:0:4136:e378:8000:63bf:80ff:fffe", "Teredo"),
        ] {
            let err = p.check(ip.parse().unwrap()).unwrap_err();
            assert_eq!((err.range, err.via), (range, None), "{ip}");
        }
        let p = TargetPolicy::parse("127.0.0.0/8,64:ff9b::/96,2002::/16,2001::/32").unwrap();
        for ip in [
            "64:ff9b::127.0.0.1",
            "2002:7f00:1::1",
            "2001:0:4136:e378:8000:63bf:80ff:fffe",
        ] {
            assert!(p.check(ip.parse().unwrap()).is_ok(), "{ip} must pass");
        }
    }

    #[test]
    fn forms_of_public_addresses_follow_their_range() {
        let default = TargetPolicy::default();
        for ip in [
            "::ffff:0:8.8.8.8",
            "::ffff:8.8.8.8",
            "2606:4700::5efe:808:808",
        ] {
            assert!(default.check(ip.parse().unwrap()).is_ok(), "{ip} must pass");
        }
        for ip in [
            "64:ff9b::8.8.8.8",
            "64:ff9b:1::8.8.8.8",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
        ] {
            let err = default.check(ip.parse().unwrap()).unwrap_err();
            assert_eq!(err.via, None, "{ip}");
        }
        let open = TargetPolicy::parse("64:ff9b::/96,64:ff9b:1::/48,2002::/16,2001::/32").unwrap();
        for ip in [
            "64:ff9b::8.8.8.8",
            "64:ff9b:1::8.8.8.8",
            "2002:808:808::1",
            "2001:0:4136:e378:8000:63bf:f7f7:f7f7",
        ] {
            assert!(open.check(ip.parse().unwrap()).is_ok(), "{ip} must pass");
        }
        // A local-use NAT64 address is refused when any RFC 6052 reading of it is blocked:
        // 10.0.0.1 at the /64 position.
        let err = open
            .check("64:ff9b:1:0:a:0:100::".parse().unwrap())
            .unwrap_err();
        assert_eq!(
            err.via,
            Some((Embedding::Nat64Local, Ipv4Addr::new(10, 0, 0, 1)))
        );
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
