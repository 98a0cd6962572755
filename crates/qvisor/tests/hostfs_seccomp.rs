//! hostfs under seccomp: a child process installs a filter made of the
//! VMM's base allowlist (`confine::seccomp::ALLOWED`) plus the service's
//! rules (`hostfs::seccomp`), then drives every operation and every host
//! system-call variant the service uses. A missing rule kills the child
//! (SIGSYS); a control run shows that the same filter does kill a call it
//! does not list.

use qlib::hostfs::{build, open as o, req, resolve, seek, sync, unlink, utime, GuestStr, OFFSET_CURRENT};
use qlib::linux::consts::mode::S_IFIFO;
use qvisor::hostfs::testkit::{Client, TestTree};
use qvisor::hostfs::HostFs;
use std::os::unix::process::ExitStatusExt;

const CHILD_ROOT: &str = "QUARK_HOSTFS_SECCOMP_ROOT";
const CHILD_MODE: &str = "QUARK_HOSTFS_SECCOMP_MODE";
const MARKER: &str = "hostfs-seccomp-child: every operation ran under the filter";

fn install_filter() {
    const PR_SET_NO_NEW_PRIVS: u64 = 38;
    qvisor::sys::prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0).expect("no_new_privs");
    let prog = qvisor::hostfs::seccomp::standalone_filter(qvisor::confine::seccomp::ALLOWED);
    qvisor::confine::seccomp::install(&prog).expect("install the seccomp filter");
}

fn exit_now(code: u64) -> ! {
    // SAFETY: exit_group takes an integer and does not return.
    let _ = unsafe { qvisor::sys::syscall3(qvisor::sys::nr::EXIT_GROUP, code, 0, 0) };
    unreachable!("exit_group returned")
}

