//! Entry points shared by the cargo-fuzz targets (`relay-core/fuzz`) and by the bounded
//! mutation tests below, so every decoder is exercised on stable Rust too.
//!
//! Each function must never panic, whatever the input; where a decode succeeds, it checks
//! that re-encoding gives back the same bytes.

use crate::ticket::{Claims, Signer, Verifier};
use crate::wire::Frame;

/// Link frames: decode, and re-encode what decoded.
pub fn wire(data: &[u8]) {
    if let Ok(Some((frame, used))) = Frame::decode(data) {
        assert!(used <= data.len() && used <= crate::wire::MAX_FRAME_LEN);
        assert_eq!(frame.to_bytes(), data[..used], "re-encoding differs");
        assert_eq!(
            Frame::wanted(&data[..used]),
            Ok(used),
            "wanted disagrees with decode"
        );
    }
    // `wanted` never asks for more than a frame can hold, whatever the prefix.
    if let Ok(want) = Frame::wanted(data) {
        assert!(want <= crate::wire::MAX_FRAME_LEN);
    }
}

/// Resumable-stream frames: decode a sequence, never past the limits, and re-encode each
/// frame to the bytes it came from.
pub fn resume(data: &[u8]) {
    use crate::resume::{Frame, MAX_FRAME_LEN};
    let mut buf = bytes::BytesMut::from(data);
    loop {
        let before = buf.clone();
        match Frame::decode(&mut buf) {
            Ok(Some(f)) => {
                let used = before.len() - buf.len();
                assert!(used > 0 && used <= MAX_FRAME_LEN);
                let mut again = bytes::BytesMut::new();
                f.encode(&mut again);
                assert_eq!(again[..], before[..used], "re-encoding differs");
            }
            Ok(None) => {
                assert_eq!(buf, before, "an incomplete frame consumed bytes");
                break;
            }
            Err(_) => break,
        }
    }
}

/// Dev URL hosts: parse within the limits; what parses prints back to a host naming the same
/// target.
pub fn devurl(data: &[u8]) {
    use crate::devurl::{host_of, named_host, parse, port_host, Target, MAX_HOST_LEN};
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Some(host) = host_of(text) else {
        return;
    };
    let base = "dev.example.com";
    if let Ok(Some(t)) = parse(&host, base) {
        assert!(host.len() <= MAX_HOST_LEN);
        let again = match &t {
            Target::Port {
                port,
                https,
                workspace,
                user,
            } => port_host(*port, *https, workspace, user, base),
            Target::Named { name, user } => named_host(name, user, base),
        };
        assert_eq!(parse(&again, base), Ok(Some(t)));
    }
}

/// WebRTC signaling messages: decode within the limits, re-encode what decodes.
pub fn signal(data: &[u8]) {
    use crate::rtc::signal::{decode, encode, MAX_SIGNAL_LEN};
    if let Ok(s) = decode(data) {
        assert!(data.len() <= MAX_SIGNAL_LEN);
        let again = encode(&s);
        assert_eq!(decode(&again[4..]).ok(), Some(s));
    }
}

/// WebSocket frame headers: decode, check limits, and re-encode unmasked headers.
pub fn wsframe(data: &[u8]) {
    use crate::wsframe::{Header, Opcode, MAX_FRAME_PAYLOAD, MAX_HEADER_LEN};
    if let Ok(Some((h, used))) = Header::decode(data) {
        assert!(used <= MAX_HEADER_LEN && used <= data.len());
        assert!(h.len <= MAX_FRAME_PAYLOAD);
        if matches!(h.opcode, Opcode::Close | Opcode::Ping | Opcode::Pong) {
            assert!(h.len <= 125 && h.fin);
        }
    }
}

fn sample_claims() -> Claims {
    Claims {
        kid: String::new(),
        sub: "u".into(),
        ws: "w".into(),
        ports: vec![22],
        iat: 1_000_000,
        exp: 1_000_060,
        sid: "s".into(),
        home: String::new(),
        e2e: false,
        tid: String::new(),
    }
}

thread_local! {
    static KEYS: (Signer, Verifier) = {
        let (s, _) = Signer::generate().expect("key");
        let v = Verifier::new([s.public_key()]);
        (s, v)
    };
}

/// A ticket signed by the key [`ticket`] trusts (a seed for mutation).
pub fn sample_ticket() -> String {
    KEYS.with(|(s, _)| s.sign(sample_claims()))
}

