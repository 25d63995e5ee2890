//! A workspace's network: its own namespace with one veth to the host.
//!
//! Addresses: the host side answers at [`GATEWAY`] (10.213.0.1, on a dummy interface
//! `perigee0` shared by every server on the host); a workspace with uid `U` is
//! `10.213.(U>>8 & 255).(U & 255)` (see [`crate::uids`]), routed as a /32 over its veth
//! `pw<U in hex>`. Inside, the veth is `eth0` with a default route to the gateway.
//!
//! nftables: one table per server (`inet perigee_<tag>`, tag from the data directory), rebuilt
//! at every start, whose set `ifs` holds the host sides of that server's workspaces:
//!
//! - prerouting: the edge's ports at the gateway are translated to where the edge listens
//!   (often 127.0.0.1, hence `route_localnet` on the veth), and DNS at the gateway to a
//!   loopback resolver when the host uses one;
//! - input: from a workspace, only those translated connections (and replies) reach the host;
//!   everything else is dropped, whatever address a host service binds (0.0.0.0, ::, the
//!   host's own addresses, link-local IPv6);
//! - forward: nothing between workspaces (of any server), nothing to cloud metadata, no new
//!   connection into a workspace from outside; the rest goes out masqueraded.

use std::net::{Ipv4Addr, SocketAddrV4};
use std::path::{Path, PathBuf};

use crate::tools::{run, run_input, sysctl};
use crate::Error;

/// The host side of every workspace veth.
pub const GATEWAY: Ipv4Addr = Ipv4Addr::new(10, 213, 0, 1);
/// The workspaces' subnet.
pub const SUBNET: &str = "10.213.0.0/16";
/// The interface holding [`GATEWAY`] (a dummy, or an empty bridge where there is no dummy).
const GATEWAY_LINK: &str = "perigee0";
/// Where `ip netns exec` finds files to bind over `/etc` for a namespace.
const NETNS_ETC: &str = "/etc/netns";

/// Cloud metadata services, unreachable from workspaces.
const METADATA: &str = "169.254.0.0/16, 100.100.100.200";

/// Whether the low 16 bits of a uid make a workspace address (not the subnet's first two
/// nor its broadcast).
pub fn usable_low(low: u32) -> bool {
    low > 1 && low < 0xffff
}

/// A workspace's address.
pub fn address(uid: u32) -> Ipv4Addr {
    let low = uid & 0xffff;
    Ipv4Addr::new(10, 213, (low >> 8) as u8, (low & 0xff) as u8)
}

/// The network namespace of the workspace with `uid`.
pub fn netns_name(uid: u32) -> String {
    format!("perigee-{uid}")
}

/// The host side of its veth (at most 15 bytes: `pw` + 8 hex digits).
pub fn veth_name(uid: u32) -> String {
    format!("pw{uid:x}")
}

/// Transport of an edge port.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Proto {
    /// TCP (HTTPS, HTTP/2 agent links, TURN over TCP/TLS).
    Tcp,
    /// UDP (QUIC agent links, TURN).
    Udp,
}

impl Proto {
    fn as_str(self) -> &'static str {
        match self {
            Self::Tcp => "tcp",
            Self::Udp => "udp",
        }
    }
}

/// An edge port workspaces reach at the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EdgePort {
    /// TCP or UDP.
    pub proto: Proto,
    /// The port at [`GATEWAY`].
    pub port: u16,
    /// Where the edge listens for it.
    pub to: SocketAddrV4,
}

/// The account a workspace's processes run as.
#[derive(Debug, Clone)]
pub struct Account {
    /// User name (`whoami`).
    pub name: String,
    /// Uid (and gid).
    pub uid: u32,
    /// Home directory.
    pub home: PathBuf,
    /// Login shell.
    pub shell: PathBuf,
    /// Its own `/tmp` (the host's is shared by everyone on it); `var-tmp` beside it is its
    /// `/var/tmp`.
    pub tmp: PathBuf,
}