fn serve_everything(root_dir: &str) {
    // Set-up before the filter: the root descriptor, the service (umask,
    // fstatfs), guest memory (memfd_create, mmap).
    let fd = qvisor::rootfs::open_root_dir(std::path::Path::new(root_dir)).unwrap();
    let c = Client::new(HostFs::new(fd, false).unwrap(), 4 << 20);
    install_filter();

    let root = c.root().unwrap();
    let ok = |r: Result<qlib::hostfs::Response, qlib::linux::Errno>| r.unwrap();
    // Walks: openat2 + fstat, and the newfstatat fast path.
    let (etc, _) = c.walk(root, b"etc", 0).unwrap();
    c.lstat(root, b"file", resolve::NOFOLLOW).unwrap();
    c.lstat(root, b"dir/sub/deep", resolve::IN_ROOT).unwrap();
    // Opens: O_PATH; with the device pre-check; creating.
    let p = c.open(root, b"abs-link", o::O_PATH | o::O_NOFOLLOW, 0).unwrap();
    let f = c.open(root, b"file", o::O_RDWR, 0).unwrap();
    let n = c.open(root, b"new", o::O_RDWR | o::O_CREAT | o::O_EXCL, 0o644).unwrap();
    // Stat, statx, statfs.
    c.stat(f).unwrap();
    c.statx(p, 0xfff).unwrap();
    c.statfs(root).unwrap();
    // Data: preadv/pwritev, readv/writev + lseek.
    c.write(n, 0, b"0123456789").unwrap();
    c.read(n, 0, 10).unwrap();
    c.write_split(n, OFFSET_CURRENT, b"abc", 2).unwrap();
    c.read_split(f, OFFSET_CURRENT, 4, 2).unwrap();
    ok(c.with_names(&[], |_| build::seek(n, 0, seek::SEEK_END)));
    ok(c.with_names(&[], |_| build::sync(n, 0)));
    ok(c.with_names(&[], |_| build::sync(n, sync::DATA)));
    ok(c.with_names(&[], |_| build::truncate(n, 4)));
    ok(c.with_names(&[], |_| build::allocate(n, 0, 0, 8192)));
    // Directories and links.
    let d = c.open(root, b".", o::O_RDONLY | o::O_DIRECTORY, 0).unwrap();
    c.list(d).unwrap();
    c.readlink(root, b"abs-link").unwrap();
    c.readlink(p, b"").unwrap();
    ok(c.with_names(&[b"m"], |s| build::mkdir(root, s[0], 0o755, req::HANDLE | req::STAT, 0x3f_0000)));
    ok(c.with_names(&[b"m2"], |s| build::mkdir(root, s[0], 0o755, req::STAT, 0x3f_0000)));
    ok(c.with_names(&[b"p"], |s| build::mknod(root, s[0], S_IFIFO | 0o600, 0, 0)));
    ok(c.with_names(&[b"l", b"target"], |s| build::symlink(root, s[0], s[1], 0, 0)));
    ok(c.with_names(&[b"new", b"hl"], |s| build::link(root, s[0], etc, s[1])));
    ok(c.with_names(&[b"p", b"p2"], |s| build::rename(root, s[0], root, s[1], 0)));
    ok(c.with_names(&[b"p2", b"m2"], |s| build::rename(root, s[0], root, s[1], 2)));
    ok(c.with_names(&[b"p2"], |s| build::unlink(root, s[0], unlink::AT_REMOVEDIR)));
    ok(c.with_names(&[b"m2"], |s| build::unlink(root, s[0], 0)));
    // Attributes: fchmod, fchmodat2 (empty path and name), fchownat,
    // utimensat (both forms).
    ok(c.with_names(&[b""], |s| build::chmod(f, s[0], 0o600)));
    ok(c.with_names(&[b""], |s| build::chmod(etc, s[0], 0o755)));
    ok(c.with_names(&[b"new"], |s| build::chmod(root, s[0], 0o640)));
    ok(c.with_names(&[b""], |s| build::chown(p, s[0], 0, 0)));
    ok(c.with_names(&[b"new"], |s| build::chown(root, s[0], 0, 0)));
    ok(c.with_names(&[b""], |s| build::utimens(f, s[0], (1, 0), (0, utime::UTIME_NOW))));
    ok(c.with_names(&[b"l"], |s| build::utimens(root, s[0], (1, 0), (2, 0))));
    // Extended attributes: the f* calls and the *xattrat calls.
    ok(c.with_names(&[b"", b"user.a", b"1"], |s| build::setxattr(f, s[0], s[1], s[2], 0)));
    ok(c.with_names(&[b"new", b"user.b", b"2"], |s| build::setxattr(root, s[0], s[1], s[2], 0)));
    let out = GuestStr { gpa: 0x3e_0000, len: 256 };
    ok(c.with_names(&[b"", b"user.a"], |s| build::getxattr(f, s[0], s[1], out)));
    ok(c.with_names(&[b"new", b"user.b"], |s| build::getxattr(root, s[0], s[1], out)));
    ok(c.with_names(&[b""], |s| build::listxattr(f, s[0], out)));
    ok(c.with_names(&[b"new"], |s| build::listxattr(root, s[0], out)));
    ok(c.with_names(&[b"", b"user.a"], |s| build::removexattr(f, s[0], s[1])));
    ok(c.with_names(&[b"new", b"user.b"], |s| build::removexattr(root, s[0], s[1])));
    for h in [p, f, n, d, etc] {
        c.close(h).unwrap();
    }
    println!("{MARKER}");
    exit_now(0);
}

#[test]
fn the_service_runs_under_its_seccomp_rules() {
    if let Some(root) = std::env::var_os(CHILD_ROOT) {
        match std::env::var(CHILD_MODE).as_deref() {
            Ok("serve") => serve_everything(root.to_str().unwrap()),
            _ => {
                install_filter();
                // openat(AT_FDCWD, ...) is in neither list: killed here.
                let _ = std::fs::File::open("/etc/hostname");
                println!("the forbidden call returned");
                exit_now(3);
            }
        }
    }
    let t = TestTree::standard("seccomp");
    let run = |mode: &str| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args(["--exact", "the_service_runs_under_its_seccomp_rules", "--nocapture", "--test-threads=1"])
            .env(CHILD_ROOT, &t.root)
            .env(CHILD_MODE, mode)
            .output()
            .unwrap()
    };
    let out = run("serve");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert_eq!(out.status.signal(), None, "killed (SIGSYS = a host call missing from the rules):\n{text}");
    assert!(out.status.success() && text.contains(MARKER), "{:?}\n{text}", out.status);
    assert!(t.at("m").is_dir() && t.at("etc/hl").is_file(), "the child really worked on the tree");

    let out = run("forbidden");
    assert_eq!(out.status.signal(), Some(31), "the filter kills what it does not list: {:?}", out.status);
}
