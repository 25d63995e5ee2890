//! Workspace isolation (issue 18), written as the attack: a plain member's workspace on the
//! built-in provider of a server run as root tries to read the server's secrets and
//! environment, another member's files, and to reach host services and another workspace's
//! server over every address it can name; each attempt is refused, while the member's own
//! workspace still works (SSH, `whoami`, `$HOME`, tunnels to its own ports, DNS and the
//! internet — played by a server in a namespace of the test's).

use std::io::{Read as _, Write as _};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use crate::harness::{run_with_stdin, wait_until, Server, TempDir, BIN};

const MARKER: &str = "PERIGEE_TEST_MARKER";
const MARKER_VALUE: &str = "server-secret-1d9f7a";

/// A user of the server with a home (perigee config, SSH key) of their own.
struct Member<'a> {
    server: &'a Server,
    token: String,
    home: PathBuf,
}

impl<'a> Member<'a> {
    fn new(server: &'a Server, tmp: &Path, name: &str) -> Self {
        let token = server
            .ok(&["users", "create", name, "--org", "default"])
            .trim()
            .to_owned();
        let home = tmp.join(format!("laptop-{name}"));
        std::fs::create_dir_all(home.join(".ssh")).expect("home");
        let m = Self {
            server,
            token,
            home,
        };
        m.ok(&["config-ssh"]);
        m
    }

    fn cmd(&self, prog: &str) -> Command {
        let mut c = Command::new(prog);
        self.server.session_env(&mut c);
        c.env("PERIGEE_TOKEN", &self.token)
            .env("HOME", &self.home)
            .env("PERIGEE_CONFIG_DIR", self.home.join(".config/perigee"))
            .stdin(Stdio::null());
        c
    }

    fn run(&self, args: &[&str]) -> Output {
        self.cmd(BIN).args(args).output().expect("perigee")
    }