/// One server's workspace network: its nftables table and what workspaces may reach.
#[derive(Debug, Clone)]
pub struct Network {
    tag: String,
    edge: Vec<EdgePort>,
    /// Names that resolve to the gateway inside workspaces (the access URL's host, so
    /// agents dial it by the name its certificate carries).
    aliases: Vec<String>,
    dns: Dns,
}

/// How workspaces resolve names.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Dns {
    /// The host's `resolv.conf` names a resolver workspaces reach through the gateway.
    Host,
    /// The host's resolver is on its loopback: workspaces ask the gateway, translated to it.
    Loopback(Ipv4Addr, String),
    /// The operator named one (`--workspace-dns`): this `resolv.conf`.
    Fixed(String),
}

impl Network {
    /// The network of the server whose data directory is `key`, with the edge's ports.
    /// `dns`: the resolver workspaces use (default: the host's, through the gateway when it
    /// is on the host's loopback).
    pub fn new(
        key: &Path,
        edge: Vec<EdgePort>,
        aliases: Vec<String>,
        dns: Option<std::net::IpAddr>,
    ) -> Self {
        let resolv = std::fs::read_to_string("/etc/resolv.conf").unwrap_or_default();
        Self {
            tag: tag(key),
            edge,
            aliases,
            dns: match dns {
                Some(ip) => Dns::Fixed(format!("nameserver {ip}\n")),
                None => plan_dns(&resolv),
            },
        }
    }

    /// The nftables table's name.
    pub fn table(&self) -> String {
        format!("perigee_{}", self.tag)
    }

    /// Prepares the host (forwarding on, the gateway address) and rebuilds this server's
    /// table for the workspaces with these uids.
    pub fn install(&self, uids: &[u32]) -> Result<(), Error> {
        sysctl("net/ipv4/ip_forward", "1")?;
        if !Path::new("/sys/class/net").join(GATEWAY_LINK).exists() {
            // Another server may make it at the same moment: only a failed check counts.
            if run("ip", &["link", "add", GATEWAY_LINK, "type", "dummy"]).is_err() {
                // Kernels without the dummy module: an empty bridge holds an address as well.
                let _ = run("ip", &["link", "add", GATEWAY_LINK, "type", "bridge"]);
            }
        }
        run(
            "ip",
            &[
                "addr",
                "replace",
                &format!("{GATEWAY}/32"),
                "dev",
                GATEWAY_LINK,
            ],
        )?;
        run("ip", &["link", "set", GATEWAY_LINK, "up"])?;
        let ifs: Vec<String> = uids.iter().map(|u| veth_name(*u)).collect();
        run_input("nft", &["-f", "-"], Some(&self.ruleset(&ifs))).map(drop)
    }

