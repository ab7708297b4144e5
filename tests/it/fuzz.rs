//! Property tests for the pure codecs (never panic; what decodes re-encodes to the same
//! packet) and a bounded live fuzz of the server over WebSockets (it stays up, cleans up
//! every session, and no server code panics).

use crate::common::raw::{quiet_options, wait_until, Ws, QUICK};
use crate::common::TestServer;
use proptest::prelude::*;
use rand::{Rng, SeedableRng};
use realtime::protocol::{engineio, socketio};
use serde_json::Value;
use std::sync::{Mutex, Once};
use std::time::Duration;
use tokio::time::Instant;
use tokio_tungstenite::tungstenite::{Bytes, Message};

// ---------------------------------------------------------------------------------------
// Strategies
// ---------------------------------------------------------------------------------------

/// Pieces of the wire formats, glued at random: most such strings are almost-valid.
const TOKENS: &[&str] = &[
    "0",
    "1",
    "2",
    "3",
    "4",
    "5",
    "6",
    "7",
    "8",
    "9",
    "/",
    ",",
    "-",
    "[",
    "]",
    "{",
    "}",
    "\"",
    ":",
    "b",
    "\x1e",
    " ",
    "é",
    "💥",
    "\\",
    "null",
    "true",
    "false",
    "1e400",
    "-0",
    "0.1",
    "18446744073709551616",
    "99999999999999999999999",
    "/chat",
    "/chat,",
    "\"echo\"",
    "\"connect\"",
    r#"{"_placeholder":true,"num":0}"#,
    r#"{"_placeholder":true,"num":9}"#,
    "AQIDBA==",
    "probe",
    "\"sid\"",
];

