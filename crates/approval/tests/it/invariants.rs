//! Architecture invariant: the approval state machine does no I/O and depends on no HTTP, database
//! or runtime crate.

/// The crate's normal dependencies, read from its manifest.
fn normal_dependencies() -> Vec<String> {
    let manifest = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Cargo.toml"))
        .expect("read Cargo.toml");
    let mut in_dependencies = false;
    let mut names = Vec::new();
    for line in manifest.lines().map(str::trim) {
        if line.starts_with('[') {
            in_dependencies = line == "[dependencies]";
            continue;
        }
        if in_dependencies && !line.is_empty() && !line.starts_with('#') {
            let name = line
                .split(['=', '.'])
                .next()
                .expect("dependency name")
                .trim();
            names.push(name.to_owned());
        }
    }
    names
}

#[test]
fn depends_only_on_pure_data_crates() {
    let allowed = ["serde", "thiserror", "chrono", "url"];
    let deps = normal_dependencies();
    assert!(
        !deps.is_empty(),
        "the manifest parser found no dependencies"
    );
    for dep in &deps {
        assert!(
            allowed.contains(&dep.as_str()),
            "visitbridge-approval must not depend on {dep}: only {allowed:?}"
        );
    }
}
