//! The engine's modules depend on each other one way: the graph of
//! `crate::<module>` references between its top-level modules (tests and
//! comments aside) has no cycle.

use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::Path;

/// The top-level module a source file belongs to (`psock/recv.rs` → `psock`).
fn module_of(rel: &Path) -> String {
    let first = rel.components().next().expect("a path inside src");
    let name = first.as_os_str().to_string_lossy();
    name.trim_end_matches(".rs").to_string()
}

/// The modules `src` refers to as `crate::<name>`, outside comments and its `tests` module.
fn references(src: &str) -> BTreeSet<String> {
    let code = src.split("#[cfg(test)]\nmod tests").next().unwrap_or(src);
    let mut out = BTreeSet::new();
    for line in code.lines() {
        let mut rest = line.split("//").next().unwrap_or("");
        while let Some(i) = rest.find("crate::") {
            rest = &rest[i + "crate::".len()..];
            let name: String = rest
                .chars()
                .take_while(|c| c.is_ascii_lowercase() || *c == '_')
                .collect();
            if !name.is_empty() {
                out.insert(name);
            }
        }
    }
    out
}

fn collect(dir: &Path, root: &Path, graph: &mut BTreeMap<String, BTreeSet<String>>) {
    for entry in fs::read_dir(dir).expect("readable src") {
        let path = entry.expect("an entry").path();
        if path.is_dir() {
            collect(&path, root, graph);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).expect("inside src");
            let module = module_of(rel);
            if module == "lib" {
                continue;
            }
            let src = fs::read_to_string(&path).expect("readable source");
            let deps = graph.entry(module.clone()).or_default();
            deps.extend(references(&src).into_iter().filter(|d| *d != module));
        }
    }
}

/// A cycle through `node`, if the depth-first search from it finds one.
fn find_cycle(
    node: &str,
    graph: &BTreeMap<String, BTreeSet<String>>,
    path: &mut Vec<String>,
    done: &mut BTreeSet<String>,
) -> Option<Vec<String>> {
    if let Some(i) = path.iter().position(|n| n == node) {
        let mut cycle = path[i..].to_vec();
        cycle.push(node.to_string());
        return Some(cycle);
    }
    if done.contains(node) {
        return None;
    }
    path.push(node.to_string());
    for dep in graph.get(node).into_iter().flatten() {
        if let Some(c) = find_cycle(dep, graph, path, done) {
            return Some(c);
        }
    }
    path.pop();
    done.insert(node.to_string());
    None
}

#[test]
fn module_dependencies_have_no_cycle() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut graph = BTreeMap::new();
    collect(&root, &root, &mut graph);
    assert!(graph.contains_key("psock") && graph.contains_key("driver"));
    assert!(graph["engine"].contains("driver"), "{graph:?}");
    let mut done = BTreeSet::new();
    for node in graph.keys() {
        let cycle = find_cycle(node, &graph, &mut Vec::new(), &mut done);
        assert_eq!(cycle, None, "module cycle");
    }
}

#[test]
fn a_cycle_is_found() {
    let mut graph = BTreeMap::new();
    graph.insert("a".to_string(), BTreeSet::from(["b".to_string()]));
    graph.insert("b".to_string(), BTreeSet::from(["a".to_string()]));
    let cycle = find_cycle("a", &graph, &mut Vec::new(), &mut BTreeSet::new());
    assert_eq!(cycle, Some(vec!["a".into(), "b".into(), "a".into()]));
    assert_eq!(
        references("use crate::ring::SgRing; // crate::psock\n"),
        BTreeSet::from(["ring".to_string()])
    );
}
