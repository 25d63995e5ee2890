//! STUN messages (RFC 8489) and TURN ChannelData (RFC 8656 §12.4): decoding with limits,
//! encoding with MESSAGE-INTEGRITY and FINGERPRINT.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use md5::Digest as _;
use thiserror::Error;

/// The magic cookie of every STUN message.
pub const MAGIC_COOKIE: u32 = 0x2112_A442;
/// Header length.
pub const HEADER_LEN: usize = 20;
/// Largest message accepted (a UDP datagram cannot be larger; TCP framing uses the same).
pub const MAX_MESSAGE_LEN: usize = 65_535;
/// Most attributes accepted in one message.
pub const MAX_ATTRIBUTES: usize = 64;
/// Longest USERNAME, REALM or NONCE value accepted (RFC 8489 allows 763 bytes for these).
pub const MAX_TEXT_ATTR_LEN: usize = 763;

/// Methods.
pub mod method {
    /// Binding.
    pub const BINDING: u16 = 0x001;
    /// Allocate.
    pub const ALLOCATE: u16 = 0x003;
    /// Refresh.
    pub const REFRESH: u16 = 0x004;
    /// Send (indication).
    pub const SEND: u16 = 0x006;
    /// Data (indication).
    pub const DATA: u16 = 0x007;
    /// CreatePermission.
    pub const CREATE_PERMISSION: u16 = 0x008;
    /// ChannelBind.
    pub const CHANNEL_BIND: u16 = 0x009;
}

/// Attribute types.
pub mod attr {
    /// MAPPED-ADDRESS.
    pub const MAPPED_ADDRESS: u16 = 0x0001;
    /// USERNAME.
    pub const USERNAME: u16 = 0x0006;
    /// MESSAGE-INTEGRITY.
    pub const MESSAGE_INTEGRITY: u16 = 0x0008;
    /// ERROR-CODE.
    pub const ERROR_CODE: u16 = 0x0009;
    /// UNKNOWN-ATTRIBUTES.
    pub const UNKNOWN_ATTRIBUTES: u16 = 0x000A;
    /// CHANNEL-NUMBER.
    pub const CHANNEL_NUMBER: u16 = 0x000C;
    /// LIFETIME.
    pub const LIFETIME: u16 = 0x000D;
    /// XOR-PEER-ADDRESS.
    pub const XOR_PEER_ADDRESS: u16 = 0x0012;
    /// DATA.
    pub const DATA: u16 = 0x0013;
    /// REALM.
    pub const REALM: u16 = 0x0014;
    /// NONCE.
    pub const NONCE: u16 = 0x0015;
    /// XOR-RELAYED-ADDRESS.
    pub const XOR_RELAYED_ADDRESS: u16 = 0x0016;
    /// REQUESTED-ADDRESS-FAMILY.
    pub const REQUESTED_ADDRESS_FAMILY: u16 = 0x0017;
    /// EVEN-PORT.
    pub const EVEN_PORT: u16 = 0x0018;
    /// REQUESTED-TRANSPORT.
    pub const REQUESTED_TRANSPORT: u16 = 0x0019;
    /// DONT-FRAGMENT.
    pub const DONT_FRAGMENT: u16 = 0x001A;
    /// XOR-MAPPED-ADDRESS.
    pub const XOR_MAPPED_ADDRESS: u16 = 0x0020;
    /// RESERVATION-TOKEN.
    pub const RESERVATION_TOKEN: u16 = 0x0022;
    /// SOFTWARE.
    pub const SOFTWARE: u16 = 0x8022;
    /// FINGERPRINT.
    pub const FINGERPRINT: u16 = 0x8028;
}

/// Message classes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Class {
    /// Request.
    Request,
    /// Indication.
    Indication,
    /// Success response.
    Success,
    /// Error response.
    Error,
}

