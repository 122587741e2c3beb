//! `keygate scan`: finds keygate secrets and key ids in files, directories and a git repository's
//! history, for pre-commit hooks, CI jobs and leak response. Matching is `keygate_auth::scan`:
//! prefix, exact length and checksum, so random text is never reported. Secrets are shown by their
//! first eight characters only.
//!
//! Exit status: 0 when no secret was found, 1 when one was (key ids alone are reported but do not
//! fail: they identify, they never sign), 2 when something could not be scanned.

use anyhow::{Context as _, bail};
use keygate_auth::scan::{Found, FoundKind, find, redacted};
use std::io::{BufRead as _, Read as _};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

/// Arguments of `keygate scan`.
#[derive(Debug, clap::Args)]
pub struct ScanArgs {
    /// Files and directories to scan (directories recursively, `.git` skipped); `-` reads
    /// standard input. With --git: repositories whose whole history to scan. Default: `.`.
    #[arg(value_name = "PATH")]
    pub paths: Vec<PathBuf>,
    /// Scan every commit of the repositories at PATH (all branches and tags: `git log --all -p`),
    /// including files since deleted, instead of the files as they are.
    #[arg(long)]
    pub git: bool,
    /// One JSON object per finding, one per line.
    #[arg(long)]
    pub json: bool,
}

/// The scan found at least one secret: exit status 1, after the findings were printed.
#[derive(Debug, thiserror::Error)]
#[error("{0} secret(s) found")]
pub struct SecretsFound(pub usize);

/// Where a finding is.
struct Place {
    /// File path (for --git: the path in the commit).
    file: String,
    /// 1-based line.
    line: usize,
    /// The commit, with --git.
    commit: Option<String>,
}

/// Runs the scan and prints every finding.
///
/// # Errors
/// [`SecretsFound`] when a secret was found; anything else when a path or the repository could not
/// be read.
pub fn run(args: &ScanArgs) -> anyhow::Result<()> {
    let paths = if args.paths.is_empty() { vec![PathBuf::from(".")] } else { args.paths.clone() };
    let mut report = Report { json: args.json, secrets: 0, key_ids: 0 };
    for path in &paths {
        if args.git {
            scan_history(path, &mut report)?;
        } else if path.as_os_str() == "-" {
            let mut text = Vec::new();
            std::io::stdin().read_to_end(&mut text).context("cannot read standard input")?;
            report.text(&text, "-", None)?;
        } else {
            scan_path(path, &mut report)?;
        }
    }
    if !args.json {
        eprintln!("keygate scan: {} secret(s), {} key id(s)", report.secrets, report.key_ids);
    }
    if report.secrets > 0 {
        return Err(SecretsFound(report.secrets).into());
    }
    Ok(())
}

struct Report {
    json: bool,
    secrets: usize,
    key_ids: usize,
}

impl Report {
    /// Scans `text` (one file, or one file of one commit) and prints its findings.
    fn text(&mut self, text: &[u8], file: &str, commit: Option<&str>) -> anyhow::Result<()> {
        for f in find(text) {
            let line = 1 + text[..f.offset].iter().filter(|b| **b == b'\n').count();
            self.print(text, f, &Place { file: file.to_owned(), line, commit: commit.map(str::to_owned) })?;
        }
        Ok(())
    }

    fn print(&mut self, text: &[u8], f: Found, place: &Place) -> anyhow::Result<()> {
        match f.kind {
            FoundKind::Secret => self.secrets += 1,
            FoundKind::KeyId => self.key_ids += 1,
        }
        let shown = redacted(text, f);
        if self.json {
            let v = serde_json::json!({
                "kind": f.kind.as_str(),
                "file": place.file,
                "line": place.line,
                "commit": place.commit,
                "match": shown,
            });
            outln!("{v}");
        } else {
            let at = match &place.commit {
                Some(c) => format!("{}:{}:{}", &c[..c.len().min(12)], place.file, place.line),
                None => format!("{}:{}", place.file, place.line),
            };
            let what = match f.kind {
                FoundKind::Secret => "SECRET (revoke its key)",
                FoundKind::KeyId => "key id",
            };
            outln!("{at}: {what}: {shown}");
        }
        Ok(())
    }
}

/// A file, or every file under a directory (not following links, skipping `.git`).
fn scan_path(path: &Path, report: &mut Report) -> anyhow::Result<()> {
    let meta = std::fs::symlink_metadata(path).with_context(|| format!("cannot read {}", path.display()))?;
    if meta.is_dir() {
        let mut entries: Vec<_> = std::fs::read_dir(path)
            .with_context(|| format!("cannot read directory {}", path.display()))?
            .collect::<Result<_, _>>()
            .with_context(|| format!("cannot read directory {}", path.display()))?;
        entries.sort_by_key(std::fs::DirEntry::file_name);
        for e in entries {
            if e.file_name() == ".git" {
                continue;
            }
            scan_path(&e.path(), report)?;
        }
    } else if meta.is_file() {
        let text = std::fs::read(path).with_context(|| format!("cannot read {}", path.display()))?;
        report.text(&text, &path.display().to_string(), None)?;
    }
    Ok(())
}

/// Every commit of the repository at `repo`, as `git log --all -p` shows it: each added or
/// removed line, attributed to its commit and file (the line number is the line's in the patch
/// text of that file).
fn scan_history(repo: &Path, report: &mut Report) -> anyhow::Result<()> {
    let mut child = Command::new("git")
        .arg("-C")
        .arg(repo)
        .args(["log", "--all", "-p", "--no-color", "--no-ext-diff", "--format=commit %H"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .context("cannot run git (is it installed?)")?;
    let stdout = child.stdout.take().context("no output from git")?;
    let (mut commit, mut file, mut hunk_line) = (String::new(), String::new(), 0usize);
    let mut reader = std::io::BufReader::new(stdout);
    let mut line = Vec::new();
    loop {
        line.clear();
        if reader.read_until(b'\n', &mut line).context("reading git's output")? == 0 {
            break;
        }
        if let Some(c) = line.strip_prefix(b"commit ") {
            commit = String::from_utf8_lossy(c).trim().to_owned();
            continue;
        }
        if let Some(f) = line.strip_prefix(b"+++ b/").or_else(|| line.strip_prefix(b"--- a/")) {
            file = String::from_utf8_lossy(f).trim().to_owned();
            hunk_line = 0;
            continue;
        }
        hunk_line += 1;
        for f in find(&line) {
            let place = Place { file: file.clone(), line: hunk_line, commit: Some(commit.clone()) };
            report.print(&line, f, &place)?;
        }
    }
    let out = child.wait_with_output().context("waiting for git")?;
    if !out.status.success() {
        bail!("git log in {} failed: {}", repo.display(), String::from_utf8_lossy(&out.stderr).trim());
    }
    Ok(())
}
