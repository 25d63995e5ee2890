//! Agent-link frames.
//!
//! An agent link is a QUIC connection (ALPN [`LINK_ALPN`]) or, where UDP is blocked, an HTTP/2
//! connection over an upgraded TLS stream. On QUIC these frames open each stream; on HTTP/2
//! the same information travels in headers (see [`H2_PORT_HEADER`]).
//!
//! Byte layout (all integers big-endian):
//!
//! ```text
//! HELLO   agent → edge, first bi-stream of a QUIC link
//!         u8 version | u8 type=1 | u16 token_len | token (≤ MAX_TOKEN_LEN bytes, UTF-8)
//! OPEN    edge → agent, first bytes of every tunnel bi-stream
//!         u8 version | u8 type=2 | u16 port | u64 session_id
//! STATUS  reply to HELLO or OPEN
//!         u8 version | u8 type=3 | u8 code | u16 msg_len | msg (≤ MAX_MESSAGE_LEN bytes, UTF-8)
//! ```
//!
//! Versioning: [`VERSION`] is bumped whenever a layout changes; a peer that receives another
//! version answers `STATUS(code=BadVersion)` and closes the stream. Adding a new frame type
//! does not bump the version (unknown types are rejected per stream, not per link).

use thiserror::Error;

/// Version byte carried by every frame.
pub const VERSION: u8 = 1;
/// ALPN of the QUIC agent link.
pub const LINK_ALPN: &[u8] = b"perigee-link/1";
/// Longest token accepted in a HELLO.
pub const MAX_TOKEN_LEN: usize = 512;
/// Longest message accepted in a STATUS.
pub const MAX_MESSAGE_LEN: usize = 1024;
/// Largest encoded frame (a STATUS with the longest message).
pub const MAX_FRAME_LEN: usize = 5 + MAX_MESSAGE_LEN;
/// Header carrying the workspace port on an HTTP/2 link stream request.
pub const H2_PORT_HEADER: &str = "perigee-port";
/// Header carrying the session id on an HTTP/2 link stream request.
pub const H2_SESSION_HEADER: &str = "perigee-session";
/// `Upgrade:` token of the HTTP/2 agent-link fallback.
pub const H2_UPGRADE_TOKEN: &str = "perigee-link-h2";

const TYPE_HELLO: u8 = 1;
const TYPE_OPEN: u8 = 2;
const TYPE_STATUS: u8 = 3;

/// One decoded frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// The agent presents its token.
    Hello {
        /// The agent token (secret).
        token: String,
    },
    /// The edge asks the agent to connect a stream to a workspace port.
    Open {
        /// Port on the workspace's loopback.
        port: u16,
        /// Session id, for logs and tracing on both sides.
        session_id: u64,
    },
    /// Answer to HELLO or OPEN.
    Status {
        /// Outcome.
        code: StatusCode,
        /// Human-readable detail (may be empty).
        message: String,
    },
}

/// Outcome carried by a STATUS frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum StatusCode {
    /// Accepted.
    Ok = 0,
    /// The token was not accepted.
    Unauthorized = 1,
    /// Nothing listens on the port (connection refused).
    ConnectRefused = 2,
    /// Connecting to the port failed otherwise.
    ConnectFailed = 3,
    /// The frame was malformed or of another version.
    BadFrame = 4,
    /// The peer is overloaded or shutting down.
    Unavailable = 5,
}

impl StatusCode {
    fn from_u8(v: u8) -> Result<Self, WireError> {
        Ok(match v {
            0 => Self::Ok,
            1 => Self::Unauthorized,
            2 => Self::ConnectRefused,
            3 => Self::ConnectFailed,
            4 => Self::BadFrame,
            5 => Self::Unavailable,
            other => return Err(WireError::UnknownStatus(other)),
        })
    }
}

/// Why bytes could not be decoded into a [`Frame`].
#[derive(Debug, Error, PartialEq, Eq)]
pub enum WireError {
    /// The version byte is not [`VERSION`].
    #[error("unsupported link frame version {0} (this build speaks {VERSION})")]
    BadVersion(u8),
    /// The type byte names no frame.
    #[error("unknown link frame type {0}")]
    UnknownType(u8),
    /// The status byte names no status.
    #[error("unknown link status code {0}")]
    UnknownStatus(u8),
    /// A length field exceeds its limit.
    #[error("link frame field too long: {len} bytes (limit {limit})")]
    TooLong {
        /// Declared length.
        len: usize,
        /// Limit for that field.
        limit: usize,
    },
    /// A string field is not UTF-8.
    #[error("link frame string is not UTF-8")]
    NotUtf8,
}

