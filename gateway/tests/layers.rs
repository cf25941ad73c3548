//! The gateway's layers point down: every `crate::` path in `src/` (in `use` lines and inline)
//! is an edge between top-level modules, and each edge must be in the table below. The table
//! itself must be free of cycles, every module must be in it, and `lib.rs`'s map must name
//! every module.
//!
//! A careful tokenizer, not a Rust parser: comments, string and char literals are skipped, so
//! a path in a doc comment or a message is not an edge. `super::` inside a top-level module
//! stays in that module; `super::super::` is refused, as the table could not check it.

#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Allowed edges: module -> the modules it may use. Lower layers first (see `lib.rs`).
const ALLOWED: &[(&str, &[&str])] = &[
    ("selectors", &[]),
    ("auth", &[]),
    ("ratelimit", &[]),
    ("tls", &[]),
    ("cli", &[]),
    ("intake", &[]),
    ("query", &["selectors"]),
    ("config", &["ratelimit", "selectors", "tls"]),
    ("error", &["auth", "query", "ratelimit"]),
    ("metrics", &["error"]),
    (
        "upstream",
        &["config", "error", "query", "selectors", "tls"],
    ),
    ("state", &["config", "metrics", "upstream"]),
    ("routes", &["auth", "error", "query", "state", "upstream"]),
    ("server", &["intake", "routes", "state"]),
];

/// The top-level module a source file belongs to (`lib` for the crate root).
fn module_of(src: &Path, file: &Path) -> String {
    let rel = file.strip_prefix(src).unwrap();
    let first = rel
        .components()
        .next()
        .unwrap()
        .as_os_str()
        .to_string_lossy();
    first.trim_end_matches(".rs").to_string()
}

/// The text with comments and string/char literals blanked out.
fn code_only(text: &str) -> String {
    let b: Vec<char> = text.chars().collect();
    let mut out = String::with_capacity(text.len());
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        let next = b.get(i + 1).copied();
        if c == '/' && next == Some('/') {
            while i < b.len() && b[i] != '\n' {
                i += 1;
            }
        } else if c == '/' && next == Some('*') {
            let mut depth = 0;
            while i < b.len() {
                if b[i] == '/' && b.get(i + 1) == Some(&'*') {
                    depth += 1;
                    i += 2;
                } else if b[i] == '*' && b.get(i + 1) == Some(&'/') {
                    depth -= 1;
                    i += 2;
                    if depth == 0 {
                        break;
                    }
                } else {
                    i += 1;
                }
            }
            out.push(' ');
        } else if c == 'r' && (next == Some('"') || next == Some('#')) && !ident_before(&b, i) {
            // Raw string: r"..." or r#"..."#.
            let mut j = i + 1;
            let mut hashes = 0;
            while b.get(j) == Some(&'#') {
                hashes += 1;
                j += 1;
            }
            if b.get(j) != Some(&'"') {
                out.push(c);
                i += 1;
                continue;
            }
            j += 1;
            loop {
                if j >= b.len() {
                    break;
                }
                if b[j] == '"' && (0..hashes).all(|k| b.get(j + 1 + k) == Some(&'#')) {
                    j += 1 + hashes;
                    break;
                }
                j += 1;
            }
            i = j;
            out.push_str("\"\"");
        } else if c == '"' {
            i += 1;
            while i < b.len() && b[i] != '"' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("\"\"");
        } else if c == '\'' && is_char_literal(&b, i) {
            i += 1;
            while i < b.len() && b[i] != '\'' {
                if b[i] == '\\' {
                    i += 1;
                }
                i += 1;
            }
            i += 1;
            out.push_str("' '");
        } else {
            out.push(c);
            i += 1;
        }
    }
    out
}

fn ident_before(b: &[char], i: usize) -> bool {
    i > 0 && (b[i - 1].is_alphanumeric() || b[i - 1] == '_')
}

/// `'x'` or `'\n'` rather than a lifetime `'a`.
fn is_char_literal(b: &[char], i: usize) -> bool {
    matches!(
        (b.get(i + 1), b.get(i + 2)),
        (Some('\\'), _) | (Some(_), Some('\''))
    )
}

/// The top-level modules a piece of code names through `crate::` (including `crate::{a, b}`).
fn crate_edges(code: &str) -> Result<BTreeSet<String>, String> {
    let mut out = BTreeSet::new();
    let tokens = tokenize(code);
    for (i, t) in tokens.iter().enumerate() {
        if t == "super" && tokens.get(i + 1).map(String::as_str) == Some("::") {
            if tokens.get(i + 2).map(String::as_str) == Some("super") {
                return Err("super::super:: cannot be checked".into());
            }
            continue;
        }
        if t != "crate" || tokens.get(i + 1).map(String::as_str) != Some("::") {
            continue;
        }
        match tokens.get(i + 2).map(String::as_str) {
            Some("{") => {
                // Only the first segment of each item in the group, at depth 1.
                let mut depth = 0;
                let mut expect_name = true;
                for t in &tokens[i + 2..] {
                    match t.as_str() {
                        "{" => {
                            depth += 1;
                            if depth == 1 {
                                expect_name = true;
                            }
                        }
                        "}" => {
                            depth -= 1;
                            if depth == 0 {
                                break;
                            }
                        }
                        "," if depth == 1 => expect_name = true,
                        name if depth == 1 && expect_name => {
                            out.insert(name.to_string());
                            expect_name = false;
                        }
                        _ => {}
                    }
                }
            }
            Some(name) => {
                out.insert(name.to_string());
            }
            None => {}
        }
    }
    Ok(out)
}

