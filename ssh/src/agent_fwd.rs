//! SSH agent forwarding (`ssh -A`): a Unix socket in the workspace, named by
//! `SSH_AUTH_SOCK` in the session, whose every connection becomes an
//! `auth-agent@openssh.com` channel back to the client's agent.

use std::path::PathBuf;

use tokio::net::UnixListener;
use tracing::debug;

/// A forwarded agent socket; the directory goes when it is dropped.
pub(crate) struct AgentSocket {
    pub(crate) path: PathBuf,
    dir: PathBuf,
    task: tokio::task::JoinHandle<()>,
}

impl Drop for AgentSocket {
    fn drop(&mut self) {
        self.task.abort();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Listens on a fresh socket (in a 0700 directory) and relays each connection to the
/// client's agent through `handle`.
pub(crate) fn listen(handle: russh::server::Handle) -> std::io::Result<AgentSocket> {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = std::env::temp_dir().join(format!(
        "perigee-ssh-agent-{}",
        relay_core::token::random_id()
    ));
    std::fs::create_dir(&dir)?;
    std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700))?;
    let path = dir.join("agent.sock");
    let listener = UnixListener::bind(&path)?;
    let task = tokio::spawn(async move {
        loop {
            let Ok((mut unix, _)) = listener.accept().await else {
                return;
            };
            let handle = handle.clone();
            tokio::spawn(async move {
                match handle.channel_open_agent().await {
                    Ok(ch) => {
                        let mut stream = ch.into_stream();
                        let _ = tokio::io::copy_bidirectional(&mut unix, &mut stream).await;
                    }
                    Err(e) => debug!(error = %e, "the client refused an agent channel"),
                }
            });
        }
    });
    Ok(AgentSocket { path, dir, task })
}
