//! Resumable byte streams: a connection (an SSH session) that outlives its transport.
//!
//! `perigee ssh --stdio` and the agent's SSH server speak this inside an ordinary tunnel
//! stream. Each side keeps what it sent until the other acknowledges it; when the tunnel
//! drops (a satellite restart, a Wi-Fi change), the client opens a new tunnel, names the
//! session, and both sides replay from the other's received count. The SSH connection on
//! top never sees the gap. The session id is 128 random bits, known only to the client and
//! the agent, and only the workspace's owner can open a tunnel to its port 22 at all; the
//! bytes replayed are SSH ciphertext.
//!
//! Byte layout (integers big-endian), inside the tunnel stream:
//!
//! ```text
//! HELLO    client → agent, first bytes of the stream
//!          MAGIC "\0PRGRSM1" | u8 type=1 | u8 resume (0 new, 1 resume) | id (16) | u64 received
//! WELCOME  agent → client
//!          u8 type=2 | u8 code (0 ok, 1 unknown session, 2 refused) | id (16) | u64 received
//! DATA     u8 type=3 | u32 len (1..=MAX_DATA) | bytes
//! ACK      u8 type=4 | u64 received
//! EOF      u8 type=5            (no more data this way; counts as one byte of the sequence)
//! ```
//!
//! An SSH client's first byte is `S` (`SSH-2.0-…`, RFC 4253 §4.2), so the leading zero tells
//! the two apart on the same port.

mod registry;
mod session;

pub use registry::{hello, Registry, Transport};
pub use session::{End, Session, HEARTBEAT, IDLE_LOST, MAX_UNACKED};

use bytes::{Buf as _, BufMut as _, Bytes, BytesMut};
use thiserror::Error;

/// First bytes of a HELLO.
pub const MAGIC: &[u8; 8] = b"\0PRGRSM1";
/// How long an agent keeps a resumable session whose transport dropped, and how long a
/// client goes on reconnecting to it.
pub const GRACE: std::time::Duration = std::time::Duration::from_secs(60);
/// Largest DATA payload.
pub const MAX_DATA: usize = 64 * 1024;
/// Largest encoded frame (a DATA frame with the largest payload).
pub const MAX_FRAME_LEN: usize = 5 + MAX_DATA;
/// Length of a session id.
pub const ID_LEN: usize = 16;

const TYPE_HELLO: u8 = 1;
const TYPE_WELCOME: u8 = 2;
const TYPE_DATA: u8 = 3;
const TYPE_ACK: u8 = 4;
const TYPE_EOF: u8 = 5;
const HELLO_LEN: usize = MAGIC.len() + 2 + ID_LEN + 8;
const WELCOME_LEN: usize = 2 + ID_LEN + 8;

/// A session id.
pub type Id = [u8; ID_LEN];

/// The agent's answer to a HELLO.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Welcome {
    /// Attached; resume from this many of the client's bytes.
    Ok,
    /// No session by that id (it ended, or waited longer than the agent keeps one).
    Unknown,
    /// The agent keeps too many sessions already.
    Refused,
}

/// One frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Frame {
    /// Start (`resume: false`) or resume a session.
    Hello {
        /// Resume the session `id` rather than start one.
        resume: bool,
        /// The session (zeros for a new one).
        id: Id,
        /// How many of the agent's bytes the client has (EOF counts one).
        received: u64,
    },
    /// The agent's answer.
    Welcome {
        /// Outcome.
        code: Welcome,
        /// The session.
        id: Id,
        /// How many of the client's bytes the agent has.
        received: u64,
    },
    /// Stream bytes.
    Data(Bytes),
    /// The sender has this many of the peer's bytes.
    Ack(u64),
    /// No more data in this direction.
    Eof,
}

/// A frame that cannot be decoded.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// The HELLO did not start with [`MAGIC`].
    #[error("not a resumable stream (bad magic)")]
    BadMagic,
    /// An unknown frame type.
    #[error("unknown frame type {0}")]
    UnknownType(u8),
    /// A DATA frame longer than [`MAX_DATA`] or empty.
    #[error("data frame of {0} bytes (1..={MAX_DATA} allowed)")]
    BadLength(u32),
    /// A field out of range.
    #[error("bad {0}")]
    BadField(&'static str),
}

impl Frame {
    /// Appends the encoding of `self` to `out`.
    pub fn encode(&self, out: &mut BytesMut) {
        match self {
            Frame::Hello {
                resume,
                id,
                received,
            } => {
                out.put_slice(MAGIC);
                out.put_u8(TYPE_HELLO);
                out.put_u8(u8::from(*resume));
                out.put_slice(id);
                out.put_u64(*received);
            }
            Frame::Welcome { code, id, received } => {
                out.put_u8(TYPE_WELCOME);
                out.put_u8(match code {
                    Welcome::Ok => 0,
                    Welcome::Unknown => 1,
                    Welcome::Refused => 2,
                });
                out.put_slice(id);
                out.put_u64(*received);
            }
            Frame::Data(b) => {
                out.put_u8(TYPE_DATA);
                out.put_u32(u32::try_from(b.len()).unwrap_or(u32::MAX));
                out.put_slice(b);
            }
            Frame::Ack(n) => {
                out.put_u8(TYPE_ACK);
                out.put_u64(*n);
            }
            Frame::Eof => out.put_u8(TYPE_EOF),
        }
    }

