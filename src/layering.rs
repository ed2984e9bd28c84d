//! The layering of `lib.rs`, checked from the source, so that it stays true
//! without anyone re-reading every `use`: imports only go down (to an
//! earlier block of `pub mod` lines there, or within a block), no
//! files and no modules import each other in a loop, and no collector
//! imports another collector.
//!
//! The imports are read as text: every `crate::`, `super::` and `self::`
//! path outside comments, test code included (a test that reaches up a
//! layer ties the layers together as much as any other code). A path goes
//! to the file of its longest prefix that is a module; a reference to an
//! enclosing module (`super::Config` from `config/load.rs`) is not an
//! edge, since every child is declared by its parent anyway.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

const SRC: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/src");

/// A module path, `["process", "pool"]`.
type Module = Vec<String>;

/// Every file of this crate under `src/` but `lib.rs`, `main.rs` and this
/// one, by module path, with its text (comments removed).
fn sources() -> BTreeMap<Module, String> {
    fn walk(dir: &Path, out: &mut BTreeMap<Module, String>) {
        for entry in std::fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            let rel = path
                .strip_prefix(SRC)
                .unwrap()
                .to_str()
                .unwrap()
                .to_string();
            if path.is_dir() {
                // herakles-core is a crate of its own.
                if rel != "core" {
                    walk(&path, out);
                }
                continue;
            }
            let Some(stem) = rel.strip_suffix(".rs") else {
                continue;
            };
            // The crate root declares the layers; this file's examples
            // below are not imports.
            if stem == "lib" || stem == "main" || stem == "layering" {
                continue;
            }
            let mut module: Module = stem.split('/').map(str::to_string).collect();
            if module.last().map(String::as_str) == Some("mod") {
                module.pop();
            }
            let text = std::fs::read_to_string(&path).unwrap();
            let code: Vec<&str> = text
                .lines()
                .map(|l| l.split_once("//").map_or(l, |(code, _)| code))
                .collect();
            out.insert(module, code.join("\n"));
        }
    }
    let mut out = BTreeMap::new();
    walk(Path::new(SRC), &mut out);
    out
}

/// The paths `text` names, each as written (`crate::a::b`, with every
/// item of a `{...}` group its own path), made absolute for a file of
/// module `me`.
fn paths(me: &Module, text: &str) -> Vec<Module> {
    let re =
        regex::Regex::new(r"\b(crate|super|self)((?:::(?:[A-Za-z_][A-Za-z0-9_]*|\{))*)").unwrap();
    let mut out = Vec::new();
    for m in re.captures_iter(text) {
        let whole = m.get(0).unwrap();
        // `self.field`, `self` in a group, or a `super::` after
        // `super::` (taken with the first one): not a path of its own.
        if m[2].is_empty() || text[..whole.start()].ends_with("::") {
            continue;
        }
        let mut base: Module = match &m[1] {
            "crate" => Vec::new(),
            "super" => me[..me.len().saturating_sub(1)].to_vec(),
            _ => me.clone(),
        };
        let rest = &m[2];
        let (prefix, group) = match rest.strip_suffix("::{") {
            Some(p) => (p, true),
            None => (rest, false),
        };
        for seg in prefix.split("::").filter(|s| !s.is_empty()) {
            if seg == "super" {
                base.pop();
            } else {
                base.push(seg.to_string());
            }
        }
        if group {
            group_items(&base, &text[whole.end()..], &mut out);
        } else {
            out.push(base);
        }
    }
    out
}

