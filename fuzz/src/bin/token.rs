//! AFL++ target: `realtime::fuzzing::token` (see the crate's `fuzzing` module).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        realtime::fuzzing::token(data);
    });
}