/// Tickets: arbitrary strings against a verifier. The only claims its key ever signed are
/// [`sample_claims`], so anything accepted must carry exactly those.
pub fn ticket(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    KEYS.with(|(s, v)| {
        if let Ok(claims) = v.verify(text, None, 22, 1_000_000) {
            let mut expected = sample_claims();
            expected.kid = s.kid().to_owned();
            assert_eq!(claims, expected, "forged claims accepted");
        }
    });
}

/// Feeds `f` every seed and `rounds` deterministic mutations of it (byte changes,
/// truncations, appended bytes): a bounded stand-in for coverage-guided fuzzing that runs in
/// the test suite on stable Rust.
pub fn mutate_all(seeds: &[Vec<u8>], f: fn(&[u8]), rounds: usize) {
    let mut x: u64 = 0x2545_F491_4F6C_DD1D;
    let mut next = move || {
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        x
    };
    for seed in seeds {
        f(seed);
        for _ in 0..rounds {
            let mut m = seed.clone();
            for _ in 0..(1 + next() % 4) {
                let r = next();
                match r % 4 {
                    0 if !m.is_empty() => {
                        let i = (r >> 8) as usize % m.len();
                        m[i] = (r >> 32) as u8;
                    }
                    1 if !m.is_empty() => {
                        m.truncate((r >> 8) as usize % m.len());
                    }
                    2 => m.push((r >> 16) as u8),
                    _ => m.extend_from_slice(&[(r >> 24) as u8; 3]),
                }
            }
            f(&m);
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use crate::wire::StatusCode;

    /// Bounded, deterministic mutation of valid encodings (a fuzzer's first minutes).
    #[test]
    fn wire_decoder_survives_mutation() {
        let seeds = vec![
            Frame::Hello {
                token: "pga_token".into(),
            }
            .to_bytes(),
            Frame::Open {
                port: 22,
                session_id: 9,
                e2e: false,
                signal: false,
            }
            .to_bytes(),
            Frame::Open {
                port: 22,
                session_id: 10,
                e2e: false,
                signal: true,
            }
            .to_bytes(),
            Frame::Status {
                code: StatusCode::ConnectRefused,
                message: "nothing on 22".into(),
            }
            .to_bytes(),
            vec![],
        ];
        mutate_all(&seeds, wire, 20_000);
    }

    #[test]
    fn resume_decoder_survives_mutation() {
        use crate::resume::{Frame, Welcome};
        let mut one = bytes::BytesMut::new();
        for f in [
            Frame::Hello {
                resume: true,
                id: [3; 16],
                received: 77,
            },
            Frame::Data(bytes::Bytes::from_static(b"SSH-2.0-x")),
            Frame::Ack(12),
            Frame::Eof,
            Frame::Welcome {
                code: Welcome::Ok,
                id: [1; 16],
                received: 5,
            },
        ] {
            f.encode(&mut one);
        }
        let seeds = vec![one.to_vec(), vec![3, 0, 0, 0, 2, b'h', b'i'], vec![]];
        mutate_all(&seeds, resume, 20_000);
    }

    #[test]
    fn devurl_parser_survives_mutation() {
        let seeds = vec![
            b"8080--ws--alice.dev.example.com".to_vec(),
            b"8443s--w--u.dev.example.com:443".to_vec(),
            b"docs--alice.dev.example.com".to_vec(),
        ];
        mutate_all(&seeds, devurl, 20_000);
    }

    #[test]
    fn signal_decoder_survives_mutation() {
        let seeds = vec![
            br#"{"type":"offer","sdp":"v=0\r\n","ice_servers":[{"urls":["stun:10.0.0.1:3478"],"username":"1:u","credential":"c"}]}"#.to_vec(),
            br#"{"type":"answer","sdp":"v=0"}"#.to_vec(),
            br#"{"type":"candidate","candidate":"candidate:1 1 udp 2130706431 10.0.0.1 5000 typ host"}"#.to_vec(),
            br#"{"type":"error","message":"no"}"#.to_vec(),
        ];
        mutate_all(&seeds, signal, 20_000);
    }

    #[test]
    fn wsframe_decoder_survives_mutation() {
        let seeds = vec![
            vec![0x82, 0x85, 1, 2, 3, 4],
            vec![0x82, 0xfe, 0x01, 0x00, 9, 9, 9, 9],
            vec![0x02, 0xff, 0, 0, 0, 0, 0, 1, 0, 0, 1, 2, 3, 4],
            vec![0x88, 0x80, 0, 0, 0, 0],
        ];
        mutate_all(&seeds, wsframe, 20_000);
    }

    #[test]
    fn ticket_verifier_survives_mutation() {
        let seeds = vec![sample_ticket().into_bytes(), b"pt1.e30.AAAA".to_vec()];
        mutate_all(&seeds, ticket, 5_000);
    }
}
