//! WebSocket frame headers (RFC 6455 §5.2), for relaying frames as a stream.
//!
//! The edge does not assemble messages: it decodes each frame header, then unmasks and
//! forwards the payload chunk by chunk as it arrives, so an idle tunnel holds no buffer and a
//! bulk transfer is never copied into a message buffer. Layout:
//!
//! ```text
//! byte 0: FIN(1) RSV1-3(3) opcode(4)      byte 1: MASK(1) len7(7)
//! len7 = 126 → u16 length follows; len7 = 127 → u64 length follows (big-endian)
//! MASK = 1 → 4-byte masking key follows, then the payload
//! ```
//!
//! Limits: a data frame may carry at most [`MAX_FRAME_PAYLOAD`] bytes, a control frame 125
//! (RFC); extensions (RSV bits) are refused since none is negotiated.

use thiserror::Error;

/// Largest data-frame payload accepted (the relay streams it; this bounds abuse, not memory).
pub const MAX_FRAME_PAYLOAD: u64 = 1024 * 1024;
/// Longest possible header: 2 + 8 (length) + 4 (mask).
pub const MAX_HEADER_LEN: usize = 14;

/// Frame opcodes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Opcode {
    /// Continuation of a fragmented message.
    Continuation,
    /// UTF-8 text.
    Text,
    /// Bytes.
    Binary,
    /// Close.
    Close,
    /// Ping.
    Ping,
    /// Pong.
    Pong,
}

/// A decoded frame header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Last frame of its message.
    pub fin: bool,
    /// Opcode.
    pub opcode: Opcode,
    /// Masking key, when masked (clients must mask).
    pub mask: Option<[u8; 4]>,
    /// Payload length.
    pub len: u64,
}

/// A header that must not be relayed.
#[derive(Debug, Error, PartialEq, Eq)]
pub enum FrameError {
    /// Reserved opcode.
    #[error("reserved WebSocket opcode {0:#x}")]
    BadOpcode(u8),
    /// RSV bits set without a negotiated extension.
    #[error("WebSocket extension bits set but none negotiated")]
    Reserved,
    /// Payload over the limit for its kind.
    #[error("WebSocket frame of {len} bytes exceeds the limit of {limit}")]
    TooLong {
        /// Declared length.
        len: u64,
        /// Limit.
        limit: u64,
    },
    /// Control frame split across frames.
    #[error("fragmented WebSocket control frame")]
    FragmentedControl,
}

impl Header {
    /// Decodes a header from the start of `buf`: `Ok(None)` if more bytes are needed,
    /// else the header and its encoded length. Never panics.
    pub fn decode(buf: &[u8]) -> Result<Option<(Header, usize)>, FrameError> {
        let (Some(&b0), Some(&b1)) = (buf.first(), buf.get(1)) else {
            return Ok(None);
        };
        if b0 & 0x70 != 0 {
            return Err(FrameError::Reserved);
        }
        let opcode = match b0 & 0x0f {
            0x0 => Opcode::Continuation,
            0x1 => Opcode::Text,
            0x2 => Opcode::Binary,
            0x8 => Opcode::Close,
            0x9 => Opcode::Ping,
            0xa => Opcode::Pong,
            other => return Err(FrameError::BadOpcode(other)),
        };
        let fin = b0 & 0x80 != 0;
        let masked = b1 & 0x80 != 0;
        let (len, mut at) = match b1 & 0x7f {
            126 => match buf.get(2..4) {
                Some(b) => (u64::from(u16::from_be_bytes([b[0], b[1]])), 4),
                None => return Ok(None),
            },
            127 => match buf.get(2..10) {
                Some(b) => {
                    let mut a = [0u8; 8];
                    a.copy_from_slice(b);
                    (u64::from_be_bytes(a), 10)
                }
                None => return Ok(None),
            },
            n => (u64::from(n), 2),
        };
        let control = matches!(opcode, Opcode::Close | Opcode::Ping | Opcode::Pong);
        if control && !fin {
            return Err(FrameError::FragmentedControl);
        }
        let limit = if control { 125 } else { MAX_FRAME_PAYLOAD };
        if len > limit {
            return Err(FrameError::TooLong { len, limit });
        }
        let mask = if masked {
            let Some(m) = buf.get(at..at + 4) else {
                return Ok(None);
            };
            at += 4;
            Some([m[0], m[1], m[2], m[3]])
        } else {
            None
        };
        Ok(Some((
            Header {
                fin,
                opcode,
                mask,
                len,
            },
            at,
        )))
    }