    fn ok(&self, args: &[&str]) -> String {
        let o = self.run(args);
        assert!(
            o.status.success(),
            "perigee {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        String::from_utf8_lossy(&o.stdout).into_owned()
    }

    /// Creates a workspace and waits for its agent.
    fn create(&self, ws: &str) {
        self.ok(&["create", ws]);
        wait_until("the agent to connect", Duration::from_secs(30), || {
            let list: serde_json::Value =
                serde_json::from_str(&self.ok(&["ls", "-o", "json"])).expect("ls");
            list.as_array()
                .and_then(|a| a.iter().find(|w| w["name"] == ws).cloned())
                .is_some_and(|w| w["agent"]["transport"].is_string())
        });
    }

    /// Runs `script` in the workspace over SSH; returns (success, stdout, stderr).
    fn sh(&self, ws: &str, script: &str) -> (bool, String, String) {
        let o = self
            .cmd(BIN)
            .args(["ssh", ws, "--", script])
            .output()
            .expect("ssh");
        (
            o.status.success(),
            String::from_utf8_lossy(&o.stdout).into_owned(),
            String::from_utf8_lossy(&o.stderr).into_owned(),
        )
    }

    fn sh_ok(&self, ws: &str, script: &str) -> String {
        let (ok, out, err) = self.sh(ws, script);
        assert!(ok, "{script}: {err}");
        out
    }
}

/// A TCP service on the host, bound to every address, that records any connection.
fn host_service() -> (u16, Arc<AtomicBool>) {
    let l = TcpListener::bind("0.0.0.0:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    let hit = Arc::new(AtomicBool::new(false));
    let h = hit.clone();
    std::thread::spawn(move || {
        for mut s in l.incoming().flatten() {
            h.store(true, Ordering::SeqCst);
            let _ = s.write_all(b"HOST-SERVICE\n");
        }
    });
    (port, hit)
}

/// A namespace of the test's playing "the internet": a TCP greeter and a DNS server that
/// answers `outside.test`.
struct Outside {
    /// Dropped after `Drop::drop` ended the processes in it.
    _net: crate::harness::LinkedNetns,
    addr: String,
    children: Vec<std::process::Child>,
}

const DNS_PY: &str = r#"
import socket, struct, sys
ip = bytes(int(x) for x in sys.argv[1].split('.'))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.bind((sys.argv[1], 53))
while True:
    q, a = s.recvfrom(512)
    end = q.index(b'\0', 12) + 5
    name, qtype = q[12:end - 4], struct.unpack('>H', q[end - 4:end - 2])[0]
    known = name == b'\x07outside\x04test\x00'
    answer = known and qtype == 1
    flags = 0x8180 if known else 0x8183
    head = q[:2] + struct.pack('>HHHHH', flags, 1, 1 if answer else 0, 0, 0)
    ans = b'\xc0\x0c' + struct.pack('>HHIH', 1, 1, 60, 4) + ip if answer else b''
    s.sendto(head + q[12:end] + ans, a)
"#;

const GREETER_PY: &str = r#"
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind((sys.argv[1], 8000)); s.listen()
while True:
    c, _ = s.accept(); c.sendall(b'hello-from-outside\n'); c.close()
"#;

impl Outside {
    fn start(tag: u32) -> Self {
        let net = crate::harness::LinkedNetns::new(
            &format!("pout{tag}"),
            &format!("vo{tag}"),
            &format!("10.77.{}", 60 + tag % 100),
        );
        let (ns, addr) = (net.ns.clone(), net.addr.clone());
        let py = |script: &str| {
            Command::new("ip")
                .args(["netns", "exec", &ns, "python3", "-c", script, &addr])
                .stdin(Stdio::null())
                .spawn()
                .expect("python3")
        };
        let children = vec![py(DNS_PY), py(GREETER_PY)];
        let me = Self {
            _net: net,
            addr,
            children,
        };
        wait_until("the outside greeter", Duration::from_secs(10), || {
            let mut s = String::new();
            std::net::TcpStream::connect((me.addr.as_str(), 8000))
                .and_then(|mut c| c.read_to_string(&mut s))
                .is_ok()
                && s.contains("hello")
        });
        me
    }
}

impl Drop for Outside {
    fn drop(&mut self) {
        for c in &mut self.children {
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

/// A shell line that tries each `host:port` at once (a dropped connection takes the whole
/// 3 s) and prints `host:port open|closed` for each.
fn probe_script(targets: &[String]) -> String {
    let mut script = targets
        .iter()
        .map(|t| {
            let (h, p) = t.rsplit_once(':').expect("host:port");
            format!(
                "(if timeout 3 bash -c 'exec 3<>/dev/tcp/{h}/{p}' 2>/dev/null; then echo '{t} open'; else echo '{t} closed'; fi) & "
            )
        })
        .collect::<String>();
    script.push_str("wait");
    script
}

/// The host's own IPv4 addresses.
fn host_addresses() -> Vec<String> {
    let out = Command::new("ip")
        .args(["-4", "-o", "addr", "show"])
        .output()
        .expect("ip");
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| l.split_whitespace().nth(3))
        .filter_map(|a| a.split('/').next().map(str::to_owned))
        .collect()
}

#[test]
fn a_members_workspace_reaches_nothing_of_the_server_nor_of_another_user() {
    let tmp = TempDir::new("isolation");
    let outside = Outside::start(std::process::id() % 1000);
    let dns = outside.addr.clone();
    let server = Server::start_full(
        &tmp.0,
        "127.0.0.1:0",
        &[],
        &[(MARKER, MARKER_VALUE)],
        &["--workspace-isolation", "on", "--workspace-dns", &dns],
    );
    let bob = Member::new(&server, &tmp.0, "bob");
    let carol = Member::new(&server, &tmp.0, "carol");
    bob.create("w1");
    carol.create("w2");

    // Who bob is in his workspace: a uid of its own, his name, his home.
    let out = bob.sh_ok("w1", "id -u; whoami; echo \"$HOME\"; pwd; env");
    let mut lines = out.lines();
    let uid: u32 = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .expect("id -u");
    assert_ne!(uid, 0, "the workspace runs as root");
    assert!(uid >= 200_000, "uid {uid} is not from the workspace range");
    assert_eq!(lines.next(), Some("bob"), "whoami");
    let home = lines.next().expect("HOME").to_owned();
    assert_eq!(lines.next(), Some(home.as_str()), "sessions start in $HOME");
    assert!(
        home.starts_with(&tmp.0.join("homes").display().to_string()),
        "{home}"
    );
    assert!(
        !out.contains(MARKER_VALUE),
        "the server's environment leaked: {out}"
    );
    assert!(!out.contains(MARKER), "{out}");

    // carol's file, and the server's secrets.
    carol.sh_ok("w2", "echo carol-secret > ~/secret.txt");
    let carol_home = carol.sh_ok("w2", "echo $HOME").trim().to_owned();
    let carol_uid = carol.sh_ok("w2", "id -u").trim().to_owned();
    assert_ne!(carol_uid, uid.to_string(), "two workspaces, two uids");
    let data = server.data();
    for path in [
        data.join("admin-token"),
        data.join("perigee.db"),
        data.join("tls/ca-key.pem"),
        PathBuf::from(&carol_home).join("secret.txt"),
        PathBuf::from(format!("/etc/netns/perigee-{carol_uid}/passwd")),
    ] {
        let (ok, out, _) = bob.sh("w1", &format!("cat '{}'", path.display()));
        assert!(!ok, "bob read {}: {out}", path.display());
        assert!(
            !out.contains("carol-secret") && !out.contains("pga_"),
            "{out}"
        );
    }
    // /tmp, /var/tmp and /dev/shm are each workspace's own: what carol leaves there with
    // the default (world-readable) mode, and what the host keeps there, bob does not see.
    carol.sh_ok(
        "w2",
        "umask 022; echo carol-tmp > /tmp/carol-note; echo carol-shm > /dev/shm/carol-note; \
         echo carol-vartmp > /var/tmp/carol-note",
    );
    let host_note = std::env::temp_dir().join(format!("perigee-host-note-{}", std::process::id()));
    std::fs::write(&host_note, "host-tmp").expect("host note");
    for path in [
        "/tmp/carol-note".to_owned(),
        "/dev/shm/carol-note".to_owned(),
        "/var/tmp/carol-note".to_owned(),
        host_note.display().to_string(),
    ] {
        let (ok, out, _) = bob.sh("w1", &format!("cat '{path}'"));
        assert!(!ok, "bob read {path}: {out}");
    }
    assert_eq!(
        carol.sh_ok("w2", "cat /tmp/carol-note /dev/shm/carol-note"),
        "carol-tmp\ncarol-shm\n"
    );
    let _ = std::fs::remove_file(&host_note);
    let (ok, out, _) = bob.sh("w1", &format!("ls '{}'", data.display()));
    assert!(!ok, "bob listed the data directory: {out}");
    // The server's processes are not even visible.
    let pid = server.pid();
    let (ok, out, _) = bob.sh("w1", &format!("cat /proc/{pid}/environ"));
    assert!(!ok && !out.contains(MARKER_VALUE), "{out}");
    let ps = bob.sh_ok("w1", "ls /proc | grep -c '^[0-9]'");
    let visible: u32 = ps.trim().parse().expect("count");
    assert!(
        visible < 20,
        "bob sees {visible} processes: not a PID namespace of his own"
    );

    // Networks: a host service and carol's server, both on 0.0.0.0.
    let (hport, hit) = host_service();
    carol.sh_ok(
        "w2",
        "setsid nohup python3 -m http.server 8081 --bind 0.0.0.0 </dev/null >/dev/null 2>&1 & sleep 0.1; \
         for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/8081) 2>/dev/null && exit 0; sleep 0.1; done; exit 1",
    );
    let carol_addr = carol.sh_ok(
        "w2",
        "ip -4 -o addr show eth0 | awk '{print $4}' | cut -d/ -f1",
    );
    let carol_addr = carol_addr.trim().to_owned();
    let mut targets = vec![
        format!("127.0.0.1:{hport}"),
        format!("10.213.0.1:{hport}"),
        format!("{carol_addr}:8081"),
        format!("127.0.0.1:8081"),
        "169.254.169.254:80".to_owned(),
    ];
    targets.extend(host_addresses().into_iter().map(|a| format!("{a}:{hport}")));
    let out = bob.sh_ok("w1", &probe_script(&targets));
    for t in &targets {
        assert!(
            out.contains(&format!("{t} closed")),
            "bob reached {t}:\n{out}"
        );
    }
    // Control: the host service answers on the host, carol's server in her workspace.
    assert!(std::net::TcpStream::connect(("127.0.0.1", hport)).is_ok());
    let own = carol.sh_ok("w2", &probe_script(&["127.0.0.1:8081".to_owned()]));
    assert!(own.contains("open"), "carol's own server: {own}");
    hit.store(false, Ordering::SeqCst);

    // A tunnel to a port where only the host listens does not reach the host.
    let mut c = bob.cmd(BIN);
    c.args(["tunnel", "w1", &hport.to_string()]);
    let o = run_with_stdin(c, b"hello\n");
    assert!(!String::from_utf8_lossy(&o.stdout).contains("HOST-SERVICE"));
    assert!(
        !hit.load(Ordering::SeqCst),
        "the tunnel reached the host's service"
    );

    // DNS and the internet still work (a server in a namespace of the test's).
    let out = bob.sh_ok(
        "w1",
        "getent hosts outside.test; exec 3<>/dev/tcp/outside.test/8000; cat <&3",
    );
    assert!(out.contains(&outside.addr), "DNS: {out}");
    assert!(out.contains("hello-from-outside"), "outbound: {out}");

    // bob's own port through perigee: a tunnel to a server in his workspace.
    bob.sh_ok(
        "w1",
        "setsid nohup python3 -c 'import socket\ns=socket.socket();s.bind((\"127.0.0.1\",9090));s.listen()\nwhile 1:\n c,_=s.accept();c.sendall(c.recv(100).upper());c.close()' </dev/null >/dev/null 2>&1 &
         for i in $(seq 50); do (exec 3<>/dev/tcp/127.0.0.1/9090) 2>/dev/null && exit 0; sleep 0.1; done; exit 1",
    );
    let mut c = bob.cmd(BIN);
    c.args(["tunnel", "w1", "9090"]);
    let o = run_with_stdin(c, b"own-port\n");
    assert_eq!(
        String::from_utf8_lossy(&o.stdout),
        "OWN-PORT\n",
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    // And over Networking v2: the direct path reaches the isolated agent.
    let mut c = bob.cmd(BIN);
    c.args(["tunnel", "-v", "--path", "webrtc", "w1", "9090"]);
    let o = run_with_stdin(c, b"direct\n");
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(String::from_utf8_lossy(&o.stdout), "DIRECT\n", "{err}");
    assert!(err.contains("path=direct"), "{err}");
}