fn token_soup() -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(TOKENS), 0..24).prop_map(|v| v.concat())
}

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>()
            .prop_filter("JSON has no NaN/inf", |f| f.is_finite())
            .prop_map(Value::from),
        "\\PC{0,8}".prop_map(Value::String),
        (0usize..4).prop_map(socketio::placeholder),
    ];
    leaf.prop_recursive(3, 24, 4, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
            prop::collection::vec(("\\PC{0,6}", inner), 0..4)
                .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// `<type>[<n>-][<nsp>,][<id>][<json>]` with each part valid, invalid or absent: a large
/// share decodes, so the round-trip property gets real coverage.
fn socketio_like() -> impl Strategy<Value = String> {
    let kind = prop_oneof![8 => (0u8..7).prop_map(|d| d.to_string()), 1 => Just("9".to_owned())];
    let attachments =
        prop::sample::select(vec!["", "", "0-", "1-", "2-", "256-", "257-", "-", "01-"]);
    let nsp = prop::sample::select(vec![
        "", "", "/", "/,", "/chat,", "/chat", "/a/b,", "/é,", "/x y,",
    ]);
    let id = prop::sample::select(vec![
        "",
        "",
        "0",
        "1",
        "42",
        "007",
        "18446744073709551615",
        "18446744073709551616",
    ]);
    let event = (
        prop::sample::select(vec!["echo", "message", "connect", "", "x"]),
        prop::collection::vec(json_value(), 0..3),
    )
        .prop_map(|(name, mut args)| {
            args.insert(0, Value::String(name.to_owned()));
            serde_json::to_string(&Value::Array(args)).unwrap()
        });
    let data = prop_oneof![
        Just(String::new()),
        json_value().prop_map(|v| serde_json::to_string(&v).unwrap()),
        event,
        token_soup(),
    ];
    (kind, attachments, nsp, id, data).prop_map(|(k, a, n, i, d)| format!("{k}{a}{n}{i}{d}"))
}

fn any_input() -> impl Strategy<Value = String> {
    prop_oneof![any::<String>(), "\\PC*", token_soup(), socketio_like()]
}

fn assert_socketio_round_trip(input: &str) {
    if let Ok(packet) = socketio::decode(input) {
        let encoded = socketio::encode_to_string(&packet);
        let again = socketio::decode(&encoded).unwrap_or_else(|e| {
            panic!("{input:?} decoded, but its encoding {encoded:?} does not: {e}")
        });
        assert_eq!(again, packet, "input {input:?} → {encoded:?}");
    }
}

fn assert_engineio_round_trip(input: &str) {
    if let Ok(packet) = engineio::decode_text(input) {
        let mut encoded = String::new();
        engineio::encode_text(&packet, &mut encoded);
        let again = engineio::decode_text(&encoded)
            .unwrap_or_else(|e| panic!("{input:?} decoded, but {encoded:?} does not: {e}"));
        assert_eq!(again, packet, "input {input:?} → {encoded:?}");
    }
}

// ---------------------------------------------------------------------------------------
// Codec properties
// ---------------------------------------------------------------------------------------

proptest! {
    // No regression files: they would land in tests/proptest-regressions/, outside this
    // module; a failure prints its minimal input instead.
    #![proptest_config(ProptestConfig {
        cases: 3000,
        failure_persistence: None,
        ..ProptestConfig::default()
    })]

    #[test]
    fn engineio_decoders_never_panic(input in any_input()) {
        let _ = engineio::decode_text(&input);
        let _ = engineio::decode_payload(&input).count();
        assert_engineio_round_trip(&input);
    }

    #[test]
    fn socketio_decode_never_panics_and_round_trips(input in any_input()) {
        assert_socketio_round_trip(&input);
    }

    /// Everything a client sends over Engine.IO as a message: `4` + packet.
    #[test]
    fn engine_message_then_socketio(input in socketio_like()) {
        let frame = format!("4{input}");
        if let Ok(engineio::Packet::Message(engineio::Data::Text(t))) = engineio::decode_text(&frame) {
            prop_assert_eq!(t, input.as_str());
            assert_socketio_round_trip(t);
        } else {
            prop_assert!(false, "a `4` frame is always a text message");
        }
    }

    /// Every encoded packet decodes to itself, for generated packets (not just parsed ones).
    #[test]
    fn generated_socketio_packets_round_trip(
        kind in 0u8..7,
        nsp in prop::sample::select(vec!["/", "/chat", "/a/b", "/é"]),
        id in proptest::option::of(any::<u64>()),
        args in prop::collection::vec(json_value(), 0..4),
        attachments in 1usize..4,
    ) {
        use socketio::Packet;
        let id_for_ack = id.unwrap_or(1);
        let packet = match kind {
            0 => Packet::connect_ok(nsp, "abcdefghijklmnopqrst", None),
            1 => Packet::disconnect(nsp),
            2 => Packet { id, ..Packet::event(nsp, "ev", args, 0) },
            3 => Packet::ack(nsp, id_for_ack, args, 0),
            4 => Packet::connect_error(nsp, "nope", args.into_iter().next()),
            5 => Packet { id, ..Packet::event(nsp, "ev", args, attachments) },
            _ => Packet::ack(nsp, id_for_ack, args, attachments),
        };
        let encoded = socketio::encode_to_string(&packet);
        let decoded = socketio::decode(&encoded);
        prop_assert_eq!(decoded.as_ref(), Ok(&packet), "{}", encoded);
    }

    /// A polling payload of valid packets splits back into exactly those packets.
    #[test]
    fn polling_payload_round_trips(
        texts in prop::collection::vec("[0-6b]?[^\u{1e}]{0,12}", 1..8),
        bins in prop::collection::vec(prop::collection::vec(any::<u8>(), 0..8), 0..3),
    ) {
        let mut packets: Vec<engineio::Packet<'_>> = texts
            .iter()
            .filter_map(|t| engineio::decode_text(t).ok())
            .collect();
        packets.extend(bins.into_iter().map(|b| {
            engineio::Packet::Message(engineio::Data::Binary(Bytes::from(b)))
        }));
        prop_assume!(!packets.is_empty());
        let mut body = String::new();
        for (i, p) in packets.iter().enumerate() {
            if i > 0 {
                body.push(engineio::RECORD_SEPARATOR);
            }
            engineio::encode_text(p, &mut body);
        }
        let decoded: Result<Vec<_>, _> = engineio::decode_payload(&body).collect();
        prop_assert_eq!(decoded, Ok(packets));
    }
}

