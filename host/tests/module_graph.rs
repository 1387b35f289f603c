//! The host's modules form no cycle: each names only modules below it, so
//! any one can be read, tested and changed knowing what it rests on.
//!
//! The graph is read from the source: a node is a module one level under
//! the crate (`fleet`, `store`) or, for a folder, each of its children
//! (`caps::cache`, `runtime::state`, `rollout::quality`); an edge is a
//! `crate::` path outside comments and unit tests. Paths inside a node
//! (`super::`) stay inside it. The generated bindings are the one
//! exception: their `with:` mappings name the capabilities' resource types
//! (as wasmtime-wasi's own bindings do), so edges out of `bindings` are not
//! counted; edges into it are.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

fn sources(folder: &Path, found: &mut Vec<PathBuf>) {
    for entry in std::fs::read_dir(folder).unwrap() {
        let path = entry.unwrap().path();
        if path.is_dir() {
            sources(&path, found);
        } else if path.extension().is_some_and(|extension| extension == "rs") {
            found.push(path);
        }
    }
}

/// The node a file belongs to, from its path under `src/`.
fn node_of(relative: &Path) -> Option<String> {
    let mut parts: Vec<String> =
        relative.with_extension("").iter().map(|part| part.to_string_lossy().into_owned()).collect();
    if parts.last().is_some_and(|last| last == "mod") {
        parts.pop();
    }
    match parts.first().map(String::as_str) {
        None | Some("main" | "lib" | "bindings") => None,
        _ => Some(parts.iter().take(2).cloned().collect::<Vec<_>>().join("::")),
    }
}

/// The source without comments and without its unit tests.
fn code(source: &str) -> String {
    let source = source.split("#[cfg(test)]\nmod tests").next().unwrap_or_default();
    source.lines().map(|line| line.split("//").next().unwrap_or_default()).collect::<Vec<_>>().join("\n")
}

/// The nodes `code` names: `crate::a::b` is `a::b` when that is a node, else `a`.
fn named(code: &str, nodes: &BTreeSet<String>) -> BTreeSet<String> {
    let mut named = BTreeSet::new();
    for piece in code.split("crate::").skip(1) {
        let path: Vec<&str> = piece
            .split(|character: char| {
                !(character.is_ascii_alphanumeric() || character == '_' || character == ':')
            })
            .next()
            .unwrap_or_default()
            .split("::")
            .take(2)
            .collect();
        let two = path.join("::");
        named.insert(if nodes.contains(&two) { two } else { path[0].to_string() });
    }
    named
}

/// A cycle in `edges`, if there is one: its nodes in order, the first
/// repeated at the end.
fn cycle(edges: &BTreeMap<String, BTreeSet<String>>) -> Option<Vec<String>> {
    fn visit(
        node: &str,
        edges: &BTreeMap<String, BTreeSet<String>>,
        path: &mut Vec<String>,
        done: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        if let Some(start) = path.iter().position(|on| on == node) {
            let mut found = path[start..].to_vec();
            found.push(node.to_string());
            return Some(found);
        }
        if done.contains(node) {
            return None;
        }
        path.push(node.to_string());
        for next in edges.get(node).into_iter().flatten() {
            if let Some(found) = visit(next, edges, path, done) {
                return Some(found);
            }
        }
        path.pop();
        done.insert(node.to_string());
        None
    }
    let mut done = BTreeSet::new();
    edges.keys().find_map(|node| visit(node, edges, &mut Vec::new(), &mut done))
}

#[test]
fn no_module_names_one_that_names_it_back() {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files = Vec::new();
    sources(&src, &mut files);
    let nodes: BTreeSet<String> =
        files.iter().filter_map(|file| node_of(file.strip_prefix(&src).unwrap())).collect();
    let mut edges: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for file in &files {
        let Some(node) = node_of(file.strip_prefix(&src).unwrap()) else { continue };
        let code = code(&std::fs::read_to_string(file).unwrap());
        let targets: Vec<String> =
            named(&code, &nodes).into_iter().filter(|target| *target != node && target != "caps").collect();
        edges.entry(node).or_default().extend(targets);
    }
    // The graph was read: the capabilities and their users are in it.
    assert!(edges["runtime::state"].contains("caps::cache"), "{edges:?}");
    assert!(edges["fleet"].contains("store"), "{edges:?}");
    if let Some(cycle) = cycle(&edges) {
        panic!("a module cycle: {}", cycle.join(" → "));
    }
}

#[test]
fn a_cycle_is_found_when_there_is_one() {
    let edges: BTreeMap<String, BTreeSet<String>> =
        [("a", vec!["b"]), ("b", vec!["c"]), ("c", vec!["a"]), ("d", vec!["a"])]
            .into_iter()
            .map(|(from, to)| (from.to_string(), to.into_iter().map(str::to_string).collect()))
            .collect();
    assert_eq!(cycle(&edges).unwrap(), ["a", "b", "c", "a"]);
    let acyclic: BTreeMap<String, BTreeSet<String>> =
        [("a".to_string(), ["b".to_string()].into())].into_iter().collect();
    assert_eq!(cycle(&acyclic), None);
}