    /// The table, replacing any earlier one of this server.
    fn ruleset(&self, ifs: &[String]) -> String {
        let t = self.table();
        let mut pre = String::new();
        for e in &self.edge {
            pre += &format!(
                "    iifname @ifs ip daddr {GATEWAY} {} dport {} dnat ip to {}\n",
                e.proto.as_str(),
                e.port,
                e.to
            );
        }
        if let Dns::Loopback(resolver, _) = &self.dns {
            for p in ["tcp", "udp"] {
                pre += &format!(
                    "    iifname @ifs ip daddr {GATEWAY} {p} dport 53 dnat ip to {resolver}:53\n"
                );
            }
        }
        // What the translations above lead to, and nothing else: another table's rules (a
        // stale one naming a veth since reused) cannot open a hole in this one.
        let mut targets: Vec<String> = self
            .edge
            .iter()
            .map(|e| format!("{} . {} . {}", e.proto.as_str(), e.to.ip(), e.to.port()))
            .collect();
        if let Dns::Loopback(resolver, _) = &self.dns {
            targets.push(format!("tcp . {resolver} . 53"));
            targets.push(format!("udp . {resolver} . 53"));
        }
        let translated = if targets.is_empty() {
            String::new()
        } else {
            format!(
                "    iifname @ifs ct status dnat meta l4proto . ip daddr . th dport {{ {} }} accept\n",
                targets.join(", ")
            )
        };
        let elements = if ifs.is_empty() {
            String::new()
        } else {
            let quoted: Vec<String> = ifs.iter().map(|i| format!("\"{i}\"")).collect();
            format!("    elements = {{ {} }}\n", quoted.join(", "))
        };
        format!(
            "table inet {t}\n\
             delete table inet {t}\n\
             table inet {t} {{\n\
             \x20 set ifs {{\n    type ifname\n{elements}  }}\n\
             \x20 chain ws_prerouting {{\n    type nat hook prerouting priority dstnat; policy accept;\n{pre}  }}\n\
             \x20 chain ws_input {{\n    type filter hook input priority filter; policy accept;\n\
             \x20   iifname @ifs ct state established,related accept\n\
             {translated}\
             \x20   iifname @ifs counter drop\n  }}\n\
             \x20 chain ws_forward {{\n    type filter hook forward priority filter; policy accept;\n\
             \x20   iifname @ifs oifname \"pw*\" counter drop\n\
             \x20   iifname @ifs ip daddr {{ {METADATA} }} counter drop\n\
             \x20   iifname @ifs meta nfproto ipv6 counter drop\n\
             \x20   oifname @ifs ct state established,related accept\n\
             \x20   oifname @ifs counter drop\n\
             \x20   iifname @ifs accept\n  }}\n\
             \x20 chain ws_postrouting {{\n    type nat hook postrouting priority srcnat; policy accept;\n\
             \x20   ip saddr {SUBNET} oifname != \"pw*\" masquerade\n  }}\n\
             }}\n"
        )
    }

    /// Brings up the namespace of `account`'s workspace (kept if it exists: a restarted
    /// server finds it) and lets this server's rules cover its veth.
    pub fn up(&self, account: &Account) -> Result<(), Error> {
        let uid = account.uid;
        let (ns, veth, addr) = (netns_name(uid), veth_name(uid), address(uid));
        self.write_etc(&ns, account)?;
        let host_side = Path::new("/sys/class/net").join(&veth);
        if !Path::new("/run/netns").join(&ns).exists() {
            run("ip", &["netns", "add", &ns])?;
            // A host side left by a namespace that still lives (something held it) leads
            // nowhere: make the pair afresh.
            if host_side.exists() {
                run("ip", &["link", "del", &veth])?;
            }
        }
        if !host_side.exists() {
            run(
                "ip",
                &[
                    "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
                ],
            )?;
        }
        // No IPv6 on the host side (link-local addresses would reach host services), and
        // the edge's translated loopback address is accepted from this interface only.
        sysctl(&format!("net/ipv6/conf/{veth}/disable_ipv6"), "1")?;
        sysctl(&format!("net/ipv4/conf/{veth}/route_localnet"), "1")?;
        run("ip", &["link", "set", &veth, "up"])?;
        let gw = GATEWAY.to_string();
        run(
            "ip",
            &[
                "route",
                "replace",
                &format!("{addr}/32"),
                "dev",
                &veth,
                "src",
                &gw,
            ],
        )?;
        let mac = std::fs::read_to_string(format!("/sys/class/net/{veth}/address"))
            .map_err(|e| Error::io("reading the address of", &veth, e))?;
        let inside: [&[&str]; 5] = [
            &["link", "set", "lo", "up"],
            &["addr", "replace", &format!("{addr}/32"), "dev", "eth0"],
            &["link", "set", "eth0", "up"],
            // The gateway's link address is fixed: no ARP, whatever the host's arp_ignore.
            &[
                "neigh",
                "replace",
                &gw,
                "lladdr",
                mac.trim(),
                "dev",
                "eth0",
                "nud",
                "permanent",
            ],
            &[
                "route", "replace", "default", "via", &gw, "dev", "eth0", "onlink",
            ],
        ];
        for args in inside {
            let mut full = vec!["-n", ns.as_str()];
            full.extend_from_slice(args);
            run("ip", &full)?;
        }
        let add = format!("add element inet {} ifs {{ \"{veth}\" }}\n", self.table());
        run_input("nft", &["-f", "-"], Some(&add)).map(drop)
    }

