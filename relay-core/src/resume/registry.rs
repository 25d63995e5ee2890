//! The agent's side: sessions by id, each kept while detached for a grace period.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _, DuplexStream};
use tokio::sync::mpsc;
use tracing::{debug, info, Instrument as _};

use super::{End, Frame, FrameError, Id, Session, Welcome, HELLO_LEN, ID_LEN, WELCOME_LEN};

/// A transport a session can run over.
pub trait Transport: AsyncRead + AsyncWrite + Unpin + Send + 'static {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + 'static> Transport for T {}

type Handoff = (Box<dyn Transport>, u64);

/// Buffer between a session and its local service (the SSH server).
const LOCAL_BUF: usize = 256 * 1024;
/// How long a client has to send its HELLO.
const HELLO_TIMEOUT: Duration = Duration::from_secs(10);

/// Sessions kept by the agent.
pub struct Registry {
    sessions: Mutex<HashMap<Id, mpsc::Sender<Handoff>>>,
    max: usize,
    grace: Duration,
}

impl Registry {
    /// Keeps at most `max` sessions, each for `grace` after its transport is lost.
    pub fn new(max: usize, grace: Duration) -> Arc<Self> {
        Arc::new(Self {
            sessions: Mutex::new(HashMap::new()),
            max,
            grace,
        })
    }

    /// Sessions held now (attached or waiting).
    pub fn len(&self) -> usize {
        self.map().len()
    }

    /// Whether no session is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn map(&self) -> std::sync::MutexGuard<'_, HashMap<Id, mpsc::Sender<Handoff>>> {
        self.sessions
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Serves a stream that starts with [`super::MAGIC`]: reads the HELLO, then starts a
    /// session (its local end handed to `start`, e.g. to run an SSH connection on) or moves
    /// an existing one onto this transport.
    pub async fn accept<T: Transport>(
        self: &Arc<Self>,
        mut t: T,
        start: impl FnOnce(DuplexStream),
    ) -> Result<(), std::io::Error> {
        let mut b = BytesMut::zeroed(HELLO_LEN);
        tokio::time::timeout(HELLO_TIMEOUT, t.read_exact(&mut b))
            .await
            .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "no HELLO"))??;
        let (resume, id, received) = match Frame::decode(&mut b) {
            Ok(Some(Frame::Hello {
                resume,
                id,
                received,
            })) => (resume, id, received),
            Ok(_) => return Err(bad(FrameError::BadField("hello"))),
            Err(e) => return Err(bad(e)),
        };
        if resume {
            let tx = self.map().get(&id).cloned();
            let handed = match tx {
                Some(tx) => tx.send((Box::new(t), received)).await.map_err(|e| e.0 .0),
                None => Err(Box::new(t) as Box<dyn Transport>),
            };
            if let Err(mut t) = handed {
                debug!("resume of an unknown session");
                welcome(&mut t, Welcome::Unknown, id, 0).await?;
            }
            return Ok(());
        }
        let id: Id = crate::token::random_bytes::<ID_LEN>();
        let (tx, rx) = mpsc::channel(2);
        let full = {
            let mut map = self.map();
            let full = map.len() >= self.max;
            if !full {
                map.insert(id, tx);
            }
            full
        };
        if full {
            return welcome(&mut t, Welcome::Refused, [0; ID_LEN], 0).await;
        }
        let (ours, theirs) = tokio::io::duplex(LOCAL_BUF);
        start(theirs);
        let me = self.clone();
        let short = hex8(&id);
        tokio::spawn(
            async move { me.run(id, ours, rx, (Box::new(t), received)).await }
                .instrument(tracing::debug_span!("resumable", session = %short)),
        );
        Ok(())
    }

    async fn run(
        self: Arc<Self>,
        id: Id,
        local: DuplexStream,
        mut rx: mpsc::Receiver<Handoff>,
        first: Handoff,
    ) {
        let (rd, wr) = tokio::io::split(local);
        let mut s = Session::new(rd, wr);
        let mut next = Some(first);
        let mut attachments = 0u32;
        loop {
            let (mut t, peer_received) = match next.take() {
                Some(h) => h,
                None => match tokio::time::timeout(self.grace, rx.recv()).await {
                    Ok(Some(h)) => h,
                    _ => {
                        info!(grace = ?self.grace, "resumable session not resumed in time; ending it");
                        break;
                    }
                },
            };
            attachments += 1;
            if attachments > 1 {
                info!(attachment = attachments, "resumable session resumed");
            }
            if welcome(&mut t, Welcome::Ok, id, s.received())
                .await
                .is_err()
            {
                continue;
            }
            tokio::select! {
                end = s.attach(t, peer_received) => match end {
                    End::Lost(why) => info!(%why, "resumable session lost its transport; waiting for the client"),
                    End::Finished => break,
                    End::Failed(e) => {
                        debug!(error = %e, "resumable session failed");
                        break;
                    }
                },
                h = rx.recv() => match h {
                    Some(h) => next = Some(h),
                    None => break,
                },
            }
        }
        self.map().remove(&id);
    }
}

fn bad(e: FrameError) -> std::io::Error {
    std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string())
}

fn hex8(id: &Id) -> String {
    id[..4].iter().map(|b| format!("{b:02x}")).collect()
}

async fn welcome<T: AsyncWrite + Unpin + ?Sized>(
    t: &mut T,
    code: Welcome,
    id: Id,
    received: u64,
) -> std::io::Result<()> {
    let mut b = BytesMut::with_capacity(WELCOME_LEN);
    Frame::Welcome { code, id, received }.encode(&mut b);
    t.write_all(&b).await?;
    t.flush().await
}

/// The client's side of the handshake: sends HELLO (a new session, or `resume` with how
/// much of the agent's stream arrived) and reads the WELCOME.
pub async fn hello<T: AsyncRead + AsyncWrite + Unpin>(
    t: &mut T,
    resume: Option<(Id, u64)>,
) -> std::io::Result<(Welcome, Id, u64)> {
    let (id, received) = resume.unwrap_or(([0; ID_LEN], 0));
    let mut b = BytesMut::with_capacity(HELLO_LEN);
    Frame::Hello {
        resume: resume.is_some(),
        id,
        received,
    }
    .encode(&mut b);
    t.write_all(&b).await?;
    t.flush().await?;
    let mut w = BytesMut::zeroed(WELCOME_LEN);
    t.read_exact(&mut w).await?;
    match Frame::decode(&mut w) {
        Ok(Some(Frame::Welcome { code, id, received })) => Ok((code, id, received)),
        Ok(_) => Err(bad(FrameError::BadField("welcome"))),
        Err(e) => Err(bad(e)),
    }
}