    /// Takes one frame off the front of `buf`; `Ok(None)` when more bytes are needed. Never
    /// asks for more than [`MAX_FRAME_LEN`] bytes.
    pub fn decode(buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(&first) = buf.first() else {
            return Ok(None);
        };
        let need = |n: usize, buf: &BytesMut| buf.len() >= n;
        match first {
            0 => {
                let prefix = buf.len().min(MAGIC.len());
                if buf[..prefix] != MAGIC[..prefix] {
                    return Err(FrameError::BadMagic);
                }
                if !need(HELLO_LEN, buf) {
                    return Ok(None);
                }
                if buf[MAGIC.len()] != TYPE_HELLO {
                    return Err(FrameError::UnknownType(buf[MAGIC.len()]));
                }
                let resume = match buf[MAGIC.len() + 1] {
                    0 => false,
                    1 => true,
                    _ => return Err(FrameError::BadField("resume flag")),
                };
                buf.advance(MAGIC.len() + 2);
                let id = take_id(buf);
                let received = buf.get_u64();
                Ok(Some(Frame::Hello {
                    resume,
                    id,
                    received,
                }))
            }
            TYPE_WELCOME => {
                if !need(WELCOME_LEN, buf) {
                    return Ok(None);
                }
                let code = match buf[1] {
                    0 => Welcome::Ok,
                    1 => Welcome::Unknown,
                    2 => Welcome::Refused,
                    _ => return Err(FrameError::BadField("welcome code")),
                };
                buf.advance(2);
                let id = take_id(buf);
                let received = buf.get_u64();
                Ok(Some(Frame::Welcome { code, id, received }))
            }
            TYPE_DATA => {
                if !need(5, buf) {
                    return Ok(None);
                }
                let len = u32::from_be_bytes([buf[1], buf[2], buf[3], buf[4]]);
                if len == 0 || len as usize > MAX_DATA {
                    return Err(FrameError::BadLength(len));
                }
                if !need(5 + len as usize, buf) {
                    return Ok(None);
                }
                buf.advance(5);
                Ok(Some(Frame::Data(buf.split_to(len as usize).freeze())))
            }
            TYPE_ACK => {
                if !need(9, buf) {
                    return Ok(None);
                }
                buf.advance(1);
                Ok(Some(Frame::Ack(buf.get_u64())))
            }
            TYPE_EOF => {
                buf.advance(1);
                Ok(Some(Frame::Eof))
            }
            other => Err(FrameError::UnknownType(other)),
        }
    }
}

fn take_id(buf: &mut BytesMut) -> Id {
    let mut id = [0u8; ID_LEN];
    buf.copy_to_slice(&mut id);
    id
}

/// A DATA frame's 5-byte header for a payload of `len` bytes.
pub(crate) fn data_header(len: usize) -> [u8; 5] {
    let l = u32::try_from(len).unwrap_or(u32::MAX).to_be_bytes();
    [TYPE_DATA, l[0], l[1], l[2], l[3]]
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn round_trip(f: Frame) {
        let mut b = BytesMut::new();
        f.encode(&mut b);
        let whole = b.clone();
        // Every strict prefix asks for more.
        for cut in 0..whole.len() {
            let mut p = BytesMut::from(&whole[..cut]);
            assert_eq!(Frame::decode(&mut p), Ok(None), "{f:?} cut at {cut}");
        }
        assert_eq!(Frame::decode(&mut b), Ok(Some(f)));
        assert!(b.is_empty());
    }

    #[test]
    fn frames_round_trip() {
        round_trip(Frame::Hello {
            resume: true,
            id: [7; ID_LEN],
            received: 1 << 40,
        });
        round_trip(Frame::Welcome {
            code: Welcome::Unknown,
            id: [1; ID_LEN],
            received: 3,
        });
        round_trip(Frame::Data(Bytes::from_static(b"SSH-2.0-x")));
        round_trip(Frame::Data(Bytes::from(vec![9u8; MAX_DATA])));
        round_trip(Frame::Ack(u64::MAX));
        round_trip(Frame::Eof);
    }

    #[test]
    fn bad_input_is_refused() {
        let bad = |b: &[u8]| Frame::decode(&mut BytesMut::from(b));
        assert_eq!(bad(b"SSH-2.0-OpenSSH"), Err(FrameError::UnknownType(b'S')));
        assert_eq!(bad(b"\0PRX"), Err(FrameError::BadMagic));
        assert_eq!(bad(&[3, 0, 1, 0, 1]), Err(FrameError::BadLength(65537)));
        assert_eq!(bad(&[3, 0, 0, 0, 0]), Err(FrameError::BadLength(0)));
        let mut h = BytesMut::new();
        Frame::Hello {
            resume: false,
            id: [0; ID_LEN],
            received: 0,
        }
        .encode(&mut h);
        h[MAGIC.len() + 1] = 2;
        assert_eq!(
            Frame::decode(&mut h),
            Err(FrameError::BadField("resume flag"))
        );
    }
}