impl Frame {
    /// Appends the encoding of `self` to `out`.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(VERSION);
        match self {
            Frame::Hello { token } => {
                let t = &token.as_bytes()[..token.len().min(MAX_TOKEN_LEN)];
                out.push(TYPE_HELLO);
                out.extend_from_slice(&(t.len() as u16).to_be_bytes());
                out.extend_from_slice(t);
            }
            Frame::Open { port, session_id } => {
                out.push(TYPE_OPEN);
                out.extend_from_slice(&port.to_be_bytes());
                out.extend_from_slice(&session_id.to_be_bytes());
            }
            Frame::Status { code, message } => {
                let m = truncate_utf8(message, MAX_MESSAGE_LEN);
                out.push(TYPE_STATUS);
                out.push(*code as u8);
                out.extend_from_slice(&(m.len() as u16).to_be_bytes());
                out.extend_from_slice(m.as_bytes());
            }
        }
    }

    /// Encodes `self` into a new buffer.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(16);
        self.encode(&mut v);
        v
    }

    /// Decodes one frame from the start of `buf`.
    ///
    /// Returns `Ok(None)` when more bytes are needed, `Ok(Some((frame, used)))` when a frame
    /// is complete. Never reads more than [`MAX_FRAME_LEN`] bytes and never panics.
    pub fn decode(buf: &[u8]) -> Result<Option<(Frame, usize)>, WireError> {
        let (Some(&version), Some(&ty)) = (buf.first(), buf.get(1)) else {
            return Ok(None);
        };
        if version != VERSION {
            return Err(WireError::BadVersion(version));
        }
        match ty {
            TYPE_HELLO => {
                let Some(len) = be_u16(buf, 2) else {
                    return Ok(None);
                };
                let len = usize::from(len);
                if len > MAX_TOKEN_LEN {
                    return Err(WireError::TooLong {
                        len,
                        limit: MAX_TOKEN_LEN,
                    });
                }
                let Some(bytes) = buf.get(4..4 + len) else {
                    return Ok(None);
                };
                let token = std::str::from_utf8(bytes).map_err(|_| WireError::NotUtf8)?;
                Ok(Some((
                    Frame::Hello {
                        token: token.to_owned(),
                    },
                    4 + len,
                )))
            }
            TYPE_OPEN => {
                let (Some(port), Some(sid)) = (be_u16(buf, 2), buf.get(4..12)) else {
                    return Ok(None);
                };
                let mut id = [0u8; 8];
                id.copy_from_slice(sid);
                Ok(Some((
                    Frame::Open {
                        port,
                        session_id: u64::from_be_bytes(id),
                    },
                    12,
                )))
            }
            TYPE_STATUS => {
                let (Some(&code), Some(len)) = (buf.get(2), be_u16(buf, 3)) else {
                    return Ok(None);
                };
                let code = StatusCode::from_u8(code)?;
                let len = usize::from(len);
                if len > MAX_MESSAGE_LEN {
                    return Err(WireError::TooLong {
                        len,
                        limit: MAX_MESSAGE_LEN,
                    });
                }
                let Some(bytes) = buf.get(5..5 + len) else {
                    return Ok(None);
                };
                let message = std::str::from_utf8(bytes).map_err(|_| WireError::NotUtf8)?;
                Ok(Some((
                    Frame::Status {
                        code,
                        message: message.to_owned(),
                    },
                    5 + len,
                )))
            }
            other => Err(WireError::UnknownType(other)),
        }
    }
}

fn be_u16(buf: &[u8], at: usize) -> Option<u16> {
    let b = buf.get(at..at + 2)?;
    Some(u16::from_be_bytes([b[0], b[1]]))
}

