//! One SSH connection: authentication and its channels.

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::Arc;
use std::time::Duration;

use russh::keys::PublicKey;
use russh::server::{Auth, ChannelOpenHandle, Msg, PublicKeyOffer, VerifiedPublicKey};
use russh::{Channel, ChannelId, ChannelMsg, ChannelOpenFailure, ChannelWriteHalf};
use tokio::io::{AsyncWrite, AsyncWriteExt as _};
use tracing::{debug, warn};

use crate::AuthorizedKeys;

/// Environment variables a client may set per channel, and their total size.
const MAX_ENV: usize = 64;
const MAX_ENV_BYTES: usize = 64 * 1024;
/// How long a forwarded connection may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Where OpenSSH's sftp server is installed on common distributions.
const SFTP_SERVERS: &[&str] = &[
    "/usr/lib/openssh/sftp-server",
    "/usr/libexec/openssh/sftp-server",
    "/usr/libexec/sftp-server",
    "/usr/lib/ssh/sftp-server",
];

pub(crate) struct Shared {
    pub(crate) workdir: PathBuf,
    pub(crate) shell: PathBuf,
    pub(crate) keys: Arc<dyn AuthorizedKeys>,
    /// Variables of the agent's environment that sessions do not get.
    pub(crate) env_removals: Vec<String>,
}

/// Sessions get the workspace's environment (what its image or provider set for the agent)
/// without the agent's own settings (`PERIGEE_*`) and without the shell state of whoever
/// started the agent (`SHLVL` would stop bash reading `~/.bashrc` for remote commands, as it
/// does under OpenSSH).
pub(crate) fn session_env_removals() -> Vec<String> {
    std::env::vars_os()
        .filter_map(|(k, _)| k.into_string().ok())
        .filter(|k| {
            k.starts_with("PERIGEE_") || ["SHLVL", "OLDPWD", "PWD", "_"].contains(&k.as_str())
        })
        .collect()
}

struct PtyReq {
    term: String,
    cols: u16,
    rows: u16,
}

#[derive(Default)]
struct Chan {
    channel: Option<Channel<Msg>>,
    env: Vec<(String, String)>,
    env_bytes: usize,
    pty: Option<PtyReq>,
    resize: Option<tokio::sync::watch::Sender<(u16, u16)>>,
    /// The running command's process id (0 until it runs), for `signal` requests.
    pid: Arc<std::sync::atomic::AtomicU32>,
}

pub(crate) struct Session {
    shared: Arc<Shared>,
    chans: HashMap<ChannelId, Chan>,
    /// The forwarded agent's socket, once a channel asked for one (one per connection).
    agent: Option<crate::agent_fwd::AgentSocket>,
    /// `SSH_CLIENT` and `SSH_CONNECTION`, as OpenSSH sets them (shells such as bash read
    /// `~/.bashrc` for remote commands because of them).
    conn_env: [(String, String); 2],
}

/// A command to start for a channel: what, with which variables, and where its pid goes.
struct Job {
    shared: Arc<Shared>,
    run: Run,
    env: Vec<(String, String)>,
    pid: Arc<std::sync::atomic::AtomicU32>,
}

/// What a session channel runs.
enum Run {
    Shell,
    Exec(String),
    Sftp(PathBuf),
}

impl Session {
    pub(crate) fn new(
        shared: Arc<Shared>,
        peer: std::net::SocketAddr,
        local: std::net::SocketAddr,
    ) -> Self {
        Self {
            shared,
            chans: HashMap::new(),
            agent: None,
            conn_env: [
                (
                    "SSH_CLIENT".into(),
                    format!("{} {} {}", peer.ip(), peer.port(), local.port()),
                ),
                (
                    "SSH_CONNECTION".into(),
                    format!(
                        "{} {} {} {}",
                        peer.ip(),
                        peer.port(),
                        local.ip(),
                        local.port()
                    ),
                ),
            ],
        }
    }

    /// Accepts `key` when it is one of the owner's keys now (asked at every login).
    async fn verdict(&self, key: &PublicKey) -> Auth {
        let allowed = match self.shared.keys.keys().await {
            Ok(lines) => lines
                .iter()
                .filter_map(|l| PublicKey::from_openssh(l.trim()).ok())
                .any(|k| k.key_data() == key.key_data()),
            Err(e) => {
                warn!(error = %e, "could not fetch the owner's SSH keys: refusing the login");
                false
            }
        };
        if allowed {
            Auth::Accept
        } else {
            Auth::reject()
        }
    }

