//! hostfs against a hostile guest: `..` and symlink escapes, symlinks
//! swapped while other vCPUs walk (TOCTOU), `/proc` magic links, device
//! nodes, read-only mode, handle exhaustion, out-of-range guest memory, and
//! garbage requests. After every attack the objects next to the root are
//! compared with a snapshot taken before it (content, mode, owner, link
//! count, modification and change times, the list of names).

use qlib::hcall::GuestIovec;
use qlib::hostfs::{
    build, open as o, rename, req, resolve, unlink, utime, xattr, GuestStr, Op, Request, Response, OFFSET_CURRENT,
};
use qlib::linux::consts::mode::{S_IFCHR, S_IFIFO, S_IFLNK, S_IFMT, S_IFSOCK};
use qlib::linux::Errno;
use qvisor::hostfs::testkit::{mknod_raw, snapshot, Client, TestTree};
use qvisor::hostfs::HostFs;
use std::os::unix::fs::{symlink, MetadataExt};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

fn kind(mode: u32) -> u32 {
    mode & S_IFMT
}

/// Sends a request whose strings are placed in guest memory first.
fn with(c: &Client, names: &[&[u8]], f: impl FnOnce(&[GuestStr]) -> Request) -> Result<Response, Errno> {
    c.with_names(names, f)
}

#[test]
fn dotdot_escapes_are_refused() {
    let t = TestTree::standard("dotdot");
    let before = t.outside_snapshot();
    let c = t.client(false);
    let root = c.root().unwrap();
    let escapes: [&[u8]; 8] = [
        b"../secret",
        b"../../secret",
        b"dir/../../secret",
        b"dir/sub/../../../secret",
        b"../outside/file",
        b"./../secret",
        b"etc/../../outside",
        b"../root/../secret",
    ];
    for p in escapes {
        let s = String::from_utf8_lossy(p);
        assert_eq!(c.walk(root, p, 0).map(|_| ()), Err(Errno::EXDEV), "{s}");
        assert_eq!(c.lstat(root, p, resolve::NOFOLLOW).map(|_| ()), Err(Errno::EXDEV), "{s}");
        assert_eq!(c.open(root, p, o::O_RDWR | o::O_TRUNC, 0).map(|_| ()), Err(Errno::EXDEV), "{s}");
        assert_eq!(c.open(root, p, o::O_WRONLY | o::O_CREAT, 0o666).map(|_| ()), Err(Errno::EXDEV), "{s}");
        // IN_ROOT clamps `..` at the root: these name objects inside it,
        // which do not exist.
        assert_eq!(c.walk(root, p, resolve::IN_ROOT).map(|_| ()), Err(Errno::ENOENT), "{s}");
        assert_eq!(c.open_res(root, p, o::O_RDWR, 0, resolve::IN_ROOT).map(|_| ()), Err(Errno::ENOENT), "{s}");
    }
    // Creating through `..` with IN_ROOT creates inside the root.
    let h = c.open_res(root, b"../../evil", o::O_WRONLY | o::O_CREAT, 0o600, resolve::IN_ROOT).unwrap();
    assert_eq!(c.write(h, 0, b"x").unwrap(), 1);
    assert!(t.at("evil").is_file());
    assert!(!t.base.join("evil").exists());
    // A subdirectory handle cannot climb either.
    let (sub, _) = c.walk(root, b"dir/sub", 0).unwrap();
    assert_eq!(c.walk(sub, b"..", 0).map(|_| ()), Err(Errno::EXDEV));
    assert_eq!(c.walk(sub, b"../../..", resolve::IN_ROOT).unwrap().1.st_ino, c.stat(sub).unwrap().st_ino);
    // Single-name operations refuse `..`, `.`, and anything with a slash.
    for bad in [&b".."[..], b".", b"../secret", b"../outside", b"/secret"] {
        assert_eq!(with(&c, &[bad], |n| build::chmod(root, n[0], 0o777)).err(), Some(Errno::EINVAL));
        assert_eq!(with(&c, &[bad], |n| build::chown(root, n[0], 99, 99)).err(), Some(Errno::EINVAL));
        assert_eq!(with(&c, &[bad], |n| build::utimens(root, n[0], (1, 0), (1, 0))).err(), Some(Errno::EINVAL));
        assert_eq!(c.readlink(root, bad).err(), Some(Errno::EINVAL));
        assert_eq!(with(&c, &[bad], |n| build::unlink(root, n[0], unlink::AT_REMOVEDIR)).err(), Some(Errno::EINVAL));
        assert_eq!(with(&c, &[bad], |n| build::mkdir(root, n[0], 0o777, 0, 0)).err(), Some(Errno::EINVAL));
        assert_eq!(with(&c, &[b"file", bad], |n| build::rename(root, n[0], root, n[1], 0)).err(), Some(Errno::EINVAL));
        assert_eq!(with(&c, &[bad, b"x"], |n| build::rename(root, n[0], root, n[1], 0)).err(), Some(Errno::EINVAL));
        assert_eq!(with(&c, &[bad, b"x"], |n| build::link(root, n[0], root, n[1])).err(), Some(Errno::EINVAL));
        assert_eq!(
            with(&c, &[bad, b"user.x", b"v"], |n| build::setxattr(root, n[0], n[1], n[2], 0)).err(),
            Some(Errno::EINVAL)
        );
    }
    assert_eq!(t.outside_snapshot(), before);
}

