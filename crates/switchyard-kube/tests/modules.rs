//! The operator's modules import in one direction: a module never imports (directly or
//! through others) from a module that imports it back. Read from the sources: every
//! `crate::module` path outside comments, `use crate::{a, b::c}` groups included.

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// The crate modules each file under `src/` names.
fn graph() -> BTreeMap<String, BTreeSet<String>> {
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
    let mut files: Vec<_> = std::fs::read_dir(&src)
        .expect("src/")
        .map(|e| e.expect("an entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "rs"))
        .collect();
    files.sort();
    let modules: BTreeSet<String> = files
        .iter()
        .map(|p| p.file_stem().unwrap().to_string_lossy().into_owned())
        .filter(|m| m != "lib")
        .collect();
    assert!(
        std::fs::read_dir(&src)
            .unwrap()
            .all(|e| !e.unwrap().path().is_dir()),
        "a module directory under src/: this check reads one file per module"
    );
    let mut graph = BTreeMap::new();
    for path in &files {
        let module = path.file_stem().unwrap().to_string_lossy().into_owned();
        if module == "lib" {
            continue;
        }
        let text = std::fs::read_to_string(path).expect("readable");
        let uses = crate_paths(&strip_comments(&text))
            .into_iter()
            .filter(|m| *m != module && modules.contains(m))
            .collect();
        graph.insert(module, uses);
    }
    graph
}

/// The text without `//` comments (line, doc and inner doc comments).
fn strip_comments(text: &str) -> String {
    text.lines()
        .map(|line| {
            let mut in_string = false;
            let bytes = line.as_bytes();
            for i in 0..bytes.len() {
                match bytes[i] {
                    b'"' if i == 0 || bytes[i - 1] != b'\\' => in_string = !in_string,
                    b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
                    _ => {}
                }
            }
            line
        })
        .collect::<Vec<_>>()
        .join("\n")
}

/// The first segment of every `crate::` path (each member of a `crate::{...}` group).
fn crate_paths(text: &str) -> BTreeSet<String> {
    let ident = |s: &str| -> String {
        s.trim()
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect()
    };
    let mut out = BTreeSet::new();
    let mut rest = text;
    while let Some(at) = rest.find("crate::") {
        rest = &rest[at + "crate::".len()..];
        if let Some(group) = rest.strip_prefix('{') {
            let mut depth = 0;
            let mut member = String::new();
            for c in group.chars() {
                match c {
                    '{' => depth += 1,
                    '}' if depth == 0 => break,
                    '}' => depth -= 1,
                    ',' if depth == 0 => {
                        out.insert(ident(&member));
                        member.clear();
                        continue;
                    }
                    _ => {}
                }
                member.push(c);
            }
            out.insert(ident(&member));
        } else {
            out.insert(ident(rest));
        }
    }
    out.remove("");
    out
}

/// Every cycle, as the modules on it (from each module, the first path back to it).
fn cycles(graph: &BTreeMap<String, BTreeSet<String>>) -> Vec<Vec<String>> {
    fn path_to(
        graph: &BTreeMap<String, BTreeSet<String>>,
        from: &str,
        to: &str,
        seen: &mut BTreeSet<String>,
    ) -> Option<Vec<String>> {
        for next in graph.get(from).into_iter().flatten() {
            if next == to {
                return Some(vec![from.to_owned(), to.to_owned()]);
            }
            if seen.insert(next.clone())
                && let Some(mut path) = path_to(graph, next, to, seen)
            {
                path.insert(0, from.to_owned());
                return Some(path);
            }
        }
        None
    }
    graph
        .keys()
        .filter_map(|m| path_to(graph, m, m, &mut BTreeSet::new()))
        .collect()
}

#[test]
fn no_module_imports_from_a_module_that_imports_it_back() {
    let graph = graph();
    assert!(graph.len() > 10, "the modules were read: {graph:?}");
    assert!(
        graph["reconcile"].contains("runtime") && graph["runtime"].contains("ops"),
        "the imports were read: {graph:?}"
    );
    let found = cycles(&graph);
    assert!(
        found.is_empty(),
        "import cycles: {}",
        found
            .iter()
            .map(|c| c.join(" -> "))
            .collect::<Vec<_>>()
            .join("; ")
    );
    // Nothing imports the pipeline's top.
    for (module, uses) in &graph {
        assert!(
            !uses.contains("reconcile") || module == "controller",
            "{module} imports reconcile"
        );
        assert!(!uses.contains("controller"), "{module} imports controller");
    }
}

#[test]
fn the_check_finds_cycles_and_reads_groups_and_comments_as_the_compiler_does() {
    let text = "use crate::a::X;\n// crate::commented\nuse crate::{b, c::{D, E}, f};\nlet s = \"//\"; crate::g::h();\n/// [`crate::doc`]\n";
    let paths = crate_paths(&strip_comments(text));
    assert_eq!(
        paths.into_iter().collect::<Vec<_>>(),
        ["a", "b", "c", "f", "g"]
    );
    let graph: BTreeMap<String, BTreeSet<String>> = [
        ("change", vec!["runtime"]),
        ("runtime", vec!["schema"]),
        ("schema", vec!["change"]),
        ("status", vec!["crd"]),
        ("crd", vec![]),
    ]
    .into_iter()
    .map(|(m, u)| (m.to_owned(), u.into_iter().map(str::to_owned).collect()))
    .collect();
    let found = cycles(&graph);
    assert_eq!(found.len(), 3, "{found:?}");
    assert_eq!(found[0], ["change", "runtime", "schema", "change"]);
}
