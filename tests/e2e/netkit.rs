//! Network namespaces for tests: `ip` with a clear failure, a namespace joined to the host by
//! a veth, a listener inside one (an isolated workspace's), UDP dropped in one.

use std::process::{Command, Stdio};

/// A network namespace of the test's, joined to this host by a veth: `NET.1` on the host's
/// side, `NET.2` inside (`addr`), with its default route back through the host. Removed with
/// its `/etc/netns` files on drop.
pub struct LinkedNetns {
    pub ns: String,
    pub addr: String,
}

impl LinkedNetns {
    /// Namespace `ns` on /24 `net` (e.g. `10.77.61`); `link` names the veth's ends.
    pub fn new(ns: &str, link: &str, net: &str) -> Self {
        let (host, inner) = (format!("{link}h"), format!("{link}i"));
        let _ = Command::new("ip")
            .args(["netns", "del", ns])
            .stderr(Stdio::null())
            .status();
        ip(&["netns", "add", ns]);
        ip(&[
            "link", "add", &host, "type", "veth", "peer", "name", &inner, "netns", ns,
        ]);
        ip(&["addr", "add", &format!("{net}.1/24"), "dev", &host]);
        ip(&["link", "set", &host, "up"]);
        ip(&[
            "-n",
            ns,
            "addr",
            "add",
            &format!("{net}.2/24"),
            "dev",
            &inner,
        ]);
        ip(&["-n", ns, "link", "set", &inner, "up"]);
        ip(&["-n", ns, "link", "set", "lo", "up"]);
        ip(&[
            "-n",
            ns,
            "route",
            "add",
            "default",
            "via",
            &format!("{net}.1"),
        ]);
        Self {
            ns: ns.to_owned(),
            addr: format!("{net}.2"),
        }
    }
}

impl Drop for LinkedNetns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.ns]).status();
        let _ = std::fs::remove_dir_all(format!("/etc/netns/{}", self.ns));
    }
}

/// A TCP listener on 127.0.0.1 inside network namespace `ns` (`testkit::bind_in_netns`).
pub fn bind_in_netns(ns: Option<&str>) -> std::net::TcpListener {
    testkit::bind_in_netns(ns).expect("bind in the workspace's namespace")
}

/// Runs `ip ARGS`, failing the test with a hint when it does not succeed.
pub fn ip(args: &[&str]) {
    let st = Command::new("ip")
        .args(args)
        .status()
        .expect("ip (iproute2)");
    assert!(st.success(), "ip {args:?} failed (this test needs root)");
}

/// Drops every UDP packet in and out of network namespace `ns` (an nftables table named
/// `perigee_test`).
pub fn drop_udp_in(ns: &str) {
    let rules = "table inet perigee_test {\n chain out { type filter hook output priority 0; meta l4proto udp drop; }\n chain in { type filter hook input priority 0; meta l4proto udp drop; }\n}\n";
    let mut nft = Command::new("ip")
        .args(["netns", "exec", ns, "nft", "-f", "-"])
        .stdin(Stdio::piped())
        .spawn()
        .expect("nft (apt install nftables)");
    {
        use std::io::Write as _;
        nft.stdin
            .take()
            .expect("stdin")
            .write_all(rules.as_bytes())
            .expect("rules");
    }
    assert!(nft.wait().expect("nft").success(), "nft ruleset failed");
}