#[test]
fn symlink_escapes_are_refused_and_links_are_never_followed_by_name() {
    let t = TestTree::standard("links");
    let before = t.outside_snapshot();
    let c = t.client(false);
    let root = c.root().unwrap();
    for link in [&b"up-link"[..], b"dir/sub/up3", b"host-abs-secret", b"host-abs-outside/file", b"magic"] {
        let s = String::from_utf8_lossy(link);
        assert_eq!(c.walk(root, link, 0).map(|_| ()), Err(Errno::EXDEV), "{s}");
        assert_eq!(c.open(root, link, o::O_RDWR | o::O_TRUNC, 0).map(|_| ()), Err(Errno::EXDEV), "{s}");
        assert_eq!(c.open(root, link, o::O_WRONLY | o::O_APPEND, 0).map(|_| ()), Err(Errno::EXDEV), "{s}");
        // With IN_ROOT the targets resolve inside the root, where they do
        // not exist.
        assert_eq!(c.walk(root, link, resolve::IN_ROOT).map(|_| ()), Err(Errno::ENOENT), "{s}");
        assert_eq!(c.open_res(root, link, o::O_RDWR, 0, resolve::IN_ROOT).map(|_| ()), Err(Errno::ENOENT), "{s}");
    }
    // Creating through an escaping link creates inside the root (or fails).
    let h = c.open_res(root, b"up-link", o::O_WRONLY | o::O_CREAT, 0o600, resolve::IN_ROOT).unwrap();
    c.write(h, 0, b"inside").unwrap();
    assert_eq!(std::fs::read(t.at("secret")).unwrap(), b"inside");
    assert_eq!(
        c.open_res(root, b"host-abs-secret", o::O_WRONLY | o::O_CREAT, 0o600, resolve::IN_ROOT).map(|_| ()),
        Err(Errno::ENOENT),
        "the host path's parents do not exist inside the root"
    );

    // Name operations on escaping links act on the links.
    assert_eq!(with(&c, &[b"up-link"], |n| build::chmod(root, n[0], 0o777)).err(), Some(Errno::EOPNOTSUPP));
    with(&c, &[b"host-abs-secret"], |n| build::chown(root, n[0], 4321, 4321)).unwrap();
    assert_eq!(std::fs::symlink_metadata(t.at("host-abs-secret")).unwrap().uid(), 4321);
    with(&c, &[b"host-abs-secret"], |n| build::utimens(root, n[0], (5, 0), (5, 0))).unwrap();
    assert_eq!(std::fs::symlink_metadata(t.at("host-abs-secret")).unwrap().mtime(), 5);
    assert_eq!(
        with(&c, &[b"up-link", b"user.x", b"v"], |n| build::setxattr(root, n[0], n[1], n[2], 0)).err(),
        Some(Errno::EPERM)
    );
    assert_eq!(c.readlink(root, b"host-abs-secret").unwrap(), t.base.join("secret").to_str().unwrap().as_bytes());
    // Handles of links name the links.
    let (l, st) = c.walk(root, b"host-abs-outside", resolve::NOFOLLOW).unwrap();
    assert_eq!(kind(st.st_mode), S_IFLNK);
    assert_eq!(with(&c, &[b""], |n| build::chmod(l, n[0], 0o777)).err(), Some(Errno::EOPNOTSUPP));
    with(&c, &[b""], |n| build::chown(l, n[0], 1111, 1111)).unwrap();
    with(&c, &[b""], |n| build::utimens(l, n[0], (0, utime::UTIME_OMIT), (6, 0))).unwrap();
    assert_eq!(std::fs::symlink_metadata(t.at("host-abs-outside")).unwrap().mtime(), 6);
    // ... and are no directories to start from.
    assert_eq!(c.open(l, b"file", o::O_RDWR, 0).map(|_| ()), Err(Errno::ENOTDIR));
    assert_eq!(c.open(l, b".", o::O_RDONLY, 0).map(|_| ()), Err(Errno::ENOTDIR));
    assert_eq!(c.walk(l, b"file", resolve::IN_ROOT).map(|_| ()), Err(Errno::ENOTDIR));
    assert_eq!(with(&c, &[b"x"], |n| build::mkdir(l, n[0], 0o777, 0, 0)).err(), Some(Errno::ENOTDIR));
    assert_eq!(with(&c, &[b"file"], |n| build::unlink(l, n[0], 0)).err(), Some(Errno::ENOTDIR));
    assert_eq!(with(&c, &[b"p"], |n| build::mknod(l, n[0], S_IFIFO | 0o644, 0, 0)).err(), Some(Errno::ENOTDIR));
    assert_eq!(with(&c, &[b"s", b"x"], |n| build::symlink(l, n[0], n[1], 0, 0)).err(), Some(Errno::ENOTDIR));
    assert_eq!(with(&c, &[b"file", b"x"], |n| build::rename(l, n[0], root, n[1], 0)).err(), Some(Errno::ENOTDIR));
    assert_eq!(with(&c, &[b"file", b"x"], |n| build::link(l, n[0], root, n[1])).err(), Some(Errno::ENOTDIR));
    assert_eq!(with(&c, &[b"file"], |n| build::chmod(l, n[0], 0o777)).err(), Some(Errno::ENOTDIR));
    assert_eq!(with(&c, &[b"file"], |n| build::chown(l, n[0], 0, 0)).err(), Some(Errno::ENOTDIR));
    assert_eq!(with(&c, &[b"file"], |n| build::utimens(l, n[0], (1, 0), (1, 0))).err(), Some(Errno::ENOTDIR));
    assert_eq!(c.readlink(l, b"file").err(), Some(Errno::ENOTDIR));
    // Hard links and renames of links move the links only.
    with(&c, &[b"host-abs-secret", b"hl"], |n| build::link(root, n[0], root, n[1])).unwrap();
    assert!(std::fs::symlink_metadata(t.at("hl")).unwrap().file_type().is_symlink());
    with(&c, &[b"host-abs-outside", b"moved"], |n| build::rename(root, n[0], root, n[1], 0)).unwrap();
    with(&c, &[b"moved"], |n| build::unlink(root, n[0], 0)).unwrap();
    with(&c, &[b"up-link", b"secret"], |n| build::rename(root, n[0], root, n[1], rename::RENAME_EXCHANGE)).unwrap();
    assert_eq!(t.outside_snapshot(), before);
}

