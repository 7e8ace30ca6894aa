//! The job store's disk full or read-only in the middle of a migration (issue 8): the job stops
//! copying and waits in "Waiting for the store" with an error that says what happened, where,
//! and what to do; the daemon stays up and answers; once the store can be written again the job
//! continues by itself and the destination ends an exact copy without duplicates; a daemon
//! restarted on the same store finds every job, its history and its ledger intact, and a delta
//! copies nothing.
//!
//! The store is put on file systems of its own, so these trials need root (CI runs as root):
//! - disk full: a tmpfs just large enough for the store's start plus a little; room is made by
//!   remounting it larger;
//! - read-only: Linux refuses `mount -o remount,ro` while a file is open for writing (fjall's
//!   journal always is: "mount point is busy"), so the trial does what makes a disk read-only
//!   under a running service in practice: an ext4 file system mounted `errors=remount-ro` meets an
//!   error (the kernel's own test switch, `/sys/fs/ext4/DEV/trigger_fs_error`) and the kernel
//!   makes it read-only. It comes back the way an administrator brings it back: `remount,rw`
//!   where the kernel allows it, else unmount (the waiting daemon holds no file of the store
//!   open), `e2fsck`, mount.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use crate::common::daemon::{Daemon, job_file, stdout};
use crate::common::{Pair, pair};
use migrated_core::JobStatus;
use migrated_store::{FaultKind, ItemRecord, Store, StoreError, StoreKey};
use testbed::{CorpusSpec, Dovecot};

/// Fails the test, loudly, when it cannot mount file systems.
fn require_root() {
    let uid = String::from_utf8_lossy(&Command::new("id").arg("-u").output().unwrap().stdout)
        .trim()
        .to_owned();
    assert_eq!(
        uid, "0",
        "the store-fault trials put the store on file systems of their own (mount, tmpfs, ext4 on \
         a loop device) and must run as root, as CI does; this test runs as uid {uid}"
    );
}

fn run(cmd: &str, args: &[&str]) -> std::process::Output {
    Command::new(cmd)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("{cmd} cannot run: {e}"))
}

/// Runs a command that must succeed.
fn must(cmd: &str, args: &[&str]) -> String {
    let out = run(cmd, args);
    assert!(
        out.status.success(),
        "`{cmd} {}` failed ({}): {}",
        args.join(" "),
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).trim().to_owned()
}

