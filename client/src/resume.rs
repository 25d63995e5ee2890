//! An SSH connection (`perigee ssh --stdio`) over a resumable stream (`relay_core::resume`) to the agent's SSH
//! server: when the tunnel drops (a satellite restart, a network change), a new tunnel is
//! opened — through whichever edge answers — and the SSH connection above carries on.
//!
//! What survives: everything inside the SSH connection (shells, commands, forwards, scp), as
//! long as a new tunnel reaches the agent within its grace period (60 s by default) and
//! OpenSSH's own `ServerAliveInterval` × `ServerAliveCountMax` is longer than the gap. What
//! does not: a restart of the agent itself (the SSH server lives there), a gap longer than
//! the grace period, and workspaces whose port 22 is served by their own sshd (`perigee agent
//! --ssh off`), which get a plain tunnel.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use relay_core::backoff::Backoff;
use relay_core::resume::{hello, End, Id, Session, Welcome};
use tokio::io::{AsyncRead, AsyncWrite, DuplexStream};
use tokio::task::JoinHandle;

use crate::tunnel::{tunnel, Options};

/// How long reconnecting goes on before the session is given up (the agent keeps it as long).
const RESUME_WINDOW: Duration = relay_core::resume::GRACE;
/// How long a new tunnel has to answer the HELLO.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(20);
/// Buffer between the session and the tunnel task.
const PIPE_BUF: usize = 256 * 1024;

/// Opens a tunnel in a task; its stream is the returned duplex end.
fn open(workspace: &str, port: u16, o: &Options) -> (DuplexStream, JoinHandle<anyhow::Result<()>>) {
    let (ours, theirs) = tokio::io::duplex(PIPE_BUF);
    let (workspace, o) = (workspace.to_owned(), o.clone());
    let task = tokio::spawn(async move {
        let (r, w) = tokio::io::split(theirs);
        tunnel(&workspace, port, &o, r, w).await
    });
    (ours, task)
}

/// The tunnel task's own error, if it ended with one within a moment.
async fn tunnel_error(task: JoinHandle<anyhow::Result<()>>) -> Option<anyhow::Error> {
    let abort = task.abort_handle();
    let r = tokio::time::timeout(Duration::from_millis(500), task).await;
    abort.abort();
    match r {
        Ok(Ok(Err(e))) => Some(e),
        _ => None,
    }
}

/// An error in a few words: a peer gone without a TLS goodbye is just that.
fn plain(e: &anyhow::Error) -> String {
    let m = format!("{e:#}");
    if m.contains("close_notify") || m.contains("connection reset") {
        "the edge closed the connection".to_owned()
    } else {
        m
    }
}

/// A refusal that another attempt would meet again (a revoked token, a deleted workspace).
fn is_final(e: &anyhow::Error) -> bool {
    let m = format!("{e:#}");
    m.contains("(HTTP 4") && !m.contains("(HTTP 408") && !m.contains("(HTTP 429")
}

/// Joins the streams `io` gives (the ProxyCommand's stdin and stdout) to `port` of
/// `workspace` over a resumable stream, reconnecting while the agent keeps the session; falls
/// back to a plain tunnel (with fresh streams from `io`) where port 22 does not speak the
/// resumable protocol.
pub async fn ssh<R, W>(
    workspace: &str,
    port: u16,
    o: &Options,
    io: impl Fn() -> (R, W),
) -> anyhow::Result<()>
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let ws = workspace.to_owned();
    let (rd, wr) = io();
    let mut session = Session::new(rd, wr);
    let mut resume: Option<(Id, u64)> = None;
    let mut lost_at: Option<Instant> = None;
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    let mut last_failure: Option<String> = None;
    loop {
        let (mut t, task) = open(workspace, port, o);
        let answer = tokio::time::timeout(HANDSHAKE_TIMEOUT, hello(&mut t, resume)).await;
        let failure = match answer {
            Ok(Ok((Welcome::Ok, id, their))) => {
                last_failure = None;
                if let Some(at) = lost_at.take() {
                    eprintln!(
                        "perigee: reconnected to {ws} after {:.1} s; the SSH session goes on",
                        at.elapsed().as_secs_f64()
                    );
                }
                backoff.reset();
                match session.attach(t, their).await {
                    End::Finished => {
                        task.abort();
                        return Ok(());
                    }
                    End::Failed(e) => {
                        task.abort();
                        return Err(e).context("the SSH stream");
                    }
                    End::Lost(why) => {
                        resume = Some((id, session.received()));
                        let why = match tunnel_error(task).await {
                            Some(e) => plain(&e),
                            None => why,
                        };
                        eprintln!(
                            "perigee: the connection to {ws} dropped ({why}); reconnecting — the SSH session waits up to {} s",
                            RESUME_WINDOW.as_secs()
                        );
                        lost_at = Some(Instant::now());
                        continue;
                    }
                }
            }
            Ok(Ok((Welcome::Unknown, ..))) => {
                if session.remote_eof() {
                    // The agent finished; only its last acknowledgement was lost.
                    return Ok(());
                }
                anyhow::bail!(
                    "the SSH session in {ws} ended while the connection was down (the agent keeps a session {} s)",
                    RESUME_WINDOW.as_secs()
                );
            }
            Ok(Ok((Welcome::Refused, ..))) if resume.is_none() => {
                // The agent holds too many resumable sessions: a plain one still works.
                task.abort();
                let (rd, wr) = io();
                return tunnel(workspace, port, o, rd, wr).await;
            }
            Ok(Ok((Welcome::Refused, ..))) => anyhow::anyhow!("the agent refused to resume"),
            Ok(Err(e)) if resume.is_none() && e.kind() == std::io::ErrorKind::InvalidData => {
                // An SSH banner: the workspace's own sshd, or an agent without resumable
                // streams. Nothing was read from stdin yet, so a plain tunnel takes over.
                task.abort();
                let (rd, wr) = io();
                return tunnel(workspace, port, o, rd, wr).await;
            }
            Ok(Err(e)) => tunnel_error(task)
                .await
                .unwrap_or_else(|| anyhow::Error::from(e).context("the tunnel closed")),
            Err(_) => {
                task.abort();
                anyhow::anyhow!("no answer within {HANDSHAKE_TIMEOUT:?}")
            }
        };
        let Some(at) = lost_at else {
            // The first connection: its error is the answer.
            return Err(failure);
        };
        if is_final(&failure) {
            return Err(failure.context(format!("reconnecting to {ws}")));
        }
        if at.elapsed() > RESUME_WINDOW {
            return Err(failure.context(format!(
                "could not reconnect to {ws} within {} s",
                RESUME_WINDOW.as_secs()
            )));
        }
        let delay = backoff.next_delay(relay_core::token::random_u64());
        let why = plain(&failure);
        if last_failure.as_deref() != Some(why.as_str()) {
            eprintln!("perigee: reconnecting to {ws}: {why}; trying again until it answers");
            last_failure = Some(why);
        }
        tokio::time::sleep(delay).await;
    }
}