/// Two racers change the tree while the main thread walks it: one replaces
/// the symlink `sw` with links to the inside directory `d` and to the
/// outside (relative, absolute, deep `..` chains); the other, a second
/// service on the same root (another sandbox, or the host), keeps
/// exchanging the directory `xd` with a symlink to the outside. Nothing
/// outside may ever be read, changed or stat'ed.
#[test]
fn symlinks_swapped_during_walks_never_escape() {
    let t = TestTree::new("race");
    std::fs::create_dir_all(t.at("d/sub")).unwrap();
    std::fs::write(t.at("d/file"), b"inside data").unwrap();
    std::fs::create_dir_all(t.at("xd")).unwrap();
    std::fs::write(t.at("xd/file"), b"inside data").unwrap();
    let outside = t.base.join("outside");
    symlink(&outside, t.at("xl")).unwrap();
    symlink("d", t.at("sw")).unwrap();
    let outside_ino = std::fs::metadata(outside.join("file")).unwrap().ino();
    let outside_dir_ino = std::fs::metadata(&outside).unwrap().ino();
    let before = t.outside_snapshot();

    let stop = Arc::new(AtomicBool::new(false));
    let swaps = Arc::new(AtomicU64::new(0));
    let deep = format!("../../../../../../../../..{}", outside.display());
    let targets = ["d".to_string(), "../outside".to_string(), outside.display().to_string(), deep];
    let racer1 = {
        let (stop, swaps, root) = (stop.clone(), swaps.clone(), t.root.clone());
        std::thread::spawn(move || {
            let mut i = 0;
            while !stop.load(Ordering::Relaxed) {
                let tmp = root.join("sw.tmp");
                let _ = std::fs::remove_file(&tmp);
                symlink(&targets[i % targets.len()], &tmp).unwrap();
                std::fs::rename(&tmp, root.join("sw")).unwrap();
                swaps.fetch_add(1, Ordering::Relaxed);
                i += 1;
            }
        })
    };
    let racer2 = {
        let (stop, swaps, fd) = (stop.clone(), swaps.clone(), t.root_fd());
        std::thread::spawn(move || {
            let other = Client::new(HostFs::new(fd, false).unwrap(), 1 << 20);
            let root = other.root().unwrap();
            while !stop.load(Ordering::Relaxed) {
                with(&other, &[b"xd", b"xl"], |n| build::rename(root, n[0], root, n[1], rename::RENAME_EXCHANGE))
                    .unwrap();
                swaps.fetch_add(1, Ordering::Relaxed);
            }
        })
    };

    let c = t.client(false);
    let root = c.root().unwrap();
    let (mut ok, mut refused) = (0u64, 0u64);
    let mut tally = |r: bool| if r { ok += 1 } else { refused += 1 };
    let deadline = Instant::now() + Duration::from_millis(1500);
    while Instant::now() < deadline {
        for (path, res) in
            [(&b"sw/file"[..], 0), (b"sw/file", resolve::IN_ROOT), (b"xd/file", 0), (b"xd/file", resolve::IN_ROOT)]
        {
            // Read, then write back what was read: if it ever were the
            // outside file, its content check or its mtime would tell.
            match c.open_res(root, path, o::O_RDWR, 0, res) {
                Ok(h) => {
                    let data = c.read(h, 0, 64).unwrap();
                    assert_eq!(data, b"inside data", "read through {}", String::from_utf8_lossy(path));
                    c.write(h, 0, &data).unwrap();
                    let st = c.stat(h).unwrap();
                    assert_ne!(st.st_ino, outside_ino);
                    c.close(h).unwrap();
                    tally(true);
                }
                Err(_) => tally(false),
            }
            match c.lstat(root, path, res) {
                Ok(st) => {
                    assert_ne!(st.st_ino, outside_ino, "stat'ed the outside file");
                    tally(true)
                }
                Err(_) => tally(false),
            }
        }
        // Create, truncate and remove through the swapping link.
        match c.open_res(root, b"sw/new", o::O_WRONLY | o::O_CREAT | o::O_TRUNC, 0o644, resolve::IN_ROOT) {
            Ok(h) => {
                c.close(h).unwrap();
                tally(true)
            }
            Err(_) => tally(false),
        }
        // A directory handle taken through the link, then used.
        for (path, res) in [(&b"sw"[..], 0), (b"xd", resolve::IN_ROOT), (b"sw", resolve::IN_ROOT)] {
            if let Ok((h, st)) = c.walk(root, path, res) {
                assert_ne!(st.st_ino, outside_dir_ino, "a handle to the outside directory");
                let _ = with(&c, &[b"m"], |n| build::mkdir(h, n[0], 0o755, 0, 0));
                let _ = with(&c, &[b"m"], |n| build::unlink(h, n[0], unlink::AT_REMOVEDIR));
                let _ = with(&c, &[b"file"], |n| build::chmod(h, n[0], 0o644));
                let _ = with(&c, &[b"file"], |n| build::utimens(h, n[0], (7, 0), (7, 0)));
                let _ = with(&c, &[b"file", b"user.race", b"1"], |n| build::setxattr(h, n[0], n[1], n[2], 0));
                c.close(h).unwrap();
                tally(true);
            } else {
                tally(false);
            }
        }
    }
    stop.store(true, Ordering::Relaxed);
    racer1.join().unwrap();
    racer2.join().unwrap();
    assert_eq!(t.outside_snapshot(), before, "the outside is untouched");
    assert!(!outside.join("new").exists() && !outside.join("m").exists());
    assert!(ok > 100 && refused > 100, "the race ran both ways: {ok} served, {refused} refused");
    assert!(swaps.load(Ordering::Relaxed) > 100, "the racers swapped");
}

/// A directory handle keeps naming the directory it was resolved to, even
/// when the path to it is replaced by a symlink to the outside afterwards.
#[test]
fn a_handle_survives_its_path_being_swapped_for_an_outside_link() {
    let t = TestTree::standard("swap");
    let before = t.outside_snapshot();
    let c = t.client(false);
    let root = c.root().unwrap();
    let (h, _) = c.walk(root, b"dir", 0).unwrap();
    std::fs::write(t.at("dir/file"), b"in dir").unwrap();
    std::fs::rename(t.at("dir"), t.at("dir2")).unwrap();
    symlink(t.base.join("outside"), t.at("dir")).unwrap();
    with(&c, &[b"x"], |n| build::mkdir(h, n[0], 0o755, 0, 0)).unwrap();
    assert!(t.at("dir2/x").is_dir());
    let f = c.open(h, b"file", o::O_RDWR | o::O_TRUNC, 0).unwrap();
    c.write(f, 0, b"changed").unwrap();
    assert_eq!(std::fs::read(t.at("dir2/file")).unwrap(), b"changed");
    let n = c.open(h, b"new", o::O_WRONLY | o::O_CREAT, 0o644).unwrap();
    c.close(n).unwrap();
    assert!(t.at("dir2/new").is_file());
    with(&c, &[b"file"], |n| build::unlink(h, n[0], 0)).unwrap();
    with(&c, &[b"file"], |n| build::chmod(h, n[0], 0o777)).unwrap_err();
    assert_eq!(c.walk(h, b"..", resolve::IN_ROOT).unwrap().1.st_ino, c.stat(h).unwrap().st_ino);
    // The path now leads outside and is refused.
    assert_eq!(c.walk(root, b"dir/file", 0).map(|_| ()), Err(Errno::EXDEV));
    assert_eq!(t.outside_snapshot(), before);
}

/// The root must be served from a mount namespace for these: `/proc` is
/// bind-mounted inside the root (magic links), and a `nodev` bind of the
/// root shows that the host kernel refuses device opens on its own. The test
/// runs itself again under `unshare --mount` (util-linux).
#[test]
fn magic_links_and_a_nodev_root_in_a_mount_namespace() {
    if std::env::var_os("QUARK_HOSTFS_NS_CHILD").is_some() {
        return ns_child();
    }
    let exe = std::env::current_exe().unwrap();
    let out = std::process::Command::new("unshare")
        .args(["--mount", "--propagation", "private", "--"])
        .arg(exe)
        .args(["--exact", "magic_links_and_a_nodev_root_in_a_mount_namespace", "--nocapture", "--test-threads=1"])
        .env("QUARK_HOSTFS_NS_CHILD", "1")
        .output()
        .expect("run unshare (util-linux); this test needs root and mount namespaces");
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "the namespaced run failed:\n{text}");
    assert!(text.contains("hostfs-ns-child: all checks passed"), "{text}");
}

fn mount(args: &[&str]) {
    let st = std::process::Command::new("mount").args(args).status().expect("run mount");
    assert!(st.success(), "mount {args:?}");
}

