//! The coverage-guided fuzzer's corpus (`fuzz/corpus/<target>/`, minimised by `afl-cmin`
//! after the recorded runs in `fuzz/README.md`) replayed through the same targets
//! (`realtime::fuzzing`), and a short seeded mutation pass over it: the CI form of the
//! fuzzing. A failure names the target and the input (file, or the mutation's bytes in
//! hex) so it can be added to the corpus and debugged with the fuzz binary.

use rand::{Rng, SeedableRng};
use std::path::{Path, PathBuf};

/// The corpus files of `target`, sorted.
fn corpus(target: &str) -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("fuzz/corpus")
        .join(target);
    let mut files: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|e| e.unwrap().path())
        .filter(|p| p.is_file())
        .collect();
    files.sort();
    files
}

/// Runs `target` on `input`; a panic becomes a failure that says what to replay.
fn run(name: &str, target: fn(&[u8]), input: &[u8], what: &str) {
    if std::panic::catch_unwind(|| target(input)).is_err() {
        let hex: String = input.iter().map(|b| format!("{b:02x}")).collect();
        panic!("fuzz target {name} panicked on {what} (hex {hex})");
    }
}

#[test]
fn the_fuzz_corpus_replays_cleanly() {
    for (name, target) in realtime::fuzzing::TARGETS {
        let files = corpus(name);
        assert!(
            files.len() >= 5,
            "{name}: only {} corpus files",
            files.len()
        );
        for file in files {
            let input = std::fs::read(&file).unwrap();
            run(name, target, &input, &file.display().to_string());
        }
    }
}

/// One random change to `input`: flip a bit, set a byte to an interesting value, insert
/// or delete a run, or splice in part of `other`.
fn mutate(rng: &mut impl Rng, input: &mut Vec<u8>, other: &[u8]) {
    const INTERESTING: [u8; 12] = [
        0, 1, 0x7f, 0x80, 0xff, b'"', b'[', b'{', b',', b'/', b'-', 0x1e,
    ];
    let at = |rng: &mut dyn rand::RngCore, len: usize| rng.random_range(0..=len);
    match rng.random_range(0..5) {
        0 if !input.is_empty() => {
            let i = rng.random_range(0..input.len());
            input[i] ^= 1 << rng.random_range(0..8);
        }
        1 if !input.is_empty() => {
            let i = rng.random_range(0..input.len());
            input[i] = INTERESTING[rng.random_range(0..INTERESTING.len())];
        }
        2 => {
            let i = at(rng, input.len());
            let n = rng.random_range(1..8);
            let byte = INTERESTING[rng.random_range(0..INTERESTING.len())];
            input.splice(i..i, std::iter::repeat_n(byte, n));
        }
        3 if !input.is_empty() => {
            let i = rng.random_range(0..input.len());
            let n = rng.random_range(1..=(input.len() - i).min(16));
            input.drain(i..i + n);
        }
        _ if !other.is_empty() => {
            let (a, b) = (at(rng, other.len()), at(rng, other.len()));
            let i = at(rng, input.len());
            input.splice(i..i, other[a.min(b)..a.max(b)].iter().copied());
        }
        _ => input.push(rng.random()),
    }
}

/// 20,000 seeded mutations of the corpus per target (a few seconds): a bounded pass in
/// CI; the coverage-guided runs are the long form.
#[test]
fn a_bounded_mutation_pass_over_the_corpus_runs_clean() {
    for (name, target) in realtime::fuzzing::TARGETS {
        let inputs: Vec<Vec<u8>> = corpus(name)
            .iter()
            .map(|f| std::fs::read(f).unwrap())
            .collect();
        let mut rng = rand::rngs::StdRng::seed_from_u64(0x5eed_f022);
        for round in 0..20_000 {
            let mut input = inputs[rng.random_range(0..inputs.len())].clone();
            let other = &inputs[rng.random_range(0..inputs.len())];
            for _ in 0..rng.random_range(1..5) {
                mutate(&mut rng, &mut input, other);
            }
            run(name, target, &input, &format!("mutation {round}"));
        }
    }
}
