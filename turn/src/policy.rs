//! Which peers a TURN allocation may reach. An open relay on an edge would let anyone reach
//! the edge's own network (loopback services, the cloud metadata endpoint, private
//! addresses), so those peers are refused by default (403) on every path, in every spelling
//! (IPv4-mapped, -compatible, -translated, NAT64 and 6to4 forms are judged by the IPv4
//! address inside). An operator may allow ranges explicitly.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::str::FromStr;

/// An address range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Cidr {
    addr: IpAddr,
    prefix: u8,
}

impl Cidr {
    const fn v4(a: [u8; 4], prefix: u8) -> Self {
        Self {
            addr: IpAddr::V4(Ipv4Addr::new(a[0], a[1], a[2], a[3])),
            prefix,
        }
    }

    const fn v6(s: [u16; 8], prefix: u8) -> Self {
        Self {
            addr: IpAddr::V6(Ipv6Addr::new(
                s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7],
            )),
            prefix,
        }
    }

    /// Whether `ip` is in the range (same family only).
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        let (a, p) = s.split_once('/').unwrap_or((s, ""));
        let addr: IpAddr = a
            .parse()
            .map_err(|_| format!("{s:?}: not an IP address or CIDR range"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix = if p.is_empty() {
            max
        } else {
            p.parse::<u8>()
                .ok()
                .filter(|p| *p <= max)
                .ok_or_else(|| format!("{s:?}: prefix length must be 0-{max}"))?
        };
        Ok(Self { addr, prefix })
    }
}

/// IPv4 ranges refused by default, with the reason given in logs.
const REFUSED_V4: &[(Cidr, &str)] = &[
    (Cidr::v4([0, 0, 0, 0], 8), "this-network"),
    (Cidr::v4([10, 0, 0, 0], 8), "private"),
    (Cidr::v4([100, 64, 0, 0], 10), "CGNAT"),
    (Cidr::v4([127, 0, 0, 0], 8), "loopback"),
    (Cidr::v4([169, 254, 0, 0], 16), "link-local"),
    (Cidr::v4([172, 16, 0, 0], 12), "private"),
    (Cidr::v4([192, 0, 0, 0], 24), "IETF protocol assignments"),
    (Cidr::v4([192, 0, 2, 0], 24), "documentation"),
    (Cidr::v4([192, 88, 99, 0], 24), "reserved (6to4 relay)"),
    (Cidr::v4([192, 168, 0, 0], 16), "private"),
    (Cidr::v4([198, 18, 0, 0], 15), "benchmarking"),
    (Cidr::v4([198, 51, 100, 0], 24), "documentation"),
    (Cidr::v4([203, 0, 113, 0], 24), "documentation"),
    (Cidr::v4([224, 0, 0, 0], 4), "multicast"),
    (Cidr::v4([240, 0, 0, 0], 4), "reserved"),
];

/// IPv6 ranges refused by default (forms embedding IPv4 are handled before these).
const REFUSED_V6: &[(Cidr, &str)] = &[
    (Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 128), "unspecified"),
    (Cidr::v6([0, 0, 0, 0, 0, 0, 0, 1], 128), "loopback"),
    (
        Cidr::v6([0, 0, 0, 0, 0, 0, 0, 0], 96),
        "IPv4-compatible (deprecated)",
    ),
    (
        Cidr::v6([0x64, 0xff9b, 1, 0, 0, 0, 0, 0], 48),
        "NAT64 local use",
    ),
    (Cidr::v6([0x100, 0, 0, 0, 0, 0, 0, 0], 64), "discard-only"),
    (
        Cidr::v6([0x2001, 0, 0, 0, 0, 0, 0, 0], 23),
        "IETF protocol assignments",
    ),
    (
        Cidr::v6([0x2001, 0xdb8, 0, 0, 0, 0, 0, 0], 32),
        "documentation",
    ),
    (Cidr::v6([0x3fff, 0, 0, 0, 0, 0, 0, 0], 20), "documentation"),
    (Cidr::v6([0xfc00, 0, 0, 0, 0, 0, 0, 0], 7), "unique local"),
    (Cidr::v6([0xfe80, 0, 0, 0, 0, 0, 0, 0], 10), "link-local"),
    (Cidr::v6([0xfec0, 0, 0, 0, 0, 0, 0, 0], 10), "site-local"),
    (Cidr::v6([0xff00, 0, 0, 0, 0, 0, 0, 0], 8), "multicast"),
];