    /// Removes the workspace's namespace (and so its veth) and its `/etc` files.
    pub fn down(&self, uid: u32) -> Result<(), Error> {
        let (ns, veth) = (netns_name(uid), veth_name(uid));
        let del = format!(
            "delete element inet {} ifs {{ \"{veth}\" }}\n",
            self.table()
        );
        let _ = run_input("nft", &["-f", "-"], Some(&del));
        if Path::new("/run/netns").join(&ns).exists() {
            run("ip", &["netns", "del", &ns])?;
        }
        let etc = Path::new(NETNS_ETC).join(&ns);
        match std::fs::remove_dir_all(&etc) {
            Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
                Err(Error::io("removing", etc, e))
            }
            _ => Ok(()),
        }
    }

    /// Files `ip netns exec` binds over `/etc` in the workspace: `passwd` and `group` with
    /// its user (so `whoami` and `~` work), `hosts` with the aliases, and `resolv.conf`
    /// when the host's resolver is on its loopback.
    fn write_etc(&self, ns: &str, a: &Account) -> Result<(), Error> {
        let dir = Path::new(NETNS_ETC).join(ns);
        std::fs::create_dir_all(&dir).map_err(|e| Error::io("creating", &dir, e))?;
        // Root only: `ip netns exec` binds the files over /etc for the workspace, which so
        // reads its own; no workspace lists another's user name here.
        {
            use std::os::unix::fs::PermissionsExt as _;
            std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))
                .map_err(|e| Error::io("securing", &dir, e))?;
        }
        let write = |name: &str, text: String| {
            let p = dir.join(name);
            std::fs::write(&p, text).map_err(|e| Error::io("writing", p, e))
        };
        let host = |f: &str| std::fs::read_to_string(Path::new("/etc").join(f)).unwrap_or_default();
        write(
            "passwd",
            with_entry(
                &host("passwd"),
                &a.name,
                a.uid,
                &format!(
                    "{}:x:{}:{}:perigee workspace:{}:{}",
                    a.name,
                    a.uid,
                    a.uid,
                    a.home.display(),
                    a.shell.display()
                ),
            ),
        )?;
        write(
            "group",
            with_entry(
                &host("group"),
                &a.name,
                a.uid,
                &format!("{}:x:{}:", a.name, a.uid),
            ),
        )?;
        let mut hosts = host("hosts");
        for alias in &self.aliases {
            hosts += &format!("{GATEWAY} {alias}\n");
        }
        write("hosts", hosts)?;
        if let Dns::Loopback(_, text) | Dns::Fixed(text) = &self.dns {
            write("resolv.conf", text.clone())?;
        }
        Ok(())
    }
}

/// Removes a namespace and `/etc` files left with `uid`'s number by a workspace that was
/// never deleted (its server's table is gone or rebuilt without it).
pub(crate) fn remove_stale(uid: u32) -> Result<(), Error> {
    let ns = netns_name(uid);
    if Path::new("/run/netns").join(&ns).exists() {
        // Whatever still runs in it (as any user) goes with it.
        let pids = run_input("ip", &["netns", "pids", &ns], None).unwrap_or_default();
        for pid in pids.split_whitespace() {
            let _ = run("kill", &["-KILL", pid]);
        }
        run("ip", &["netns", "del", &ns])?;
    }
    let veth = veth_name(uid);
    if Path::new("/sys/class/net").join(&veth).exists() {
        let _ = run("ip", &["link", "del", &veth]);
    }
    // Tables of servers gone without deleting their workspaces still name this veth: the
    // next workspace with the number must not fall under their rules.
    let ruleset = run_input("nft", &["list", "ruleset"], None).unwrap_or_default();
    let script: String = tables_naming(&ruleset, &veth)
        .iter()
        .map(|t| format!("delete element inet {t} ifs {{ \"{veth}\" }}\n"))
        .collect();
    if !script.is_empty() {
        run_input("nft", &["-f", "-"], Some(&script))?;
    }
    let _ = std::fs::remove_dir_all(Path::new(NETNS_ETC).join(&ns));
    Ok(())
}

