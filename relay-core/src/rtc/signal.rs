//! Signaling messages between a client and an agent, and their framing on a byte stream.
//!
//! The client's edge carries signaling on a tunnel stream opened with
//! [`StreamKind::Signal`](crate::wire::StreamKind): edges only splice bytes (forwarding them
//! over the mesh to the agent's home edge when needed), so a session belongs to the one
//! user, workspace and port its connection ticket names. On that stream each message is a
//! big-endian `u32` length and that many bytes of JSON ([`Signal`]), at most
//! [`MAX_SIGNAL_LEN`] bytes; a session carries at most [`MAX_SIGNALS`] messages each way.

use serde::{Deserialize, Serialize};
use thiserror::Error;
use tokio::io::{AsyncRead, AsyncReadExt as _, AsyncWrite, AsyncWriteExt as _};

/// Longest signaling message (an SDP offer is about 1 KB).
pub const MAX_SIGNAL_LEN: usize = 16 * 1024;
/// Most messages one side may send in a session (an offer or answer and its candidates).
pub const MAX_SIGNALS: usize = 64;

/// A STUN/TURN server and the credentials for it, as in a connection-ticket answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IceServer {
    /// `stun:HOST:PORT` and `turn:HOST:PORT?transport=udp` URLs.
    pub urls: Vec<String>,
    /// TURN username (`EXPIRY:USER`).
    #[serde(default)]
    pub username: String,
    /// TURN password.
    #[serde(default)]
    pub credential: String,
}

/// One signaling message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case", deny_unknown_fields)]
pub enum Signal {
    /// The client's SDP offer, with the ICE servers the agent may use for its own
    /// server-reflexive and relayed candidates.
    Offer {
        /// SDP.
        sdp: String,
        /// STUN/TURN servers for the answering side.
        #[serde(default)]
        ice_servers: Vec<IceServer>,
    },
    /// The agent's SDP answer.
    Answer {
        /// SDP.
        sdp: String,
    },
    /// A trickled ICE candidate (`candidate:…` attribute form).
    Candidate {
        /// The candidate line.
        candidate: String,
    },
    /// The sender gives up; the other side stops too.
    Error {
        /// Why.
        message: String,
    },
}

/// Why a signaling stream was refused or ended.
#[derive(Debug, Error)]
pub enum SignalError {
    /// A message longer than [`MAX_SIGNAL_LEN`].
    #[error("signaling message of {0} bytes (limit {MAX_SIGNAL_LEN})")]
    TooLong(usize),
    /// More than [`MAX_SIGNALS`] messages.
    #[error("more than {MAX_SIGNALS} signaling messages in one session")]
    TooMany,
    /// Not a valid message.
    #[error("bad signaling message: {0}")]
    Malformed(String),
    /// The stream failed.
    #[error("signaling stream: {0}")]
    Io(#[from] std::io::Error),
}

/// Decodes one message body (without the length prefix).
pub fn decode(body: &[u8]) -> Result<Signal, SignalError> {
    if body.len() > MAX_SIGNAL_LEN {
        return Err(SignalError::TooLong(body.len()));
    }
    let s: Signal =
        serde_json::from_slice(body).map_err(|e| SignalError::Malformed(e.to_string()))?;
    let text_len = match &s {
        Signal::Offer { sdp, ice_servers } => {
            if ice_servers.len() > 8 {
                return Err(SignalError::Malformed("more than 8 ICE servers".into()));
            }
            sdp.len()
        }
        Signal::Answer { sdp } => sdp.len(),
        Signal::Candidate { candidate } => candidate.len(),
        Signal::Error { message } => message.len(),
    };
    if text_len == 0 {
        return Err(SignalError::Malformed("empty message".into()));
    }
    Ok(s)
}

/// Encodes one message with its length prefix.
pub fn encode(s: &Signal) -> Vec<u8> {
    let body = serde_json::to_vec(s).unwrap_or_default();
    let mut out = Vec::with_capacity(4 + body.len());
    out.extend_from_slice(&(body.len() as u32).to_be_bytes());
    out.extend_from_slice(&body);
    out
}

/// Reads one message; `None` at a clean end of stream.
pub async fn read<R: AsyncRead + Unpin>(r: &mut R) -> Result<Option<Signal>, SignalError> {
    let mut len = [0u8; 4];
    match r.read_exact(&mut len).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_be_bytes(len) as usize;
    if len > MAX_SIGNAL_LEN {
        return Err(SignalError::TooLong(len));
    }
    let mut body = vec![0u8; len];
    r.read_exact(&mut body).await?;
    decode(&body).map(Some)
}

/// Writes one message.
pub async fn write<W: AsyncWrite + Unpin>(w: &mut W, s: &Signal) -> Result<(), SignalError> {
    w.write_all(&encode(s)).await?;
    w.flush().await?;
    Ok(())
}

/// Moves signals between a byte stream and a peer's channels until either side ends:
/// messages from `outgoing` are written to `w`, messages read from `r` go to `incoming`.
/// Enforces [`MAX_SIGNALS`] on what it reads.
pub async fn pump<R, W>(
    mut r: R,
    mut w: W,
    mut outgoing: tokio::sync::mpsc::UnboundedReceiver<Signal>,
    incoming: tokio::sync::mpsc::Sender<Signal>,
) -> Result<(), SignalError>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    let read_side = async {
        let mut n = 0usize;
        while let Some(s) = read(&mut r).await? {
            n += 1;
            if n > MAX_SIGNALS {
                return Err(SignalError::TooMany);
            }
            if incoming.send(s).await.is_err() {
                break;
            }
        }
        Ok::<_, SignalError>(())
    };
    let write_side = async {
        let mut n = 0usize;
        while let Some(s) = outgoing.recv().await {
            n += 1;
            if n > MAX_SIGNALS {
                return Err(SignalError::TooMany);
            }
            write(&mut w, &s).await?;
        }
        let _ = w.shutdown().await;
        Ok::<_, SignalError>(())
    };
    // Either side ending ends the session: the peer has what it needs once connected, and
    // keeping the stream open costs the edges nothing but keeps the agent's session alive.
    tokio::select! {
        r = read_side => r,
        w = write_side => w,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_limits() {
        let s = Signal::Candidate {
            candidate: "candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host".into(),
        };
        let bytes = encode(&s);
        assert_eq!(decode(&bytes[4..]).unwrap(), s);
        assert!(matches!(
            decode(&vec![b' '; MAX_SIGNAL_LEN + 1]),
            Err(SignalError::TooLong(_))
        ));
        assert!(decode(br#"{"type":"answer","sdp":""}"#).is_err());
        assert!(decode(br#"{"type":"answer","sdp":"x","extra":1}"#).is_err());
        assert!(decode(br#"{"type":"nope"}"#).is_err());
    }

    #[tokio::test]
    async fn reader_refuses_an_oversized_length_before_reading_it() {
        let mut data: &[u8] = &(u32::MAX).to_be_bytes();
        assert!(matches!(
            read(&mut data).await,
            Err(SignalError::TooLong(_))
        ));
    }
}
