//! Tidy checks of the workspace's shape (rust-analyzer's `tidy` style): the architecture
//! invariants of docs/ARCHITECTURE.md that a text scan can enforce.
//!
//! - **Binaries contain wiring only.** `bins/*/src` never names `rusqlite`, `jsonwebtoken`,
//!   `aws_lc_rs`, `serde_json::Value` or `reqwest`: SQL, tokens, crypto, JSON shapes and outbound
//!   HTTP live in library crates. [`DEBTS`] lists the uses that predate this rule; it may only
//!   shrink — an entry that no longer occurs fails too, so that it is deleted.
//! - **Binaries stay small.** No file in `bins/*/src` passes [`FILE_BUDGET`] lines, and each
//!   binary's `src` stays within its [`BINARY_BUDGETS`] total: a binary that grows past it has
//!   a decision in it that belongs in a library.

use std::{
    fs,
    path::{Path, PathBuf},
};

/// What binaries must not name.
const FORBIDDEN: &[&str] = &[
    "rusqlite",
    "jsonwebtoken",
    "aws_lc_rs",
    "serde_json::Value",
    "reqwest",
];

/// Uses that predate the rule: (file under the workspace, forbidden name). Remove an entry when
/// its use moves into a library.
const DEBTS: &[(&str, &str)] = &[];

/// The most lines one file of a binary may have.
const FILE_BUDGET: usize = 1000;

/// The most lines each binary's `src` may have in all.
const BINARY_BUDGETS: &[(&str, usize)] = &[("launch", 5500), ("portal", 5300), ("demo", 500)];

fn workspace() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the workspace above tests/")
        .to_path_buf()
}

/// Every `.rs` file under `dir`, as (path relative to the workspace, text).
fn sources(dir: &Path) -> Vec<(String, String)> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for entry in fs::read_dir(&dir).expect("read a source directory") {
            let path = entry.expect("a directory entry").path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let text = fs::read_to_string(&path).expect("read a source file");
                let relative = path
                    .strip_prefix(workspace())
                    .expect("under the workspace")
                    .to_string_lossy()
                    .replace('\\', "/");
                out.push((relative, text));
            }
        }
    }
    out.sort();
    out
}

fn binaries() -> Vec<(String, PathBuf)> {
    let mut out: Vec<(String, PathBuf)> = fs::read_dir(workspace().join("bins"))
        .expect("read bins/")
        .map(|e| e.expect("a directory entry").path())
        .filter(|p| p.join("src").is_dir())
        .map(|p| {
            let name = p
                .file_name()
                .expect("a binary directory")
                .to_string_lossy()
                .into_owned();
            (name, p.join("src"))
        })
        .collect();
    out.sort();
    out
}

/// Lines that are code (not a comment): a forbidden name in a doc comment is no use.
fn code_lines(text: &str) -> impl Iterator<Item = (usize, &str)> {
    text.lines()
        .enumerate()
        .filter(|(_, l)| !l.trim_start().starts_with("//"))
        .map(|(i, l)| (i + 1, l))
}

#[test]
fn binaries_do_not_name_sql_token_crypto_json_or_http_crates() {
    let mut found = Vec::new();
    let mut debts_seen = Vec::new();
    for (_, src) in binaries() {
        for (file, text) in sources(&src) {
            for name in FORBIDDEN {
                let uses: Vec<usize> = code_lines(&text)
                    .filter(|(_, l)| l.contains(name))
                    .map(|(n, _)| n)
                    .collect();
                if uses.is_empty() {
                    continue;
                }
                if DEBTS.contains(&(file.as_str(), *name)) {
                    debts_seen.push((file.clone(), *name));
                } else {
                    found.push(format!("{file}:{} names `{name}`", uses[0]));
                }
            }
        }
    }
    assert!(
        found.is_empty(),
        "binaries contain wiring only: move these into a library crate (docs/ARCHITECTURE.md):\n{}",
        found.join("\n")
    );
    let paid: Vec<String> = DEBTS
        .iter()
        .filter(|(f, n)| !debts_seen.iter().any(|(sf, sn)| sf == f && sn == n))
        .map(|(f, n)| format!("{f} no longer names `{n}`"))
        .collect();
    assert!(
        paid.is_empty(),
        "delete these from DEBTS:\n{}",
        paid.join("\n")
    );
}

#[test]
fn binaries_stay_within_their_line_budgets() {
    let mut over = Vec::new();
    for (binary, src) in binaries() {
        let files = sources(&src);
        for (file, text) in &files {
            let lines = text.lines().count();
            if lines > FILE_BUDGET {
                over.push(format!("{file}: {lines} lines > {FILE_BUDGET}"));
            }
        }
        let total: usize = files.iter().map(|(_, t)| t.lines().count()).sum();
        let budget = BINARY_BUDGETS
            .iter()
            .find(|(b, _)| *b == binary)
            .map(|(_, n)| *n)
            .unwrap_or_else(|| panic!("bins/{binary} has no line budget in BINARY_BUDGETS"));
        if total > budget {
            over.push(format!("bins/{binary}/src: {total} lines > {budget}"));
        }
    }
    assert!(
        over.is_empty(),
        "a binary grows past its budget: move the decisions into a library crate\n{}",
        over.join("\n")
    );
}