/// Hand-picked edge cases that random generation hits rarely.
#[test]
fn codec_edge_cases_round_trip_or_fail_cleanly() {
    for input in [
        "0/",
        "0/,",
        "0/chat",
        "0/chat,",
        "0/chat,{}",
        "05",
        "0/,5{}",
        "2007[\"x\"]",
        "2/a,1[\"x\"]",
        "5007-[\"x\"]",
        "50-[\"x\"]",
        "5256-[\"x\"]",
        "4\"msg\"",
        "4/x,\"msg\"",
        "2 [\"x\"]",
        "2[\"x\"] ",
        "2[1e400]",
        "2[-0]",
        "2[0.1]",
        "2[5e-324]",
        "2[1.7976931348623157e308]",
        "2[\"\\ud800\"]",
        "2[\"\\u0000\"]",
        "3/chat,18446744073709551615[]",
        "3/chat,18446744073709551616[]",
        "2/é,[\"x\"]",
        "2/a\u{1e},[\"x\"]",
        "6-[]",
        "5--[]",
        "1/chat",
        "1/chat,",
        "1/chat,1",
        "2[\"x\",{\"a\":1,\"a\":2}]",
    ] {
        assert_socketio_round_trip(input);
        assert_engineio_round_trip(input);
        let _ = engineio::decode_payload(input).count();
    }
}

/// Numbers as JavaScript's `JSON.stringify` writes them (the shortest form that
/// round-trips) must decode to exactly that double and re-encode identically (serde_json's
/// default parser is off by up to 2 ULPs for ~10% of such doubles; `float_roundtrip`).
#[test]
fn floats_round_trip_exactly() {
    for text in [
        "944.5166741109949",
        "1.0344470808135013e+95",
        "-3.6166350971319255e+276",
        "-9.726519664181415e-210",
    ] {
        let input = format!("2[\"x\",{text}]");
        let packet = socketio::decode(&input).unwrap();
        assert_eq!(socketio::encode_to_string(&packet), input);
        let want: f64 = text.parse().unwrap();
        assert_eq!(packet.data.unwrap()[1].as_f64(), Some(want), "{text}");
    }
}

// ---------------------------------------------------------------------------------------
// Live fuzz
// ---------------------------------------------------------------------------------------

/// Panics raised on tokio worker threads by code outside `tests/` (the server), recorded
/// by a process-wide hook that then defers to the previous one.
static SERVER_PANICS: Mutex<Vec<String>> = Mutex::new(Vec::new());

fn record_server_panics() {
    static INSTALL: Once = Once::new();
    INSTALL.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            let on_worker = std::thread::current()
                .name()
                .is_some_and(|n| n.starts_with("tokio-") && n.ends_with("-worker"));
            let in_tests = info
                .location()
                .is_some_and(|l| l.file().starts_with("tests/"));
            if on_worker && !in_tests {
                SERVER_PANICS
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(info.to_string());
            }
            previous(info);
        }));
    });
}