    /// Starts `run` on channel `id` (exec, shell or subsystem), answering the request.
    fn start(
        &mut self,
        id: ChannelId,
        run: Run,
        session: &mut russh::server::Session,
    ) -> Result<(), russh::Error> {
        let Some(chan) = self.chans.get_mut(&id) else {
            return session.channel_failure(id);
        };
        let Some(channel) = chan.channel.take() else {
            // A second exec/shell on the same channel.
            return session.channel_failure(id);
        };
        let mut env = self.conn_env.to_vec();
        if let Some(a) = &self.agent {
            env.push((
                "SSH_AUTH_SOCK".into(),
                a.path.to_string_lossy().into_owned(),
            ));
        }
        env.append(&mut chan.env);
        let shared = self.shared.clone();
        let pty = chan.pty.take();
        let resize = pty.as_ref().map(|p| {
            let (tx, rx) = tokio::sync::watch::channel((p.cols, p.rows));
            chan.resize = Some(tx);
            rx
        });
        session.channel_success(id)?;
        let job = Job {
            shared,
            run,
            env,
            pid: chan.pid.clone(),
        };
        tokio::spawn(async move {
            let (rd, wr) = channel.split();
            let code = match (pty, resize) {
                (Some(p), Some(rx)) => run_pty(job, p, rx, rd, &wr).await,
                _ => run_pipes(job, rd, &wr).await,
            };
            let code = code.unwrap_or_else(|e| {
                debug!(error = %e, "session command failed");
                127
            });
            let _ = wr.exit_status(code).await;
            let _ = wr.eof().await;
            let _ = wr.close().await;
        });
        Ok(())
    }
}

/// The program and arguments for `run`.
fn command_line(shared: &Shared, run: &Run) -> (PathBuf, Vec<String>) {
    match run {
        Run::Shell => (shared.shell.clone(), vec!["-l".into()]),
        Run::Exec(c) => (shared.shell.clone(), vec!["-c".into(), c.clone()]),
        Run::Sftp(p) => (p.clone(), Vec::new()),
    }
}

fn exit_code(s: std::process::ExitStatus) -> u32 {
    use std::os::unix::process::ExitStatusExt as _;
    match (s.code(), s.signal()) {
        (Some(c), _) => c as u32,
        (None, Some(sig)) => 128 + sig as u32,
        _ => 255,
    }
}

/// Copies client input (data, then EOF) into `input` until the client stops sending.
async fn pump_input<W: AsyncWrite + Unpin>(mut rd: russh::ChannelReadHalf, mut input: W) {
    loop {
        match rd.wait().await {
            Some(ChannelMsg::Data { data }) => {
                if input.write_all(&data).await.is_err() {
                    return;
                }
            }
            Some(ChannelMsg::Eof) | None => {
                let _ = input.shutdown().await;
                return;
            }
            Some(_) => {}
        }
    }
}

/// Copies client input into the terminal and follows window changes; EOF on a terminal is
/// the client's ^D, so the master stays open.
async fn pump_pty(
    mut rd: russh::ChannelReadHalf,
    mut pty: pty_process::OwnedWritePty,
    mut resize: tokio::sync::watch::Receiver<(u16, u16)>,
) {
    loop {
        tokio::select! {
            m = rd.wait() => match m {
                Some(ChannelMsg::Data { data }) => {
                    if pty.write_all(&data).await.is_err() {
                        return;
                    }
                }
                Some(ChannelMsg::Eof) | None => return,
                Some(_) => {}
            },
            r = resize.changed() => {
                if r.is_err() {
                    // The handler is gone: keep copying input.
                    std::future::pending::<()>().await;
                }
                let (cols, rows) = *resize.borrow_and_update();
                let _ = pty.resize(pty_process::Size::new(rows, cols));
            }
        }
    }
}

