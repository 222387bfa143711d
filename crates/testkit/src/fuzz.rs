//! A stable fuzzing harness on proptest (nightly, and so `cargo fuzz`, is not available here).
//!
//! A target starts from its seeds — the upstreams' documented shapes and the files of its corpus
//! folder, which also keep every input that once failed — and mutates them: byte flips, insertions
//! of structural characters, truncation, splicing of two seeds, deep nesting, huge numbers,
//! invalid UTF-8. A check that panics on an input fails the target with that input, shrunk.
//!
//! In the suite each target replays its seeds and runs a few hundred mutations; with
//! `VISITBRIDGE_FUZZ_SECONDS=N` each runs for N seconds instead.

use std::{
    path::Path,
    time::{Duration, Instant},
};

use proptest::{
    prelude::*,
    test_runner::{Config, TestCaseError, TestRunner},
};

/// One way to change an input.
#[derive(Debug, Clone)]
enum Mutation {
    Flip { at: usize, bit: u8 },
    Insert { at: usize, bytes: Vec<u8> },
    Delete { at: usize, len: usize },
    Truncate { at: usize },
    Duplicate { at: usize, len: usize },
    Splice { seed: usize, from: usize },
}

/// Bytes that matter to the formats read here.
fn interesting() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        proptest::collection::vec(any::<u8>(), 1..8),
        Just(b"{".to_vec()),
        Just(b"}".to_vec()),
        Just(b"[".repeat(300)),
        Just(b"\"".to_vec()),
        Just(b"\\u0000".to_vec()),
        Just(b"\\ud800".to_vec()),
        Just(b"1e309".to_vec()),
        Just(b"-0".to_vec()),
        Just(b"18446744073709551616".to_vec()),
        Just(b"null".to_vec()),
        Just(b"%".to_vec()),
        Just(b"%zz".to_vec()),
        Just(b"&".to_vec()),
        Just(b"=".to_vec()),
        Just(b"\r\n".to_vec()),
        Just(b"\xff\xfe".to_vec()),
        Just("\u{202e}".as_bytes().to_vec()),
        Just(b"a".repeat(70_000)),
        Just(b"://".to_vec()),
        Just(b"@".to_vec()),
        Just(b"[[a]]".to_vec()),
        Just(b"=[".repeat(200)),
    ]
}

fn mutation() -> impl Strategy<Value = Mutation> {
    prop_oneof![
        (any::<usize>(), 0u8..8).prop_map(|(at, bit)| Mutation::Flip { at, bit }),
        (any::<usize>(), interesting()).prop_map(|(at, bytes)| Mutation::Insert { at, bytes }),
        (any::<usize>(), 1usize..64).prop_map(|(at, len)| Mutation::Delete { at, len }),
        any::<usize>().prop_map(|at| Mutation::Truncate { at }),
        (any::<usize>(), 1usize..256).prop_map(|(at, len)| Mutation::Duplicate { at, len }),
        (any::<usize>(), any::<usize>()).prop_map(|(seed, from)| Mutation::Splice { seed, from }),
    ]
}

fn apply(seeds: &[Vec<u8>], mut input: Vec<u8>, mutations: &[Mutation]) -> Vec<u8> {
    for m in mutations {
        let len = input.len();
        let at = |i: usize| if len == 0 { 0 } else { i % (len + 1) };
        match m {
            Mutation::Flip { at: i, bit } if len > 0 => input[i % len] ^= 1 << bit,
            Mutation::Flip { .. } => {}
            Mutation::Insert { at: i, bytes } => {
                let i = at(*i);
                input.splice(i..i, bytes.iter().copied());
            }
            Mutation::Delete { at: i, len: n } => {
                let i = at(*i);
                let end = (i + n).min(len);
                input.drain(i..end);
            }
            Mutation::Truncate { at: i } => input.truncate(at(*i)),
            Mutation::Duplicate { at: i, len: n } => {
                let i = at(*i);
                let end = (i + n).min(len);
                let copy = input[i..end].to_vec();
                input.splice(i..i, copy);
            }
            Mutation::Splice { seed, from } => {
                let other = &seeds[seed % seeds.len()];
                let from = if other.is_empty() {
                    0
                } else {
                    from % other.len()
                };
                input.truncate(at(from));
                input.extend_from_slice(&other[from..]);
            }
        }
        // Bounded: a parser may refuse big input, but the harness should not grow forever.
        input.truncate(1 << 20);
    }
    input
}

/// The files of a corpus folder (hostile cases and earlier failures), in name order; none when
/// the folder does not exist.
fn corpus(dir: &Path) -> Vec<Vec<u8>> {
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map(|entries| entries.filter_map(Result::ok).map(|e| e.path()).collect())
        .unwrap_or_default();
    files.sort();
    files
        .into_iter()
        .filter(|p| p.is_file())
        .filter_map(|p| std::fs::read(p).ok())
        .collect()
}

/// Replays `seeds` and the files in `corpus_dir`, then checks mutations of them with `check`
/// (which panics on a failure): in the suite a few hundred cases, with
/// `VISITBRIDGE_FUZZ_SECONDS` for that many seconds. Panics, naming `target` and the shrunk input,
/// when a check fails.
pub fn fuzz(target: &str, corpus_dir: &Path, seeds: &[&[u8]], check: impl Fn(&[u8])) {
    let mut all: Vec<Vec<u8>> = seeds.iter().map(|s| s.to_vec()).collect();
    all.extend(corpus(corpus_dir));
    assert!(!all.is_empty(), "{target} has no seeds");
    for seed in &all {
        check(seed);
    }
    let budget = std::env::var("VISITBRIDGE_FUZZ_SECONDS")
        .ok()
        .and_then(|s| s.parse::<u64>().ok())
        .map(Duration::from_secs);
    let started = Instant::now();
    let strategy = (0..all.len(), proptest::collection::vec(mutation(), 1..6));
    let mut cases: u64 = 0;
    loop {
        let mut runner = TestRunner::new(Config {
            cases: 256,
            failure_persistence: None,
            ..Config::default()
        });
        let result = runner.run(&strategy, |(seed, mutations)| {
            let input = apply(&all, all[seed].clone(), &mutations);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| check(&input)));
            match outcome {
                Ok(()) => Ok(()),
                Err(_) => Err(TestCaseError::fail(format!(
                    "{target} panicked on {:?}",
                    String::from_utf8_lossy(&input)
                ))),
            }
        });
        if let Err(e) = result {
            panic!("{target}: {e}");
        }
        cases += 256;
        match budget {
            Some(budget) if started.elapsed() < budget => continue,
            _ => break,
        }
    }
    eprintln!(
        "fuzz {target}: {} seeds, {cases} mutated cases, {:?}, no panic",
        all.len(),
        started.elapsed()
    );
}