/// The perigee tables in `ruleset` (`nft list ruleset`) whose set `ifs` names `veth`.
fn tables_naming(ruleset: &str, veth: &str) -> Vec<String> {
    let quoted = format!("\"{veth}\"");
    let mut out: Vec<String> = Vec::new();
    let mut table: Option<&str> = None;
    for line in ruleset.lines() {
        let l = line.trim();
        if let Some(rest) = l.strip_prefix("table ") {
            // `table inet perigee_… {`: only ours.
            let name = rest.trim_end_matches('{').trim();
            table = name
                .strip_prefix("inet ")
                .filter(|n| n.starts_with("perigee_"));
            continue;
        }
        let Some(t) = table else { continue };
        let element_line = l.starts_with("elements = {") || l.starts_with('"');
        let names = l.split([',', '{', '}', ' ']).map(str::trim);
        if element_line && names.into_iter().any(|w| w == quoted) && !out.iter().any(|o| o == t) {
            out.push(t.to_owned());
        }
    }
    out
}

/// `file` (passwd or group lines) without entries of that name or id, plus `entry`.
fn with_entry(file: &str, name: &str, id: u32, entry: &str) -> String {
    let mut out: String = file
        .lines()
        .filter(|l| {
            let mut f = l.split(':');
            let n = f.next().unwrap_or("");
            let i = f.nth(1).and_then(|v| v.parse::<u32>().ok());
            n != name && i != Some(id)
        })
        .map(|l| format!("{l}\n"))
        .collect();
    out += entry;
    out.push('\n');
    out
}

/// Where workspaces send DNS: the host's resolvers when reachable over the network, the
/// gateway (translated) when the host's are on its loopback.
fn plan_dns(resolv: &str) -> Dns {
    let servers: Vec<&str> = resolv
        .lines()
        .filter_map(|l| l.trim().strip_prefix("nameserver"))
        .map(str::trim)
        .collect();
    let loopback = |s: &&str| {
        s.parse::<std::net::IpAddr>()
            .is_ok_and(|ip| ip.is_loopback())
    };
    if servers.is_empty() || !servers.iter().all(loopback) {
        return Dns::Host;
    }
    let Some(v4) = servers.iter().find_map(|s| s.parse::<Ipv4Addr>().ok()) else {
        return Dns::Host;
    };
    let kept: String = resolv
        .lines()
        .filter(|l| !l.trim().starts_with("nameserver"))
        .map(|l| format!("{l}\n"))
        .collect();
    Dns::Loopback(v4, format!("{kept}nameserver {GATEWAY}\n"))
}

/// The nftables table of the server whose data directory is `key` (for tools and tests that
/// clean up after a server whose workspaces are all gone).
pub fn table_name(key: &Path) -> String {
    let key = std::fs::canonicalize(key).unwrap_or_else(|_| key.to_owned());
    format!("perigee_{}", tag(&key))
}

/// A short stable tag for a server (its data directory), naming its table.
fn tag(key: &Path) -> String {
    // FNV-1a: stable across builds and platforms, enough to tell servers apart.
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for b in key.as_os_str().as_encoded_bytes() {
        h ^= u64::from(*b);
        h = h.wrapping_mul(0x0100_0000_01b3);
    }
    format!("{:08x}", h as u32)
}

