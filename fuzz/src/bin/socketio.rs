//! AFL++ target: `realtime::fuzzing::socketio` (see the crate's `fuzzing` module).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        realtime::fuzzing::socketio(data);
    });
}