async fn run_pipes(
    job: Job,
    rd: russh::ChannelReadHalf,
    wr: &ChannelWriteHalf<Msg>,
) -> std::io::Result<u32> {
    let Job {
        shared,
        run,
        env,
        pid,
    } = job;
    let (program, args) = command_line(&shared, &run);
    let mut cmd = tokio::process::Command::new(&program);
    for k in &shared.env_removals {
        cmd.env_remove(k);
    }
    let mut child = cmd
        .args(&args)
        .current_dir(&shared.workdir)
        .env("PWD", &shared.workdir)
        .envs(env)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()?;
    pid.store(
        child.id().unwrap_or(0),
        std::sync::atomic::Ordering::Relaxed,
    );
    let (Some(stdin), Some(mut stdout), Some(mut stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(std::io::Error::other("no pipes"));
    };
    let input = tokio::spawn(pump_input(rd, stdin));
    let mut out = wr.make_writer();
    let mut err = wr.make_writer_ext(Some(1));
    let (a, b) = tokio::join!(
        tokio::io::copy(&mut stdout, &mut out),
        tokio::io::copy(&mut stderr, &mut err)
    );
    if let Err(e) = a.and(b) {
        debug!(error = %e, "session output");
    }
    let status = child.wait().await?;
    // The pid may be reused once reaped: no signal goes to it after this.
    pid.store(0, std::sync::atomic::Ordering::Relaxed);
    input.abort();
    Ok(exit_code(status))
}

async fn run_pty(
    job: Job,
    p: PtyReq,
    resize: tokio::sync::watch::Receiver<(u16, u16)>,
    rd: russh::ChannelReadHalf,
    wr: &ChannelWriteHalf<Msg>,
) -> std::io::Result<u32> {
    let Job {
        shared,
        run,
        env,
        pid,
    } = job;
    let io = |e: pty_process::Error| std::io::Error::other(e.to_string());
    let (pty, pts) = pty_process::open().map_err(io)?;
    pty.resize(pty_process::Size::new(p.rows, p.cols))
        .map_err(io)?;
    let (program, args) = command_line(&shared, &run);
    let mut cmd = pty_process::Command::new(&program);
    for k in &shared.env_removals {
        cmd = cmd.env_remove(k);
    }
    let mut child = cmd
        .args(&args)
        .current_dir(&shared.workdir)
        .env("PWD", &shared.workdir)
        .envs(env)
        .env("TERM", &p.term)
        .kill_on_drop(true)
        .spawn(pts)
        .map_err(io)?;
    pid.store(
        child.id().unwrap_or(0),
        std::sync::atomic::Ordering::Relaxed,
    );
    let (mut pty_r, pty_w) = pty.into_split();
    let input = tokio::spawn(pump_pty(rd, pty_w, resize));
    let mut out = wr.make_writer();
    // Reading the master fails with EIO once the terminal's last user is gone: the end.
    let _ = tokio::io::copy(&mut pty_r, &mut out).await;
    let status = child.wait().await?;
    // The pid may be reused once reaped: no signal goes to it after this.
    pid.store(0, std::sync::atomic::Ordering::Relaxed);
    input.abort();
    Ok(exit_code(status))
}

impl russh::server::Handler for Session {
    type Error = russh::Error;

    async fn auth_publickey_offered(
        &mut self,
        _user: &str,
        offer: PublicKeyOffer<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.verdict(offer.public_key).await)
    }

    async fn auth_publickey(
        &mut self,
        _user: &str,
        key: VerifiedPublicKey<'_>,
    ) -> Result<Auth, Self::Error> {
        Ok(self.verdict(key.public_key).await)
    }

    async fn channel_open_session(
        &mut self,
        channel: Channel<Msg>,
        reply: ChannelOpenHandle,
        _session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        self.chans.insert(
            channel.id(),
            Chan {
                channel: Some(channel),
                ..Chan::default()
            },
        );
        reply.accept().await;
        Ok(())
    }

    async fn channel_close(
        &mut self,
        channel: ChannelId,
        _session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        self.chans.remove(&channel);
        Ok(())
    }

    async fn pty_request(
        &mut self,
        channel: ChannelId,
        term: &str,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _modes: &[(russh::Pty, u32)],
        session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        match self.chans.get_mut(&channel) {
            Some(c) if c.channel.is_some() => {
                c.pty = Some(PtyReq {
                    term: term.chars().take(64).collect(),
                    // A client without a terminal of its own (`ssh -tt` from a pipe) says 0.
                    cols: if col_width == 0 {
                        80
                    } else {
                        col_width.min(10_000) as u16
                    },
                    rows: if row_height == 0 {
                        24
                    } else {
                        row_height.min(10_000) as u16
                    },
                });
                session.channel_success(channel)
            }
            _ => session.channel_failure(channel),
        }
    }

    async fn window_change_request(
        &mut self,
        channel: ChannelId,
        col_width: u32,
        row_height: u32,
        _pix_width: u32,
        _pix_height: u32,
        _session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        if let Some(tx) = self.chans.get(&channel).and_then(|c| c.resize.as_ref()) {
            let _ = tx.send((
                col_width.clamp(1, 10_000) as u16,
                row_height.clamp(1, 10_000) as u16,
            ));
        }
        Ok(())
    }

    async fn env_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        value: &str,
        session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        let ok_name =
            !name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        match self.chans.get_mut(&channel) {
            Some(c)
                if ok_name
                    && c.env.len() < MAX_ENV
                    && c.env_bytes + name.len() + value.len() <= MAX_ENV_BYTES =>
            {
                c.env_bytes += name.len() + value.len();
                c.env.push((name.to_owned(), value.to_owned()));
                session.channel_success(channel)
            }
            _ => session.channel_failure(channel),
        }
    }

    async fn signal(
        &mut self,
        channel: ChannelId,
        signal: russh::Sig,
        _session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        use rustix::process::{kill_process, Pid, Signal};
        let sig = match signal {
            russh::Sig::ABRT => Signal::ABORT,
            russh::Sig::ALRM => Signal::ALARM,
            russh::Sig::FPE => Signal::FPE,
            russh::Sig::HUP => Signal::HUP,
            russh::Sig::ILL => Signal::ILL,
            russh::Sig::INT => Signal::INT,
            russh::Sig::KILL => Signal::KILL,
            russh::Sig::PIPE => Signal::PIPE,
            russh::Sig::QUIT => Signal::QUIT,
            russh::Sig::SEGV => Signal::SEGV,
            russh::Sig::TERM => Signal::TERM,
            russh::Sig::USR1 => Signal::USR1,
            russh::Sig::Custom(_) => return Ok(()),
        };
        let pid = self
            .chans
            .get(&channel)
            .map(|c| c.pid.load(std::sync::atomic::Ordering::Relaxed))
            .and_then(|p| Pid::from_raw(p as i32));
        if let Some(pid) = pid {
            if let Err(e) = kill_process(pid, sig) {
                debug!(error = %e, "signal to the session's command");
            }
        }
        Ok(())
    }

    async fn agent_request(
        &mut self,
        channel: ChannelId,
        session: &mut russh::server::Session,
    ) -> Result<bool, Self::Error> {
        if !self.chans.contains_key(&channel) {
            return Ok(false);
        }
        if self.agent.is_none() {
            match crate::agent_fwd::listen(session.handle()) {
                Ok(a) => self.agent = Some(a),
                Err(e) => {
                    warn!(error = %e, "agent forwarding: no socket");
                    return Ok(false);
                }
            }
        }
        Ok(true)
    }

    async fn shell_request(
        &mut self,
        channel: ChannelId,
        session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        self.start(channel, Run::Shell, session)
    }

    async fn exec_request(
        &mut self,
        channel: ChannelId,
        data: &[u8],
        session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        let command = String::from_utf8_lossy(data).into_owned();
        self.start(channel, Run::Exec(command), session)
    }

    async fn subsystem_request(
        &mut self,
        channel: ChannelId,
        name: &str,
        session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        let server = SFTP_SERVERS.iter().map(PathBuf::from).find(|p| p.exists());
        match (name, server) {
            ("sftp", Some(p)) => self.start(channel, Run::Sftp(p), session),
            ("sftp", None) => {
                warn!("sftp requested but OpenSSH's sftp-server is not installed in the workspace");
                session.channel_failure(channel)
            }
            _ => session.channel_failure(channel),
        }
    }

    async fn channel_open_direct_tcpip(
        &mut self,
        channel: Channel<Msg>,
        host: &str,
        port: u32,
        _originator_address: &str,
        _originator_port: u32,
        reply: ChannelOpenHandle,
        _session: &mut russh::server::Session,
    ) -> Result<(), Self::Error> {
        let Ok(port) = u16::try_from(port) else {
            reply.reject(ChannelOpenFailure::ConnectFailed).await;
            return Ok(());
        };
        let host = host.to_owned();
        tokio::spawn(async move {
            let tcp = tokio::time::timeout(
                CONNECT_TIMEOUT,
                tokio::net::TcpStream::connect((host.as_str(), port)),
            )
            .await;
            let mut tcp = match tcp {
                Ok(Ok(t)) => t,
                _ => {
                    debug!(%host, port, "forwarded connection failed");
                    reply.reject(ChannelOpenFailure::ConnectFailed).await;
                    return;
                }
            };
            let _ = tcp.set_nodelay(true);
            reply.accept().await;
            let mut stream = channel.into_stream();
            let _ = tokio::io::copy_bidirectional(&mut stream, &mut tcp).await;
        });
        Ok(())
    }
}
