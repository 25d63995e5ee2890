//! Fuzz entry points for the STUN decoder (cargo-fuzz target `stun` in `relay-core/fuzz`,
//! and a bounded mutation test below). Must never panic, whatever the input.

use crate::stun::{self, attr, Message};

/// STUN and ChannelData: decode, read every attribute the server reads, check integrity.
pub fn stun(data: &[u8]) {
    if let Some(&[a, b, c, d]) = data.get(..4) {
        if let Ok(n) = stun::stream_frame_len([a, b, c, d]) {
            assert!((4..=stun::MAX_STREAM_FRAME_LEN).contains(&n));
        }
    }
    if stun::is_channel_data(data) {
        if let Ok((_, payload)) = stun::decode_channel_data(data) {
            assert!(payload.len() + 4 <= data.len());
        }
    }
    if let Ok(m) = Message::decode(data) {
        assert!(m.attributes.len() <= stun::MAX_ATTRIBUTES);
        for t in [attr::USERNAME, attr::REALM, attr::NONCE, attr::SOFTWARE] {
            let _ = m.text(t);
        }
        for t in [
            attr::XOR_PEER_ADDRESS,
            attr::XOR_MAPPED_ADDRESS,
            attr::XOR_RELAYED_ADDRESS,
        ] {
            let _ = m.xor_addresses(t);
        }
        let _ = m.u32(attr::LIFETIME);
        let _ = stun::error_code(&m);
        assert!(
            !m.check_integrity(data, b"not the key") || m.get(attr::MESSAGE_INTEGRITY).is_some()
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stun::{method, Builder, Class};

    #[test]
    fn stun_decoder_survives_mutation() {
        let txid = [3u8; 12];
        let mut a = Builder::new(method::ALLOCATE, Class::Request, &txid);
        a.add(attr::USERNAME, b"1700000000:ada")
            .add(attr::REALM, b"perigee")
            .add(attr::NONCE, b"0000000000000001abcdefabcdefabcd")
            .add(attr::REQUESTED_TRANSPORT, &[17, 0, 0, 0])
            .add_xor_address(
                attr::XOR_PEER_ADDRESS,
                "[::ffff:127.0.0.1]:80"
                    .parse()
                    .unwrap_or_else(|_| unreachable!()),
            );
        let mut e = Builder::new(method::CHANNEL_BIND, Class::Error, &txid);
        e.add_error(403, "Forbidden");
        let mut cd = Vec::new();
        stun::encode_channel_data(0x4001, b"payload", &mut cd);
        let seeds = vec![
            a.finish(Some(b"key"), true),
            e.finish(None, false),
            cd,
            vec![],
        ];
        relay_core::fuzzing::mutate_all(&seeds, stun, 20_000);
    }
}
