//! Store faults heal by themselves (issue #13): on a full disk, writes are refused with a clear
//! message, nothing is half-applied and `/readyz` says not ready; once space is back, the same
//! server writes again, without a restart. A real full filesystem: a small tmpfs, which needs
//! root to mount (the test says it skipped otherwise).

use super::Sandbox;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// A tmpfs of `size` mounted at a fresh directory, unmounted when dropped.
struct Tmpfs(tempfile::TempDir);

impl Tmpfs {
    fn mount(size: &str) -> Option<Self> {
        let dir = tempfile::tempdir().ok()?;
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size},mode=0700"), "tmpfs"])
            .arg(dir.path())
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success());
        ok.then_some(Self(dir))
    }

    fn path(&self) -> &Path {
        self.0.path()
    }

    /// Writes zeros until the filesystem is full; returns the file, to delete later.
    fn fill(&self) -> PathBuf {
        let path = self.path().join("filler");
        let mut f = std::fs::File::create(&path).unwrap();
        let chunk = vec![0u8; 64 * 1024];
        while f.write_all(&chunk).is_ok() {}
        let _ = f.flush();
        path
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg("-l").arg(self.0.path()).status();
    }
}

async fn ready_status(url: &str) -> u16 {
    reqwest::get(format!("{url}/readyz")).await.map(|r| r.status().as_u16()).unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_disk_refuses_writes_and_the_server_writes_again_once_space_is_back() {
    let Some(fs) = Tmpfs::mount("4m") else {
        let _ = std::io::stderr().write_all(b"full disk: skipped: cannot mount a tmpfs (needs root)\n");
        return;
    };
    let s = Sandbox::new();
    let data = fs.path().join("data");
    let cmd = |args: &[&str]| {
        let mut c = s.command(args);
        c.env("KEYGATE_DATA_DIR", &data);
        c
    };
    let run = |args: &[&str]| cmd(args).stdin(std::process::Stdio::null()).output().unwrap();
    let mut create = cmd(&["accounts", "create", "alice", "--password-stdin"]);
    let mut child = create.stdin(std::process::Stdio::piped()).stdout(std::process::Stdio::null()).spawn().unwrap();
    child.stdin.take().unwrap().write_all(b"correct horse battery\n").unwrap();
    assert!(child.wait().unwrap().success());
    let mut server = cmd(&["serve", "--listen", "127.0.0.1:0"])
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(server.stdout.as_mut().unwrap()), &mut line).unwrap();
    let url = line.trim().strip_prefix("keygate listening on ").unwrap().to_owned();
    assert_eq!(ready_status(&url).await, 200);
    assert!(run(&["deposit", "--account", "alice", "--asset", "BTC", "--amount", "1"]).status.success());

    let filler = fs.fill();
    for args in [
        &["keys", "create", "--account", "alice"][..],
        &["deposit", "--account", "alice", "--asset", "BTC", "--amount", "1"][..],
    ] {
        let out = run(args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?} succeeded on a full disk");
        assert!(err.contains("disk is full"), "{args:?}: the message says why: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    assert_eq!(ready_status(&url).await, 503, "a store that cannot write is not ready");

    std::fs::remove_file(filler).unwrap();
    let start = Instant::now();
    while ready_status(&url).await != 200 {
        assert!(start.elapsed() < Duration::from_secs(10), "the server never became ready again");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The same server writes again: keys, deposits; the failed deposit left nothing behind.
    assert!(run(&["keys", "create", "--account", "alice"]).status.success());
    let start = Instant::now();
    loop {
        let out = run(&["deposit", "--account", "alice", "--asset", "BTC", "--amount", "1"]);
        if out.status.success() {
            break;
        }
        assert!(start.elapsed() < Duration::from_secs(10), "{}", String::from_utf8_lossy(&out.stderr));
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ledger = run(&["audit", "ledger", "--json"]);
    let ledger: serde_json::Value = serde_json::from_slice(&ledger.stdout).unwrap();
    let btc = ledger["assets"].as_array().unwrap().iter().find(|a| a["asset"] == "BTC").unwrap().clone();
    assert_eq!(btc["deposits"].as_str(), Some("2.00000000"), "{btc}");
    let journal = run(&["audit", "journal"]);
    assert!(String::from_utf8_lossy(&journal.stdout).contains("Exchange journal intact"), "{journal:?}");
    super::stop(server);
    let verify = run(&["audit", "verify"]);
    assert!(String::from_utf8_lossy(&verify.stdout).contains("Audit chain intact"), "{verify:?}");
}
