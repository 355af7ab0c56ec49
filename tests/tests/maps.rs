//! Maps that cannot drift (docs/development.md, "Layout"): every `//!`
//! map atop a crate root or a `mod.rs` names every module declared there,
//! and each entry of its list names a module that exists; the README's
//! table of functions, docs/functions.md and the workspace list exactly the
//! functions template.yaml deploys; every relative link and heading anchor
//! of README.md and docs/ resolves. A module or function added without its
//! map, or a link to a file or heading that is not there, fails here.

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

use integration_tests::{deployed_functions, workspace_root};

/// Every file that carries a map: crate roots and the edge's module
/// directories.
fn mapped_files() -> Vec<PathBuf> {
    let root = workspace_root();
    let mut files = vec![
        root.join("shared/core/src/lib.rs"),
        root.join("shared/edge/src/lib.rs"),
        root.join("shared/edge/src/ports/mod.rs"),
        root.join("shared/edge/src/aws/mod.rs"),
        root.join("shared/edge/src/lambda/mod.rs"),
        root.join("shared/edge/src/services/mod.rs"),
        root.join("cli/src/lib.rs"),
    ];
    for f in functions() {
        files.push(root.join("functions").join(f).join("src/lib.rs"));
    }
    files
}

/// The functions: the directories under functions/.
fn functions() -> BTreeSet<String> {
    std::fs::read_dir(workspace_root().join("functions"))
        .unwrap()
        .filter_map(|e| e.ok())
        .filter(|e| e.path().join("Cargo.toml").exists())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect()
}

/// The modules a file declares (`mod x;`, `pub mod x;`, `pub(crate) mod x;`),
/// not inline ones (`mod tests { … }`).
fn declared(source: &str) -> BTreeSet<String> {
    source
        .lines()
        .map(str::trim)
        .filter_map(|l| {
            let l = l
                .strip_prefix("pub(crate) ")
                .or_else(|| l.strip_prefix("pub "))
                .unwrap_or(l);
            l.strip_prefix("mod ")?.strip_suffix(';').map(String::from)
        })
        .collect()
}

/// The file's `//!` text.
fn map(source: &str) -> String {
    source
        .lines()
        .take_while(|l| l.starts_with("//!") || l.trim().is_empty())
        .filter_map(|l| l.strip_prefix("//!"))
        .collect::<Vec<_>>()
        .join("\n")
}

/// True when the map names `module`: as `` `module` ``, `` [`module`] ``,
/// or a path ending in it (`` [`lambda::module`] ``, `` `crate::module` ``).
fn names(map: &str, module: &str) -> bool {
    map.split('`').skip(1).step_by(2).any(|quoted| {
        quoted == module
            || quoted.rsplit("::").next() == Some(module)
            || quoted.trim_end_matches(".rs") == module
    })
}

