//! The SSH server in every workspace agent, so a workspace image needs no sshd of its own:
//! public-key authentication against the owner's keys (asked for at every login, so a
//! removed key stops new sessions at once), `exec` and shells with or without a PTY (window
//! changes followed), environment variables, exit status, the `sftp` subsystem (OpenSSH's
//! `sftp-server` run as the workspace user), and local port forwarding (`direct-tcpip`).
//! Everything runs as the agent's user, in the workspace directory.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::TcpListener;
use tracing::{debug, info, Instrument};

mod agent_fwd;
mod session;

/// The keys allowed to log in, in `authorized_keys` form (`TYPE BASE64 [COMMENT]`).
pub trait AuthorizedKeys: Send + Sync + 'static {
    /// Fetches the current keys.
    fn keys(&self) -> Pin<Box<dyn Future<Output = Result<Vec<String>, String>> + Send + '_>>;
}

/// A fixed key list (tests, and agents told their keys once).
pub struct StaticKeys(pub Vec<String>);

impl AuthorizedKeys for StaticKeys {
    fn keys(&self) -> Pin<Box<dyn Future<Output = Result<Vec<String>, String>> + Send + '_>> {
        let k = self.0.clone();
        Box::pin(async move { Ok(k) })
    }
}

/// How the server runs.
pub struct SshConfig {
    /// Where the host key lives (made on first start, mode 0600, kept after).
    pub host_key: PathBuf,
    /// Working directory of sessions.
    pub workdir: PathBuf,
    /// The login shell.
    pub shell: PathBuf,
    /// Who may log in.
    pub keys: Arc<dyn AuthorizedKeys>,
    /// How long a resumable connection (`perigee ssh --stdio`) waits for its client to come
    /// back after the tunnel under it drops, before the SSH connection ends.
    pub resume_grace: Duration,
}

/// russh's defaults plus AES-128-GCM, which OpenSSH offers and users pin (`-c`,
/// `Ciphers`); the client's order decides.
const CIPHERS: &[russh::cipher::Name] = &[
    russh::cipher::CHACHA20_POLY1305,
    russh::cipher::AES_256_GCM,
    russh::cipher::AES_128_GCM,
    russh::cipher::AES_256_CTR,
    russh::cipher::AES_192_CTR,
    russh::cipher::AES_128_CTR,
];

/// Default for [`SshConfig::resume_grace`].
pub const RESUME_GRACE: Duration = relay_core::resume::GRACE;
/// Most resumable connections an agent keeps at once.
const MAX_RESUMABLE: usize = 256;
/// How long to wait for a client's first byte to tell a resumable stream (a zero byte) from
/// plain SSH (`SSH-2.0-…`, which a client sends without waiting, RFC 4253 §4.2). A client
/// that waits anyway gets the banner after this.
const SNIFF_WAIT: Duration = Duration::from_secs(1);

/// What can go wrong starting the server.
#[derive(Debug, thiserror::Error)]
pub enum SshError {
    /// The host key could not be read or made.
    #[error("host key {path}: {what}")]
    HostKey {
        /// The key file.
        path: PathBuf,
        /// What failed.
        what: String,
    },
}

/// Loads the host key at `path`, or makes an Ed25519 key there (0600) when there is none.
pub fn host_key(path: &Path) -> Result<russh::keys::PrivateKey, SshError> {
    let err = |what: String| SshError::HostKey {
        path: path.to_path_buf(),
        what,
    };
    if path.exists() {
        return russh::keys::PrivateKey::read_openssh_file(path).map_err(|e| err(e.to_string()));
    }
    let seed = relay_core::token::random_bytes::<32>();
    let pair = russh::keys::ssh_key::private::Ed25519Keypair::from_seed(&seed);
    let key = russh::keys::PrivateKey::from(pair);
    let pem = key
        .to_openssh(russh::keys::ssh_key::LineEnding::LF)
        .map_err(|e| err(e.to_string()))?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|e| err(e.to_string()))?;
    }
    relay_core::tls::write_private(path, pem.as_bytes()).map_err(|e| err(e.to_string()))?;
    info!(path = %path.display(), "made the workspace's SSH host key");
    Ok(key)
}

/// The login shell: `$SHELL` when it exists, else `/bin/bash`, else `/bin/sh`.
pub fn default_shell() -> PathBuf {
    std::env::var_os("SHELL")
        .map(PathBuf::from)
        .filter(|p| p.is_absolute() && p.exists())
        .or_else(|| Some(PathBuf::from("/bin/bash")).filter(|p| p.exists()))
        .unwrap_or_else(|| PathBuf::from("/bin/sh"))
}

/// Serves SSH on `listener` until `shutdown` resolves (sessions already open keep running
/// until their clients leave).
pub async fn serve(
    listener: TcpListener,
    cfg: SshConfig,
    shutdown: impl Future<Output = ()>,
) -> Result<(), SshError> {
    let key = host_key(&cfg.host_key)?;
    let config = Arc::new(russh::server::Config {
        keys: vec![key],
        auth_rejection_time: Duration::from_millis(500),
        auth_rejection_time_initial: Some(Duration::ZERO),
        inactivity_timeout: None,
        keepalive_interval: Some(Duration::from_secs(30)),
        nodelay: true,
        preferred: russh::Preferred {
            cipher: std::borrow::Cow::Borrowed(CIPHERS),
            ..Default::default()
        },
        ..Default::default()
    });
    let shared = Arc::new(session::Shared {
        workdir: cfg.workdir,
        shell: cfg.shell,
        keys: cfg.keys,
        env_removals: session::session_env_removals(),
    });
    let registry = relay_core::resume::Registry::new(MAX_RESUMABLE, cfg.resume_grace);
    tokio::pin!(shutdown);
    loop {
        let (tcp, addr) = tokio::select! {
            r = relay_core::accept::next(&listener, "ssh") => match r {
                Some(x) => x,
                None => continue,
            },
            _ = &mut shutdown => return Ok(()),
        };
        let local = tcp.local_addr().unwrap_or(addr);
        let handler = session::Session::new(shared.clone(), addr, local);
        let config = config.clone();
        let registry = registry.clone();
        tokio::spawn(
            async move {
                let mut first = [0u8; 1];
                let sniffed = tokio::time::timeout(SNIFF_WAIT, tcp.peek(&mut first)).await;
                if matches!(sniffed, Ok(Ok(1))) && first[0] == 0 {
                    // `perigee ssh --stdio`: the SSH connection runs on the session's local
                    // end and outlives this stream.
                    let span = tracing::Span::current();
                    let start = move |local| {
                        tokio::spawn(run(config, local, handler).instrument(span));
                    };
                    if let Err(e) = registry.accept(tcp, start).await {
                        debug!(error = %e, "resumable stream refused");
                    }
                } else {
                    run(config, tcp, handler).await;
                }
            }
            .instrument(tracing::debug_span!("ssh_conn", client = %addr)),
        );
    }
}

async fn run<S>(config: Arc<russh::server::Config>, stream: S, handler: session::Session)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    match russh::server::run_stream(config, stream, handler).await {
        Ok(running) => {
            if let Err(e) = running.await {
                debug!(error = %e, "ssh session ended");
            }
        }
        Err(e) => debug!(error = %e, "ssh handshake failed"),
    }
}