/// Makes and removes a namespace, a veth and a table like a workspace's.
pub(crate) fn probe() -> Result<(), Error> {
    let n = std::process::id() % 100_000;
    let (ns, veth) = (format!("perigee-probe-{n}"), format!("pwprobe{n}"));
    let cleanup = |ns: &str| {
        let _ = run("ip", &["netns", "del", ns]);
    };
    cleanup(&ns);
    let result = (|| {
        run("ip", &["netns", "add", &ns])?;
        run(
            "ip",
            &[
                "link", "add", &veth, "type", "veth", "peer", "name", "eth0", "netns", &ns,
            ],
        )?;
        let net = Network {
            tag: format!("probe{n}"),
            edge: vec![EdgePort {
                proto: Proto::Tcp,
                port: 443,
                to: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 3000),
            }],
            aliases: Vec::new(),
            dns: Dns::Host,
        };
        run_input(
            "nft",
            &["-c", "-f", "-"],
            Some(&net.ruleset(std::slice::from_ref(&veth))),
        )
        .map(drop)
    })();
    cleanup(&ns);
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_names_follow_the_uid() {
        assert_eq!(address(200_002), Ipv4Addr::new(10, 213, 13, 66));
        assert_eq!(veth_name(u32::MAX - 2).len(), 10);
        assert!(veth_name(u32::MAX).len() <= 15);
        assert!(!usable_low(0) && !usable_low(1) && !usable_low(0xffff) && usable_low(2));
    }

    #[test]
    fn dns_goes_through_the_gateway_only_for_a_loopback_resolver() {
        assert_eq!(plan_dns("nameserver 10.255.255.53\n"), Dns::Host);
        assert_eq!(
            plan_dns("nameserver 127.0.0.53\nnameserver 1.1.1.1\n"),
            Dns::Host
        );
        let Dns::Loopback(ip, text) = plan_dns("search corp\nnameserver 127.0.0.53\n") else {
            panic!("a loopback resolver must be translated");
        };
        assert_eq!(ip, Ipv4Addr::new(127, 0, 0, 53));
        assert_eq!(text, "search corp\nnameserver 10.213.0.1\n");
    }

    #[test]
    fn stale_tables_naming_a_veth_are_found() {
        let ruleset = "table inet perigee_aaaa {\n\tset ifs {\n\t\ttype ifname\n\t\telements = { \"pw30d40\", \"pw30d41\" }\n\t}\n}\n\
                       table inet perigee_bbbb {\n\tset ifs {\n\t\ttype ifname\n\t\telements = { \"pw30d410\",\n\t\t\t     \"pw30d41\" }\n\t}\n}\n\
                       table inet other {\n\tset ifs {\n\t\ttype ifname\n\t\telements = { \"pw30d41\" }\n\t}\n}\n";
        assert_eq!(
            tables_naming(ruleset, "pw30d41"),
            vec!["perigee_aaaa", "perigee_bbbb"]
        );
        assert_eq!(tables_naming(ruleset, "pw30d40"), vec!["perigee_aaaa"]);
        assert!(tables_naming(ruleset, "pw1").is_empty());
    }

    #[test]
    fn passwd_gets_exactly_one_entry_for_the_workspace_user() {
        let host = "root:x:0:0::/root:/bin/bash\ndev:x:1000:1000::/home/dev:/bin/sh\nold:x:200002:200002::/x:/bin/sh\n";
        let out = with_entry(host, "dev", 200_002, "dev:x:200002:200002::/w:/bin/bash");
        assert_eq!(
            out,
            "root:x:0:0::/root:/bin/bash\ndev:x:200002:200002::/w:/bin/bash\n"
        );
    }

    #[test]
    fn the_ruleset_drops_by_default_and_translates_only_edge_ports() {
        let net = Network {
            tag: "t".into(),
            edge: vec![EdgePort {
                proto: Proto::Udp,
                port: 3478,
                to: SocketAddrV4::new(Ipv4Addr::LOCALHOST, 40000),
            }],
            aliases: Vec::new(),
            dns: Dns::Host,
        };
        let r = net.ruleset(&["pw30d42".into()]);
        assert!(
            r.contains("udp dport 3478 dnat ip to 127.0.0.1:40000"),
            "{r}"
        );
        assert!(r.contains("iifname @ifs counter drop"), "{r}");
        // Only what this table translates is let in: another table's translation is not.
        assert!(r.contains("ct status dnat meta l4proto . ip daddr . th dport { udp . 127.0.0.1 . 40000 } accept"), "{r}");
        assert!(!r.contains("ct status dnat accept"), "{r}");
        assert!(r.contains("elements = { \"pw30d42\" }"), "{r}");
        assert!(!r.contains("dport 53"), "{r}");
    }
}