/// Why bytes are not a STUN message.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum StunError {
    /// Shorter than its header or declared length.
    #[error("truncated message")]
    Truncated,
    /// Longer than the limit.
    #[error("message of {0} bytes is over the limit")]
    TooLong(usize),
    /// Not STUN (first bits, cookie or length alignment).
    #[error("not a STUN message")]
    NotStun,
    /// More attributes than the limit.
    #[error("more than {MAX_ATTRIBUTES} attributes")]
    TooManyAttributes,
    /// An attribute runs past the message.
    #[error("attribute {0:#06x} runs past the message")]
    BadAttribute(u16),
    /// A text attribute is too long or not UTF-8.
    #[error("attribute {0:#06x} is too long or not UTF-8")]
    BadText(u16),
    /// An address attribute is malformed.
    #[error("malformed address in attribute {0:#06x}")]
    BadAddress(u16),
    /// FINGERPRINT does not match.
    #[error("wrong FINGERPRINT")]
    BadFingerprint,
}

/// A decoded STUN message. Attribute values are kept raw; helpers decode the ones used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Message {
    /// Method (12 bits).
    pub method: u16,
    /// Class.
    pub class: Class,
    /// Transaction id.
    pub transaction_id: [u8; 12],
    /// Attributes in order: type, value, and the offset of the attribute's header in the raw
    /// message (for MESSAGE-INTEGRITY checks).
    pub attributes: Vec<(u16, Vec<u8>, usize)>,
}

/// The message type field for a method and class.
pub fn message_type(method: u16, class: Class) -> u16 {
    let c: u16 = match class {
        Class::Request => 0,
        Class::Indication => 1,
        Class::Success => 2,
        Class::Error => 3,
    };
    (method & 0x000F)
        | ((method & 0x0070) << 1)
        | ((method & 0x0F80) << 2)
        | ((c & 1) << 4)
        | ((c & 2) << 7)
}

