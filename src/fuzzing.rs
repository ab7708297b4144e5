//! Fuzz targets: what every decoder that reads bytes from outside must survive. Each
//! takes arbitrary bytes, must never panic, and checks the decoder's own promise where it
//! has one (what decodes re-encodes to something that decodes to the same). The coverage-
//! guided fuzzer (`fuzz/`, AFL++ through `cargo afl`) and the corpus replay in the tests
//! call these same functions, so a crash found by one is a failing test in the other.
//!
//! - [`engineio`]: Engine.IO text packets and polling payloads;
//! - [`socketio`]: a Socket.IO packet, then (for a binary one) its attachments through the
//!   assembler — the input's first line is the packet, each following line an
//!   attachment;
//! - [`cluster`]: every Redis wire format a node reads: the classic adapter's msgpack
//!   broadcasts, requests and responses, the cluster-adapter messages (msgpack, JSON,
//!   sharded), stream entries' data and stored recovery sessions;
//! - [`token`]: the session-token parser and verifier (JWS / JWE compact forms).

use crate::protocol::{cluster, cluster_adapter, cluster_streams, engineio, socketio};
use bytes::Bytes;

/// Engine.IO: a text packet and a polling payload. A packet that decodes encodes to
/// text that decodes to the same packet.
pub fn engineio(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(packet) = engineio::decode_text(text) {
        let mut encoded = String::new();
        engineio::encode_text(&packet, &mut encoded);
        let again = engineio::decode_text(&encoded)
            .unwrap_or_else(|e| panic!("{text:?} decoded, its encoding {encoded:?} not: {e}"));
        assert_eq!(again, packet, "{text:?} → {encoded:?}");
    }
    for packet in engineio::decode_payload(text) {
        let _ = packet;
    }
}

/// Socket.IO: the first line is a packet; a binary packet takes the following lines as
/// its attachments, through the assembler.
pub fn socketio(data: &[u8]) {
    let mut lines = data.split(|b| *b == b'\n');
    let Some(Ok(text)) = lines.next().map(std::str::from_utf8) else {
        return;
    };
    let Ok(packet) = socketio::decode(text) else {
        return;
    };
    let encoded = socketio::encode_to_string(&packet);
    let again = socketio::decode(&encoded)
        .unwrap_or_else(|e| panic!("{text:?} decoded, its encoding {encoded:?} not: {e}"));
    assert_eq!(again, packet, "{text:?} → {encoded:?}");
    if packet.kind.is_binary() && packet.attachments > 0 {
        let mut assembler = socketio::BinaryAssembler::new(packet);
        for chunk in lines {
            if assembler.push(Bytes::copy_from_slice(chunk)).is_some() {
                break;
            }
        }
    }
}

/// Every Redis wire format a node decodes. What decodes as a cluster-adapter message
/// re-encodes to bytes that decode again.
pub fn cluster(data: &[u8]) {
    let _ = cluster::BroadcastMessage::decode(data);
    let _ = cluster::Request::decode(data);
    let _ = cluster::Response::decode(data);
    type Codec = (
        fn(&[u8]) -> Result<cluster_adapter::Message, cluster_adapter::DecodeError>,
        fn(&cluster_adapter::Message) -> Vec<u8>,
    );
    let codecs: [Codec; 3] = [
        (
            cluster_adapter::Message::decode_msgpack,
            cluster_adapter::Message::encode_msgpack,
        ),
        (
            cluster_adapter::Message::decode_json,
            cluster_adapter::Message::encode_json,
        ),
        (
            cluster_adapter::Message::decode_sharded,
            cluster_adapter::Message::encode_sharded,
        ),
    ];
    for (decode, encode) in codecs {
        if let Ok(message) = decode(data) {
            let bytes = encode(&message);
            if let Err(e) = decode(&bytes) {
                panic!("{message:?} decoded, its encoding does not: {e}");
            }
        }
    }
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = cluster_streams::SessionRecord::decode(text);
    }
}

/// The token verifier, on a token as a client would send it in `auth.token`.
pub fn token(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    // Keys are derived once: the fuzzer's time goes to the parser, not to HKDF.
    static VERIFIER: std::sync::OnceLock<crate::auth::Verifier> = std::sync::OnceLock::new();
    let verifier = VERIFIER
        .get_or_init(|| crate::auth::Verifier::new("fuzzing-secret").expect("a non-empty secret"));
    let found = crate::auth::FoundToken::new(text, crate::auth::TokenSource::HandshakeAuth);
    let _ = verifier.verify(&found, std::time::SystemTime::now());
}

/// A fuzz target: arbitrary bytes in, a panic when something is wrong.
pub type Target = fn(&[u8]);

/// The targets by name, as `fuzz/` and the corpus replay know them.
pub const TARGETS: [(&str, Target); 4] = [
    ("engineio", engineio),
    ("socketio", socketio),
    ("cluster", cluster),
    ("token", token),
];
