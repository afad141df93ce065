//! The fuzz harness (`kdtui::engine::data::harness`, run at length by `fuzz/` under
//! cargo-fuzz) on stable, in CI: seeded mutations of the corpus files must
//! never make a reader panic or hand back a broken dataset.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

use kdtui::engine::data::harness;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

fn corpus(target: &str) -> Vec<Vec<u8>> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/corpus").join(target);
    let mut files: Vec<_> = std::fs::read_dir(dir).unwrap().map(|e| e.unwrap().path()).collect();
    files.sort();
    files.iter().map(|f| std::fs::read(f).unwrap()).collect()
}

const INTERESTING: [u32; 8] = [0, 1, 2, 3, 0x7f, 0xffff, 0x7fff_ffff, 0xffff_ffff];

/// One random edit of the kinds that break binary readers: flipped bits, odd
/// lengths and counts, cut or grown files.
fn mutate(rng: &mut ChaCha8Rng, input: &mut Vec<u8>) {
    if input.is_empty() {
        input.push(rng.random());
        return;
    }
    let at = rng.random_range(0..input.len());
    match rng.random_range(0..6) {
        0 => input[at] ^= 1 << rng.random_range(0..8),
        1 => input[at] = [0, 0xff, 0x7f, 0x80, 1][rng.random_range(0..5)],
        2 => input.truncate(at),
        3 => {
            let extra: Vec<u8> = (0..rng.random_range(1..16)).map(|_| rng.random()).collect();
            input.splice(at..at, extra);
        }
        4 if at + 4 <= input.len() => {
            let v = INTERESTING[rng.random_range(0..INTERESTING.len())];
            let bytes = if rng.random() { v.to_le_bytes() } else { v.to_be_bytes() };
            input[at..at + 4].copy_from_slice(&bytes);
        }
        _ => {
            let len = rng.random_range(1..64).min(input.len() - at);
            let chunk = input[at..at + len].to_vec();
            input.splice(at..at, chunk);
        }
    }
}

/// Mutated inputs through `run`; how many of them still gave a dataset.
fn fuzz(target: &str, run: fn(&[u8]) -> bool, rounds: usize) -> usize {
    let seeds = corpus(target);
    let mut rng = ChaCha8Rng::seed_from_u64(0x5eed);
    let mut parsed = 0;
    for round in 0..rounds {
        let mut input = seeds[round % seeds.len()].clone();
        for _ in 0..rng.random_range(1..8) {
            mutate(&mut rng, &mut input);
        }
        match catch_unwind(AssertUnwindSafe(|| run(&input))) {
            Ok(ok) => parsed += usize::from(ok),
            Err(panic) => {
                let path = std::env::temp_dir().join(format!("kdtui-fuzz-{target}-{round}.bin"));
                std::fs::write(&path, &input).unwrap();
                panic!("{target} panicked on round {round} (input saved to {}): {panic:?}", path.display());
            }
        }
    }
    parsed
}

#[test]
fn corpus_files_are_valid_inputs() {
    // Seeds that parse reach deep into the readers; broken seeds would not.
    for seed in corpus("mat") {
        kdtui::engine::data::svhn_mat::dataset(&seed).unwrap();
    }
    for seed in corpus("idx") {
        let at = (seed.len() - 1) * seed[0] as usize / 256;
        let (images, labels) = seed[1..].split_at(at);
        let images = kdtui::engine::data::idx::decode(images.to_vec(), 3).unwrap();
        let labels = kdtui::engine::data::idx::decode(labels.to_vec(), 1).unwrap();
        assert!(kdtui::engine::data::idx::pair(images, labels).is_ok());
    }
}

/// Inputs the fuzzer once crashed a reader with, kept so they stay fixed:
/// each must now be refused with an error.
#[test]
fn former_crashers_are_refused_cleanly() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz/regressions/mat");
    for file in std::fs::read_dir(dir).unwrap() {
        let path = file.unwrap().path();
        let bytes = std::fs::read(&path).unwrap();
        assert!(kdtui::engine::data::svhn_mat::dataset(&bytes).is_err(), "{}", path.display());
        assert!(!harness::mat(&bytes), "{}", path.display());
    }
}

#[test]
fn mat_reader_survives_mutated_files() {
    let parsed = fuzz("mat", harness::mat, 20_000);
    eprintln!("mat: {parsed} of 20000 mutated inputs gave a dataset");
    // The checks on a returned dataset run only on inputs that parse: a
    // reader (or mutator) that refused everything would pass unchecked.
    assert!(parsed >= 500, "only {parsed} of 20000 mutated inputs gave a dataset");
}

#[test]
fn idx_reader_survives_mutated_files() {
    let parsed = fuzz("idx", harness::idx, 50_000);
    eprintln!("idx: {parsed} of 50000 mutated inputs gave a dataset");
    assert!(parsed >= 500, "only {parsed} of 50000 mutated inputs gave a dataset");
}