/// The first link of each entry of the map's list (`- [`x`]: …`).
fn entries(map: &str) -> Vec<String> {
    map.lines()
        .filter_map(|l| l.trim_start().strip_prefix("- [`"))
        .filter_map(|rest| rest.split_once("`]").map(|(name, _)| name.to_string()))
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

#[test]
fn every_map_names_every_module_and_only_modules_that_exist() {
    let mut problems = Vec::new();
    for file in mapped_files() {
        let source = read(&file);
        let map = map(&source);
        let modules = declared(&source);
        let shown = file
            .strip_prefix(workspace_root())
            .unwrap()
            .display()
            .to_string();
        if map.trim().is_empty() {
            problems.push(format!("{shown}: no //! map"));
            continue;
        }
        for m in &modules {
            if !names(&map, m) {
                problems.push(format!("{shown}: the map does not name module `{m}`"));
            }
        }
        for entry in entries(&map) {
            let module = entry.split("::").next().unwrap_or_default();
            if !modules.contains(module) {
                problems.push(format!(
                    "{shown}: the map lists `{entry}`, which is not a module declared there"
                ));
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The functions template.yaml deploys ([`deployed_functions`]).
fn deployed() -> BTreeSet<String> {
    deployed_functions().into_iter().collect()
}

#[test]
fn the_readme_the_docs_and_the_workspace_list_the_functions_the_template_deploys() {
    let deployed = deployed();
    assert!(deployed.len() >= 9, "{deployed:?}");
    assert_eq!(functions(), deployed, "functions/ against template.yaml");

    let readme = read(&workspace_root().join("README.md"));
    let in_readme: BTreeSet<String> = readme
        .lines()
        .filter_map(|l| l.strip_prefix("| `"))
        .filter_map(|rest| rest.split_once("` |").map(|(name, _)| name.to_string()))
        .filter(|name| name.ends_with("-snapshots") || deployed.contains(name))
        .collect();
    assert_eq!(in_readme, deployed, "README's table of functions");

    let docs = read(&workspace_root().join("docs/functions.md"));
    for f in &deployed {
        assert!(
            docs.lines()
                .any(|l| l.starts_with('#') && l.contains(f.as_str())),
            "docs/functions.md has no section for {f}"
        );
    }

    let cargo = read(&workspace_root().join("Cargo.toml"));
    for f in &deployed {
        assert!(
            cargo.contains(&format!("\"functions/{f}\"")),
            "Cargo.toml's workspace lacks functions/{f}"
        );
    }
}

/// No text that counts the functions by a number that is no longer true
/// ("five functions", "the eight Lambda zips"): the count is the
/// template's.
#[test]
fn no_map_or_doc_counts_the_functions_wrongly() {
    let count = deployed().len();
    let words = [
        "two", "three", "four", "five", "six", "seven", "eight", "nine", "ten", "eleven",
    ];
    // A stack that is not a vault deploys one fewer (vault-snapshots has
    // a condition): both counts are true.
    let right = [count, count - 1].map(|n| words.get(n.wrapping_sub(2)).copied().unwrap_or(""));
    let mut files: Vec<PathBuf> = mapped_files();
    let root = workspace_root();
    for doc in [
        "README.md",
        "docs/functions.md",
        "docs/operations.md",
        "docs/development.md",
        "template.yaml",
        "scripts/package.sh",
    ] {
        files.push(root.join(doc));
    }
    let mut problems = Vec::new();
    for file in files {
        let text = read(&file).to_lowercase();
        for word in words {
            if right.contains(&word) {
                continue;
            }
            for noun in [
                "functions",
                "lambda functions",
                "binaries",
                "lambda zips",
                "zips",
            ] {
                let phrase = format!("{word} {noun}");
                if text.contains(&phrase) {
                    problems.push(format!(
                        "{}: \"{phrase}\" ({count} deployed)",
                        file.strip_prefix(&root).unwrap().display(),
                    ));
                }
            }
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// Every environment variable the configuration reads is in
/// docs/operations.md's table ("Environment of the functions").
#[test]
fn every_variable_the_configuration_reads_is_documented() {
    let config = read(&workspace_root().join("shared/edge/src/config.rs"));
    let docs = read(&workspace_root().join("docs/operations.md"));
    let table: String = docs
        .split("## Environment of the functions")
        .nth(1)
        .and_then(|rest| rest.split("\n## ").next())
        .unwrap_or_default()
        .to_string();
    let mut missing = Vec::new();
    for quoted in config.split('"').skip(1).step_by(2) {
        let is_variable = quoted.len() > 3
            && quoted
                .chars()
                .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
            && quoted.contains('_');
        if is_variable && !table.contains(&format!("`{quoted}`")) && !missing.contains(&quoted) {
            missing.push(quoted);
        }
    }
    assert!(
        missing.is_empty(),
        "docs/operations.md's environment table lacks {missing:?}"
    );
}

/// The modules of one source directory a module uses (`crate::<m>` for a
/// crate root's directory, `super::<m>` or `crate::<dir>::<m>` below it),
/// the root excluded: a root uses its modules by design.
fn module_uses(dir: &Path, prefix: &str) -> Vec<(String, BTreeSet<String>)> {
    let modules: BTreeSet<String> = std::fs::read_dir(dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.unwrap().file_name().into_string().unwrap();
            let stem = name.strip_suffix(".rs")?.to_string();
            (stem != "lib" && stem != "mod" && stem != "main").then_some(stem)
        })
        .collect();
    modules
        .iter()
        .map(|m| {
            let source = read(&dir.join(format!("{m}.rs")));
            // Tests may reach anywhere; comments name what they like.
            let source: String = source
                .split("#[cfg(test)]")
                .next()
                .unwrap_or_default()
                .lines()
                .filter(|l| !l.trim_start().starts_with("//"))
                .collect::<Vec<_>>()
                .join("\n");
            // The names a `use <prefix>{a, b::c}` brings, and every
            // `<prefix>name` path.
            let mut named: BTreeSet<&str> = BTreeSet::new();
            for (i, _) in source.match_indices(&format!("{prefix}{{")) {
                let group = &source[i + prefix.len() + 1..];
                let group = &group[..group.find('}').unwrap_or(group.len())];
                named.extend(
                    group
                        .split(',')
                        .map(|n| n.trim().split("::").next().unwrap_or("")),
                );
            }
            for p in [prefix, "super::"] {
                for (i, _) in source.match_indices(p) {
                    let rest = &source[i + p.len()..];
                    let end = rest
                        .find(|c: char| !(c.is_alphanumeric() || c == '_'))
                        .unwrap_or(rest.len());
                    named.insert(&rest[..end]);
                }
            }
            let used = modules
                .iter()
                .filter(|other| *other != m && named.contains(other.as_str()))
                .cloned()
                .collect();
            (m.clone(), used)
        })
        .collect()
}

#[test]
fn no_two_modules_of_a_crate_use_each_other() {
    let root = workspace_root();
    let mut dirs: Vec<(PathBuf, String)> = functions()
        .into_iter()
        .map(|f| {
            (
                root.join("functions").join(f).join("src"),
                "crate::".to_string(),
            )
        })
        .collect();
    dirs.push((root.join("cli/src"), "crate::".into()));
    for sub in ["aws", "lambda", "ports", "services"] {
        dirs.push((
            root.join("shared/edge/src").join(sub),
            format!("crate::{sub}::"),
        ));
    }
    let mut cycles = Vec::new();
    for (dir, prefix) in dirs {
        let uses: std::collections::BTreeMap<String, BTreeSet<String>> =
            module_uses(&dir, &prefix).into_iter().collect();
        for (m, used) in &uses {
            for other in used {
                if m < other && uses.get(other).is_some_and(|u| u.contains(m)) {
                    cycles.push(format!("{}: {m} <-> {other}", dir.display()));
                }
            }
        }
    }
    assert!(
        cycles.is_empty(),
        "modules that use each other: {cycles:#?}"
    );
}

/// The template's top-level section `name`: its lines, up to the next
/// top-level key.
fn section<'t>(template: &'t str, name: &str) -> Vec<&'t str> {
    template
        .lines()
        .skip_while(|l| *l != format!("{name}:"))
        .skip(1)
        .take_while(|l| l.is_empty() || l.starts_with(' ') || l.starts_with('#'))
        .collect()
}

#[test]
fn every_parameter_is_in_one_console_group_and_the_description_names_every_function() {
    let template = read(&workspace_root().join("template.yaml"));
    let parameters: Vec<&str> = section(&template, "Parameters")
        .into_iter()
        .filter_map(|l| l.strip_prefix("  ")?.strip_suffix(':'))
        .filter(|name| !name.starts_with(' '))
        .collect();
    assert!(parameters.len() > 30, "{parameters:?}");
    let grouped: Vec<&str> = section(&template, "Metadata")
        .into_iter()
        .filter_map(|l| l.trim().strip_prefix("- "))
        .filter(|l| !l.starts_with("Label"))
        .collect();
    let mut problems = Vec::new();
    for p in &parameters {
        match grouped.iter().filter(|g| *g == p).count() {
            1 => {}
            n => problems.push(format!("{p} is in {n} parameter groups")),
        }
    }
    for g in &grouped {
        if !parameters.contains(g) {
            problems.push(format!("the group entry {g} is no parameter"));
        }
    }
    let description = template
        .lines()
        .skip_while(|l| !l.starts_with("Description:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .collect::<Vec<_>>()
        .join(" ");
    for f in deployed() {
        if !description.contains(&f) {
            problems.push(format!("the template's Description does not name {f}"));
        }
    }
    assert!(problems.is_empty(), "{problems:#?}");
}

/// docs/operations.md's parameter table names every parameter the template
/// has, and only those.
#[test]
fn the_parameter_table_names_every_parameter_of_the_template() {
    let template = read(&workspace_root().join("template.yaml"));
    let parameters: BTreeSet<&str> = section(&template, "Parameters")
        .into_iter()
        .filter_map(|l| l.strip_prefix("  ")?.strip_suffix(':'))
        .filter(|name| !name.starts_with(' '))
        .collect();
    let guide = read(&workspace_root().join("docs/operations.md"));
    let table: Vec<&str> = guide
        .lines()
        .skip_while(|l| !l.starts_with("## Parameters"))
        .skip(1)
        .take_while(|l| !l.starts_with("## "))
        .filter(|l| l.starts_with("| `"))
        .collect();
    // The first cell of each row: one or more `Name`s.
    let code = regex_lite::Regex::new(r"`([A-Za-z0-9]+)`").unwrap();
    let named: BTreeSet<&str> = table
        .iter()
        .filter_map(|row| row.split('|').nth(1))
        .flat_map(|cell| code.captures_iter(cell).map(|c| c.get(1).unwrap().as_str()))
        .collect();
    let missing: Vec<&&str> = parameters.difference(&named).collect();
    let unknown: Vec<&&str> = named.difference(&parameters).collect();
    assert!(
        missing.is_empty() && unknown.is_empty(),
        "not in docs/operations.md's parameter table: {missing:?}; in it but not in the template: {unknown:?}"
    );
}

/// GitHub's anchor of a heading: lower case, punctuation but `-` and `_`
/// dropped, spaces made `-`.
fn anchor(heading: &str) -> String {
    heading
        .trim()
        .to_lowercase()
        .chars()
        .filter_map(|c| match c {
            ' ' => Some('-'),
            c if c.is_alphanumeric() || c == '-' || c == '_' => Some(c),
            _ => None,
        })
        .collect()
}

/// A markdown file's text outside fenced code blocks, line by line.
fn prose(text: &str) -> Vec<&str> {
    let mut fenced = false;
    text.lines()
        .filter(|line| {
            if line.trim_start().starts_with("```") {
                fenced = !fenced;
                return false;
            }
            !fenced
        })
        .collect()
}

/// The anchors of a markdown file's headings (a repeated one gets `-1`,
/// `-2`... as GitHub numbers them).
fn anchors(text: &str) -> BTreeSet<String> {
    let mut seen: std::collections::BTreeMap<String, usize> = Default::default();
    let mut out = BTreeSet::new();
    for line in prose(text) {
        let Some(heading) = line.strip_prefix('#') else {
            continue;
        };
        let heading = heading.trim_start_matches('#');
        if !heading.starts_with(' ') {
            continue;
        }
        // Links and code in a heading show their text only.
        let plain = regex_lite::Regex::new(r"\[([^\]]*)\]\([^)]*\)")
            .unwrap()
            .replace_all(heading, "$1")
            .replace('`', "");
        let base = anchor(&plain);
        let n = seen.entry(base.clone()).or_default();
        out.insert(if *n == 0 {
            base.clone()
        } else {
            format!("{base}-{n}")
        });
        *n += 1;
    }
    out
}

/// Every relative link in README.md and docs/ leads to a file that exists,
/// and every `#anchor` to a heading there (or in the same file).
#[test]
fn every_relative_link_and_anchor_in_the_readme_and_docs_resolves() {
    let root = workspace_root();
    let mut files = vec![root.join("README.md")];
    let mut docs: Vec<PathBuf> = std::fs::read_dir(root.join("docs"))
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "md"))
        .collect();
    docs.sort();
    files.extend(docs);
    let link = regex_lite::Regex::new(r"\]\(([^)\s]+)\)").unwrap();
    let code = regex_lite::Regex::new(r"`[^`]*`").unwrap();
    let mut broken = Vec::new();
    let mut checked = 0;
    for file in &files {
        let text = read(file);
        for line in prose(&text) {
            let line = code.replace_all(line, "");
            for found in link.captures_iter(&line) {
                let target = &found[1];
                if target.contains("://") || target.starts_with("mailto:") {
                    continue;
                }
                checked += 1;
                let (path, fragment) = match target.split_once('#') {
                    Some((p, f)) => (p, Some(f)),
                    None => (target, None),
                };
                let resolved = if path.is_empty() {
                    file.clone()
                } else {
                    file.parent().unwrap().join(path)
                };
                if !resolved.exists() {
                    broken.push(format!("{}: {target} (no such file)", file.display()));
                    continue;
                }
                if let Some(fragment) = fragment {
                    let is_markdown = resolved.extension().is_some_and(|e| e == "md");
                    if is_markdown && !anchors(&read(&resolved)).contains(fragment) {
                        broken.push(format!("{}: {target} (no such heading)", file.display()));
                    }
                }
            }
        }
    }
    assert!(
        checked > 20,
        "only {checked} links found: the pattern is wrong"
    );
    assert!(broken.is_empty(), "broken links:\n{}", broken.join("\n"));
}

#[test]
fn anchors_are_githubs() {
    assert_eq!(anchor("Restore drills"), "restore-drills");
    assert_eq!(
        anchor("From another region or the vault"),
        "from-another-region-or-the-vault"
    );
    assert_eq!(
        anchor("Copies (disaster recovery)"),
        "copies-disaster-recovery"
    );
    assert_eq!(anchor("`make demo`: a year"), "make-demo-a-year");
    let doc = "# A\n## B `c`\n```\n# not a heading\n```\n## B c\n";
    assert_eq!(
        anchors(doc),
        ["a", "b-c", "b-c-1"]
            .into_iter()
            .map(String::from)
            .collect()
    );
}