fn ns_child() {
    let t = TestTree::standard("ns");
    std::fs::create_dir(t.at("proc")).unwrap();
    mount(&["--bind", "/proc", t.at("proc").to_str().unwrap()]);
    mknod_raw(&t.at("null"), S_IFCHR | 0o666, 0x103).unwrap();
    mknod_raw(&t.at("unbound"), S_IFCHR | 0o666, (unbound_char_major() as u64) << 8).unwrap();
    let c = t.client(false);
    assert!(!c.fs.root_is_nodev());
    let root = c.root().unwrap();
    assert_eq!(kind(c.walk(root, b"proc/self", resolve::NOFOLLOW).unwrap().1.st_mode), S_IFLNK);
    for p in [
        &b"proc/self/root"[..],
        b"proc/self/root/etc/passwd",
        b"proc/self/cwd",
        b"proc/self/exe",
        b"proc/self/fd/0",
        b"proc/thread-self/root",
    ] {
        let s = String::from_utf8_lossy(p);
        for res in [0, resolve::IN_ROOT] {
            assert_eq!(c.walk(root, p, res).map(|_| ()), Err(Errno::ELOOP), "walk {s}");
            assert_eq!(c.open_res(root, p, o::O_RDONLY, 0, res).map(|_| ()), Err(Errno::ELOOP), "open {s}");
        }
    }
    // Another process's links: the kernel's ptrace check (EACCES) may come
    // before the magic-link refusal (ELOOP); either way, refused.
    for res in [0, resolve::IN_ROOT] {
        let r = c.walk(root, b"proc/1/root/etc", res).map(|_| ());
        assert!(r == Err(Errno::ELOOP) || r == Err(Errno::EACCES), "{r:?}");
    }
    // The tree's absolute link to /proc/self/root/... resolves inside the
    // root, reaches the bind-mounted procfs, and is refused there.
    assert_eq!(c.open_res(root, b"magic", o::O_RDONLY, 0, resolve::IN_ROOT).map(|_| ()), Err(Errno::ELOOP));
    // A handle to the magic link itself (O_PATH | O_NOFOLLOW) leads nowhere.
    let (m, st) = c.walk(root, b"proc/self/root", resolve::NOFOLLOW).unwrap();
    assert_eq!(kind(st.st_mode), S_IFLNK);
    assert_eq!(c.open(m, b"etc/passwd", o::O_RDONLY, 0).map(|_| ()), Err(Errno::ENOTDIR));
    assert_eq!(c.walk(m, b".", 0).map(|_| ()), Err(Errno::ENOTDIR));
    assert_eq!(c.walk(m, b"etc", resolve::IN_ROOT).map(|_| ()), Err(Errno::ENOTDIR));
    assert_eq!(with(&c, &[b"x"], |n| build::mkdir(m, n[0], 0o755, 0, 0)).err(), Some(Errno::ENOTDIR));

    // A nodev view of the same tree: the service notices and the host
    // kernel refuses the device itself; FIFOs are still refused after open.
    let view = t.base.join("nodev-view");
    std::fs::create_dir(&view).unwrap();
    mount(&["--bind", t.root.to_str().unwrap(), view.to_str().unwrap()]);
    mount(&["-o", "remount,bind,nodev", view.to_str().unwrap()]);
    let fd = qvisor::rootfs::open_root_dir(&view).unwrap();
    let v = Client::new(HostFs::new(fd, false).unwrap(), 1 << 20);
    assert!(v.fs.root_is_nodev());
    let vroot = v.root().unwrap();
    assert_eq!(v.statfs(vroot).unwrap().f_flags & 4, 4, "ST_NODEV");
    for flags in [o::O_RDONLY, o::O_WRONLY, o::O_RDWR] {
        assert_eq!(v.open(vroot, b"null", flags, 0), Err(Errno::EACCES));
        // EACCES, not the ENXIO of a driver-less device: the host kernel
        // refused at the nodev mount, before any device layer.
        assert_eq!(v.open(vroot, b"unbound", flags, 0), Err(Errno::EACCES));
        assert_eq!(v.open(vroot, b"fifo", flags | o::O_NONBLOCK, 0).map(|_| ()).unwrap_err(), Errno::ENXIO);
    }
    assert_eq!(kind(v.walk(vroot, b"null", 0).unwrap().1.st_mode), S_IFCHR);
    drop(v);
    drop(c);
    for p in [view.clone(), t.at("proc")] {
        let st = std::process::Command::new("umount").arg("-l").arg(&p).status().unwrap();
        assert!(st.success());
    }
    println!("hostfs-ns-child: all checks passed");
}

#[test]
fn device_nodes_are_never_opened_nor_created() {
    let t = TestTree::standard("dev");
    mknod_raw(&t.at("null"), S_IFCHR | 0o666, 0x103).expect("mknod as root (CAP_MKNOD) for the test tree");
    mknod_raw(&t.at("loop"), 0o060660, 0x700).unwrap();
    symlink("null", t.at("null-link")).unwrap();
    // A character device whose major no driver claims: opening it would
    // reach chrdev_open and fail with ENXIO, so EACCES proves the service
    // refused before the host kernel's device layer was involved.
    let major = unbound_char_major();
    mknod_raw(&t.at("unbound"), S_IFCHR | 0o666, (major as u64) << 8).unwrap();
    let before = snapshot(&t.root);
    let c = t.client(false);
    assert!(!c.fs.root_is_nodev(), "the test tree is on a mount without nodev: the service's own check is tested");
    let root = c.root().unwrap();
    for p in [&b"null"[..], b"loop", b"null-link", b"unbound"] {
        for (flags, mode) in [
            (o::O_RDONLY, 0),
            (o::O_WRONLY, 0),
            (o::O_RDWR, 0),
            (o::O_RDWR | o::O_CREAT, 0o644),
            (o::O_RDONLY | o::O_NONBLOCK, 0),
        ] {
            assert_eq!(c.open(root, p, flags, mode), Err(Errno::EACCES), "{} {flags:#o}", String::from_utf8_lossy(p));
        }
    }
    // O_PATH handles and stat are fine (no driver is involved); no I/O.
    let h = c.open(root, b"null", o::O_PATH, 0).unwrap();
    assert_eq!(c.read(h, 0, 1), Err(Errno::EBADF));
    let (_, st) = c.walk(root, b"null", 0).unwrap();
    assert_eq!((kind(st.st_mode), st.st_rdev), (S_IFCHR, 0x103));
    // Devices are never created.
    for mode in [S_IFCHR | 0o666, 0o060666] {
        assert_eq!(with(&c, &[b"dev"], |n| build::mknod(root, n[0], mode, 0, 0)).err(), Some(Errno::EPERM));
    }
    assert!(!t.at("dev").exists());
    // A device renamed over a regular file is still refused.
    with(&c, &[b"null", b"file"], |n| build::rename(root, n[0], root, n[1], rename::RENAME_EXCHANGE)).unwrap();
    assert_eq!(c.open(root, b"file", o::O_RDONLY, 0), Err(Errno::EACCES));
    with(&c, &[b"null", b"file"], |n| build::rename(root, n[0], root, n[1], rename::RENAME_EXCHANGE)).unwrap();
    // FIFOs and sockets are not opened for I/O (and opening never blocks).
    with(&c, &[b"sock"], |n| build::mknod(root, n[0], S_IFSOCK | 0o644, 0, 0)).unwrap();
    for p in [&b"fifo"[..], b"sock"] {
        for flags in [o::O_RDONLY, o::O_WRONLY, o::O_RDWR] {
            assert_eq!(c.open(root, p, flags, 0), Err(Errno::ENXIO));
        }
    }
    with(&c, &[b"sock"], |n| build::unlink(root, n[0], 0)).unwrap();
    let after = snapshot(&t.root);
    let strip = |v: Vec<qvisor::hostfs::testkit::Entry>| -> Vec<_> {
        // Renames change ctimes of the two exchanged names and the root.
        v.into_iter().map(|e| (e.path, e.mode, e.ino, e.data)).collect()
    };
    assert_eq!(strip(after), strip(before));
}

