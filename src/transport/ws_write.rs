//! Writing a WebSocket session's queued frames straight to its TCP socket, from whichever
//! task sends them.
//!
//! Why: a broadcast used to queue each frame and wake the connection's task, which then
//! framed it through tungstenite and wrote it. Per delivery that is a task wake-up, a
//! poll, waker registrations and a copy into tungstenite's buffer: 14–21 % of the
//! server's CPU per delivery in the fan-out benchmark (`docs/scaling/benchmarks.md`).
//! Written here, a delivery is one `writev` of the frame's
//! header and its shared payload, under the session's lock, in the sender's task; the
//! connection's task is woken only when the socket is full.

use super::session::Frame;
use crate::protocol::websocket::{FrameHeader, Opcode};
use std::io::{self, IoSlice};
use tokio::net::TcpStream;

/// Frames one `writev` takes at most: 64 slices, far below any system's `IOV_MAX`.
const FRAMES_PER_WRITE: usize = 32;

/// A frame as it goes on the wire: its header (none for bytes tungstenite already
/// framed) and its payload.
fn wire_parts(frame: &Frame) -> (Option<FrameHeader>, &[u8]) {
    match frame {
        Frame::Text(t) => (Some(FrameHeader::new(Opcode::Text, t.len())), t.as_bytes()),
        Frame::Binary(b) => (Some(FrameHeader::new(Opcode::Binary, b.len())), b),
        Frame::Framed(b) => (None, b),
    }
}

fn wire_len(frame: &Frame) -> usize {
    let (header, payload) = wire_parts(frame);
    header.map_or(0, |h| h.as_bytes().len()) + payload.len()
}

/// Writes as much of `frames` as the socket takes now, in one `writev`, leaving out the
/// first `skip` bytes (written before). Returns the bytes written; `WouldBlock` when the
/// socket is full.
pub(super) fn write_some<'a>(
    socket: &TcpStream,
    frames: impl Iterator<Item = &'a Frame>,
    mut skip: usize,
) -> io::Result<usize> {
    let mut headers: [Option<FrameHeader>; FRAMES_PER_WRITE] = [None; FRAMES_PER_WRITE];
    let mut payloads: [&[u8]; FRAMES_PER_WRITE] = [&[]; FRAMES_PER_WRITE];
    let mut count = 0;
    for frame in frames.take(FRAMES_PER_WRITE) {
        (headers[count], payloads[count]) = wire_parts(frame);
        count += 1;
    }
    let mut slices = [IoSlice::new(&[]); 2 * FRAMES_PER_WRITE];
    let mut used = 0;
    for i in 0..count {
        let header = headers[i].as_ref().map_or(&[][..], FrameHeader::as_bytes);
        for part in [header, payloads[i]] {
            if skip >= part.len() {
                skip -= part.len();
                continue;
            }
            slices[used] = IoSlice::new(&part[skip..]);
            skip = 0;
            used += 1;
        }
    }
    socket.try_write_vectored(&slices[..used])
}

/// After `written` bytes of `frames` went out (counted from the first frame's first
/// byte): how many frames are complete, and how many bytes of the next one are out.
pub(super) fn settle<'a>(
    frames: impl Iterator<Item = &'a Frame>,
    mut written: usize,
) -> (usize, usize) {
    let mut complete = 0;
    for frame in frames {
        let len = wire_len(frame);
        if written < len {
            break;
        }
        written -= len;
        complete += 1;
    }
    (complete, written)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use std::io::Read as _;
    use tokio_tungstenite::tungstenite::protocol::frame::{coding::OpCode, Frame as WsFrame};

    fn tungstenite_bytes(frame: &Frame) -> Vec<u8> {
        let ws = match frame {
            Frame::Text(t) => WsFrame::message(
                t.as_bytes().to_vec(),
                OpCode::Data(tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Text),
                true,
            ),
            Frame::Binary(b) => WsFrame::message(
                b.to_vec(),
                OpCode::Data(tokio_tungstenite::tungstenite::protocol::frame::coding::Data::Binary),
                true,
            ),
            Frame::Framed(b) => return b.to_vec(),
        };
        let mut out = Vec::new();
        ws.format(&mut out).unwrap();
        out
    }

    fn frames() -> Vec<Frame> {
        vec![
            Frame::text("42[\"a\"]"),
            Frame::Binary(Bytes::from(vec![7u8; 300])),
            Frame::Framed(Bytes::from_static(b"\x8a\x00")),
            Frame::text("4".repeat(70_000)),
        ]
    }

    /// Writes `frames` from byte `skip` on until all are out, as the session does.
    async fn write_all_from(socket: &TcpStream, frames: &[Frame], mut skip: usize) {
        let mut done = 0;
        while done < frames.len() {
            match write_some(socket, frames[done..].iter(), skip) {
                Ok(n) => {
                    let (complete, rest) = settle(frames[done..].iter(), skip + n);
                    (done, skip) = (done + complete, rest);
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => socket.writable().await.unwrap(),
                Err(e) => panic!("write failed: {e}"),
            }
        }
    }

    #[tokio::test]
    async fn frames_go_out_exactly_as_tungstenite_frames_them_even_when_resumed_mid_frame() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let mut far = std::net::TcpStream::connect(listener.local_addr().unwrap()).unwrap();
        let (near, _) = listener.accept().unwrap();
        near.set_nonblocking(true).unwrap();
        let near = TcpStream::from_std(near).unwrap();
        let frames = frames();
        let wire: Vec<u8> = frames.iter().flat_map(tungstenite_bytes).collect();
        // Resume points (frames on the wire: 0..9, 9..313 with a 4-byte header, 313..315
        // pre-framed, 315.. with a 10-byte header): each frame's start, inside a header,
        // inside a payload.
        let cuts = [0, 1, 2, 5, 9, 10, 13, 200, 313, 314, 315, 318, 325, 9000];
        let expected: Vec<u8> = cuts.iter().flat_map(|&c| wire[c..].to_vec()).collect();
        let reader = std::thread::spawn(move || {
            let mut got = vec![0; expected.len()];
            far.read_exact(&mut got).unwrap();
            assert!(
                got == expected,
                "bytes on the wire differ from tungstenite's framing"
            );
        });
        for cut in cuts {
            write_all_from(&near, &frames, cut).await;
        }
        reader.join().unwrap();
    }

    #[test]
    fn settle_counts_whole_frames_and_the_bytes_of_the_next() {
        let frames = frames();
        let first = wire_len(&frames[0]);
        assert_eq!(first, 2 + 7);
        assert_eq!(settle(frames.iter(), 0), (0, 0));
        assert_eq!(settle(frames.iter(), 1), (0, 1));
        assert_eq!(settle(frames.iter(), first), (1, 0));
        assert_eq!(settle(frames.iter(), first + 3), (1, 3));
        let all: usize = frames.iter().map(wire_len).sum();
        assert_eq!(settle(frames.iter(), all), (4, 0));
    }
}