    /// Appends the header of an unmasked (server-to-client) frame.
    pub fn encode_server(opcode: Opcode, len: usize, out: &mut Vec<u8>) {
        let op = match opcode {
            Opcode::Continuation => 0x0,
            Opcode::Text => 0x1,
            Opcode::Binary => 0x2,
            Opcode::Close => 0x8,
            Opcode::Ping => 0x9,
            Opcode::Pong => 0xa,
        };
        out.push(0x80 | op);
        if len < 126 {
            out.push(len as u8);
        } else if let Ok(l) = u16::try_from(len) {
            out.push(126);
            out.extend_from_slice(&l.to_be_bytes());
        } else {
            out.push(127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
}

/// Unmasks `data` in place; `offset` is the position of `data[0]` within the frame payload.
pub fn unmask(data: &mut [u8], mask: [u8; 4], offset: u64) {
    let shift = (offset % 4) as usize;
    let rotated = [
        mask[shift],
        mask[(shift + 1) % 4],
        mask[(shift + 2) % 4],
        mask[(shift + 3) % 4],
    ];
    let word = u64::from_ne_bytes([
        rotated[0], rotated[1], rotated[2], rotated[3], rotated[0], rotated[1], rotated[2],
        rotated[3],
    ]);
    let mut chunks = data.chunks_exact_mut(8);
    for c in &mut chunks {
        let mut a = [0u8; 8];
        a.copy_from_slice(c);
        c.copy_from_slice(&(u64::from_ne_bytes(a) ^ word).to_ne_bytes());
    }
    for (i, b) in chunks.into_remainder().iter_mut().enumerate() {
        *b ^= rotated[i % 4];
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn decodes_all_length_forms_and_masks() {
        let h = Header::decode(&[0x82, 0x85, 1, 2, 3, 4]).unwrap().unwrap();
        assert_eq!(
            h,
            (
                Header {
                    fin: true,
                    opcode: Opcode::Binary,
                    mask: Some([1, 2, 3, 4]),
                    len: 5
                },
                6
            )
        );
        let h = Header::decode(&[0x02, 126, 0x01, 0x00]).unwrap().unwrap();
        assert_eq!(
            h,
            (
                Header {
                    fin: false,
                    opcode: Opcode::Binary,
                    mask: None,
                    len: 256
                },
                4
            )
        );
        let mut big = vec![0x82, 127];
        big.extend_from_slice(&70_000u64.to_be_bytes());
        assert_eq!(Header::decode(&big).unwrap().unwrap().0.len, 70_000);
        for cut in 0..6 {
            assert_eq!(Header::decode(&[0x82, 0x85, 1, 2, 3, 4][..cut]), Ok(None));
        }
    }

    #[test]
    fn refuses_bad_headers() {
        assert_eq!(Header::decode(&[0x83, 0]), Err(FrameError::BadOpcode(3)));
        assert_eq!(Header::decode(&[0xC2, 0]), Err(FrameError::Reserved));
        assert_eq!(
            Header::decode(&[0x09, 0]),
            Err(FrameError::FragmentedControl)
        );
        assert!(matches!(
            Header::decode(&[0x89, 126, 0, 200]),
            Err(FrameError::TooLong { .. })
        ));
        let mut huge = vec![0x82, 127];
        huge.extend_from_slice(&u64::MAX.to_be_bytes());
        assert!(matches!(
            Header::decode(&huge),
            Err(FrameError::TooLong { .. })
        ));
    }

    #[test]
    fn unmask_matches_bytewise_at_any_offset() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        let data: Vec<u8> = (0..100u8).collect();
        for split in 0..20 {
            let mut a = data.clone();
            let (x, y) = a.split_at_mut(split);
            unmask(x, mask, 0);
            unmask(y, mask, split as u64);
            let expected: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(a, expected, "split {split}");
        }
    }

    #[test]
    fn server_headers_round_trip() {
        for len in [0usize, 125, 126, 65_535, 65_536, 1 << 20] {
            let mut v = Vec::new();
            Header::encode_server(Opcode::Binary, len, &mut v);
            let (h, used) = Header::decode(&v).unwrap().unwrap();
            assert_eq!(
                (h.len, used, h.mask, h.fin),
                (len as u64, v.len(), None, true)
            );
        }
    }
}
