//! The layer check: which modules of a crate use which, read from the source text.
//!
//! Every `crate::`, `super::` and `self::` path in a crate's files is resolved to the module it
//! names — in `use` trees (groups expanded), inline paths, inline `mod name { .. }` blocks,
//! macro bodies, and string literals of attributes (`#[serde(with = "crate::..")]`); doc
//! comments are documentation, not dependencies, and are skipped. Each module is mapped to a
//! node of the crate's [`Table`] (the longest node name that is a prefix of its path), and
//! every edge between two different nodes must be one the table allows. The check also
//! reports cycles among the edges it found, and modules the table does not place.
//!
//! Tokens come from `proc-macro2`, so comments, raw strings and lifetimes cannot fool it. The
//! crate root (`lib.rs`) is the top: it may use every module and is not checked.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use proc_macro2::{Delimiter, TokenStream, TokenTree};

/// The allowed edges of one crate: `node -> nodes it may use`. A node is a module path
/// relative to the crate root (`render`, `sources::openstack`).
#[derive(Debug, Clone)]
pub struct Table {
    allowed: BTreeMap<String, BTreeSet<String>>,
}

impl Table {
    /// A table from `(node, [nodes it may use])` rows.
    pub fn new(rows: &[(&str, &[&str])]) -> Self {
        let allowed = rows
            .iter()
            .map(|(node, deps)| {
                (
                    (*node).to_owned(),
                    deps.iter().map(|d| (*d).to_owned()).collect(),
                )
            })
            .collect();
        Self { allowed }
    }

    /// The node that holds `module` (a path from the crate root): the longest node name
    /// that is a prefix of it, by whole segments.
    fn node_of(&self, module: &[String]) -> Option<String> {
        (1..=module.len())
            .rev()
            .map(|n| module[..n].join("::"))
            .find(|candidate| self.allowed.contains_key(candidate))
    }

    /// A cycle among the table's own edges, if it has one.
    pub fn cycle(&self) -> Option<Vec<String>> {
        find_cycle(&self.allowed)
    }
}

/// What the check found wrong.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub enum Violation {
    /// `from` uses `to`, which the table does not allow; `site` is the first place seen.
    Edge {
        from: String,
        to: String,
        site: String,
    },
    /// Modules using each other in a circle (first node repeated at the end).
    Cycle(Vec<String>),
    /// A module the table does not place in any node.
    Unplaced { module: String, file: String },
    /// A `crate::` path to something that is not a module of the table (an item of the crate
    /// root: the root is the top layer, nothing may use it).
    Root { from: String, site: String },
    /// A file that does not tokenize.
    Unreadable { file: String, problem: String },
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Edge { from, to, site } => {
                write!(f, "{from} -> {to} is not an allowed edge ({site})")
            }
            Self::Cycle(nodes) => write!(f, "cycle: {}", nodes.join(" -> ")),
            Self::Unplaced { module, file } => {
                write!(
                    f,
                    "module {module} ({file}) is in no node of the layer table"
                )
            }
            Self::Root { from, site } => {
                write!(f, "{from} uses an item of the crate root ({site})")
            }
            Self::Unreadable { file, problem } => write!(f, "{file}: {problem}"),
        }
    }
}

/// The edges found in one crate: `(from node, to node) -> first site`.
#[derive(Debug, Default, Clone)]
pub struct Graph {
    pub edges: BTreeMap<(String, String), String>,
}

/// Reads every `.rs` file under `src` except `main.rs` (the binary is another crate).
pub fn read_crate(src: &Path) -> std::io::Result<Vec<(PathBuf, String)>> {
    let mut files = Vec::new();
    let mut dirs = vec![src.to_path_buf()];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir)? {
            let path = entry?.path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "rs") {
                let rel = path.strip_prefix(src).unwrap_or(&path).to_path_buf();
                if rel != Path::new("main.rs") {
                    files.push((rel, std::fs::read_to_string(&path)?));
                }
            }
        }
    }
    files.sort();
    Ok(files)
}

