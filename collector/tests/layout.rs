//! The collector's modules (and sdk-core's) import downwards only: no file of `collector/src` or
//! `sdk-core/src` imports, directly or through others, a file that imports it back. Read from the source: every `crate::a::b` and
//! `super::a` path outside comments and `#[cfg(test)] mod tests` is resolved to the most specific
//! file that exists (`a/b.rs`, `a/b/mod.rs`, `a.rs`, `a/mod.rs`), then the graph is searched for a
//! cycle. A module's `mod.rs` declaring its children is not an import.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

/// Files of `dir` (recursively), as module paths (`store::writer`) → file path.
fn modules(root: &Path, dir: &Path, out: &mut BTreeMap<String, PathBuf>) {
    for entry in std::fs::read_dir(dir).expect("read_dir") {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            modules(root, &path, out);
        } else if path.extension().is_some_and(|e| e == "rs") {
            let rel = path.strip_prefix(root).expect("under root");
            let mut parts: Vec<String> = rel
                .with_extension("")
                .iter()
                .map(|p| p.to_string_lossy().into_owned())
                .collect();
            if parts.last().is_some_and(|p| p == "mod") {
                parts.pop();
            }
            if parts == ["lib"] || parts == ["main"] {
                continue;
            }
            out.insert(parts.join("::"), path);
        }
    }
}

/// The source without line comments and without the unit-test module at its end.
fn code(path: &Path) -> String {
    let text = std::fs::read_to_string(path).expect("read");
    let text = match text.find("#[cfg(test)]\nmod tests {") {
        Some(i) => &text[..i],
        None => &text[..],
    };
    text.lines()
        .map(|l| l.split("//").next().unwrap_or(""))
        .collect::<Vec<_>>()
        .join("\n")
}

fn ident_path(s: &str) -> &str {
    let end = s
        .find(|c: char| !(c.is_ascii_alphanumeric() || c == '_' || c == ':'))
        .unwrap_or(s.len());
    s[..end].trim_end_matches(':')
}

/// The module paths `src` names after `prefix` (`crate::`), with `base` prepended.
fn paths_after(src: &str, prefix: &str, base: &[String], out: &mut Vec<String>) {
    let mut rest = src;
    while let Some(i) = rest.find(prefix) {
        let before = rest[..i].chars().last();
        rest = &rest[i + prefix.len()..];
        if before.is_some_and(|c| c.is_ascii_alphanumeric() || c == '_') {
            continue;
        }
        let path = ident_path(rest);
        let mut full: Vec<String> = base.to_vec();
        full.extend(path.split("::").filter(|p| !p.is_empty()).map(String::from));
        let after = &rest[path.len()..];
        if let Some(group) = after.strip_prefix("::{") {
            let group = &group[..group.find('}').unwrap_or(group.len())];
            for item in group.split(',') {
                let item = ident_path(item.trim());
                let mut p = full.clone();
                if !item.is_empty() && item != "self" {
                    p.extend(item.split("::").map(String::from));
                }
                out.push(p.join("::"));
            }
        } else {
            out.push(full.join("::"));
        }
    }
}

fn resolve<'a>(mods: &'a BTreeMap<String, PathBuf>, path: &str) -> Option<&'a PathBuf> {
    let mut parts: Vec<&str> = path.split("::").collect();
    while !parts.is_empty() {
        if let Some(f) = mods.get(&parts.join("::")) {
            return Some(f);
        }
        parts.pop();
    }
    None
}

/// The import circles between the files under `root` (`a.rs -> b.rs -> a.rs`), after checking
/// that at least `min_modules` files and `min_edges` imports were found (so a parser that
/// stopped seeing imports cannot pass by finding none).
fn import_circles(root: &Path, min_modules: usize, min_edges: usize) -> Vec<String> {
    let mut mods = BTreeMap::new();
    modules(root, root, &mut mods);
    assert!(mods.len() >= min_modules, "found {} modules", mods.len());
    let mut edges: BTreeMap<PathBuf, BTreeSet<PathBuf>> = BTreeMap::new();
    for (name, file) in &mods {
        let src = code(file);
        let parts: Vec<String> = name.split("::").map(String::from).collect();
        // `super` of `a::b` is `a` (for `a/b.rs` and `a/b/mod.rs` alike).
        let parent = &parts[..parts.len() - 1];
        let mut named = Vec::new();
        paths_after(&src, "crate::", &[], &mut named);
        paths_after(&src, "super::", parent, &mut named);
        for n in named {
            if let Some(target) = resolve(&mods, &n) {
                if target != file {
                    edges
                        .entry(file.clone())
                        .or_default()
                        .insert(target.clone());
                }
            }
        }
    }
    let found = edges.values().map(BTreeSet::len).sum::<usize>();
    assert!(found >= min_edges, "found {found} imports");

    // Depth-first search; a grey node met again closes a cycle.
    fn visit(
        n: &PathBuf,
        edges: &BTreeMap<PathBuf, BTreeSet<PathBuf>>,
        colour: &mut BTreeMap<PathBuf, u8>,
        stack: &mut Vec<PathBuf>,
        cycles: &mut Vec<String>,
    ) {
        colour.insert(n.clone(), 1);
        stack.push(n.clone());
        for m in edges.get(n).into_iter().flatten() {
            match colour.get(m) {
                Some(1) => {
                    let at = stack.iter().position(|s| s == m).unwrap_or(0);
                    let names: Vec<String> = stack[at..]
                        .iter()
                        .chain([m])
                        .map(|p| {
                            let name = p.iter().rev().take(2).collect::<Vec<_>>();
                            format!(
                                "{}/{}",
                                name[1].to_string_lossy(),
                                name[0].to_string_lossy()
                            )
                        })
                        .collect();
                    cycles.push(names.join(" -> "));
                }
                Some(_) => {}
                None => visit(m, edges, colour, stack, cycles),
            }
        }
        stack.pop();
        colour.insert(n.clone(), 2);
    }
    let mut colour = BTreeMap::new();
    let mut cycles = Vec::new();
    for n in edges.keys() {
        if !colour.contains_key(n) {
            visit(n, &edges, &mut colour, &mut Vec::new(), &mut cycles);
        }
    }
    cycles
}

#[test]
fn no_import_circle_in_collector_src() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src");
    let cycles = import_circles(&root, 40, 100);
    assert!(cycles.is_empty(), "import circles:\n{}", cycles.join("\n"));
}

/// The same rule for the SDK core the collector and both bindings build on.
#[test]
fn no_import_circle_in_sdk_core_src() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../sdk-core/src");
    let cycles = import_circles(&root, 15, 20);
    assert!(cycles.is_empty(), "import circles:\n{}", cycles.join("\n"));
}