/// The paths of a `{...}` group whose text starts right after `{`.
fn group_items(prefix: &Module, text: &str, out: &mut Vec<Module>) {
    let (mut depth, mut start) = (0, 0);
    let mut items = Vec::new();
    for (i, c) in text.char_indices() {
        match c {
            '{' => depth += 1,
            '}' if depth == 0 => {
                items.push(&text[start..i]);
                break;
            }
            '}' => depth -= 1,
            ',' if depth == 0 => {
                items.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    for item in items {
        let item = item.trim();
        let item = item.split(" as ").next().unwrap_or(item).trim();
        let mut path = prefix.clone();
        let (head, inner) = match item.split_once("::{") {
            Some((h, inner)) => (h, Some(inner)),
            None => (item, None),
        };
        path.extend(
            head.split("::")
                .filter(|s| !s.is_empty() && *s != "self")
                .map(str::to_string),
        );
        match inner {
            Some(inner) => group_items(&path, inner, out),
            None => out.push(path),
        }
    }
}

/// For each file, the files it imports.
fn file_graph(sources: &BTreeMap<Module, String>) -> BTreeMap<Module, BTreeSet<Module>> {
    let mut graph = BTreeMap::new();
    for (me, text) in sources {
        let mut to = BTreeSet::new();
        for path in paths(me, text) {
            let target = (0..=path.len())
                .rev()
                .map(|n| path[..n].to_vec())
                .find(|p| sources.contains_key(p));
            if let Some(t) = target.filter(|t| !me.starts_with(t)) {
                to.insert(t);
            }
        }
        graph.insert(me.clone(), to);
    }
    graph
}

/// The loops of `graph`: its strongly connected components of more
/// than one node (Tarjan).
fn loops<N: Ord + Clone>(graph: &BTreeMap<N, BTreeSet<N>>) -> Vec<Vec<N>> {
    struct Walk<'a, N> {
        graph: &'a BTreeMap<N, BTreeSet<N>>,
        index: BTreeMap<N, usize>,
        low: BTreeMap<N, usize>,
        stack: Vec<N>,
        out: Vec<Vec<N>>,
    }
    impl<N: Ord + Clone> Walk<'_, N> {
        fn visit(&mut self, v: &N) {
            let i = self.index.len();
            self.index.insert(v.clone(), i);
            self.low.insert(v.clone(), i);
            self.stack.push(v.clone());
            for w in self.graph.get(v).into_iter().flatten() {
                if !self.index.contains_key(w) {
                    self.visit(w);
                    let l = self.low[v].min(self.low[w]);
                    self.low.insert(v.clone(), l);
                } else if self.stack.contains(w) {
                    let l = self.low[v].min(self.index[w]);
                    self.low.insert(v.clone(), l);
                }
            }
            if self.low[v] == self.index[v] {
                let at = self.stack.iter().position(|n| n == v).unwrap();
                let component = self.stack.split_off(at);
                if component.len() > 1 {
                    self.out.push(component);
                }
            }
        }
    }
    let mut walk = Walk {
        graph,
        index: BTreeMap::new(),
        low: BTreeMap::new(),
        stack: Vec::new(),
        out: Vec::new(),
    };
    for v in graph.keys() {
        if !walk.index.contains_key(v) {
            walk.visit(v);
        }
    }
    walk.out
}

/// The block of `pub mod` lines in `lib.rs` each top-level module is
/// declared in, counted from 0.
fn blocks() -> BTreeMap<String, usize> {
    let lib = std::fs::read_to_string(format!("{SRC}/lib.rs")).unwrap();
    let mut out = BTreeMap::new();
    let (mut block, mut in_block) = (0, false);
    for line in lib.lines() {
        match line
            .strip_prefix("pub mod ")
            .and_then(|l| l.strip_suffix(';'))
        {
            Some(name) => {
                out.insert(name.to_string(), block);
                in_block = true;
            }
            None if in_block => {
                block += 1;
                in_block = false;
            }
            None => {}
        }
    }
    out
}

fn show(m: &Module) -> String {
    m.join("::")
}

#[test]
fn no_file_imports_a_file_that_imports_it_back() {
    let loops = loops(&file_graph(&sources()));
    let shown: Vec<Vec<String>> = loops.iter().map(|l| l.iter().map(show).collect()).collect();
    assert!(shown.is_empty(), "files that import each other: {shown:?}");
}

#[test]
fn modules_import_only_their_own_layer_and_those_below() {
    let blocks = blocks();
    let graph = file_graph(&sources());
    let mut wrong = Vec::new();
    let mut modules: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (from, tos) in &graph {
        for to in tos {
            let (a, b) = (&from[0], &to[0]);
            if a == b {
                continue;
            }
            modules.entry(a.clone()).or_default().insert(b.clone());
            if blocks[a] < blocks[b] {
                wrong.push(format!("{} -> {}", show(from), show(to)));
            }
        }
    }
    assert!(wrong.is_empty(), "imports up a layer: {wrong:?}");
    let loops = loops(&modules);
    assert!(
        loops.is_empty(),
        "modules that import each other: {loops:?}"
    );
}

#[test]
fn no_collector_imports_another() {
    let graph = file_graph(&sources());
    let collector = |m: &Module| m.len() == 2 && m[0] == "collectors" && m[1] != "helpers";
    let wrong: Vec<String> = graph
        .iter()
        .filter(|(from, _)| collector(from))
        .flat_map(|(from, tos)| {
            tos.iter()
                .filter(|to| collector(to))
                .map(move |to| format!("{} -> {}", show(from), show(to)))
        })
        .collect();
    assert!(
        wrong.is_empty(),
        "collectors importing collectors: {wrong:?}"
    );
}

/// The reader itself: a group, a nested group, `super` and `self`.
#[test]
fn paths_are_read_as_rust_resolves_them() {
    let me: Module = vec!["collectors".into(), "disk".into()];
    let text = "use crate::{config::Config, process::{self, pool::Pool}};\n\
                use super::helpers::psi;\n\
                let x = self.field; use self::inner::X;";
    let got: Vec<String> = paths(&me, text).iter().map(show).collect();
    assert_eq!(
        got,
        [
            "config::Config",
            "process",
            "process::pool::Pool",
            "collectors::helpers::psi",
            "collectors::disk::inner::X",
        ]
    );
}