/// The IPv4 address an IPv6 address stands for, in the forms that embed one.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let o = ip.octets();
    let tail = Ipv4Addr::new(o[12], o[13], o[14], o[15]);
    match s {
        // ::ffff:a.b.c.d (mapped) and ::a.b.c.d (compatible, deprecated; not :: or ::1).
        [0, 0, 0, 0, 0, 0xffff, _, _] => Some(tail),
        [0, 0, 0, 0, 0, 0, hi, _] if hi != 0 => Some(tail),
        // ::ffff:0:a.b.c.d (translated, RFC 2765).
        [0, 0, 0, 0, 0xffff, 0, _, _] => Some(tail),
        // 64:ff9b::a.b.c.d (NAT64 well-known prefix).
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(tail),
        // 2002:AABB:CCDD::/48 (6to4).
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::from((u32::from(hi) << 16) | u32::from(lo))),
        _ => None,
    }
}

/// The peer policy of one TURN server.
#[derive(Debug, Clone, Default)]
pub struct PeerPolicy {
    allow: Vec<Cidr>,
}

impl PeerPolicy {
    /// The default policy plus ranges the operator allows.
    pub fn new(allow: Vec<Cidr>) -> Self {
        Self { allow }
    }

    /// `Err(reason)` when a peer at `ip` is refused.
    pub fn check(&self, ip: IpAddr) -> Result<(), &'static str> {
        if self.allow.iter().any(|c| c.contains(ip)) {
            return Ok(());
        }
        match ip {
            IpAddr::V4(v4) => match REFUSED_V4.iter().find(|(c, _)| c.contains(ip)) {
                Some((_, why)) => Err(why),
                None if v4.is_broadcast() => Err("broadcast"),
                None => Ok(()),
            },
            IpAddr::V6(v6) => {
                if let Some(v4) = embedded_v4(v6) {
                    // Judged as the IPv4 address it reaches (allow-listing applies to it too).
                    return self.check(IpAddr::V4(v4));
                }
                match REFUSED_V6.iter().find(|(c, _)| c.contains(ip)) {
                    Some((_, why)) => Err(why),
                    None => Ok(()),
                }
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn refuses_every_listed_range_in_every_spelling() {
        let p = PeerPolicy::default();
        for bad in [
            "127.0.0.1",
            "127.255.255.254",
            "0.0.0.0",
            "0.1.2.3",
            "10.1.2.3",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "100.64.0.1",
            "100.127.255.255",
            "169.254.169.254",
            "224.0.0.1",
            "239.255.255.250",
            "240.0.0.1",
            "255.255.255.255",
            "192.0.2.1",
            "198.51.100.1",
            "203.0.113.9",
            "198.18.0.1",
            "::",
            "::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:0.0.0.0",
            "::ffff:0:10.0.0.1",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "64:ff9b::a9fe:a9fe",
            "2002:7f00:1::1",
            "fe80::1",
            "fc00::1",
            "fd12:3456::1",
            "ff02::1",
            "2001:db8::1",
            "3fff::1",
            "fec0::1",
            "100::1",
            "::2",
        ] {
            let ip: IpAddr = bad.parse().unwrap();
            assert!(p.check(ip).is_err(), "{bad} should be refused");
        }
        for good in [
            "8.8.8.8",
            "1.1.1.1",
            "2606:4700::1111",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "172.32.0.1",
            "100.128.0.1",
        ] {
            let ip: IpAddr = good.parse().unwrap();
            assert_eq!(p.check(ip), Ok(()), "{good} should be allowed");
        }
    }

    #[test]
    fn operators_allow_ranges_explicitly() {
        let p = PeerPolicy::new(vec![
            "10.20.0.0/16".parse().unwrap(),
            "::1".parse().unwrap(),
        ]);
        assert_eq!(p.check("10.20.3.4".parse().unwrap()), Ok(()));
        assert_eq!(p.check("::ffff:10.20.3.4".parse().unwrap()), Ok(()));
        assert!(p.check("10.21.0.1".parse().unwrap()).is_err());
        assert_eq!(p.check("::1".parse().unwrap()), Ok(()));
        assert!("10.0.0.0/33".parse::<Cidr>().is_err());
        assert!("nope".parse::<Cidr>().is_err());
        assert!("0.0.0.0/0"
            .parse::<Cidr>()
            .unwrap()
            .contains("1.2.3.4".parse().unwrap()));
    }
}