fn truncate_utf8(s: &str, max: usize) -> &str {
    if s.len() <= max {
        return s;
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    &s[..end]
}

/// Reads exactly one frame from an async reader, never buffering past it.
///
/// Reads byte-exact (header first, then the declared body) so the bytes that follow the frame
/// stay in the stream for the splice.
pub async fn read_frame<R>(r: &mut R) -> Result<Frame, ReadFrameError>
where
    R: tokio::io::AsyncRead + Unpin,
{
    use tokio::io::AsyncReadExt;
    let mut buf = Vec::with_capacity(16);
    let mut head = [0u8; 2];
    r.read_exact(&mut head).await?;
    buf.extend_from_slice(&head);
    let need_more = match head[1] {
        TYPE_HELLO => 2,
        TYPE_OPEN => 10,
        TYPE_STATUS => 3,
        _ => 0,
    };
    if head[0] != VERSION || need_more == 0 {
        return Err(Frame::decode(&buf)
            .err()
            .unwrap_or(WireError::UnknownType(head[1]))
            .into());
    }
    let mut more = vec![0u8; need_more];
    r.read_exact(&mut more).await?;
    buf.extend_from_slice(&more);
    let body_len = match head[1] {
        TYPE_HELLO => usize::from(u16::from_be_bytes([buf[2], buf[3]])),
        TYPE_STATUS => usize::from(u16::from_be_bytes([buf[3], buf[4]])),
        _ => 0,
    };
    if body_len > MAX_MESSAGE_LEN.max(MAX_TOKEN_LEN) {
        return Err(Frame::decode(&buf)
            .err()
            .unwrap_or(WireError::TooLong {
                len: body_len,
                limit: MAX_MESSAGE_LEN,
            })
            .into());
    }
    let mut body = vec![0u8; body_len];
    r.read_exact(&mut body).await?;
    buf.extend_from_slice(&body);
    match Frame::decode(&buf)? {
        Some((frame, _)) => Ok(frame),
        None => Err(ReadFrameError::Wire(WireError::TooLong {
            len: buf.len(),
            limit: MAX_FRAME_LEN,
        })),
    }
}

/// Failure of [`read_frame`].
#[derive(Debug, Error)]
pub enum ReadFrameError {
    /// The stream ended or failed.
    #[error("link stream: {0}")]
    Io(#[from] std::io::Error),
    /// The bytes were not a valid frame.
    #[error(transparent)]
    Wire(#[from] WireError),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_frame() {
        for f in [
            Frame::Hello {
                token: "abc".into(),
            },
            Frame::Open {
                port: 22,
                session_id: u64::MAX,
            },
            Frame::Status {
                code: StatusCode::ConnectRefused,
                message: "nothing on 22".into(),
            },
        ] {
            let b = f.to_bytes();
            assert_eq!(Frame::decode(&b), Ok(Some((f.clone(), b.len()))));
            for cut in 0..b.len() {
                assert_eq!(Frame::decode(&b[..cut]), Ok(None), "prefix {cut} of {f:?}");
            }
        }
    }

    #[test]
    fn rejects_bad_input() {
        assert_eq!(Frame::decode(&[9, 1]), Err(WireError::BadVersion(9)));
        assert_eq!(Frame::decode(&[1, 77]), Err(WireError::UnknownType(77)));
        assert_eq!(
            Frame::decode(&[1, 1, 0xff, 0xff]),
            Err(WireError::TooLong {
                len: 65535,
                limit: MAX_TOKEN_LEN
            })
        );
        assert_eq!(
            Frame::decode(&[1, 3, 200, 0, 0]),
            Err(WireError::UnknownStatus(200))
        );
        assert_eq!(Frame::decode(&[1, 1, 0, 1, 0xff]), Err(WireError::NotUtf8));
    }

    #[tokio::test]
    async fn read_frame_stops_at_the_frame_end() {
        let mut bytes = Frame::Open {
            port: 80,
            session_id: 7,
        }
        .to_bytes();
        bytes.extend_from_slice(b"payload");
        let mut r = &bytes[..];
        let f = read_frame(&mut r).await.unwrap();
        assert_eq!(
            f,
            Frame::Open {
                port: 80,
                session_id: 7
            }
        );
        assert_eq!(r, b"payload");
        let mut bad: &[u8] = &[1, 1, 0xff, 0xff];
        assert!(matches!(
            read_frame(&mut bad).await,
            Err(ReadFrameError::Wire(WireError::TooLong { .. }))
        ));
    }
}