/// Checks `files` (paths relative to `src/`, and their text) against `table`.
pub fn check(files: &[(PathBuf, String)], table: &Table) -> Result<Graph, Vec<Violation>> {
    let mut violations = BTreeSet::new();
    let mut graph = Graph::default();
    for (rel, text) in files {
        let file = rel.display().to_string();
        let module = module_of(rel);
        if module.is_empty() {
            continue; // lib.rs: the map and the top layer
        }
        let tokens = match TokenStream::from_str(text) {
            Ok(t) => t,
            Err(e) => {
                violations.insert(Violation::Unreadable {
                    file,
                    problem: e.to_string(),
                });
                continue;
            }
        };
        let mut uses = Vec::new();
        collect(tokens, &module, &mut uses);
        let Some(from) = table.node_of(&module) else {
            violations.insert(Violation::Unplaced {
                module: module.join("::"),
                file,
            });
            continue;
        };
        for (at_module, target) in uses {
            let site = format!("{file}: {}", target.join("::"));
            let from = table.node_of(&at_module).unwrap_or_else(|| from.clone());
            match table.node_of(&target) {
                Some(to) if to == from => {}
                Some(to) => {
                    let allowed = table.allowed.get(&from).is_some_and(|a| a.contains(&to));
                    if !allowed {
                        violations.insert(Violation::Edge {
                            from: from.clone(),
                            to: to.clone(),
                            site: site.clone(),
                        });
                    }
                    graph.edges.entry((from, to)).or_insert(site);
                }
                None => {
                    violations.insert(Violation::Root { from, site });
                }
            }
        }
    }
    let mut adjacency: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, to) in graph.edges.keys() {
        adjacency
            .entry(from.clone())
            .or_default()
            .insert(to.clone());
    }
    if let Some(cycle) = find_cycle(&adjacency) {
        violations.insert(Violation::Cycle(cycle));
    }
    if violations.is_empty() {
        Ok(graph)
    } else {
        Err(violations.into_iter().collect())
    }
}

/// The module a file defines: `lib.rs` -> root, `a.rs` and `a/mod.rs` -> `a`, `a/b.rs` -> `a::b`.
fn module_of(rel: &Path) -> Vec<String> {
    let mut parts: Vec<String> = rel
        .iter()
        .map(|p| p.to_string_lossy().into_owned())
        .collect();
    if let Some(last) = parts.pop() {
        let stem = last.trim_end_matches(".rs");
        if stem != "mod" && stem != "lib" {
            parts.push(stem.to_owned());
        }
    }
    parts
}

/// Walks `tokens` inside `module`, pushing `(module at that place, absolute path used)`.
fn collect(tokens: TokenStream, module: &[String], out: &mut Vec<(Vec<String>, Vec<String>)>) {
    let tokens: Vec<TokenTree> = tokens.into_iter().collect();
    let mut i = 0;
    while i < tokens.len() {
        match &tokens[i] {
            // `#[doc = ".."]` and `#![doc = ".."]`: documentation, not a dependency.
            TokenTree::Punct(p) if p.as_char() == '#' => {
                let mut j = i + 1;
                if matches!(tokens.get(j), Some(TokenTree::Punct(p)) if p.as_char() == '!') {
                    j += 1;
                }
                if let Some(TokenTree::Group(g)) = tokens.get(j) {
                    if g.delimiter() == Delimiter::Bracket {
                        let is_doc = matches!(
                            g.stream().into_iter().next(),
                            Some(TokenTree::Ident(id)) if id == "doc"
                        );
                        if !is_doc {
                            collect(g.stream(), module, out);
                        }
                        i = j + 1;
                        continue;
                    }
                }
                i += 1;
            }
            // `mod name { .. }`: paths inside are relative to `module::name`.
            TokenTree::Ident(id) if id == "mod" => {
                if let (Some(TokenTree::Ident(name)), Some(TokenTree::Group(g))) =
                    (tokens.get(i + 1), tokens.get(i + 2))
                {
                    if g.delimiter() == Delimiter::Brace {
                        let mut inner = module.to_vec();
                        inner.push(name.to_string());
                        collect(g.stream(), &inner, out);
                        i += 3;
                        continue;
                    }
                }
                i += 1;
            }
            TokenTree::Ident(id)
                if (id == "crate" || id == "super" || id == "self")
                    && !preceded_by_path_sep(&tokens, i)
                    && !preceded_by_dollar(&tokens, i)
                    && is_path_sep(&tokens, i + 1) =>
            {
                let (paths, next) = read_path(&tokens, i, module);
                out.extend(paths.into_iter().map(|p| (module.to_vec(), p)));
                i = next;
            }
            TokenTree::Group(g) => {
                collect(g.stream(), module, out);
                i += 1;
            }
            TokenTree::Literal(lit) => {
                for path in paths_in_string(&lit.to_string(), module) {
                    out.push((module.to_vec(), path));
                }
                i += 1;
            }
            _ => i += 1,
        }
    }
}