/// A character-device major in the local/experimental range that no
/// driver registered (per /proc/devices).
fn unbound_char_major() -> u32 {
    let devices = std::fs::read_to_string("/proc/devices").unwrap();
    let chars = devices.split("Block devices:").next().unwrap();
    let used: Vec<u32> = chars.lines().filter_map(|l| l.split_whitespace().next()?.parse().ok()).collect();
    (234..=254).find(|m| !used.contains(m)).expect("a free character major in 234..=254")
}

#[test]
fn read_only_mode_refuses_every_mutation() {
    let t = TestTree::standard("ro");
    let before = snapshot(&t.root);
    let c = t.client(true);
    let root = c.root().unwrap();
    let rd = c.open(root, b"file", o::O_RDONLY, 0).unwrap();
    let (etc, _) = c.walk(root, b"etc", 0).unwrap();
    let rofs: Result<(), Errno> = Err(Errno::EROFS);
    for flags in [o::O_WRONLY, o::O_RDWR, o::O_RDONLY | o::O_TRUNC, o::O_WRONLY | o::O_CREAT, o::O_RDWR | o::O_APPEND] {
        let mode = if flags & o::O_CREAT != 0 { 0o644 } else { 0 };
        assert_eq!(c.open(root, b"file", flags, mode).map(|_| ()), rofs, "{flags:#o}");
    }
    assert_eq!(c.open(root, b"new", o::O_RDONLY | o::O_CREAT, 0o644).map(|_| ()), rofs);
    assert_eq!(c.open(root, b"file", o::O_RDONLY | o::O_CREAT | o::O_EXCL, 0o644), Err(Errno::EEXIST));
    let again = c.open(root, b"file", o::O_RDONLY | o::O_CREAT, 0o644).unwrap();
    assert_eq!(c.read(again, 0, 5).unwrap(), b"hello");
    assert_eq!(c.write(rd, 0, b"x").map(|_| ()), rofs);
    assert_eq!(c.write_split(rd, OFFSET_CURRENT, b"x", 1).map(|_| ()), rofs);
    assert_eq!(c.call(build::truncate(rd, 0)).result().map(|_| ()), rofs);
    assert_eq!(c.call(build::allocate(rd, 0, 0, 4096)).result().map(|_| ()), rofs);
    let e = |r: Result<Response, Errno>| r.map(|_| ());
    assert_eq!(e(with(&c, &[b"d"], |n| build::mkdir(root, n[0], 0o755, 0, 0))), rofs);
    assert_eq!(e(with(&c, &[b"p"], |n| build::mknod(root, n[0], S_IFIFO | 0o644, 0, 0))), rofs);
    assert_eq!(e(with(&c, &[b"file"], |n| build::unlink(root, n[0], 0))), rofs);
    assert_eq!(e(with(&c, &[b"empty"], |n| build::unlink(root, n[0], unlink::AT_REMOVEDIR))), rofs);
    assert_eq!(e(with(&c, &[b"file", b"x"], |n| build::rename(root, n[0], root, n[1], 0))), rofs);
    assert_eq!(
        e(with(&c, &[b"file", b"etc"], |n| build::rename(root, n[0], root, n[1], rename::RENAME_EXCHANGE))),
        rofs
    );
    assert_eq!(e(with(&c, &[b"file", b"x"], |n| build::link(root, n[0], etc, n[1]))), rofs);
    assert_eq!(e(with(&c, &[b"s", b"t"], |n| build::symlink(root, n[0], n[1], 0, 0))), rofs);
    assert_eq!(e(with(&c, &[b""], |n| build::chmod(rd, n[0], 0o777))), rofs);
    assert_eq!(e(with(&c, &[b"passwd"], |n| build::chmod(etc, n[0], 0o777))), rofs);
    assert_eq!(e(with(&c, &[b""], |n| build::chown(rd, n[0], 1, 1))), rofs);
    assert_eq!(e(with(&c, &[b"passwd"], |n| build::chown(etc, n[0], 1, 1))), rofs);
    assert_eq!(e(with(&c, &[b""], |n| build::utimens(rd, n[0], (1, 0), (1, 0)))), rofs);
    assert_eq!(e(with(&c, &[b"passwd"], |n| build::utimens(etc, n[0], (0, utime::UTIME_NOW), (0, 0)))), rofs);
    assert_eq!(
        e(with(&c, &[b"", b"user.x", b"v"], |n| build::setxattr(rd, n[0], n[1], n[2], xattr::XATTR_CREATE))),
        rofs
    );
    assert_eq!(e(with(&c, &[b"", b"user.x"], |n| build::removexattr(rd, n[0], n[1]))), rofs);
    // Every operation that mutates was covered above.
    let covered = [
        Op::Write,
        Op::Truncate,
        Op::Allocate,
        Op::Mkdir,
        Op::Mknod,
        Op::Unlink,
        Op::Rename,
        Op::Link,
        Op::Symlink,
        Op::Chmod,
        Op::Chown,
        Op::Utimens,
        Op::SetXattr,
        Op::RemoveXattr,
    ];
    for op in Op::ALL {
        assert_eq!(op.mutates(), covered.contains(&op), "{op:?}");
    }
    // Reading still works, and statfs says read-only.
    assert_eq!(c.walk(root, b"etc/passwd", 0).unwrap().1.st_size, 30);
    let d = c.open(root, b".", o::O_RDONLY | o::O_DIRECTORY, 0).unwrap();
    assert!(c.list(d).unwrap().len() > 10);
    assert_eq!(c.readlink(root, b"abs-link").unwrap(), b"/etc/passwd");
    assert_eq!(c.statfs(root).unwrap().f_flags & 1, 1, "ST_RDONLY");
    assert_eq!(c.call(build::sync(rd, 0)).result(), Ok(0));
    assert_eq!(snapshot(&t.root), before, "nothing changed");
}