fn tokenize(code: &str) -> Vec<String> {
    let mut out = Vec::new();
    let chars: Vec<char> = code.chars().collect();
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        if c.is_alphanumeric() || c == '_' {
            let start = i;
            while i < chars.len() && (chars[i].is_alphanumeric() || chars[i] == '_') {
                i += 1;
            }
            out.push(chars[start..i].iter().collect());
        } else if c == ':' && chars.get(i + 1) == Some(&':') {
            out.push("::".into());
            i += 2;
        } else {
            if !c.is_whitespace() {
                out.push(c.to_string());
            }
            i += 1;
        }
    }
    out
}

fn sources(dir: &Path, out: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            out.push(path);
        }
    }
}

/// Edges that break the table: (from, to, file).
fn violations(edges: &[(String, String, PathBuf)]) -> Vec<String> {
    let table: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    edges
        .iter()
        .filter(|(from, to, _)| {
            from != to
                && from != "lib"
                && from != "main"
                && !table
                    .get(from.as_str())
                    .is_some_and(|t| t.contains(&to.as_str()))
        })
        .map(|(from, to, file)| format!("{} -> {} in {}", from, to, file.display()))
        .collect()
}

#[test]
fn every_edge_is_allowed() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    assert!(files.len() > 10, "found the sources: {files:?}");
    let mut edges = Vec::new();
    for file in &files {
        let from = module_of(&src, file);
        let code = code_only(&std::fs::read_to_string(file).unwrap());
        let targets = crate_edges(&code).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        for to in targets {
            edges.push((from.clone(), to, file.clone()));
        }
    }
    assert!(
        edges.iter().any(|(f, t, _)| f == "routes" && t == "error"),
        "the scanner finds real edges: {edges:?}"
    );
    let bad = violations(&edges);
    assert!(
        bad.is_empty(),
        "edges the layer table does not allow:\n{}",
        bad.join("\n")
    );
}

#[test]
fn the_table_has_no_cycle_and_covers_every_module() {
    let table: BTreeMap<&str, &[&str]> = ALLOWED.iter().copied().collect();
    // Each module may only use modules listed before it: a cycle is impossible then.
    for (i, (module, uses)) in ALLOWED.iter().enumerate() {
        for used in *uses {
            let j = ALLOWED.iter().position(|(m, _)| m == used);
            assert!(
                j.is_some_and(|j| j < i),
                "{module} uses {used}, which is not in a layer below it"
            );
        }
    }
    let lib =
        std::fs::read_to_string(Path::new(env!("CARGO_MANIFEST_DIR")).join("src/lib.rs")).unwrap();
    let declared: BTreeSet<&str> = lib
        .lines()
        .filter_map(|l| l.strip_prefix("pub mod "))
        .map(|l| l.trim_end_matches(';'))
        .collect();
    let listed: BTreeSet<&str> = table.keys().copied().collect();
    assert_eq!(declared, listed, "lib.rs modules vs the layer table");
    for module in declared {
        assert!(
            lib.contains(&format!("[`{module}`]")),
            "lib.rs's map does not name {module}"
        );
    }
}

#[test]
fn the_scanner_sees_planted_back_edges() {
    struct Case {
        name: &'static str,
        from: &'static str,
        code: &'static str,
        want: &'static [&'static str],
    }
    let cases = [
        Case {
            name: "the old tls -> config edge",
            from: "tls",
            code: "use crate::config::ConfigError;",
            want: &["config"],
        },
        Case {
            name: "an inline path",
            from: "selectors",
            code: "fn f() { let _ = crate::routes::handle; }",
            want: &["routes"],
        },
        Case {
            name: "a group",
            from: "query",
            code: "use crate::{error::GatewayError, state::{self, State}};",
            want: &["error", "state"],
        },
        Case {
            name: "comments and strings are not edges",
            from: "auth",
            code: "// crate::server\n/* crate::routes */ const S: &str = \"crate::state\";\nconst R: &str = r#\"crate::config\"#; fn f<'a>(c: char) -> bool { c == '\"' }",
            want: &[],
        },
    ];
    for case in cases {
        let code = code_only(case.code);
        let got = crate_edges(&code).unwrap();
        let want: BTreeSet<String> = case.want.iter().map(|s| s.to_string()).collect();
        assert_eq!(got, want, "case {}", case.name);
        let edges: Vec<_> = got
            .into_iter()
            .map(|to| (case.from.to_string(), to, PathBuf::from(case.name)))
            .collect();
        assert_eq!(
            violations(&edges).len(),
            case.want.len(),
            "case {}: every planted edge is a violation",
            case.name
        );
    }
    assert!(crate_edges("use super::super::x;").is_err());
}