fn is_path_sep(tokens: &[TokenTree], i: usize) -> bool {
    matches!(
        (tokens.get(i), tokens.get(i + 1)),
        (Some(TokenTree::Punct(a)), Some(TokenTree::Punct(b)))
            if a.as_char() == ':' && b.as_char() == ':'
    )
}

fn preceded_by_path_sep(tokens: &[TokenTree], i: usize) -> bool {
    i >= 2 && is_path_sep(tokens, i - 2)
}

fn preceded_by_dollar(tokens: &[TokenTree], i: usize) -> bool {
    i >= 1 && matches!(&tokens[i - 1], TokenTree::Punct(p) if p.as_char() == '$')
}

/// Reads the path starting at `tokens[start]` (`crate`, `super` or `self`), expanding `use`
/// groups; returns the absolute paths and the index after the path.
fn read_path(tokens: &[TokenTree], start: usize, module: &[String]) -> (Vec<Vec<String>>, usize) {
    let mut base: Vec<String> = Vec::new();
    let mut i = start;
    // The anchor: `crate`, or a chain of `super`/`self`.
    let mut anchored = false;
    while let Some(TokenTree::Ident(id)) = tokens.get(i) {
        let word = id.to_string();
        match word.as_str() {
            "crate" if !anchored => base.clear(),
            "self" if !anchored => base = module.to_vec(),
            "super" => {
                if !anchored {
                    base = module.to_vec();
                }
                base.pop();
            }
            _ => break,
        }
        anchored = true;
        if !is_path_sep(tokens, i + 1) {
            return (vec![base], i + 1);
        }
        i += 3;
    }
    let mut paths = Vec::new();
    let next = read_tail(tokens, i, base, &mut paths);
    (paths, next)
}

/// Reads `a::b::{c, d::e}` after a prefix; pushes every full path.
fn read_tail(
    tokens: &[TokenTree],
    mut i: usize,
    mut prefix: Vec<String>,
    out: &mut Vec<Vec<String>>,
) -> usize {
    loop {
        match tokens.get(i) {
            Some(TokenTree::Ident(id)) => {
                let word = id.to_string();
                if word != "self" {
                    prefix.push(word);
                }
                if is_path_sep(tokens, i + 1) {
                    i += 3;
                } else {
                    out.push(prefix);
                    return i + 1;
                }
            }
            Some(TokenTree::Group(g)) if g.delimiter() == Delimiter::Brace => {
                let inner: Vec<TokenTree> = g.stream().into_iter().collect();
                let mut j = 0;
                while j < inner.len() {
                    j = read_tail(&inner, j, prefix.clone(), out);
                    // Skip to the next top-level comma (`as` renames, `*`).
                    while j < inner.len()
                        && !matches!(&inner[j], TokenTree::Punct(p) if p.as_char() == ',')
                    {
                        j += 1;
                    }
                    j += 1;
                }
                return i + 1;
            }
            _ => {
                // `*` or something else: the prefix itself is the dependency.
                out.push(prefix);
                return i;
            }
        }
    }
}

/// `crate::a::b` paths inside a string literal (attribute arguments such as serde's
/// `deserialize_with`).
fn paths_in_string(literal: &str, module: &[String]) -> Vec<Vec<String>> {
    let Some(text) = literal.strip_prefix('"').and_then(|t| t.strip_suffix('"')) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    for word in text.split(|c: char| !(c.is_alphanumeric() || c == '_' || c == ':')) {
        let segments: Vec<&str> = word.split("::").collect();
        if segments.len() < 2 || segments.iter().any(|s| s.is_empty()) {
            continue;
        }
        let mut base: Vec<String> = match segments[0] {
            "crate" => Vec::new(),
            "self" | "super" => module.to_vec(),
            _ => continue,
        };
        let mut rest = &segments[1..];
        if segments[0] == "super" {
            base.pop();
        }
        while let Some(("super", tail)) = rest.split_first().map(|(h, t)| (*h, t)) {
            base.pop();
            rest = tail;
        }
        base.extend(rest.iter().map(|s| (*s).to_owned()));
        found.push(base);
    }
    found
}

