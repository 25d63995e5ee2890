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
//!         (type=6, same layout: the stream carries an end-to-end encrypted session that the
//!         agent terminates; see `crate::e2e`)
//!         (type=7, same layout: the stream carries WebRTC signaling for a peer connection
//!         whose data channels reach `port`; see `crate::rtc::signal`)
//! STATUS  reply to HELLO, OPEN, MESH_HELLO or MESH_OPEN
//!         u8 version | u8 type=3 | u8 code | u16 msg_len | msg (≤ MAX_MESSAGE_LEN bytes, UTF-8)
//! MESH_HELLO  edge → edge, first bi-stream of a mesh QUIC connection (ALPN MESH_ALPN)
//!         u8 version | u8 type=4 | u16 name_len | name (≤ MAX_EDGE_NAME_LEN) | mac (32 bytes)
//! MESH_OPEN   edge → home edge, first bytes of every forwarded tunnel stream
//!         u8 version | u8 type=5 | u16 port | u64 session_id | u16 ticket_len | ticket
//!         (≤ MAX_TICKET_LEN bytes, the client's connection ticket, checked again)
//!         (type=8, same layout: a signaling stream, as OPEN type 7)
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
/// ALPN of the QUIC mesh link between edges.
pub const MESH_ALPN: &[u8] = b"perigee-mesh/1";
/// Longest edge name accepted in a MESH_HELLO.
pub const MAX_EDGE_NAME_LEN: usize = 64;
/// Length of the MAC in a MESH_HELLO (HMAC-SHA256).
pub const MESH_MAC_LEN: usize = 32;
/// Longest ticket accepted in a MESH_OPEN (same limit as the tunnel header).
pub const MAX_TICKET_LEN: usize = crate::ticket::MAX_TICKET_LEN;
/// Longest token accepted in a HELLO.
pub const MAX_TOKEN_LEN: usize = 512;
/// Longest message accepted in a STATUS.
pub const MAX_MESSAGE_LEN: usize = 1024;
/// Largest encoded frame (a MESH_OPEN with the longest ticket).
pub const MAX_FRAME_LEN: usize = 14 + MAX_TICKET_LEN;
/// Header carrying the workspace port on an HTTP/2 link stream request.
pub const H2_PORT_HEADER: &str = "perigee-port";
/// Header marking an HTTP/2 link stream as a signaling stream (value `1`).
pub const H2_SIGNAL_HEADER: &str = "perigee-signal";
/// Header marking an HTTP/2 link stream as end-to-end encrypted (value `1`).
pub const H2_E2E_HEADER: &str = "perigee-e2e";
/// Header carrying the session id on an HTTP/2 link stream request.
pub const H2_SESSION_HEADER: &str = "perigee-session";
/// `Upgrade:` token of the HTTP/2 agent-link fallback.
pub const H2_UPGRADE_TOKEN: &str = "perigee-link-h2";

