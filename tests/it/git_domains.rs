//! Git-backed domains (issue 22 §4): `automate import --git REPO --ref R`
//! reads a local repository's commit with gix (no checkout), records the
//! commit in the domain (`datastore list`), `datastore refresh` takes a
//! newer commit atomically, a commit that does not validate leaves the
//! domain as it was, and git domains refuse edits. The repositories are
//! made with the `git` CLI in temp dirs.

use automate_datastore::git::{self, GitError};
use automate_datastore::import::{self, ImportError, ImportOptions};
use automate_datastore::settings::DomainChange;
use automate_datastore::Datastore;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn sample() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/datastore/small/Sample")
}

fn copy_dir(src: &Path, dst: &Path) {
    fs::create_dir_all(dst).expect("mkdir");
    for entry in fs::read_dir(src).expect("read_dir") {
        let entry = entry.expect("entry");
        let to = dst.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_dir(&entry.path(), &to);
        } else {
            fs::copy(entry.path(), &to).expect("copy");
        }
    }
}

/// `git` in `dir` with a fixed identity; panics when it fails.
fn git(dir: &Path, args: &[&str]) -> String {
    let out = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args([
            "-c",
            "user.name=Test",
            "-c",
            "user.email=test@example.com",
            "-c",
            "commit.gpgsign=false",
            "-c",
            "tag.gpgsign=false",
            "-c",
            "init.defaultBranch=main",
        ])
        .args(args)
        .env_remove("GIT_DIR")
        .env_remove("GIT_WORK_TREE")
        .output()
        .expect("git runs");
    assert!(
        out.status.success(),
        "git {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_string()
}

/// A repository in `dir` holding the `Sample` domain at its root
/// (ManageIQ's git layout), committed on `main`; returns the commit.
fn sample_repo(dir: &Path) -> String {
    copy_dir(&sample(), dir);
    git(dir, &["init", "-q"]);
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", "Sample domain"]);
    git(dir, &["rev-parse", "HEAD"])
}

/// Commits every change in `dir` with `message`; returns the commit.
fn commit_all(dir: &Path, message: &str) -> String {
    git(dir, &["add", "-A"]);
    git(dir, &["commit", "-q", "-m", message]);
    git(dir, &["rev-parse", "HEAD"])
}

fn automate(ds: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_automate"))
        .arg("--datastore")
        .arg(ds)
        .arg("--db")
        .arg(ds.with_extension("redb"))
        .args(args)
        .env_remove("RUST_LOG")
        .env_remove("AUTOMATE_SERVER")
        .env_remove("AUTOMATE_API_TOKEN")
        .output()
        .expect("automate runs")
}

fn stdout(o: &Output) -> String {
    assert!(
        o.status.success(),
        "exit {:?}\nstdout: {}\nstderr: {}",
        o.status.code(),
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Every file below `dir` with its bytes.
fn files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    crate::common::tree_entries(dir)
        .into_iter()
        .filter(|(_, _, kind)| kind.is_file())
        .map(|(rel, path, _)| (rel, fs::read(path).expect("read")))
        .collect()
}

/// `datastore list --json`'s entry for `name`.
fn listed(ds: &Path, name: &str) -> serde_json::Value {
    let list: serde_json::Value =
        serde_json::from_str(&stdout(&automate(ds, &["datastore", "list", "--json"])))
            .expect("json");
    list.as_array()
        .expect("array")
        .iter()
        .find(|d| d["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("{name} not listed: {list}"))
}

const HELLO: &str = "Sample/Demo/Greeting.class/hello.yaml";

#[test]
fn import_at_a_tag_then_refresh_a_branch_to_a_newer_commit() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    let first = sample_repo(&repo);
    git(&repo, &["tag", "-a", "v1", "-m", "release 1"]);
    // A second commit on main: hello's greeting changes.
    let hello = repo.join("Demo/Greeting.class/hello.yaml");
    let text = fs::read_to_string(&hello).expect("read");
    fs::write(&hello, text.replace("hi there", "hello again")).expect("write");
    let second = commit_all(&repo, "Friendlier greeting");
    let repo_arg = repo.to_string_lossy().into_owned();

    // At the tag: the first commit's files, recorded as a git domain.
    let tagged = tmp.path().join("tagged");
    let out = stdout(&automate(
        &tagged,
        &["import", "--git", &repo_arg, "--ref", "V1"],
    ));
    assert!(out.contains("Imported domain Sample"), "{out}");
    assert!(
        out.contains(&format!("v1 (tag) at commit {}", &first[..8])),
        "{out}"
    );
    let d = listed(&tagged, "Sample");
    assert_eq!(d["source"], "remote");
    assert_eq!(d["ref"], "v1");
    assert_eq!(d["ref_type"], "tag");
    assert_eq!(d["commit_sha"], first.as_str());
    assert_eq!(d["commit_message"], "Sample domain");
    assert_eq!(d["git_repository"], repo_arg.as_str());
    let table = stdout(&automate(&tagged, &["datastore", "list"]));
    assert!(table.contains("COMMIT"), "{table}");
    assert!(table.contains(&format!("v1@{}", &first[..8])), "{table}");
    let imported = fs::read_to_string(tagged.join(HELLO)).expect("hello");
    assert!(imported.contains("hi there"), "{imported}");
    // The tag does not move: nothing to do.
    let out = stdout(&automate(&tagged, &["datastore", "refresh", "sample"]));
    assert!(out.contains("Domain Sample is up to date"), "{out}");

    // On a branch: imported at the first commit (main reset there), then
    // refreshed to the second.
    let branch = tmp.path().join("branch");
    git(&repo, &["branch", "release", &first]);
    stdout(&automate(
        &branch,
        &[
            "import",
            "--git",
            &format!("file://{repo_arg}"),
            "--ref",
            "release",
        ],
    ));
    assert_eq!(listed(&branch, "Sample")["commit_sha"], first.as_str());
    let before = files(&branch.join("Sample"));
    git(&repo, &["branch", "-f", "release", &second]);
    let out = stdout(&automate(&branch, &["datastore", "refresh", "Sample"]));
    assert!(
        out.contains(&format!("from commit {} to", &first[..8])) && out.contains(&second[..8]),
        "{out}"
    );
    let d = listed(&branch, "Sample");
    assert_eq!(d["commit_sha"], second.as_str());
    assert_eq!(d["ref_type"], "branch");
    assert_eq!(d["commit_message"], "Friendlier greeting");
    let after = files(&branch.join("Sample"));
    assert!(
        String::from_utf8_lossy(&after[HELLO.trim_start_matches("Sample/")])
            .contains("hello again")
    );
    assert_ne!(before, after);
    // Priority and enabled are kept.
    assert_eq!(d["priority"], listed(&tagged, "Sample")["priority"]);
}

#[test]
fn a_refresh_to_a_commit_that_does_not_validate_leaves_the_domain_as_it_was() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    let first = sample_repo(&repo);
    let root = tmp.path().join("ds");
    git::import_git(
        &root,
        &repo.to_string_lossy(),
        Some("main"),
        &ImportOptions::default(),
    )
    .expect("import");
    let before = files(&root);

    // The next commit has an instance field its class does not define.
    let hello = repo.join("Demo/Greeting.class/hello.yaml");
    let text = fs::read_to_string(&hello).expect("read");
    fs::write(
        &hello,
        text.replace(
            "  - execute:",
            "  - no_such_field:\n      value: x\n  - execute:",
        ),
    )
    .expect("write");
    let bad = commit_all(&repo, "Broken");
    let out = automate(&root, &["datastore", "refresh", "Sample"]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    let located = format!(
        "{}@{}:Demo/Greeting.class/hello.yaml:",
        repo.display(),
        &bad[..8]
    );
    assert!(err.contains(&located), "{err}");
    assert!(err.contains("no_such_field"), "{err}");
    assert_eq!(files(&root), before, "the domain changed");
    assert_eq!(listed(&root, "Sample")["commit_sha"], first.as_str());

    // Fixed in the next commit: the refresh goes through.
    fs::write(&hello, text).expect("write");
    let fixed = commit_all(&repo, "Fixed");
    let r = git::refresh(&root, "Sample").expect("refresh");
    assert_eq!(r.previous.commit_sha, first);
    assert_eq!(r.origin.commit_sha, fixed);
    assert!(r.import.is_some());
}

#[test]
fn git_domains_refuse_edits_and_export_without_the_git_columns() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    sample_repo(&repo);
    let root = tmp.path().join("ds");
    let s = git::import_git(
        &root,
        &repo.to_string_lossy(),
        None,
        &ImportOptions::default(),
    )
    .expect("import");
    assert_eq!(s.origin.git_ref, "main");
    assert_eq!(s.import.source.as_str(), "remote");

    let (ds, problems) = Datastore::open(&root);
    assert!(problems.is_empty(), "{problems:?}");
    let e = ds
        .change_domain("Sample", DomainChange::Disable)
        .expect_err("locked");
    assert!(e.to_string().contains("is remote (read-only)"), "{e}");
    // A plain import over it is refused as for user_locked.
    let e = import::import(
        &root,
        &sample(),
        &ImportOptions {
            overwrite: true,
            ..Default::default()
        },
    )
    .expect_err("read-only");
    assert!(matches!(e, ImportError::ReadOnly(_)), "{e}");
    let out = automate(&root, &["datastore", "refresh", "Nope"]);
    assert!(String::from_utf8_lossy(&out.stderr).contains("no domain [Nope]"));

    // Export drops the git columns (as ManageIQ's exporter does) and keeps
    // the rest as the repository has it.
    let dest = tmp.path().join("out");
    stdout(&automate(
        &root,
        &["export", "Sample", &dest.to_string_lossy()],
    ));
    let exported = fs::read_to_string(dest.join("Sample/__domain__.yaml")).expect("read");
    assert!(!exported.contains("commit_sha"), "{exported}");
    assert!(!exported.contains("git_repository"), "{exported}");
    assert!(exported.contains("source: remote"), "{exported}");
    let original = files(&sample());
    let back = files(&dest.join("Sample"));
    for (rel, bytes) in &original {
        if rel != "__domain__.yaml" {
            assert_eq!(back.get(rel), Some(bytes), "{rel}");
        }
    }
    // A user domain is not a git domain.
    import::import(
        &root,
        &sample(),
        &ImportOptions {
            rename: Some("Mine".into()),
            ..Default::default()
        },
    )
    .expect("import");
    let e = git::refresh(&root, "Mine").expect_err("not git");
    assert!(matches!(e, GitError::NotGit { .. }), "{e}");
}

#[test]
fn a_repository_of_several_domains_needs_a_choice_and_bad_refs_are_named() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    copy_dir(&sample(), &repo.join("Sample"));
    copy_dir(&sample(), &repo.join("Other"));
    let other = repo.join("Other/__domain__.yaml");
    let text = fs::read_to_string(&other).expect("read");
    fs::write(&other, text.replace("name: Sample", "name: Other")).expect("write");
    git(&repo, &["init", "-q", "--bare", "../bare.git"]);
    git(&repo, &["init", "-q"]);
    commit_all(&repo, "Two domains");
    git(&repo, &["push", "-q", "../bare.git", "main"]);
    let bare = tmp.path().join("bare.git").to_string_lossy().into_owned();
    let root = tmp.path().join("ds");

    let e = git::import_git(&root, &bare, Some("main"), &ImportOptions::default())
        .expect_err("several");
    let msg = e.to_string();
    assert!(msg.contains("several domains (Other, Sample)"), "{msg}");
    let s = git::import_git(
        &root,
        &bare,
        Some("main"),
        &ImportOptions {
            domain_filter: Some("other".into()),
            ..Default::default()
        },
    )
    .expect("import Other");
    assert_eq!(s.import.domain, "Other");
    // Its refresh finds the same domain again.
    let r = git::refresh(&root, "Other").expect("refresh");
    assert!(r.import.is_none());

    let e =
        git::import_git(&root, &bare, Some("nope"), &ImportOptions::default()).expect_err("no ref");
    assert!(
        e.to_string()
            .contains("has no branch or tag `nope` (branches: main; tags: none)"),
        "{e}"
    );
    let e = git::import_git(
        &root,
        "https://example.com/x.git",
        None,
        &ImportOptions::default(),
    )
    .expect_err("network");
    assert!(matches!(e, GitError::NotLocal { .. }), "{e}");
    let e = git::import_git(
        &root,
        &tmp.path().join("none").to_string_lossy(),
        None,
        &ImportOptions::default(),
    )
    .expect_err("missing");
    assert!(matches!(e, GitError::Open { .. }), "{e}");
}

#[test]
fn a_symbolic_link_in_the_tree_is_refused() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let repo = tmp.path().join("repo");
    sample_repo(&repo);
    std::os::unix::fs::symlink("/etc/passwd", repo.join("Demo/Greeting.class/x.yaml"))
        .expect("symlink");
    commit_all(&repo, "A link");
    let root = tmp.path().join("ds");
    let e = git::import_git(
        &root,
        &repo.to_string_lossy(),
        None,
        &ImportOptions::default(),
    )
    .expect_err("link");
    assert!(
        e.to_string()
            .contains("Demo/Greeting.class/x.yaml` is a symbolic link"),
        "{e}"
    );
    assert!(!root.join("Sample").exists());
}