/// A cycle in `graph`, first node repeated at the end.
fn find_cycle(graph: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    #[derive(Clone, Copy, PartialEq)]
    enum Mark {
        Open,
        Done,
    }
    fn visit(
        node: &str,
        graph: &BTreeMap<String, BTreeSet<String>>,
        marks: &mut BTreeMap<String, Mark>,
        stack: &mut Vec<String>,
    ) -> Option<Vec<String>> {
        match marks.get(node) {
            Some(Mark::Done) => return None,
            Some(Mark::Open) => {
                let from = stack.iter().position(|n| n == node).unwrap_or(0);
                let mut cycle = stack[from..].to_vec();
                cycle.push(node.to_owned());
                return Some(cycle);
            }
            None => {}
        }
        marks.insert(node.to_owned(), Mark::Open);
        stack.push(node.to_owned());
        for next in graph.get(node).into_iter().flatten() {
            if let Some(cycle) = visit(next, graph, marks, stack) {
                return Some(cycle);
            }
        }
        stack.pop();
        marks.insert(node.to_owned(), Mark::Done);
        None
    }
    let mut marks = BTreeMap::new();
    for node in graph.keys() {
        if let Some(cycle) = visit(node, graph, &mut marks, &mut Vec::new()) {
            return Some(cycle);
        }
    }
    None
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;

    struct Case {
        name: &'static str,
        module: &'static [&'static str],
        text: &'static str,
        want: &'static [&'static str],
    }

    #[test]
    fn paths_are_resolved() {
        let cases = [
            Case {
                name: "use group with nested paths and self",
                module: &["a"],
                text: "use crate::{b::{self, X}, c::d as e};",
                want: &["b", "b::X", "c::d"],
            },
            Case {
                name: "super chains and self",
                module: &["a", "b", "c"],
                text: "use super::super::x; fn f() { self::y::z(); super::w(); }",
                want: &["a::x", "a::b::c::y::z", "a::b::w"],
            },
            Case {
                name: "inline mod and glob",
                module: &["a"],
                text: "mod tests { use super::*; use crate::q::*; }",
                want: &["a", "q"],
            },
            Case {
                name: "attribute strings, not doc comments, not $crate",
                module: &["s"],
                text: "/// see [`crate::doc_only`]\n#[serde(deserialize_with = \"crate::settings::duration::option\")] struct X; macro_rules! m { () => { $crate::hidden }; }",
                want: &["settings::duration::option"],
            },
            Case {
                name: "visibility is not a path, pub(in ..) is",
                module: &["a", "b"],
                text: "pub(super) fn f() {} pub(crate) fn g() {} pub(in crate::a) fn h() {}",
                want: &["a"],
            },
        ];
        for case in cases {
            let module: Vec<String> = case.module.iter().map(|s| (*s).to_owned()).collect();
            let mut out = Vec::new();
            collect(TokenStream::from_str(case.text).unwrap(), &module, &mut out);
            let got: Vec<String> = out.into_iter().map(|(_, p)| p.join("::")).collect();
            assert_eq!(got, case.want, "{}", case.name);
        }
    }

    #[test]
    fn a_back_edge_and_its_cycle_are_reported() {
        let table = Table::new(&[("low", &[]), ("high", &["low"])]);
        let files = vec![
            (
                PathBuf::from("low.rs"),
                "use crate::high::Thing;".to_owned(),
            ),
            (PathBuf::from("high.rs"), "use crate::low::Base;".to_owned()),
            (PathBuf::from("stray.rs"), String::new()),
        ];
        let violations = check(&files, &table).unwrap_err();
        let text: Vec<String> = violations.iter().map(ToString::to_string).collect();
        assert!(
            text.iter()
                .any(|v| v.starts_with("low -> high is not an allowed edge")),
            "{text:?}"
        );
        assert!(
            text.contains(&"cycle: high -> low -> high".to_owned()),
            "{text:?}"
        );
        assert!(
            text.iter().any(|v| v.starts_with("module stray")),
            "{text:?}"
        );
    }
}
