//! `make deploy` and `make validate` (docs/operations.md, "Deploy: what you
//! built, with what you chose"): scripts/deploy.py run as the Makefile runs
//! it, with `--print` in place of the deploy. What a user would notice: the
//! architecture deployed is the one built, samconfig.toml's choices
//! (DryRun=false among them) survive a policy document given on the
//! command line, a refused document deploys nothing and says why in the
//! functions' words, and the operations guide's samconfig example is one
//! that deploys. (A test of this crate: cargo builds the `ebs-lifecycle`
//! the script runs for it.)

#![allow(clippy::unwrap_used, clippy::expect_used)] // tests fail loudly by design

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use serde_json::Value;

/// The workspace's root (this crate is `cli/`).
fn workspace_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("cli/ is in the workspace")
        .to_path_buf()
}

/// The validator the script runs: this crate's `ebs-lifecycle`, which
/// cargo builds for its integration tests.
fn validator() -> PathBuf {
    PathBuf::from(env!("CARGO_BIN_EXE_ebs-lifecycle"))
}

/// A scratch directory of this test.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("deploy-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(dir.join("build")).unwrap();
    dir
}

/// scripts/deploy.py with `args`, its samconfig `config` and a build of
/// `arch` (none: nothing built).
fn deploy(dir: &Path, config: &str, arch: Option<&str>, args: &[&str]) -> Output {
    std::fs::write(dir.join("samconfig.toml"), config).unwrap();
    if let Some(arch) = arch {
        std::fs::write(dir.join("build/build-architecture"), format!("{arch}\n")).unwrap();
    }
    Command::new(workspace_root().join(".venv/bin/python"))
        .arg(workspace_root().join("scripts/deploy.py"))
        .arg("--config")
        .arg(dir.join("samconfig.toml"))
        .arg("--build-dir")
        .arg(dir.join("build"))
        .args(args)
        .env("EBS_LIFECYCLE_BIN", validator())
        .output()
        .unwrap()
}

/// The printed parameters, and sam's own reading of the line it would get.
fn printed(out: &Output) -> (Value, Value) {
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let printed: Value = serde_json::from_slice(&out.stdout).unwrap();
    let line = printed["line"].as_str().unwrap();
    let read = Command::new(workspace_root().join(".venv/bin/python"))
        .args([
            "-c",
            "import json, sys; from samcli.cli.types import CfnParameterOverridesType as T; \
             print(json.dumps(T().convert(sys.argv[1], None, None)))",
            line,
        ])
        .output()
        .unwrap();
    assert!(
        read.status.success(),
        "{}",
        String::from_utf8_lossy(&read.stderr)
    );
    (
        printed["overrides"].clone(),
        serde_json::from_slice(&read.stdout).unwrap(),
    )
}

const CHOSEN: &str = r#"
version = 0.1
[default.global.parameters]
stack_name = "backups-test"
[default.deploy.parameters]
parameter_overrides = ["SelectorTagKey=Backup", "DryRun=false", "MaxDeletions=100"]
"#;

#[test]
fn the_built_architecture_and_samconfigs_choices_are_deployed_with_a_checked_document() {
    let dir = scratch("choices");
    let document = dir.join("policies.json");
    std::fs::write(
        &document,
        r#"{"gold": {"schedule": "@daily", "tags": {"Team": "data eng"}, "keep": {"daily": 7}}}"#,
    )
    .unwrap();
    let out = deploy(
        &dir,
        CHOSEN,
        Some("x86_64"),
        &["--print", "--policies", document.to_str().unwrap()],
    );
    let (overrides, as_sam_reads_it) = printed(&out);
    assert_eq!(
        overrides, as_sam_reads_it,
        "sam reads back every value whole"
    );
    assert_eq!(overrides["Architecture"], "x86_64", "what was built");
    assert_eq!(overrides["DryRun"], "false", "samconfig's choice kept");
    assert_eq!(overrides["MaxDeletions"], "100");
    let policies: Value = serde_json::from_str(overrides["Policies"].as_str().unwrap()).unwrap();
    assert_eq!(policies["gold"]["tags"]["Team"], "data eng");
    // A dry-run stack is said to be one.
    let dry = deploy(
        &dir,
        &CHOSEN.replace("DryRun=false", "DryRun=true"),
        Some("arm64"),
        &["--print"],
    );
    let (overrides, _) = printed(&dry);
    assert_eq!(overrides["Architecture"], "arm64");
    assert!(String::from_utf8_lossy(&dry.stderr).contains("DryRun=true"));
}

#[test]
fn a_refused_document_or_nothing_built_deploys_nothing() {
    let dir = scratch("refused");
    let document = dir.join("policies.json");
    std::fs::write(
        &document,
        r#"{"gold": {"schedule": "@daily", "keep": {"daily": 0}}}"#,
    )
    .unwrap();
    let refused = deploy(
        &dir,
        CHOSEN,
        Some("x86_64"),
        &["--print", "--policies", document.to_str().unwrap()],
    );
    assert!(!refused.status.success());
    let why = String::from_utf8_lossy(&refused.stderr);
    assert!(
        why.contains("keep.daily") && why.contains("nothing deployed"),
        "{why}"
    );
    assert!(refused.stdout.is_empty(), "no parameters for sam");
    // The same document in samconfig.toml is refused too.
    let in_config = CHOSEN.replace(
        r#""MaxDeletions=100"]"#,
        r#""MaxDeletions=100", "Policies={\"gold\": {\"schedule\": \"@daily\", \"keep\": {\"daily\": 0}}}"]"#,
    );
    let refused = deploy(&dir, &in_config, Some("x86_64"), &["--print"]);
    assert!(!refused.status.success());
    // Nothing built: refused before anything else.
    let dir = scratch("unbuilt");
    let unbuilt = deploy(&dir, CHOSEN, None, &["--print"]);
    assert!(!unbuilt.status.success());
    assert!(String::from_utf8_lossy(&unbuilt.stderr).contains("make package"));
    // make validate alone.
    let validated = deploy(
        &dir,
        CHOSEN,
        None,
        &["--validate-only", "--policies", document.to_str().unwrap()],
    );
    assert!(!validated.status.success());
}

/// The samconfig.toml of docs/operations.md, as written, is one that
/// deploys: it parses, its policy document validates, and sam gets its
/// parameters whole.
#[test]
fn the_operations_guides_samconfig_example_deploys_as_written() {
    let guide = std::fs::read_to_string(workspace_root().join("docs/operations.md")).unwrap();
    let start = guide.find("```toml\n").expect("the guide has a toml block") + "```toml\n".len();
    let end = start + guide[start..].find("```").unwrap();
    let dir = scratch("guide");
    let out = deploy(&dir, &guide[start..end], Some("x86_64"), &["--print"]);
    let (overrides, as_sam_reads_it) = printed(&out);
    assert_eq!(overrides, as_sam_reads_it);
    assert_eq!(overrides["DryRun"], "false");
    let policies: Value = serde_json::from_str(overrides["Policies"].as_str().unwrap()).unwrap();
    let names: Vec<&String> = policies.as_object().unwrap().keys().collect();
    assert_eq!(names, ["gold", "silver"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("valid"));
}