#[test]
fn the_handle_table_is_bounded() {
    let t = TestTree::standard("emfile");
    let c = Client::new(HostFs::with_capacity(t.root_fd(), false, 8).unwrap(), 1 << 20);
    let root = c.root().unwrap();
    let mut hs = vec![root];
    for _ in 0..7 {
        hs.push(c.walk(root, b"etc", 0).unwrap().0);
    }
    assert_eq!(c.fs.stats().open_handles, 8);
    assert_eq!(c.walk(root, b"etc", 0).map(|_| ()), Err(Errno::EMFILE));
    assert_eq!(c.open(root, b"file", o::O_RDONLY, 0), Err(Errno::EMFILE));
    assert_eq!(c.root(), Err(Errno::EMFILE));
    // Operations that would create before failing with EMFILE fail first.
    assert_eq!(c.open(root, b"created", o::O_WRONLY | o::O_CREAT, 0o644), Err(Errno::EMFILE));
    assert_eq!(with(&c, &[b"made"], |n| build::mkdir(root, n[0], 0o755, req::HANDLE, 0)).err(), Some(Errno::EMFILE));
    assert!(!t.at("created").exists() && !t.at("made").exists());
    // What needs no handle still works.
    assert_eq!(c.lstat(root, b"file", resolve::NOFOLLOW).unwrap().st_size, 13);
    with(&c, &[b"made"], |n| build::mkdir(root, n[0], 0o755, 0, 0)).unwrap();
    c.close(hs.pop().unwrap()).unwrap();
    let h = c.open(root, b"file", o::O_RDONLY, 0).unwrap();
    assert_eq!(c.read(h, 0, 5).unwrap(), b"hello");
    assert_eq!(c.walk(root, b"etc", 0).map(|_| ()), Err(Errno::EMFILE));
}

#[test]
fn out_of_range_guest_memory_is_refused_before_anything_happens() {
    let t = TestTree::standard("efault");
    let c = t.client(false);
    let root = c.root().unwrap();
    let size = c.mem.size();
    let bad_ranges = [(size, 1u64), (size - 1, 2), (u64::MAX, 1), (u64::MAX - 7, 16), (1 << 63, 8)];
    let f = c.open(root, b"file", o::O_RDWR, 0).unwrap();
    let d = c.open(root, b".", o::O_RDONLY, 0).unwrap();
    let before_file = std::fs::metadata(t.at("file")).unwrap();
    let listing = c.list(d).unwrap();
    c.call(build::seek(d, 0, 0)).result().unwrap();
    for (gpa, len) in bad_ranges {
        let bad = GuestStr { gpa, len };
        let r = |q: Request| c.call(q).result();
        let efault = Err(Errno::EFAULT);
        c.reset();
        let good_name = c.put(b"created");
        let file = c.put(b"file");
        // Paths and names.
        assert_eq!(r(build::walk(root, bad, 0, 0)), efault);
        assert_eq!(r(build::open(root, bad, o::O_RDONLY, 0, 0, 0)), efault);
        assert_eq!(r(build::unlink(root, bad, 0)), efault);
        assert_eq!(r(build::rename(root, file, root, bad, 0)), efault);
        assert_eq!(r(build::link(root, file, root, bad)), efault);
        assert_eq!(r(build::symlink(root, good_name, bad, 0, 0)), efault);
        assert_eq!(r(build::chmod(root, bad, 0o777)), efault);
        assert_eq!(r(build::chown(root, bad, 1, 1)), efault);
        assert_eq!(r(build::utimens(root, bad, (1, 0), (1, 0))), efault);
        // Stat outputs are checked before anything is created.
        assert_eq!(r(build::walk(root, file, req::STAT, gpa)), efault);
        assert_eq!(r(build::open(root, good_name, o::O_WRONLY | o::O_CREAT | req::STAT, 0o644, 0, gpa)), efault);
        assert_eq!(r(build::mkdir(root, good_name, 0o755, req::STAT, gpa)), efault);
        assert_eq!(r(build::mknod(root, good_name, S_IFIFO | 0o644, req::STAT, gpa)), efault);
        let target = c.put(b"t");
        assert_eq!(r(build::symlink(root, good_name, target, req::STAT, gpa)), efault);
        assert_eq!(r(build::root(req::STAT, gpa)), efault);
        assert!(std::fs::symlink_metadata(t.at("created")).is_err(), "nothing was created");
        // Other outputs.
        assert_eq!(r(build::stat(f, gpa)), efault);
        assert_eq!(r(build::statx(f, 0x7ff, gpa)), efault);
        assert_eq!(r(build::statfs(f, gpa)), efault);
        assert_eq!(r(build::readlink(root, c.put(b"abs-link"), bad)), efault);
        assert_eq!(r(build::getdents(d, bad)), efault);
        let x = c.put(b"user.x");
        assert_eq!(r(build::getxattr(f, GuestStr::default(), x, bad)), efault);
        assert_eq!(r(build::listxattr(f, GuestStr::default(), bad)), efault);
        assert_eq!(r(build::setxattr(f, GuestStr::default(), x, bad, 0)), efault);
        assert_eq!(r(build::getxattr(f, GuestStr::default(), x, GuestStr::default())), Err(Errno::ENODATA), "not set");
        // Iovec lists: the list itself, and one bad entry after a good one.
        let good = c.alloc(16);
        c.mem.write(good, &[0xaa; 16]).unwrap();
        let list = c.alloc(32);
        c.mem.write_obj(list, &GuestIovec { gpa: good, len: 16 }).unwrap();
        c.mem.write_obj(list + 16, &GuestIovec { gpa, len }).unwrap();
        assert_eq!(r(build::read(f, 0, gpa, 1)), efault);
        assert_eq!(r(build::read(f, 0, list, 2)), efault);
        assert_eq!(r(build::read(f, OFFSET_CURRENT, list, 2)), efault);
        assert_eq!(c.get(good, 16), [0xaa; 16], "the good buffer was not written");
        assert_eq!(r(build::write(f, 0, list, 2)), efault);
        assert_eq!(r(build::write(f, OFFSET_CURRENT, list, 2)), efault);
    }
    // Nothing moved: file content, times and position; directory position.
    let after_file = std::fs::metadata(t.at("file")).unwrap();
    assert_eq!(std::fs::read(t.at("file")).unwrap(), b"hello, hostfs");
    assert_eq!(
        (after_file.mtime(), after_file.mtime_nsec(), after_file.ctime_nsec()),
        (before_file.mtime(), before_file.mtime_nsec(), before_file.ctime_nsec())
    );
    assert_eq!(c.read_split(f, OFFSET_CURRENT, 5, 1).unwrap().0, b"hello", "the file position did not move");
    assert_eq!(c.list(d).unwrap(), listing, "the directory position did not move");
}

