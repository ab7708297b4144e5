//! AFL++ target: `realtime::fuzzing::engineio` (see the crate's `fuzzing` module).
fn main() {
    afl::fuzz!(|data: &[u8]| {
        realtime::fuzzing::engineio(data);
    });
}
