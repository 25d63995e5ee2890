//! The CLI's end of an end-to-end encrypted tunnel (see `relay_core::e2e`): a TLS session
//! with the agent inside the tunnel's WebSocket, accepting only the agent key the control
//! plane vouched for in the ticket answer.

use anyhow::Context as _;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt as _, DuplexStream};
use tokio_rustls::client::TlsStream;

use crate::dial::Ws;

/// Buffer between the TLS session and the WebSocket pump.
const PIPE: usize = 256 * 1024;

/// An established inner session and the task pumping its ciphertext through the tunnel.
pub struct E2eStream {
    tls: TlsStream<DuplexStream>,
    outer: tokio::task::JoinHandle<anyhow::Result<()>>,
}

/// Runs the inner TLS handshake over `ws` with the agent holding `fingerprint`'s key.
pub async fn connect(ws: Ws, fingerprint: &str) -> anyhow::Result<E2eStream> {
    let (near, far) = tokio::io::duplex(PIPE);
    let (far_rd, far_wr) = tokio::io::split(far);
    let outer = tokio::spawn(crate::dial::splice(ws, far_rd, far_wr));
    let connector = tokio_rustls::TlsConnector::from(relay_core::e2e::client_config(fingerprint)?);
    match connector
        .connect(relay_core::e2e::server_name(), near)
        .await
    {
        Ok(tls) => Ok(E2eStream { tls, outer }),
        Err(e) => {
            outer.abort();
            Err(anyhow::Error::from(e).context("end-to-end encrypted session with the agent"))
        }
    }
}

impl E2eStream {
    /// Moves plaintext between the session and a local reader/writer until both directions
    /// end (each end's EOF becomes the session's close, then the tunnel's half-close).
    pub async fn splice<R, W>(self, mut rd: R, mut wr: W) -> anyhow::Result<()>
    where
        R: AsyncRead + Unpin,
        W: AsyncWrite + Unpin,
    {
        let (mut trd, mut twr) = tokio::io::split(self.tls);
        let up = async {
            tokio::io::copy(&mut rd, &mut twr).await?;
            twr.shutdown().await?;
            anyhow::Ok(())
        };
        let down = async {
            tokio::io::copy(&mut trd, &mut wr).await?;
            wr.flush().await?;
            wr.shutdown().await?;
            anyhow::Ok(())
        };
        tokio::try_join!(up, down)?;
        self.outer.await.context("tunnel pump")?
    }
}