fn random_frame(rng: &mut impl Rng) -> Message {
    let soup = |rng: &mut dyn rand::RngCore, n: usize| -> String {
        (0..n)
            .map(|_| TOKENS[rng.random_range(0..TOKENS.len())])
            .collect()
    };
    match rng.random_range(0..10) {
        // raw Engine.IO text
        0 => {
            let n = rng.random_range(0..8);
            Message::text(soup(rng, n))
        }
        // a Socket.IO message made of protocol pieces
        1..=4 => {
            let n = rng.random_range(0..10);
            Message::text(format!("4{}", soup(rng, n)))
        }
        // an almost-valid event, sometimes binary
        5 | 6 => {
            let att = rng.random_range(0..3);
            let id = if rng.random_bool(0.5) {
                rng.random_range(0..1000).to_string()
            } else {
                String::new()
            };
            let nsp = ["", "/chat,", "/nope,"][rng.random_range(0..3)];
            let args: String = (0..att)
                .map(|i| format!(",{{\"_placeholder\":true,\"num\":{i}}}"))
                .collect();
            if att > 0 {
                Message::text(format!("45{att}-{nsp}{id}[\"echo\"{args}]"))
            } else {
                Message::text(format!("42{nsp}{id}[\"echo\",{}]", soup(rng, 2)))
            }
        }
        // random bytes as binary
        7 | 8 => {
            let n = rng.random_range(0..64);
            Message::Binary(Bytes::from(
                (0..n).map(|_| rng.random::<u8>()).collect::<Vec<u8>>(),
            ))
        }
        // random valid-UTF-8 noise
        _ => {
            let n = rng.random_range(0..32);
            Message::text((0..n).map(|_| rng.random::<char>()).collect::<String>())
        }
    }
}

/// ~300 random frames over WebSockets (reconnecting whenever the server closes one):
/// the server must stay up, clean up every session and never panic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn server_survives_random_frames() {
    record_server_panics();
    let panics_before = SERVER_PANICS.lock().unwrap().len();
    let seed: u64 = std::env::var("FUZZ_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    eprintln!("server_survives_random_frames: FUZZ_SEED={seed}");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);

    let server = TestServer::start_with(quiet_options()).await;
    let deadline = Instant::now() + Duration::from_secs(30);
    let mut sockets: Vec<Ws> = Vec::new();
    let (mut sent, mut reconnects) = (0, 0);
    while sent < 300 && Instant::now() < deadline {
        if sockets.len() < 3 {
            let (mut ws, _) = Ws::open(server.addr).await;
            if rng.random_bool(0.8) {
                ws.send_text(["40", "40/chat,", "40/nope,"][rng.random_range(0..3)])
                    .await;
            }
            sockets.push(ws);
            reconnects += 1;
        }
        let i = rng.random_range(0..sockets.len());
        let frame = random_frame(&mut rng);
        let alive = sockets[i].try_send(frame).await;
        sent += 1;
        // Read whatever is there without waiting; drop sockets the server closed.
        let ws = &mut sockets[i];
        let mut open = alive;
        while open {
            match tokio::time::timeout(
                Duration::from_millis(2),
                futures_util::StreamExt::next(&mut ws.inner),
            )
            .await
            {
                Err(_) => break,
                Ok(Some(Ok(Message::Close(_)))) | Ok(None) | Ok(Some(Err(_))) => open = false,
                Ok(Some(Ok(_))) => {}
            }
        }
        if !open {
            sockets.swap_remove(i);
        }
    }
    eprintln!("sent {sent} frames over {reconnects} connections");
    assert_eq!(sent, 300, "the frame budget fits the time budget");

    // The server still serves a fresh client exactly.
    let (mut ws, _) = Ws::open(server.addr).await;
    ws.send_text("40/chat,").await;
    assert!(ws.recv_text(QUICK).await.starts_with("40/chat,{\"sid\":"));
    ws.send_text(r#"42/chat,1["echo","still alive"]"#).await;
    assert_eq!(ws.recv_text(QUICK).await, r#"43/chat,1["still alive"]"#);
    ws.close().await;

    // Every session is cleaned up once the clients leave.
    for ws in sockets {
        ws.close().await;
    }
    let io = server.io.clone();
    wait_until(QUICK, "every fuzz session closed", || {
        io.connection_count() == 0
    })
    .await;
    for ns in ["/", "/chat", "/notifications"] {
        assert_eq!(io.of(ns).unwrap().socket_count(), 0, "{ns}");
    }
    server.stop().await;

    let panics = SERVER_PANICS.lock().unwrap();
    assert!(
        panics.len() == panics_before,
        "server code panicked (FUZZ_SEED={seed}): {:?}",
        &panics[panics_before..]
    );
}