/// `mkfs.ext4` and `e2fsck`, installed from Debian's e2fsprogs when missing (under the test
/// bed's apt lock, so parallel tests do not run apt-get at once).
fn ensure_e2fsprogs() {
    let found = || {
        ["/usr/sbin/mkfs.ext4", "/sbin/mkfs.ext4"]
            .iter()
            .any(|p| Path::new(p).exists())
    };
    if found() {
        return;
    }
    let lock = std::fs::File::create(std::env::temp_dir().join("migrated-testbed-apt.lock"))
        .expect("the test bed's apt lock");
    lock.lock().expect("the test bed's apt lock");
    if found() {
        return;
    }
    must("apt-get", &["update"]);
    let out = Command::new("apt-get")
        .args(["install", "-y", "--no-install-recommends", "e2fsprogs"])
        .env("DEBIAN_FRONTEND", "noninteractive")
        .output()
        .unwrap();
    assert!(
        out.status.success() && found(),
        "mkfs.ext4 is missing and installing e2fsprogs failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn is_mounted(dir: &Path) -> bool {
    run("mountpoint", &["-q", &dir.display().to_string()])
        .status
        .success()
}

/// A file system mounted for a trial; unmounted when dropped, also when the test fails (lazily
/// if a process still holds it).
struct Mounted {
    dir: PathBuf,
    /// The ext4 image behind a loop mount, removed at the end.
    image: Option<PathBuf>,
}

impl Mounted {
    /// A tmpfs of `size` (mount's syntax: `600k`, `64m`) on `dir`.
    fn tmpfs(dir: &Path, size: &str) -> Self {
        require_root();
        std::fs::create_dir_all(dir).unwrap();
        let d = dir.display().to_string();
        must(
            "mount",
            &["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs", &d],
        );
        Self {
            dir: dir.to_owned(),
            image: None,
        }
    }

    /// A fresh ext4 file system of `mib` MiB, in an image file beside `dir`, on `dir`, mounted
    /// so that the kernel makes it read-only after an error (as Debian mounts its disks).
    fn ext4(dir: &Path, mib: u64) -> Self {
        require_root();
        ensure_e2fsprogs();
        std::fs::create_dir_all(dir).unwrap();
        let image = dir.with_extension("ext4");
        let f = std::fs::File::create(&image).unwrap();
        f.set_len(mib << 20).unwrap();
        drop(f);
        let img = image.display().to_string();
        must("mkfs.ext4", &["-q", "-F", &img]);
        let m = Self {
            dir: dir.to_owned(),
            image: Some(image),
        };
        m.mount_image();
        // The store directory holds only the store.
        let _ = std::fs::remove_dir(dir.join("lost+found"));
        m
    }

    fn mount_image(&self) {
        let img = self.image.as_ref().expect("an image").display().to_string();
        must(
            "mount",
            &[
                "-o",
                "loop,errors=remount-ro",
                &img,
                &self.dir.display().to_string(),
            ],
        );
    }

    /// Bytes used on the file system.
    fn used(&self) -> u64 {
        let out = must(
            "df",
            &["-B1", "--output=used", &self.dir.display().to_string()],
        );
        out.lines().last().unwrap().trim().parse().unwrap()
    }

    /// `mount -o remount,OPTIONS` on the directory.
    fn remount(&self, options: &str) -> std::process::Output {
        run(
            "mount",
            &[
                "-o",
                &format!("remount,{options}"),
                &self.dir.display().to_string(),
            ],
        )
    }

    /// The block device behind the mount, e.g. `loop3`.
    fn device(&self) -> String {
        let source = must(
            "findmnt",
            &["-n", "-o", "SOURCE", &self.dir.display().to_string()],
        );
        Path::new(&source)
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }

    /// Unmounts, waiting up to `patience` for processes to let go.
    fn unmount(&self, patience: Duration) -> bool {
        let d = self.dir.display().to_string();
        let deadline = Instant::now() + patience;
        loop {
            if !is_mounted(&self.dir) || run("umount", &[&d]).status.success() {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        if !self.unmount(Duration::from_secs(3)) {
            // A daemon still holds it (a failed test): detach it now; the kernel frees it when
            // the daemon is killed.
            let _ = run("umount", &["-l", &self.dir.display().to_string()]);
        }
        if let Some(image) = &self.image {
            let _ = std::fs::remove_file(image);
        }
    }
}

/// Messages on the destination, over every folder.
async fn destination_count(dst: &Dovecot) -> u64 {
    let mut s = testbed::login(&dst.account("alice").unwrap())
        .await
        .expect("destination login");
    let mut total = 0;
    for f in s.list_folders().await.unwrap() {
        if f.selectable() {
            total += u64::from(s.examine(&f.name).await.unwrap());
        }
    }
    let _ = s.logout().await;
    total
}

fn corpus(seed: u64) -> CorpusSpec {
    CorpusSpec {
        seed,
        messages: 2500,
        max_attachment: 0,
        size_factor: 0.3,
    }
}

/// The job of a trial: four connections and small batches, so APPENDs are in flight when the
/// store fails.
fn create_job(p: &Pair, d: &Daemon) -> String {
    let job = job_file(
        p,
        &d.state.join("jobs"),
        "alice",
        "[limits]\nconnections = 4\nbatch_messages = 10\n",
    );
    stdout(&d.ctl(&["create", job.to_str().unwrap()]))
}

/// The job stops copying and waits for the store with a clear error; the daemon answers, and
/// nothing is copied while it waits. Returns the error.
/// `says`: the words the error must hold, or one of several such lists (the kernel may report
/// an ext4 error to the write in flight as EIO before the file system is read-only).
async fn assert_waiting(p: &Pair, d: &Daemon, id: &str, total: u64, says: &[&[&str]]) -> String {
    let waiting = d
        .wait_until(id, "waiting for the store", |s| {
            s.status == Some(JobStatus::WaitingForStore)
                || s.status.is_some_and(JobStatus::is_finished)
        })
        .await;
    assert_eq!(
        waiting.status,
        Some(JobStatus::WaitingForStore),
        "{waiting:?}\n{}",
        d.log()
    );
    let error = waiting.error.clone().unwrap_or_default();
    let store = d.state.join("store").display().to_string();
    let says = says
        .iter()
        .find(|words| words.iter().all(|w| error.contains(w)))
        .unwrap_or_else(|| panic!("one of {says:?} in the error: {error}"));
    for needle in [store.as_str(), "continues by itself", "migratectl resume"] {
        assert!(error.contains(needle), "{needle:?} in the error: {error}");
    }
    let copied = destination_count(&p.dst).await;
    assert!(
        copied > 0 && copied < total,
        "the store failed in the middle of the copy: {copied} of {total} on the destination"
    );
    // The daemon answers on both paths (socket and CLI) and copies nothing while it waits.
    tokio::time::sleep(Duration::from_secs(2)).await;
    let status = stdout(&d.ctl(&["status", id]));
    assert!(status.contains("Waiting for the store"), "{status}");
    eprintln!("migratectl status while waiting:\n{status}");
    let list = stdout(&d.ctl(&["list"]));
    assert!(list.contains("Waiting for the store"), "{list}");
    let events = stdout(&d.ctl(&["events", id]));
    assert!(events.contains(says[0]), "{events}");
    assert_eq!(
        destination_count(&p.dst).await,
        copied,
        "nothing is copied while the store cannot be written"
    );
    assert_eq!(d.summary(id).await.status, Some(JobStatus::WaitingForStore));
    error
}

/// After the store came back: the job completes by itself and the destination is exact.
async fn assert_continues(p: &Pair, d: &Daemon, id: &str) {
    let done = d
        .wait_until(id, "completion after the store came back", |s| {
            s.status.is_some_and(JobStatus::is_finished)
        })
        .await;
    assert_eq!(
        done.status,
        Some(JobStatus::Completed),
        "{done:?}\n{}",
        d.log()
    );
    assert_eq!(done.error, None);
    p.assert_exact().await;
    let events = stdout(&d.ctl(&["events", id]));
    assert!(
        events.contains("The job store can be written again: the job continues."),
        "{events}"
    );
    eprintln!("the job's events:\n{events}");
    // Whether APPENDs were in flight when the store failed (their ledger entries could not be
    // written): the next run found them on the destination by content instead of copying them
    // again (the exact copy above proves no duplicate either way).
    let log = d.log();
    let resolved: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("Interrupted APPENDs resolved"))
        .collect();
    eprintln!("in-flight APPENDs resolved after the fault: {resolved:?}");
}

/// Stops the daemon, checks the store file by file through the store API (it opens, the job's
/// record, its unbroken event history and its ledger are there, no intent is left), restarts
/// the daemon on it and runs a delta, which copies nothing.
async fn assert_intact_after_restart(p: &Pair, d: &mut Daemon, id: &str) {
    let (status, _) = d.terminate();
    assert!(status.success(), "clean exit: {status}\n{}", d.log());
    {
        let key = StoreKey::load(None, &d.state.join("store.key")).unwrap();
        let store = Store::open(&d.state.join("store"), key).expect("the store opens cleanly");
        let jobs = store
            .jobs::<serde_json::Value>()
            .expect("job records decode");
        assert_eq!(jobs.len(), 1);
        assert_eq!(jobs[0].1["status"], "Completed", "{}", jobs[0].1);
        let events = store
            .events::<serde_json::Value>(id)
            .expect("events decode");
        let seqs: Vec<u64> = events.iter().map(|(s, _)| *s).collect();
        let expected: Vec<u64> = (1..=seqs.len() as u64).collect();
        assert_eq!(seqs, expected, "the job's history has no gap");
        let text: String = events.iter().map(|(_, e)| format!("{e}\n")).collect();
        for needle in [
            "Job created.",
            "Status: Waiting for the store.",
            "The job store can be written again",
            "Status: Completed.",
        ] {
            assert!(text.contains(needle), "{needle:?} in the stored history");
        }
        let job = store.job_key(id);
        for (name, folder) in &p.corpus.folders {
            let key = store.folder_key(job, name);
            assert!(
                store.folder_state(job, key).unwrap().is_some(),
                "folder state of {name}"
            );
            assert_eq!(
                store.items(key).unwrap().len(),
                folder.messages.len(),
                "one ledger entry per message of {name}"
            );
            assert!(
                store.intents(key).unwrap().is_empty(),
                "no intent left in {name}"
            );
        }
    }
    d.start().await;
    let s = d.summary(id).await;
    assert_eq!(s.status, Some(JobStatus::Completed));
    let pass = d.state.join("jobs/src.pass");
    let dpass = d.state.join("jobs/dst.pass");
    let out = d.ctl(&[
        "delta",
        id,
        "--source-password-file",
        pass.to_str().unwrap(),
        "--destination-password-file",
        dpass.to_str().unwrap(),
    ]);
    assert_eq!(stdout(&out), "Queued");
    let done = d
        .wait_until(id, "the delta", |s| {
            s.status.is_some_and(JobStatus::is_finished)
        })
        .await;
    assert_eq!(done.status, Some(JobStatus::Completed), "{}", d.log());
    assert_eq!(done.items_done, 0, "the delta copies nothing");
    let events = stdout(&d.ctl(&["events", id]));
    assert!(
        events.contains("Run finished: 0 messages copied"),
        "{events}"
    );
    p.assert_exact().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_full_store_disk_makes_the_job_wait_and_it_continues_by_itself_once_there_is_room() {
    require_root();
    let p = pair(corpus(81)).await;
    let total = p.corpus.total_messages() as u64;
    let mut d = Daemon::new(&p);
    // Started on a roomy tmpfs, then shrunk to what the store's start took plus a little.
    let disk = Mounted::tmpfs(&d.state.join("store"), "64m");
    d.start().await;
    let start = disk.used();
    let size = start + 192 * 1024;
    let out = disk.remount(&format!("size={size}"));
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    eprintln!("store at start: {start} bytes; tmpfs size {size} bytes");
    let id = create_job(&p, &d);

    let error = assert_waiting(&p, &d, &id, total, &[&["disk is full", "free space"]]).await;
    eprintln!("error while waiting: {error}");

    // `resume` tries the store at once: still full, it says so and nothing changes.
    let out = d.ctl(&["resume", &id]);
    assert!(!out.status.success());
    let said = String::from_utf8_lossy(&out.stderr);
    assert!(said.contains("still cannot be written"), "{said}");
    assert_eq!(
        d.summary(&id).await.status,
        Some(JobStatus::WaitingForStore)
    );

    // Room again: the job continues by itself.
    let room = disk.remount("size=256m");
    assert!(room.status.success());
    let t = Instant::now();
    assert_continues(&p, &d, &id).await;
    eprintln!("completed {:?} after room was made", t.elapsed());

    assert_intact_after_restart(&p, &mut d, &id).await;
    d.kill();
    drop(disk);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_read_only_store_file_system_makes_the_job_wait_and_it_continues_once_writable() {
    require_root();
    let p = pair(corpus(82)).await;
    let total = p.corpus.total_messages() as u64;
    let mut d = Daemon::new(&p);
    let disk = Mounted::ext4(&d.state.join("store"), 64);
    d.start().await;
    let id = create_job(&p, &d);
    d.wait_until(&id, "a quarter copied", |s| {
        s.items_done >= total / 4 || s.status.is_some_and(JobStatus::is_finished)
    })
    .await;

    // The file system becomes read-only under the running daemon. An administrator's
    // `mount -o remount,ro` is refused while the journal is open for writing ("mount point is
    // busy"); the kernel does it after an error.
    let remounted_ro = disk.remount("ro").status.success();
    eprintln!("remount,ro with the store open for writing: {remounted_ro}");
    if !remounted_ro {
        let dev = disk.device();
        std::fs::write(
            format!("/sys/fs/ext4/{dev}/trigger_fs_error"),
            "store-faults trial\n",
        )
        .expect("the ext4 error switch");
    }

    let error = assert_waiting(
        &p,
        &d,
        &id,
        total,
        &[
            &["read-only", "writable again"],
            &["Input/output error", "check the disk", "kernel log"],
        ],
    )
    .await;
    eprintln!("error while waiting: {error}");

    // Writable again: remount,rw where the kernel allows it after an error; else unmount (the
    // waiting daemon holds no file of the store open), check, mount.
    let remounted = disk.remount("rw").status.success();
    eprintln!("remount,rw after the error: {remounted}");
    if !remounted {
        assert!(
            disk.unmount(Duration::from_secs(10)),
            "the waiting daemon lets go of the store's file system"
        );
        let img = disk.image.as_ref().unwrap().display().to_string();
        let fsck = run("e2fsck", &["-fy", &img]);
        assert!(
            matches!(fsck.status.code(), Some(0 | 1)),
            "e2fsck: {}\n{}",
            fsck.status,
            String::from_utf8_lossy(&fsck.stdout)
        );
        disk.mount_image();
    }
    let t = Instant::now();
    assert_continues(&p, &d, &id).await;
    eprintln!(
        "completed {:?} after the file system came back",
        t.elapsed()
    );

    assert_intact_after_restart(&p, &mut d, &id).await;
    d.kill();
    drop(disk);
}

/// The store itself, without a daemon: a write that meets a full disk closes the store with a
/// clear error; it does not open again while the disk is full, read-only, or while its mount
/// point is covered by an empty file system (it never creates a fresh store there); once the
/// disk has room it opens again with everything written before, including an intent written
/// before the failure (which the engine resolves on the destination by content).
#[test]
fn the_store_closes_on_a_full_disk_and_reopens_with_everything_written_before() {
    require_root();
    let base = std::env::temp_dir().join(format!("migrated-store-fault-{}", std::process::id()));
    let disk = Mounted::tmpfs(&base, "4m");
    let dir = base.join("store");
    let store = Store::open(&dir, StoreKey::from_bytes([9; 32])).unwrap();
    let job = store.job_key("j1");
    let folder = store.folder_key(job, "INBOX");
    store.put_job("j1", &"record".to_owned()).unwrap();
    let intent = store
        .begin_intent(folder, &migrated_store::Intent::default())
        .unwrap();
    let rec = |uid: u32| ItemRecord {
        dest_uid: uid,
        flags_fingerprint: 0,
        hash: [uid as u8; 32],
    };

    // Fill the disk, then write until the store meets it.
    {
        use std::io::Write;
        let mut filler = std::fs::File::create(base.join("filler")).unwrap();
        while filler.write_all(&[0u8; 4096]).is_ok() {}
    }
    let mut ok = 0u32;
    let err = loop {
        let batch: Vec<(u32, ItemRecord)> = (0..50).map(|i| (ok * 50 + i, rec(i))).collect();
        match store.commit(folder, None, &batch) {
            Ok(()) => ok += 1,
            Err(e) => break e,
        }
        assert!(ok < 10_000, "the store never met the full disk");
    };
    let fault = err.fault().expect("a fault").clone();
    assert_eq!(fault.kind, FaultKind::DiskFull, "{err}");
    let text = err.to_string();
    assert!(
        text.contains(&dir.display().to_string()) && text.contains("its disk is full"),
        "{text}"
    );
    // Closed: every call says why, reads included, and no file of it is open.
    assert!(matches!(
        store.job::<String>("j1"),
        Err(StoreError::Unavailable { .. })
    ));
    assert_eq!(store.fault().map(|f| f.kind), Some(FaultKind::DiskFull));

    // Still full: it stays closed.
    let again = store.reopen().unwrap_err();
    assert_eq!(again.fault().map(|f| f.kind), Some(FaultKind::DiskFull));
    // Read-only (possible now: the closed store holds no file open for writing).
    assert!(disk.remount("ro").status.success());
    let ro = store.reopen().unwrap_err();
    assert_eq!(
        ro.fault().map(|f| f.kind),
        Some(FaultKind::ReadOnly),
        "{ro}"
    );
    assert!(disk.remount("rw").status.success());
    // An empty file system over the store's directory (the disk not mounted): not the store,
    // and no fresh store is created in its place.
    let cover = Mounted::tmpfs(&dir, "1m");
    let missing = store.reopen().unwrap_err();
    assert_eq!(
        missing.fault().map(|f| f.kind),
        Some(FaultKind::Missing),
        "{missing}"
    );
    assert_eq!(
        std::fs::read_dir(&dir).unwrap().count(),
        0,
        "nothing created"
    );
    drop(cover);

    // Room: it opens again with everything written before.
    std::fs::remove_file(base.join("filler")).unwrap();
    assert!(store.reopen().unwrap(), "reopened");
    assert_eq!(store.fault(), None);
    assert_eq!(
        store.job::<String>("j1").unwrap().as_deref(),
        Some("record")
    );
    let items = store.items(folder).unwrap();
    assert!(
        items.len() as u32 >= ok * 50,
        "every commit that succeeded is there: {} of {}",
        items.len(),
        ok * 50
    );
    let pending = store.intents(folder).unwrap();
    assert_eq!(
        pending.iter().map(|(s, _)| *s).collect::<Vec<_>>(),
        [intent],
        "the intent written before the failure waits to be resolved"
    );
    store.commit(folder, Some(intent), &[(1, rec(1))]).unwrap();
    store.persist().unwrap();
    drop(store);
    // And it opens from scratch, undamaged.
    let store = Store::open(&dir, StoreKey::from_bytes([9; 32])).unwrap();
    assert!(store.intents(folder).unwrap().is_empty());
    assert_eq!(
        store.job::<String>("j1").unwrap().as_deref(),
        Some("record")
    );
    drop(store);
    drop(disk);
    let _ = std::fs::remove_dir_all(&base);
}