fn split_type(t: u16) -> (u16, Class) {
    let method = (t & 0x000F) | ((t >> 1) & 0x0070) | ((t >> 2) & 0x0F80);
    let class = match ((t >> 4) & 1) | ((t >> 7) & 2) {
        0 => Class::Request,
        1 => Class::Indication,
        2 => Class::Success,
        _ => Class::Error,
    };
    (method, class)
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// Whether `buf` starts like a STUN message (first two bits zero and the magic cookie).
pub fn is_stun(buf: &[u8]) -> bool {
    buf.len() >= HEADER_LEN && buf[0] & 0xC0 == 0 && buf[4..8] == MAGIC_COOKIE.to_be_bytes()
}

/// Channel numbers accepted: RFC 8656 narrowed them to 0x4000-0x4FFF, but RFC 5766 clients
/// (coturn's among them) use up to 0x7FFE, so the older range is accepted.
pub const CHANNELS: std::ops::RangeInclusive<u16> = 0x4000..=0x7FFE;

/// Whether `buf` starts like ChannelData (first two bits `01`).
pub fn is_channel_data(buf: &[u8]) -> bool {
    buf.len() >= 4 && buf[0] & 0xC0 == 0x40
}

/// Splits ChannelData into its channel number and payload.
pub fn decode_channel_data(buf: &[u8]) -> Result<(u16, &[u8]), StunError> {
    let (Some(ch), Some(len)) = (be16(buf, 0), be16(buf, 2)) else {
        return Err(StunError::Truncated);
    };
    let data = buf
        .get(4..4 + usize::from(len))
        .ok_or(StunError::Truncated)?;
    Ok((ch, data))
}

/// The longest frame on a stream: ChannelData of 65,535 bytes padded to four.
pub const MAX_STREAM_FRAME_LEN: usize = 4 + 65_536;

/// Over TCP and TLS, messages follow one another on the stream: the length of the frame
/// whose first four bytes are `header` (a STUN message, or ChannelData padded to four
/// bytes, RFC 8656 §12.5), at most [`MAX_STREAM_FRAME_LEN`].
pub fn stream_frame_len(header: [u8; 4]) -> Result<usize, StunError> {
    let len = usize::from(u16::from_be_bytes([header[2], header[3]]));
    match header[0] >> 6 {
        0 if len.is_multiple_of(4) => {
            let total = HEADER_LEN + len;
            if total > MAX_MESSAGE_LEN {
                return Err(StunError::TooLong(total));
            }
            Ok(total)
        }
        1 => Ok(4 + len.next_multiple_of(4)),
        _ => Err(StunError::NotStun),
    }
}

/// Encodes ChannelData (padded to 4 bytes, as TCP requires and UDP allows).
pub fn encode_channel_data(channel: u16, data: &[u8], out: &mut Vec<u8>) {
    out.extend_from_slice(&channel.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

fn crc32(bytes: &[u8]) -> u32 {
    crc::Crc::<u32>::new(&crc::CRC_32_ISO_HDLC).checksum(bytes)
}

const FINGERPRINT_XOR: u32 = 0x5354_554E;

impl Message {
    /// Decodes one message; checks FINGERPRINT when present.
    pub fn decode(buf: &[u8]) -> Result<Self, StunError> {
        if buf.len() > MAX_MESSAGE_LEN {
            return Err(StunError::TooLong(buf.len()));
        }
        if buf.len() < HEADER_LEN {
            return Err(StunError::Truncated);
        }
        if !is_stun(buf) {
            return Err(StunError::NotStun);
        }
        let ty = be16(buf, 0).ok_or(StunError::Truncated)?;
        let len = usize::from(be16(buf, 2).ok_or(StunError::Truncated)?);
        if !len.is_multiple_of(4) {
            return Err(StunError::NotStun);
        }
        let end = HEADER_LEN + len;
        if buf.len() < end {
            return Err(StunError::Truncated);
        }
        let (method, class) = split_type(ty);
        let mut transaction_id = [0u8; 12];
        transaction_id.copy_from_slice(&buf[8..20]);
        let mut attributes = Vec::new();
        let mut at = HEADER_LEN;
        while at < end {
            if attributes.len() >= MAX_ATTRIBUTES {
                return Err(StunError::TooManyAttributes);
            }
            let (Some(t), Some(l)) = (be16(buf, at), be16(buf, at + 2)) else {
                return Err(StunError::Truncated);
            };
            let l = usize::from(l);
            let value = buf
                .get(at + 4..at + 4 + l)
                .filter(|_| at + 4 + l <= end)
                .ok_or(StunError::BadAttribute(t))?;
            if t == attr::FINGERPRINT {
                let want =
                    u32::from_be_bytes(value.try_into().map_err(|_| StunError::BadFingerprint)?);
                let mut head = buf[..at].to_vec();
                let adjusted = (at + 8 - HEADER_LEN) as u16;
                head[2..4].copy_from_slice(&adjusted.to_be_bytes());
                if crc32(&head) ^ FINGERPRINT_XOR != want {
                    return Err(StunError::BadFingerprint);
                }
            }
            attributes.push((t, value.to_vec(), at));
            at += 4 + l.div_ceil(4) * 4;
        }
        Ok(Self {
            method,
            class,
            transaction_id,
            attributes,
        })
    }

    /// The first value of attribute `t`.
    pub fn get(&self, t: u16) -> Option<&[u8]> {
        self.attributes
            .iter()
            .find(|(ty, _, _)| *ty == t)
            .map(|(_, v, _)| v.as_slice())
    }

    /// A text attribute (USERNAME, REALM, NONCE, SOFTWARE).
    pub fn text(&self, t: u16) -> Result<Option<&str>, StunError> {
        match self.get(t) {
            None => Ok(None),
            Some(v) if v.len() > MAX_TEXT_ATTR_LEN => Err(StunError::BadText(t)),
            Some(v) => std::str::from_utf8(v)
                .map(Some)
                .map_err(|_| StunError::BadText(t)),
        }
    }

    /// Every XOR-encoded address of type `t` (XOR-PEER-ADDRESS may repeat).
    pub fn xor_addresses(&self, t: u16) -> Result<Vec<SocketAddr>, StunError> {
        self.attributes
            .iter()
            .filter(|(ty, _, _)| *ty == t)
            .map(|(_, v, _)| {
                decode_xor_address(v, &self.transaction_id).ok_or(StunError::BadAddress(t))
            })
            .collect()
    }

    /// A u32 attribute (LIFETIME, CHANNEL-NUMBER's first half, REQUESTED-TRANSPORT's byte).
    pub fn u32(&self, t: u16) -> Option<u32> {
        let v = self.get(t)?;
        Some(u32::from_be_bytes(v.get(..4)?.try_into().ok()?))
    }

    /// Verifies MESSAGE-INTEGRITY (HMAC-SHA1 with `key`) against the raw bytes it came from.
    /// `false` when absent or wrong.
    pub fn check_integrity(&self, raw: &[u8], key: &[u8]) -> bool {
        let Some((_, mac, at)) = self
            .attributes
            .iter()
            .find(|(t, _, _)| *t == attr::MESSAGE_INTEGRITY)
        else {
            return false;
        };
        if mac.len() != 20 || raw.len() < *at {
            return false;
        }
        let mut head = raw[..*at].to_vec();
        let adjusted = (*at + 24 - HEADER_LEN) as u16;
        head[2..4].copy_from_slice(&adjusted.to_be_bytes());
        let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
        ring::hmac::verify(&k, &head, mac).is_ok()
    }
}

/// Decodes an XOR-MAPPED/PEER/RELAYED-ADDRESS value.
pub fn decode_xor_address(v: &[u8], txid: &[u8; 12]) -> Option<SocketAddr> {
    let family = *v.get(1)?;
    let port = be16(v, 2)? ^ (MAGIC_COOKIE >> 16) as u16;
    match family {
        0x01 if v.len() == 8 => {
            let raw = u32::from_be_bytes(v[4..8].try_into().ok()?) ^ MAGIC_COOKIE;
            Some(SocketAddr::new(IpAddr::V4(Ipv4Addr::from(raw)), port))
        }
        0x02 if v.len() == 20 => {
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            mask[4..].copy_from_slice(txid);
            let mut ip = [0u8; 16];
            for (i, b) in ip.iter_mut().enumerate() {
                *b = v[4 + i] ^ mask[i];
            }
            Some(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(ip)), port))
        }
        _ => None,
    }
}

/// Encodes an XOR address value.
pub fn encode_xor_address(addr: SocketAddr, txid: &[u8; 12]) -> Vec<u8> {
    let port = addr.port() ^ (MAGIC_COOKIE >> 16) as u16;
    let mut v = Vec::with_capacity(20);
    match addr.ip() {
        IpAddr::V4(ip) => {
            v.extend_from_slice(&[0, 0x01]);
            v.extend_from_slice(&port.to_be_bytes());
            v.extend_from_slice(&(u32::from(ip) ^ MAGIC_COOKIE).to_be_bytes());
        }
        IpAddr::V6(ip) => {
            v.extend_from_slice(&[0, 0x02]);
            v.extend_from_slice(&port.to_be_bytes());
            let mut mask = [0u8; 16];
            mask[..4].copy_from_slice(&MAGIC_COOKIE.to_be_bytes());
            mask[4..].copy_from_slice(txid);
            for (i, b) in ip.octets().iter().enumerate() {
                v.push(b ^ mask[i]);
            }
        }
    }
    v
}

/// Encodes a Data indication (XOR-PEER-ADDRESS, DATA) into `out`, reusing its allocation:
/// the relay's per-packet path.
pub fn encode_data_indication(out: &mut Vec<u8>, txid: &[u8; 12], peer: SocketAddr, data: &[u8]) {
    out.clear();
    let addr = encode_xor_address(peer, txid);
    let body = 4 + addr.len() + 4 + data.len().div_ceil(4) * 4;
    out.extend_from_slice(&message_type(method::DATA, Class::Indication).to_be_bytes());
    out.extend_from_slice(&(body as u16).to_be_bytes());
    out.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
    out.extend_from_slice(txid);
    out.extend_from_slice(&attr::XOR_PEER_ADDRESS.to_be_bytes());
    out.extend_from_slice(&(addr.len() as u16).to_be_bytes());
    out.extend_from_slice(&addr);
    out.extend_from_slice(&attr::DATA.to_be_bytes());
    out.extend_from_slice(&(data.len() as u16).to_be_bytes());
    out.extend_from_slice(data);
    while !out.len().is_multiple_of(4) {
        out.push(0);
    }
}

/// Builds a message attribute by attribute; `finish` adds MESSAGE-INTEGRITY and FINGERPRINT.
pub struct Builder {
    buf: Vec<u8>,
}

impl Builder {
    /// A message of `method` and `class` with `transaction_id`.
    pub fn new(method: u16, class: Class, transaction_id: &[u8; 12]) -> Self {
        let mut buf = Vec::with_capacity(128);
        buf.extend_from_slice(&message_type(method, class).to_be_bytes());
        buf.extend_from_slice(&[0, 0]);
        buf.extend_from_slice(&MAGIC_COOKIE.to_be_bytes());
        buf.extend_from_slice(transaction_id);
        Self { buf }
    }

    /// The transaction id.
    pub fn transaction_id(&self) -> [u8; 12] {
        let mut t = [0u8; 12];
        t.copy_from_slice(&self.buf[8..20]);
        t
    }

    /// Appends an attribute (padded).
    pub fn add(&mut self, t: u16, value: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(&t.to_be_bytes());
        self.buf
            .extend_from_slice(&(value.len() as u16).to_be_bytes());
        self.buf.extend_from_slice(value);
        while !self.buf.len().is_multiple_of(4) {
            self.buf.push(0);
        }
        self.set_len(self.buf.len() - HEADER_LEN);
        self
    }

    /// Appends an XOR address attribute.
    pub fn add_xor_address(&mut self, t: u16, addr: SocketAddr) -> &mut Self {
        let v = encode_xor_address(addr, &self.transaction_id());
        self.add(t, &v)
    }

    /// Appends ERROR-CODE.
    pub fn add_error(&mut self, code: u16, reason: &str) -> &mut Self {
        let mut v = vec![0, 0, (code / 100) as u8, (code % 100) as u8];
        v.extend_from_slice(reason.as_bytes());
        self.add(attr::ERROR_CODE, &v)
    }

    fn set_len(&mut self, len: usize) {
        let l = (len as u16).to_be_bytes();
        self.buf[2..4].copy_from_slice(&l);
    }

    /// The encoded message, with MESSAGE-INTEGRITY under `key` when given and FINGERPRINT
    /// when asked.
    pub fn finish(mut self, key: Option<&[u8]>, fingerprint: bool) -> Vec<u8> {
        if let Some(key) = key {
            self.set_len(self.buf.len() + 24 - HEADER_LEN);
            let k = ring::hmac::Key::new(ring::hmac::HMAC_SHA1_FOR_LEGACY_USE_ONLY, key);
            let tag = ring::hmac::sign(&k, &self.buf);
            self.add(attr::MESSAGE_INTEGRITY, tag.as_ref());
        }
        if fingerprint {
            self.set_len(self.buf.len() + 8 - HEADER_LEN);
            let crc = crc32(&self.buf) ^ FINGERPRINT_XOR;
            self.add(attr::FINGERPRINT, &crc.to_be_bytes());
        }
        self.buf
    }
}

/// The error code and reason of an error response.
pub fn error_code(m: &Message) -> Option<(u16, String)> {
    let v = m.get(attr::ERROR_CODE)?;
    let code = u16::from(*v.get(2)? & 0x07) * 100 + u16::from(*v.get(3)?);
    Some((code, String::from_utf8_lossy(v.get(4..)?).into_owned()))
}

/// The long-term credential key (RFC 8489 §9.2.2): MD5(username ":" realm ":" password).
pub fn long_term_key(username: &str, realm: &str, password: &str) -> [u8; 16] {
    let mut h = md5::Md5::new();
    h.update(format!("{username}:{realm}:{password}").as_bytes());
    h.finalize().into()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_with_integrity_and_fingerprint() {
        let txid = [7u8; 12];
        let mut b = Builder::new(method::ALLOCATE, Class::Request, &txid);
        b.add(attr::USERNAME, b"1700000000:ada")
            .add(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
            .add_xor_address(
                attr::XOR_PEER_ADDRESS,
                "[2001:db8::1]:3478".parse().unwrap(),
            )
            .add_xor_address(attr::XOR_PEER_ADDRESS, "192.0.2.7:9".parse().unwrap());
        let raw = b.finish(Some(b"key"), true);
        let m = Message::decode(&raw).unwrap();
        assert_eq!((m.method, m.class), (method::ALLOCATE, Class::Request));
        assert_eq!(m.text(attr::USERNAME).unwrap(), Some("1700000000:ada"));
        assert_eq!(
            m.xor_addresses(attr::XOR_PEER_ADDRESS).unwrap(),
            vec![
                "[2001:db8::1]:3478".parse::<SocketAddr>().unwrap(),
                "192.0.2.7:9".parse().unwrap()
            ]
        );
        assert!(m.check_integrity(&raw, b"key"));
        assert!(!m.check_integrity(&raw, b"other"));
        let mut bad = raw.clone();
        let last = bad.len() - 1;
        bad[last] ^= 1;
        assert_eq!(Message::decode(&bad), Err(StunError::BadFingerprint));
    }

    #[test]
    fn data_indications_match_the_builder() {
        let peer: SocketAddr = "[2001:db8::7]:9".parse().unwrap();
        let mut b = Builder::new(method::DATA, Class::Indication, &[9; 12]);
        b.add_xor_address(attr::XOR_PEER_ADDRESS, peer)
            .add(attr::DATA, b"odd");
        let mut out = Vec::new();
        encode_data_indication(&mut out, &[9; 12], peer, b"odd");
        assert_eq!(out, b.finish(None, false));
    }

    #[test]
    fn message_types_match_the_rfc() {
        // RFC 8489: Binding request 0x0001, success 0x0101; RFC 8656: Allocate error 0x0113.
        assert_eq!(message_type(method::BINDING, Class::Request), 0x0001);
        assert_eq!(message_type(method::BINDING, Class::Success), 0x0101);
        assert_eq!(message_type(method::ALLOCATE, Class::Error), 0x0113);
        assert_eq!(message_type(method::SEND, Class::Indication), 0x0016);
        assert_eq!(split_type(0x0117), (method::DATA, Class::Error));
    }

    #[test]
    fn refuses_malformed_input() {
        assert_eq!(Message::decode(&[0; 4]), Err(StunError::Truncated));
        let mut m = Builder::new(method::BINDING, Class::Request, &[1; 12]).finish(None, false);
        m.extend_from_slice(&[0, 6, 0, 200, 1, 2, 3, 4]);
        m[3] = 8;
        assert!(matches!(
            Message::decode(&m),
            Err(StunError::BadAttribute(6))
        ));
        let mut many = Builder::new(method::BINDING, Class::Request, &[1; 12]);
        for _ in 0..=MAX_ATTRIBUTES {
            many.add(attr::SOFTWARE, b"x");
        }
        assert_eq!(
            Message::decode(&many.finish(None, false)),
            Err(StunError::TooManyAttributes)
        );
        let long = vec![b'a'; MAX_TEXT_ATTR_LEN + 1];
        let mut b = Builder::new(method::BINDING, Class::Request, &[1; 12]);
        b.add(attr::USERNAME, &long);
        let m = Message::decode(&b.finish(None, false)).unwrap();
        assert_eq!(
            m.text(attr::USERNAME),
            Err(StunError::BadText(attr::USERNAME))
        );
        assert_eq!(
            decode_channel_data(&[0x40, 0, 0, 9, 1]),
            Err(StunError::Truncated)
        );
    }
}
