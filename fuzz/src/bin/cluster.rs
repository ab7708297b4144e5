//! AFL++ target: `realtime::fuzzing::cluster` (see the crate's `fuzzing` module).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        realtime::fuzzing::cluster(data);
    });
}