const TYPE_HELLO: u8 = 1;
const TYPE_OPEN: u8 = 2;
const TYPE_STATUS: u8 = 3;
const TYPE_MESH_HELLO: u8 = 4;
const TYPE_MESH_OPEN: u8 = 5;
const TYPE_OPEN_E2E: u8 = 6;
const TYPE_OPEN_SIGNAL: u8 = 7;
const TYPE_MESH_SIGNAL: u8 = 8;

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
        /// The stream carries an end-to-end encrypted session for the agent to terminate.
        e2e: bool,
        /// The stream carries WebRTC signaling (the agent answers; data channels reach
        /// `port`). Never together with `e2e`.
        signal: bool,
    },
    /// Answer to HELLO, OPEN, MESH_HELLO or MESH_OPEN.
    Status {
        /// Outcome.
        code: StatusCode,
        /// Human-readable detail (may be empty).
        message: String,
    },
    /// An edge introduces itself to another edge on a mesh link.
    MeshHello {
        /// The dialing edge's name.
        edge: String,
        /// HMAC-SHA256 of the TLS exporter secret under the mesh key (`crate::mesh`).
        mac: [u8; MESH_MAC_LEN],
    },
    /// An edge forwards a client tunnel to the workspace's home edge.
    MeshOpen {
        /// Port on the workspace's loopback.
        port: u16,
        /// Session id, for logs and tracing on both edges.
        session_id: u64,
        /// The client's connection ticket; the home edge verifies it again.
        ticket: String,
        /// A signaling stream (see [`Frame::Open`]).
        signal: bool,
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
            Frame::Open {
                port,
                session_id,
                e2e,
                signal,
            } => {
                out.push(if *signal {
                    TYPE_OPEN_SIGNAL
                } else if *e2e {
                    TYPE_OPEN_E2E
                } else {
                    TYPE_OPEN
                });
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
            Frame::MeshHello { edge, mac } => {
                let n = truncate_utf8(edge, MAX_EDGE_NAME_LEN);
                out.push(TYPE_MESH_HELLO);
                out.extend_from_slice(&(n.len() as u16).to_be_bytes());
                out.extend_from_slice(n.as_bytes());
                out.extend_from_slice(mac);
            }
            Frame::MeshOpen {
                port,
                session_id,
                ticket,
                signal,
            } => {
                let t = truncate_utf8(ticket, MAX_TICKET_LEN);
                out.push(if *signal {
                    TYPE_MESH_SIGNAL
                } else {
                    TYPE_MESH_OPEN
                });
                out.extend_from_slice(&port.to_be_bytes());
                out.extend_from_slice(&session_id.to_be_bytes());
                out.extend_from_slice(&(t.len() as u16).to_be_bytes());
                out.extend_from_slice(t.as_bytes());
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
            TYPE_OPEN | TYPE_OPEN_E2E | TYPE_OPEN_SIGNAL => {
                let (Some(port), Some(sid)) = (be_u16(buf, 2), buf.get(4..12)) else {
                    return Ok(None);
                };
                let mut id = [0u8; 8];
                id.copy_from_slice(sid);
                Ok(Some((
                    Frame::Open {
                        port,
                        session_id: u64::from_be_bytes(id),
                        e2e: ty == TYPE_OPEN_E2E,
                        signal: ty == TYPE_OPEN_SIGNAL,
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
            TYPE_MESH_HELLO => {
                let Some(len) = be_u16(buf, 2) else {
                    return Ok(None);
                };
                let len = usize::from(len);
                if len > MAX_EDGE_NAME_LEN {
                    return Err(WireError::TooLong {
                        len,
                        limit: MAX_EDGE_NAME_LEN,
                    });
                }
                let end = 4 + len + MESH_MAC_LEN;
                let Some(bytes) = buf.get(4..end) else {
                    return Ok(None);
                };
                let (name, mac_bytes) = bytes.split_at(len);
                let edge = std::str::from_utf8(name).map_err(|_| WireError::NotUtf8)?;
                let mut mac = [0u8; MESH_MAC_LEN];
                mac.copy_from_slice(mac_bytes);
                Ok(Some((
                    Frame::MeshHello {
                        edge: edge.to_owned(),
                        mac,
                    },
                    end,
                )))
            }
            TYPE_MESH_OPEN | TYPE_MESH_SIGNAL => {
                let (Some(port), Some(sid), Some(len)) =
                    (be_u16(buf, 2), buf.get(4..12), be_u16(buf, 12))
                else {
                    return Ok(None);
                };
                let len = usize::from(len);
                if len > MAX_TICKET_LEN {
                    return Err(WireError::TooLong {
                        len,
                        limit: MAX_TICKET_LEN,
                    });
                }
                let Some(bytes) = buf.get(14..14 + len) else {
                    return Ok(None);
                };
                let ticket = std::str::from_utf8(bytes).map_err(|_| WireError::NotUtf8)?;
                let mut id = [0u8; 8];
                id.copy_from_slice(sid);
                Ok(Some((
                    Frame::MeshOpen {
                        port,
                        session_id: u64::from_be_bytes(id),
                        ticket: ticket.to_owned(),
                        signal: ty == TYPE_MESH_SIGNAL,
                    },
                    14 + len,
                )))
            }
            other => Err(WireError::UnknownType(other)),
        }
    }

    /// How many bytes of `buf`'s frame are known to be needed: the whole frame's length once
    /// its length fields are in `buf`, else the length of the next prefix that tells more.
    /// Errors as [`Frame::decode`] does on a bad version, type or length.
    pub fn wanted(buf: &[u8]) -> Result<usize, WireError> {
        let (Some(&version), Some(&ty)) = (buf.first(), buf.get(1)) else {
            return Ok(2);
        };
        if version != VERSION {
            return Err(WireError::BadVersion(version));
        }
        let var = |at: usize, fixed: usize, limit: usize| -> Result<usize, WireError> {
            match be_u16(buf, at) {
                None => Ok(at + 2),
                Some(len) if usize::from(len) > limit => Err(WireError::TooLong {
                    len: usize::from(len),
                    limit,
                }),
                Some(len) => Ok(fixed + usize::from(len)),
            }
        };
        match ty {
            TYPE_HELLO => var(2, 4, MAX_TOKEN_LEN),
            TYPE_OPEN | TYPE_OPEN_E2E | TYPE_OPEN_SIGNAL => Ok(12),
            TYPE_STATUS => var(3, 5, MAX_MESSAGE_LEN),
            TYPE_MESH_HELLO => var(2, 4 + MESH_MAC_LEN, MAX_EDGE_NAME_LEN),
            TYPE_MESH_OPEN | TYPE_MESH_SIGNAL => var(12, 14, MAX_TICKET_LEN),
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
    loop {
        let want = Frame::wanted(&buf)?;
        if buf.len() >= want {
            return match Frame::decode(&buf)? {
                Some((frame, _)) => Ok(frame),
                None => Err(ReadFrameError::Wire(WireError::TooLong {
                    len: buf.len(),
                    limit: MAX_FRAME_LEN,
                })),
            };
        }
        let have = buf.len();
        buf.resize(want, 0);
        r.read_exact(&mut buf[have..]).await?;
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
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_frame() {
        for f in [
            Frame::Open {
                port: 8443,
                session_id: 11,
                e2e: true,
                signal: false,
            },
            Frame::Hello {
                token: "abc".into(),
            },
            Frame::Open {
                port: 22,
                session_id: u64::MAX,
                e2e: false,
                signal: false,
            },
            Frame::Status {
                code: StatusCode::ConnectRefused,
                message: "nothing on 22".into(),
            },
            Frame::MeshHello {
                edge: "eu".into(),
                mac: [7; MESH_MAC_LEN],
            },
            Frame::MeshOpen {
                port: 22,
                session_id: 9,
                ticket: "pt1.abc.def".into(),
                signal: true,
            },
        ] {
            let b = f.to_bytes();
            assert_eq!(Frame::decode(&b), Ok(Some((f.clone(), b.len()))));
            for cut in 0..b.len() {
                assert_eq!(Frame::decode(&b[..cut]), Ok(None), "prefix {cut} of {f:?}");
                let want = Frame::wanted(&b[..cut]).unwrap();
                assert!(
                    want > cut && want <= b.len(),
                    "wanted({cut}) = {want} for {f:?}"
                );
            }
            assert_eq!(Frame::wanted(&b), Ok(b.len()));
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
            e2e: false,
            signal: false,
        }
        .to_bytes();
        bytes.extend_from_slice(b"payload");
        let mut r = &bytes[..];
        let f = read_frame(&mut r).await.unwrap();
        assert_eq!(
            f,
            Frame::Open {
                port: 80,
                session_id: 7,
                e2e: false,
                signal: false,
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
