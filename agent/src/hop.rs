//! A loopback hop to an in-process handler: the link pumps work on TCP sockets, so a stream
//! that needs more than a plain port (an end-to-end session, WebRTC signaling) connects to a
//! loopback listener of the agent's own and sends the id under which its job waits.

use std::collections::HashMap;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use relay_core::wire::StatusCode;
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};
use tokio::net::{TcpListener, TcpStream};
use tracing::debug;

type Pending<T> = Arc<Mutex<HashMap<u64, T>>>;

/// A loopback listener whose connections each take the job registered under the id they
/// send first. Its accept loop ends when it is dropped.
pub(crate) struct Hop<T> {
    /// What a failure is called in the stream's status ("WebRTC answerer" …).
    what: &'static str,
    addr: SocketAddr,
    pending: Pending<T>,
    accept: tokio::task::JoinHandle<()>,
}

impl<T> Drop for Hop<T> {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

impl<T: Send + 'static> Hop<T> {
    /// Starts the listener; `handle` serves each connection with its job.
    pub(crate) async fn start<F, Fut>(what: &'static str, handle: F) -> std::io::Result<Self>
    where
        F: Fn(T, TcpStream) -> Fut + Send + Sync + 'static,
        Fut: Future<Output = std::io::Result<()>> + Send + 'static,
    {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let pending: Pending<T> = Arc::default();
        let waiting = pending.clone();
        let handle = Arc::new(handle);
        let accept = tokio::spawn(async move {
            loop {
                let Ok((mut sock, _)) = listener.accept().await else {
                    continue;
                };
                let (waiting, handle) = (waiting.clone(), handle.clone());
                tokio::spawn(async move {
                    let served = async {
                        let id = sock.read_u64().await?;
                        let job = waiting
                            .lock()
                            .ok()
                            .and_then(|mut p| p.remove(&id))
                            .ok_or_else(|| std::io::Error::other("unknown stream id"))?;
                        handle(job, sock).await
                    };
                    if let Err(e) = served.await {
                        debug!(error = %e, hop = what, "stream ended");
                    }
                });
            }
        });
        Ok(Self {
            what,
            addr,
            pending,
            accept,
        })
    }

    /// Registers `job` and connects to the listener: the stream to splice with the edge.
    pub(crate) async fn front(&self, job: T) -> Result<TcpStream, (StatusCode, String)> {
        let id = relay_core::token::random_u64();
        if let Ok(mut p) = self.pending.lock() {
            p.insert(id, job);
        }
        let fail = |e: std::io::Error| {
            if let Ok(mut p) = self.pending.lock() {
                p.remove(&id);
            }
            (StatusCode::ConnectFailed, format!("{}: {e}", self.what))
        };
        let mut front = TcpStream::connect(self.addr).await.map_err(fail)?;
        let _ = front.set_nodelay(true);
        front.write_u64(id).await.map_err(fail)?;
        Ok(front)
    }
}
