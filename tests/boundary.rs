//! Architecture test: the core (`src/proto/`) stays sans-IO. Fails if any file there names a
//! path that would let it touch sockets, files, clocks, randomness or async code.

use std::path::Path;

const FORBIDDEN: &[&str] = &[
    "smol::",
    "async_io::",
    "futures_lite::",
    "futures_rustls::",
    "rustls::",
    "std::net",
    "std::fs",
    "std::thread",
    "Instant::now",
    "SystemTime::now",
    "async fn",
    ".await",
    "crate::io::",
    "rand::",
    "std::env",
    "unsafe ",
];

fn scan(dir: &Path, bad: &mut Vec<String>, files: &mut usize) {
    for e in std::fs::read_dir(dir).unwrap() {
        let p = e.unwrap().path();
        if p.is_dir() {
            scan(&p, bad, files);
        } else if p.extension().is_some_and(|x| x == "rs") {
            *files += 1;
            let text = std::fs::read_to_string(&p).unwrap();
            for (i, line) in text.lines().enumerate() {
                let code = line.trim_start();
                // Prose in doc comments may name these things; only code counts.
                if code.starts_with("//") {
                    continue;
                }
                for f in FORBIDDEN {
                    if code.contains(f) {
                        bad.push(format!(
                            "{}:{}: `{f}` in `{}`",
                            p.display(),
                            i + 1,
                            line.trim()
                        ));
                    }
                }
            }
        }
    }
}

#[test]
fn core_is_sans_io() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src/proto");
    let mut bad = Vec::new();
    let mut files = 0;
    scan(&root, &mut bad, &mut files);
    assert!(files >= 12, "expected the core's files, found {files}");
    assert!(
        bad.is_empty(),
        "the core must not do IO:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_scanner_catches_a_violation() {
    let dir = std::env::temp_dir().join(format!("ossup-boundary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    std::fs::write(
        dir.join("x.rs"),
        "// std::fs in a comment is fine\nfn f() { let _ = std::fs::read(\"x\"); }\n",
    )
    .unwrap();
    let mut bad = Vec::new();
    let mut files = 0;
    scan(&dir, &mut bad, &mut files);
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(bad.len(), 1, "{bad:?}");
}