/// A tiny deterministic PRNG (xorshift64*).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }
    fn pick<T: Copy>(&mut self, v: &[T]) -> T {
        v[self.below(v.len() as u64) as usize]
    }
}

#[test]
fn garbage_requests_never_panic_and_never_escape() {
    let t = TestTree::standard("fuzz");
    let before = t.outside_snapshot();
    let host_passwd = std::fs::metadata("/etc/passwd").unwrap();
    // The host's own root: an escape would most likely land there (the
    // fuzzer's names are created, chmod-ed and chown-ed relative to a handle).
    let host_root = host_root_view();
    let c = Client::new(HostFs::with_capacity(t.root_fd(), false, 256).unwrap(), 1 << 20);
    let seed = std::env::var("QUARK_FUZZ_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or(0x5eed_f00d_u64);
    println!("hostfs fuzz seed {seed} (QUARK_FUZZ_SEED)");
    let mut rng = Rng(seed | 1);
    let check = |resp: &Response| {
        assert!(resp.ret >= -4095, "well-formed error: {resp:?}");
        assert_eq!(resp._reserved, 0);
    };

    // 1. Random bytes of random lengths.
    for _ in 0..20_000 {
        let len = if rng.below(4) == 0 { rng.below(100) as usize } else { 64 };
        let bytes: Vec<u8> = (0..len).map(|_| rng.next() as u8).collect();
        check(&c.raw(&bytes));
    }

    // 2. Structured garbage: real op numbers, real handles, strings and
    // iovecs in guest memory, mixed with hostile values.
    let strings: [&[u8]; 20] = [
        b"a",
        b"b",
        b"..",
        b".",
        b"../secret",
        b"sw",
        b"dir",
        b"dir/sub",
        b"/",
        b"fifo",
        b"",
        b"user.x",
        b"trusted.y",
        b"security.capability",
        b"abs-link",
        b"up-link",
        b"../outside/file",
        b"file",
        b"etc/passwd",
        b"host-abs-outside",
    ];
    let mut places = Vec::new();
    let mut live: Vec<u64> = Vec::new();
    let size = c.mem.size();
    let mut total = 0;
    let mut succeeded = std::collections::BTreeSet::new();
    for round in 0..30_000u32 {
        if round % 500 == 0 {
            c.reset();
            places = strings.iter().map(|s| c.put(s)).collect::<Vec<_>>();
            // A few iovec lists over scratch buffers.
            for i in 0..8u64 {
                let list = 0x8_0000 + i * 0x100;
                for j in 0..4u64 {
                    let iov = GuestIovec { gpa: 0x9_0000 + (i * 4 + j) * 0x800, len: rng.below(0x800) };
                    c.mem.write_obj(list + 16 * j, &iov).unwrap();
                }
            }
            if let Ok(h) = c.root() {
                live.push(h);
            }
        }
        let mut q = if rng.below(3) == 0 {
            random_request(&mut rng, &places, &live, size)
        } else {
            template(&mut rng, &places, &live)
        };
        if rng.below(7) == 0 {
            corrupt(&mut rng, &mut q, size);
        }
        if q.op == Op::Allocate as u32 {
            // Keep the disk footprint small: at most 1 MiB per call.
            q.args[2] &= 0xfffff;
        }
        let resp = c.call(q);
        check(&resp);
        total += 1;
        if resp.ret >= 0 {
            succeeded.insert(q.op);
        }
        if resp.ret >= 0 && resp.handle != 0 {
            live.push(resp.handle);
        }
        if live.len() > 200 {
            let h = live.swap_remove(rng.below(live.len() as u64) as usize);
            let _ = c.close(h);
        }
    }
    assert!(total == 30_000);
    let s = c.fs.stats();
    assert!(s.requests >= 50_000 && s.errors < s.requests, "{s:?}");
    assert!(s.requests - s.errors > 2000, "the structured requests did reach the filesystem: {s:?}");
    let missed: Vec<Op> = Op::ALL.into_iter().filter(|op| !succeeded.contains(&(*op as u32))).collect();
    assert!(missed.len() <= 2, "operations that never succeeded under the fuzzer: {missed:?}");
    assert!(s.bytes_read > 0 && s.bytes_written > 0, "{s:?}");
    assert_eq!(t.outside_snapshot(), before);
    let after = std::fs::metadata("/etc/passwd").unwrap();
    assert_eq!(
        (after.mtime(), after.ctime(), after.mode()),
        (host_passwd.mtime(), host_passwd.ctime(), host_passwd.mode())
    );
    assert_eq!(host_root_view(), host_root, "the host's / changed under the fuzzer");
}

/// Mode, owner and entry names of the host's `/`.
fn host_root_view() -> (u32, u32, u32, Vec<std::ffi::OsString>) {
    use std::os::unix::fs::MetadataExt;
    let m = std::fs::metadata("/").unwrap();
    let mut names: Vec<_> = std::fs::read_dir("/").unwrap().map(|e| e.unwrap().file_name()).collect();
    names.sort();
    (m.mode(), m.uid(), m.gid(), names)
}

/// Guest addresses the fuzzer uses for outputs and iovec lists.
const FUZZ_STAT: u64 = 0x7_0000;
const FUZZ_OUT: u64 = 0x7_1000;
const FUZZ_IOV: u64 = 0x8_0000;

/// A random request: real op numbers, handles and strings, random fields.
fn random_request(rng: &mut Rng, places: &[GuestStr], live: &[u64], size: u64) -> Request {
    let op = match rng.below(20) {
        0 => rng.next() as u32,
        1 => 0,
        _ => 1 + rng.below(Op::ALL.len() as u64) as u32,
    };
    let flags = match rng.below(8) {
        0 => rng.next() as u32,
        1 => 0,
        2 => req::STAT | req::HANDLE,
        3 => rng.pick(&[o::O_RDONLY, o::O_RDWR | o::O_CREAT, o::O_WRONLY | o::O_TRUNC, o::O_PATH | o::O_NOFOLLOW]),
        4 => rng.pick(&[resolve::IN_ROOT, resolve::NOFOLLOW, resolve::NO_SYMLINKS, req::HANDLE]),
        5 => rng.pick(&[unlink::AT_REMOVEDIR, rename::RENAME_EXCHANGE, rename::RENAME_NOREPLACE]),
        _ => 0,
    };
    let handle = match rng.below(10) {
        0 => rng.next(),
        1 => 0,
        _ if !live.is_empty() => rng.pick(live),
        _ => 0,
    };
    let mut args = [0u64; 6];
    let mut i = 0;
    while i < 6 {
        match rng.below(10) {
            0..=3 if i + 1 < 6 => {
                let s = rng.pick(places);
                args[i] = s.gpa;
                args[i + 1] = s.len;
                i += 2;
                continue;
            }
            4 => args[i] = rng.pick(&[FUZZ_IOV, FUZZ_IOV + 0x100, FUZZ_STAT]),
            5 => args[i] = rng.below(5),
            6 => args[i] = rng.pick(&[0o644, 0o755, S_IFIFO as u64 | 0o600, 0o170777, 0o7777]),
            7 => args[i] = rng.pick(&[size, size - 1, u64::MAX, u64::MAX - 15, 1 << 63, OFFSET_CURRENT]),
            8 if !live.is_empty() => args[i] = rng.pick(live),
            _ => args[i] = rng.next() & 0xfffff,
        }
        i += 1;
    }
    // Unused arguments must be zero: often make them so.
    if rng.below(2) == 0 {
        let k = rng.below(7) as usize;
        args[k..].fill(0);
    }
    Request { op, flags, handle, args }
}

/// A well-formed request of a random operation on random live handles and
/// names.
fn template(rng: &mut Rng, places: &[GuestStr], live: &[u64]) -> Request {
    let h = |rng: &mut Rng| if live.is_empty() { 0 } else { rng.pick(live) };
    let s = |rng: &mut Rng| rng.pick(places);
    let stat = |rng: &mut Rng| if rng.below(2) == 0 { (req::STAT, FUZZ_STAT) } else { (0, 0) };
    let os = |rng: &mut Rng| if rng.below(2) == 0 { GuestStr::default() } else { rng.pick(places) };
    let out = |rng: &mut Rng| GuestStr { gpa: FUZZ_OUT, len: rng.pick(&[0, 16, 256, 4096]) };
    let iov = |rng: &mut Rng| (FUZZ_IOV + 0x100 * rng.below(8), rng.below(5));
    let off = |rng: &mut Rng| rng.pick(&[0, 1, 4096, 1 << 20, OFFSET_CURRENT]);
    let mode = |rng: &mut Rng| rng.pick(&[0o644u32, 0o755, 0o600, 0o4755, 0]);
    match rng.pick(&Op::ALL) {
        Op::Root => {
            let (f, g) = stat(rng);
            build::root(f, g)
        }
        Op::Walk => {
            let (f, g) = stat(rng);
            let res = rng.below(8) as u32 | rng.pick(&[0, req::HANDLE]);
            build::walk(h(rng), s(rng), f | res, g)
        }
        Op::Open => {
            let (f, g) = stat(rng);
            let flags = rng.pick(&[
                o::O_RDONLY,
                o::O_WRONLY,
                o::O_RDWR,
                o::O_RDWR | o::O_CREAT,
                o::O_WRONLY | o::O_CREAT | o::O_EXCL,
                o::O_WRONLY | o::O_TRUNC,
                o::O_WRONLY | o::O_APPEND,
                o::O_RDONLY | o::O_DIRECTORY,
                o::O_PATH,
                o::O_PATH | o::O_NOFOLLOW,
                o::O_RDONLY | o::O_NOFOLLOW,
            ]);
            let m = if flags & o::O_CREAT != 0 { mode(rng) } else { 0 };
            build::open(h(rng), s(rng), flags | f, m, rng.below(4) as u32, g)
        }
        Op::Close => build::close(h(rng)),
        Op::Stat => build::stat(h(rng), FUZZ_STAT),
        Op::Statx => build::statx(h(rng), 0xfff, FUZZ_OUT),
        Op::Getdents => build::getdents(h(rng), out(rng)),
        Op::Readlink => build::readlink(h(rng), os(rng), out(rng)),
        Op::Read => {
            let (l, n) = iov(rng);
            build::read(h(rng), off(rng), l, n)
        }
        Op::Write => {
            let (l, n) = iov(rng);
            build::write(h(rng), off(rng), l, n)
        }
        Op::Sync => build::sync(h(rng), rng.below(2) as u32),
        Op::Truncate => build::truncate(h(rng), rng.below(1 << 16)),
        Op::Allocate => {
            build::allocate(h(rng), rng.pick(&[0, 1, 3, 0x10, 0x11]), rng.below(1 << 16), rng.below(1 << 16))
        }
        Op::Seek => build::seek(h(rng), rng.below(1 << 16) as i64, rng.below(5)),
        Op::Mkdir => {
            let (f, g) = stat(rng);
            build::mkdir(h(rng), s(rng), mode(rng), f | rng.pick(&[0, req::HANDLE]), g)
        }
        Op::Mknod => {
            let (f, g) = stat(rng);
            let t = rng.pick(&[S_IFIFO, S_IFSOCK, 0o100000, 0, S_IFCHR]);
            build::mknod(h(rng), s(rng), t | mode(rng), f | rng.pick(&[0, req::HANDLE]), g)
        }
        Op::Unlink => build::unlink(h(rng), s(rng), rng.pick(&[0, unlink::AT_REMOVEDIR])),
        Op::Rename => build::rename(h(rng), s(rng), h(rng), s(rng), rng.below(3) as u32),
        Op::Link => build::link(h(rng), s(rng), h(rng), s(rng)),
        Op::Symlink => {
            let (f, g) = stat(rng);
            build::symlink(h(rng), s(rng), s(rng), f | rng.pick(&[0, req::HANDLE]), g)
        }
        Op::Chmod => build::chmod(h(rng), os(rng), mode(rng)),
        Op::Chown => build::chown(h(rng), os(rng), rng.below(3), rng.below(3)),
        Op::Utimens => build::utimens(
            h(rng),
            os(rng),
            (rng.below(1 << 30) as i64, rng.pick(&[0, utime::UTIME_NOW, utime::UTIME_OMIT])),
            (rng.below(1 << 30) as i64, rng.pick(&[0, 5, utime::UTIME_OMIT])),
        ),
        Op::Statfs => build::statfs(h(rng), FUZZ_OUT),
        Op::GetXattr => build::getxattr(h(rng), os(rng), s(rng), out(rng)),
        Op::SetXattr => {
            build::setxattr(h(rng), os(rng), s(rng), s(rng), rng.pick(&[0, xattr::XATTR_CREATE, xattr::XATTR_REPLACE]))
        }
        Op::ListXattr => build::listxattr(h(rng), os(rng), out(rng)),
        Op::RemoveXattr => build::removexattr(h(rng), os(rng), s(rng)),
    }
}

/// Breaks one field of a request with a hostile value.
fn corrupt(rng: &mut Rng, q: &mut Request, size: u64) {
    let hostile = [0, 1, size, size - 1, u64::MAX, u64::MAX - 15, 1 << 63, 1 << 32, 4096, 4095, 256, rng.next()];
    match rng.below(4) {
        0 => q.flags ^= 1 << rng.below(32),
        1 => q.handle = rng.pick(&hostile),
        2 => q.op = rng.below(32) as u32,
        _ => q.args[rng.below(6) as usize] = rng.pick(&hostile),
    }
}
