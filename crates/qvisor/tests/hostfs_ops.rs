//! hostfs: every operation's success path and its Linux error semantics,
//! driven only through encoded request bytes (`testkit::Client`) against a
//! real temporary tree.

use qlib::hostfs::{
    build, dt, falloc, open as o, rename, req, resolve, seek, statx_mask, sync, unlink, utime, xattr, GuestStr, Op,
    Request, ID_KEEP, OFFSET_CURRENT, ROOT_DEV,
};
use qlib::linux::consts::mode::{S_IFDIR, S_IFIFO, S_IFLNK, S_IFMT, S_IFREG, S_IFSOCK};
use qlib::linux::Errno;
use qvisor::hostfs::testkit::{Client, TestTree};
use std::os::unix::fs::{MetadataExt, PermissionsExt};

fn kind(mode: u32) -> u32 {
    mode & S_IFMT
}

fn names(c: &Client, h: u64) -> Vec<String> {
    c.list(h).unwrap().into_iter().map(|(n, _, _)| String::from_utf8(n).unwrap()).collect()
}

#[test]
fn root_walk_stat_and_symlinks() {
    let t = TestTree::standard("walk");
    let c = t.client(false);
    let root = c.root().unwrap();
    let st = c.stat(root).unwrap();
    assert_eq!(kind(st.st_mode), S_IFDIR);
    assert_eq!(st.st_dev, ROOT_DEV, "host device numbers are not shown");
    assert_eq!(st.st_ino, std::fs::metadata(&t.root).unwrap().ino());

    let (h, st) = c.walk(root, b"etc/passwd", 0).unwrap();
    assert_eq!(kind(st.st_mode), S_IFREG);
    assert_eq!(st.st_size, 30);
    assert_eq!(st.st_uid, 0, "real ownership");
    let passwd_ino = st.st_ino;
    // The response carries the mode too.
    let r = c.with_names(&[b"etc/passwd"], |n| build::walk(root, n[0], 0, 0)).unwrap();
    assert_eq!(r.handle, 0, "no handle unless asked");
    assert_eq!(kind(r.aux as u32), S_IFREG);
    c.close(h).unwrap();

    // Symlinks: not followed when asked, followed beneath the directory
    // otherwise; absolute ones resolve from the root only with IN_ROOT.
    let (l, st) = c.walk(root, b"abs-link", resolve::NOFOLLOW).unwrap();
    assert_eq!(kind(st.st_mode), S_IFLNK);
    assert_eq!(c.readlink(l, b"").unwrap(), b"/etc/passwd");
    assert_eq!(c.readlink(root, b"abs-link").unwrap(), b"/etc/passwd");
    assert_eq!(c.walk(root, b"abs-link", resolve::IN_ROOT).unwrap().1.st_ino, passwd_ino);
    assert_eq!(c.walk(root, b"abs-link", 0).map(|_| ()), Err(Errno::EXDEV));
    assert_eq!(c.walk(root, b"rel-link", 0).unwrap().1.st_ino, passwd_ino);
    assert_eq!(kind(c.walk(root, b"dir-link/deep", 0).unwrap().1.st_mode), S_IFREG);
    assert_eq!(c.walk(root, b"dir-link/deep", resolve::NO_SYMLINKS).map(|_| ()), Err(Errno::ELOOP));
    assert_eq!(
        kind(c.walk(root, b"abs-link", resolve::NO_SYMLINKS | resolve::NOFOLLOW).unwrap().1.st_mode),
        S_IFLNK,
        "NO_SYMLINKS still returns a final link that is not followed"
    );
    assert_eq!(c.walk(root, b"loop-a", 0).map(|_| ()), Err(Errno::ELOOP));
    assert_eq!(kind(c.walk(root, b"loop-a", resolve::NOFOLLOW).unwrap().1.st_mode), S_IFLNK);
    assert_eq!(c.walk(root, b"missing", 0).map(|_| ()), Err(Errno::ENOENT));
    assert_eq!(c.walk(root, b"file/x", 0).map(|_| ()), Err(Errno::ENOTDIR));
    assert_eq!(c.walk(root, b"dangling", 0).map(|_| ()), Err(Errno::ENOENT));
    assert_eq!(kind(c.walk(root, b"dangling", resolve::NOFOLLOW).unwrap().1.st_mode), S_IFLNK);
    assert_eq!(c.readlink(root, b"file"), Err(Errno::EINVAL), "not a symlink");

    // The stat-only walk of one component (a single newfstatat).
    assert_eq!(kind(c.lstat(root, b"abs-link", resolve::NOFOLLOW).unwrap().st_mode), S_IFLNK);
    assert_eq!(kind(c.lstat(root, b"etc", resolve::NOFOLLOW).unwrap().st_mode), S_IFDIR);
    assert_eq!(c.lstat(root, b"nope", resolve::NOFOLLOW).map(|_| ()), Err(Errno::ENOENT));
    assert_eq!(kind(c.lstat(root, b"fifo", resolve::NOFOLLOW).unwrap().st_mode), S_IFIFO);

    // Hard links share the inode.
    let a = c.lstat(root, b"file", resolve::NOFOLLOW).unwrap();
    let b = c.lstat(root, b"hardlink", resolve::NOFOLLOW).unwrap();
    assert_eq!((a.st_ino, a.st_nlink), (b.st_ino, 2));

    // `..`: clamped at the root with IN_ROOT, refused otherwise.
    assert_eq!(c.walk(root, b"..", resolve::IN_ROOT).unwrap().1.st_ino, st_ino(&t.root));
    assert_eq!(c.walk(root, b"..", 0).map(|_| ()), Err(Errno::EXDEV));
    assert_eq!(c.lstat(root, b"..", resolve::NOFOLLOW).map(|_| ()), Err(Errno::EXDEV));
    let (sub, _) = c.walk(root, b"dir/sub", 0).unwrap();
    assert_eq!(c.walk(sub, b"..", 0).map(|_| ()), Err(Errno::EXDEV), "never above the directory handle");
    assert_eq!(c.walk(sub, b"deep", 0).unwrap().1.st_size, 4);
    assert_eq!(c.walk(sub, b"/deep", resolve::IN_ROOT).unwrap().1.st_size, 4, "IN_ROOT: the handle is the root");
    assert_eq!(c.walk(root, b"", 0).map(|_| ()), Err(Errno::ENOENT));
}

fn st_ino(p: &std::path::Path) -> u64 {
    std::fs::metadata(p).unwrap().ino()
}

#[test]
fn open_read_write_and_positions() {
    let t = TestTree::standard("rw");
    let c = t.client(false);
    let root = c.root().unwrap();

    let h = c.open(root, b"file", o::O_RDONLY, 0).unwrap();
    assert_eq!(c.read_split(h, 0, 64, 3).unwrap().0, b"hello, hostfs", "scattered over three guest buffers");
    assert_eq!(c.read(h, 7, 64).unwrap(), b"hostfs");
    assert_eq!(c.read(h, 1000, 64).unwrap(), b"", "past the end");
    assert_eq!(c.write(h, 0, b"x"), Err(Errno::EBADF), "opened read-only");
    // Reads at the handle's position advance it.
    assert_eq!(c.read_split(h, OFFSET_CURRENT, 5, 1).unwrap(), (b"hello".to_vec(), 5));
    assert_eq!(c.read_split(h, OFFSET_CURRENT, 5, 1).unwrap(), (b", hos".to_vec(), 10));
    c.close(h).unwrap();

    let h = c.open(root, b"file", o::O_WRONLY, 0).unwrap();
    assert_eq!(c.read(h, 0, 4), Err(Errno::EBADF));
    assert_eq!(c.write_split(h, 7, b"HOSTFS", 2).unwrap().0, 6);
    assert_eq!(std::fs::read(t.at("file")).unwrap(), b"hello, HOSTFS");
    c.close(h).unwrap();

    // O_CREAT | O_EXCL with an exact mode (the host umask is 0).
    let h = c.open(root, b"new", o::O_RDWR | o::O_CREAT | o::O_EXCL, 0o640).unwrap();
    assert_eq!(std::fs::metadata(t.at("new")).unwrap().permissions().mode() & 0o7777, 0o640);
    assert_eq!(c.open(root, b"new", o::O_RDWR | o::O_CREAT | o::O_EXCL, 0o640), Err(Errno::EEXIST));
    assert_eq!(c.write(h, 0, b"0123456789").unwrap(), 10);
    c.close(h).unwrap();
    let h = c.open(root, b"new", o::O_RDWR | o::O_TRUNC, 0).unwrap();
    assert_eq!(c.stat(h).unwrap().st_size, 0);
    c.close(h).unwrap();
    assert_eq!(c.open(root, b"absent", o::O_RDONLY, 0), Err(Errno::ENOENT));

    // O_APPEND: writes land at the end whatever the offset; the position is
    // reported for writes at the handle's position.
    std::fs::write(t.at("log"), b"one\n").unwrap();
    let h = c.open(root, b"log", o::O_WRONLY | o::O_APPEND, 0).unwrap();
    assert_eq!(c.write_split(h, OFFSET_CURRENT, b"two\n", 1).unwrap(), (4, 8));
    assert_eq!(c.write(h, 0, b"three\n").unwrap(), 6);
    assert_eq!(std::fs::read(t.at("log")).unwrap(), b"one\ntwo\nthree\n");
    c.close(h).unwrap();

    // Flag semantics.
    assert_eq!(c.open(root, b"file", o::O_RDONLY | o::O_DIRECTORY, 0), Err(Errno::ENOTDIR));
    assert_eq!(c.open(root, b"etc", o::O_WRONLY, 0), Err(Errno::EISDIR));
    assert_eq!(c.open(root, b"abs-link", o::O_RDONLY | o::O_NOFOLLOW, 0), Err(Errno::ELOOP));
    let p = c.open(root, b"abs-link", o::O_PATH | o::O_NOFOLLOW, 0).unwrap();
    assert_eq!(kind(c.stat(p).unwrap().st_mode), S_IFLNK);
    assert_eq!(c.read(p, 0, 1), Err(Errno::EBADF), "O_PATH handles do no I/O");
    assert_eq!(c.readlink(p, b"").unwrap(), b"/etc/passwd");
    assert_eq!(
        c.open_res(root, b"abs-link", o::O_RDONLY, 0, resolve::IN_ROOT).map(|h| c.read(h, 0, 4).unwrap()),
        Ok(b"root".to_vec())
    );
    assert_eq!(c.open(root, b"abs-link", o::O_RDONLY, 0), Err(Errno::EXDEV));
    assert_eq!(c.open_res(root, b"rel-link", o::O_RDONLY, 0, resolve::NO_SYMLINKS), Err(Errno::ELOOP));
    assert_eq!(c.open(root, b"loop-a", o::O_RDONLY, 0), Err(Errno::ELOOP));

    // O_CREAT through symlinks creates their targets beneath the root.
    let h = c.open(root, b"dangling", o::O_WRONLY | o::O_CREAT, 0o600).unwrap();
    c.close(h).unwrap();
    assert!(t.at("nowhere").is_file());
    std::os::unix::fs::symlink("/made-by-link", t.at("newabs")).unwrap();
    assert_eq!(c.open(root, b"newabs", o::O_WRONLY | o::O_CREAT, 0o600), Err(Errno::EXDEV));
    let h = c.open_res(root, b"newabs", o::O_WRONLY | o::O_CREAT, 0o600, resolve::IN_ROOT).unwrap();
    c.close(h).unwrap();
    assert!(t.at("made-by-link").is_file());

    // A large read scattered over 256 guest pages (the heap iovec path).
    let big: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + i / 4096) as u8).collect();
    std::fs::write(t.at("big"), &big).unwrap();
    let h = c.open(root, b"big", o::O_RDONLY, 0).unwrap();
    assert_eq!(c.read_split(h, 0, 1 << 20, 256).unwrap().0, big);
    assert_eq!(c.write(h, 0, b"x"), Err(Errno::EBADF));
    c.close(h).unwrap();
    let s = c.fs.stats();
    assert!(s.bytes_read >= 1 << 20 && s.requests > 20 && s.errors > 5, "{s:?}");
}

#[test]
fn directories_seek_sync_truncate_allocate() {
    let t = TestTree::standard("dir");
    let c = t.client(false);
    let root = c.root().unwrap();
    assert_eq!(c.list(root), Err(Errno::EBADF), "an O_PATH handle cannot be read");
    let d = c.open(root, b".", o::O_RDONLY | o::O_DIRECTORY, 0).unwrap();
    let entries = c.list(d).unwrap();
    let find = |n: &[u8]| entries.iter().find(|e| e.0 == n).cloned().unwrap();
    assert_eq!(find(b"etc").1, dt::DT_DIR);
    assert_eq!(find(b"file").1, dt::DT_REG);
    assert_eq!(find(b"abs-link").1, dt::DT_LNK);
    assert_eq!(find(b"fifo").1, dt::DT_FIFO);
    // The root's `..` shows the root itself, not the host directory above.
    assert_eq!(find(b"..").2, st_ino(&t.root));
    assert_eq!(find(b".").2, st_ino(&t.root));
    // Rewind and list again.
    assert_eq!(c.call(build::seek(d, 0, seek::SEEK_SET)).result(), Ok(0));
    assert_eq!(c.list(d).unwrap().len(), entries.len());
    c.close(d).unwrap();
    let d = c.open(root, b"empty", o::O_RDONLY | o::O_DIRECTORY, 0).unwrap();
    assert_eq!(names(&c, d), [".", ".."]);
    let (sub, _) = c.walk(root, b"dir", 0).unwrap();
    let sd = c.open(sub, b".", o::O_RDONLY, 0).unwrap();
    let e = c.list(sd).unwrap();
    assert_eq!(e.iter().find(|x| x.0 == b"..").unwrap().2, st_ino(&t.root), "a normal `..` below the root");

    // Seek, SEEK_DATA/SEEK_HOLE on a sparse file.
    let h = c.open(root, b"sparse", o::O_RDWR | o::O_CREAT, 0o644).unwrap();
    assert_eq!(c.call(build::truncate(h, 1 << 20)).result(), Ok(0));
    assert_eq!(c.write(h, 512 << 10, &[1u8; 4096]).unwrap(), 4096);
    assert_eq!(c.call(build::seek(h, 0, seek::SEEK_END)).result(), Ok(1 << 20));
    assert_eq!(c.call(build::seek(h, 0, seek::SEEK_DATA)).result(), Ok(512 << 10));
    let hole = c.call(build::seek(h, 512 << 10, seek::SEEK_HOLE)).result().unwrap();
    assert!(hole > 512 << 10 && hole <= 1 << 20, "hole at {hole}");
    assert_eq!(c.call(build::seek(h, (2 << 20) as i64, seek::SEEK_DATA)).result(), Err(Errno::ENXIO));
    assert_eq!(c.call(build::seek(h, -1, seek::SEEK_SET)).result(), Err(Errno::EINVAL));

    // fsync, fdatasync, truncate.
    assert_eq!(c.call(build::sync(h, 0)).result(), Ok(0));
    assert_eq!(c.call(build::sync(h, sync::DATA)).result(), Ok(0));
    assert_eq!(c.call(build::truncate(h, 10)).result(), Ok(0));
    assert_eq!(std::fs::metadata(t.at("sparse")).unwrap().len(), 10);

    // fallocate: extend, keep size, punch; unknown modes refused.
    assert_eq!(c.call(build::allocate(h, 0, 0, 8192)).result(), Ok(0));
    assert_eq!(std::fs::metadata(t.at("sparse")).unwrap().len(), 8192);
    assert_eq!(c.call(build::allocate(h, falloc::KEEP_SIZE, 8192, 8192)).result(), Ok(0));
    assert_eq!(std::fs::metadata(t.at("sparse")).unwrap().len(), 8192);
    assert_eq!(c.write(h, 0, &[9u8; 8192]).unwrap(), 8192);
    assert_eq!(c.call(build::allocate(h, falloc::PUNCH_HOLE | falloc::KEEP_SIZE, 0, 4096)).result(), Ok(0));
    assert_eq!(c.read(h, 0, 2).unwrap(), [0, 0]);
    assert_eq!(c.read(h, 4096, 2).unwrap(), [9, 9]);
    assert_eq!(c.call(build::allocate(h, falloc::PUNCH_HOLE, 0, 4096)).result(), Err(Errno::EOPNOTSUPP));
    assert_eq!(c.call(build::allocate(h, 0x80, 0, 4096)).result(), Err(Errno::EOPNOTSUPP));
    let ro = c.open(root, b"sparse", o::O_RDONLY, 0).unwrap();
    assert_eq!(c.call(build::truncate(ro, 0)).result(), Err(Errno::EINVAL), "Linux: ftruncate on a read-only fd");
    assert_eq!(c.call(build::allocate(ro, 0, 0, 1)).result(), Err(Errno::EBADF));
    let p = c.open(root, b"sparse", o::O_PATH, 0).unwrap();
    assert_eq!(c.call(build::sync(p, 0)).result(), Err(Errno::EBADF));
    assert_eq!(c.call(build::seek(p, 0, seek::SEEK_SET)).result(), Err(Errno::EBADF));
}

#[test]
fn creating_removing_renaming_linking() {
    let t = TestTree::standard("ns");
    let c = t.client(false);
    let root = c.root().unwrap();
    let call = |names: &[&[u8]], f: &dyn Fn(&[GuestStr]) -> Request| c.with_names(names, f).map(|r| (r.handle, r.aux));

    // mkdir, with a handle and a stat of the new directory.
    let st_gpa = 0x3f_0000;
    let (d, mode) = call(&[b"made"], &|n| build::mkdir(root, n[0], 0o751, req::HANDLE | req::STAT, st_gpa)).unwrap();
    assert!(d != 0);
    assert_eq!(mode as u32, S_IFDIR | 0o751);
    let st: qlib::linux::types::Stat = c.mem.read_obj(st_gpa).unwrap();
    assert_eq!(st.st_ino, st_ino(&t.at("made")));
    assert_eq!(std::fs::metadata(t.at("made")).unwrap().permissions().mode() & 0o7777, 0o751);
    let h = c.open(d, b"inside", o::O_WRONLY | o::O_CREAT, 0o600).unwrap();
    c.close(h).unwrap();
    assert!(t.at("made/inside").is_file());
    assert_eq!(call(&[b"made"], &|n| build::mkdir(root, n[0], 0o755, 0, 0)), Err(Errno::EEXIST));
    let (file, _) = c.walk(root, b"file", 0).unwrap();
    assert_eq!(call(&[b"x"], &|n| build::mkdir(file, n[0], 0o755, 0, 0)), Err(Errno::ENOTDIR));
    assert_eq!(call(&[b"m"], &|n| build::mkdir(root, n[0], 0o17777, 0, 0)), Err(Errno::EINVAL));

    // mknod: FIFOs, sockets and regular files; devices and directories refused.
    assert_eq!(call(&[b"p"], &|n| build::mknod(root, n[0], S_IFIFO | 0o600, 0, 0)).unwrap().1, 0);
    assert_eq!(std::fs::symlink_metadata(t.at("p")).unwrap().mode() & S_IFMT, S_IFIFO);
    let (s, m) = call(&[b"sock"], &|n| build::mknod(root, n[0], S_IFSOCK | 0o600, req::HANDLE, 0)).unwrap();
    assert!(s != 0 && m as u32 & S_IFMT == S_IFSOCK);
    call(&[b"reg"], &|n| build::mknod(root, n[0], 0o644, 0, 0)).unwrap();
    assert!(t.at("reg").is_file());
    assert_eq!(call(&[b"dev"], &|n| build::mknod(root, n[0], 0o020666, 0, 0)), Err(Errno::EPERM));
    assert_eq!(call(&[b"blk"], &|n| build::mknod(root, n[0], 0o060666, 0, 0)), Err(Errno::EPERM));
    assert_eq!(call(&[b"d"], &|n| build::mknod(root, n[0], S_IFDIR | 0o755, 0, 0)), Err(Errno::EINVAL));
    assert!(!t.at("dev").exists() && !t.at("blk").exists() && !t.at("d").exists());
    assert_eq!(call(&[b"p"], &|n| build::mknod(root, n[0], S_IFIFO | 0o600, 0, 0)), Err(Errno::EEXIST));

    // unlink / rmdir.
    assert_eq!(call(&[b"reg"], &|n| build::unlink(root, n[0], 0)).map(|_| ()), Ok(()));
    assert!(!t.at("reg").exists());
    assert_eq!(call(&[b"reg"], &|n| build::unlink(root, n[0], 0)), Err(Errno::ENOENT));
    assert_eq!(call(&[b"empty"], &|n| build::unlink(root, n[0], 0)), Err(Errno::EISDIR));
    assert_eq!(call(&[b"dir"], &|n| build::unlink(root, n[0], unlink::AT_REMOVEDIR)), Err(Errno::ENOTEMPTY));
    assert_eq!(call(&[b"file"], &|n| build::unlink(root, n[0], unlink::AT_REMOVEDIR)), Err(Errno::ENOTDIR));
    call(&[b"empty"], &|n| build::unlink(root, n[0], unlink::AT_REMOVEDIR)).unwrap();
    assert!(!t.at("empty").exists());
    call(&[b"dangling"], &|n| build::unlink(root, n[0], 0)).unwrap();
    assert!(std::fs::symlink_metadata(t.at("dangling")).is_err(), "the link itself is removed");

    // rename, NOREPLACE, EXCHANGE; across directories.
    let (etc, _) = c.walk(root, b"etc", 0).unwrap();
    call(&[b"file", b"moved"], &|n| build::rename(root, n[0], etc, n[1], 0)).unwrap();
    assert_eq!(std::fs::read(t.at("etc/moved")).unwrap(), b"hello, hostfs");
    std::fs::write(t.at("a"), b"A").unwrap();
    std::fs::write(t.at("b"), b"B").unwrap();
    assert_eq!(
        call(&[b"a", b"b"], &|n| build::rename(root, n[0], root, n[1], rename::RENAME_NOREPLACE)),
        Err(Errno::EEXIST)
    );
    call(&[b"a", b"b"], &|n| build::rename(root, n[0], root, n[1], rename::RENAME_EXCHANGE)).unwrap();
    assert_eq!((std::fs::read(t.at("a")).unwrap(), std::fs::read(t.at("b")).unwrap()), (b"B".to_vec(), b"A".to_vec()));
    assert_eq!(
        call(&[b"a", b"zz"], &|n| build::rename(root, n[0], root, n[1], rename::RENAME_EXCHANGE)),
        Err(Errno::ENOENT)
    );
    std::fs::create_dir(t.at("full")).unwrap();
    std::fs::write(t.at("full/x"), b"").unwrap();
    std::fs::create_dir(t.at("other")).unwrap();
    assert_eq!(call(&[b"other", b"full"], &|n| build::rename(root, n[0], root, n[1], 0)), Err(Errno::ENOTEMPTY));
    assert_eq!(call(&[b"a", b"other"], &|n| build::rename(root, n[0], root, n[1], 0)), Err(Errno::EISDIR));
    assert_eq!(call(&[b"other", b"a"], &|n| build::rename(root, n[0], root, n[1], 0)), Err(Errno::ENOTDIR));
    assert_eq!(call(&[b"a", b"b"], &|n| build::rename(root, n[0], root, n[1], 4)), Err(Errno::EINVAL), "no whiteouts");
    assert_eq!(call(&[b"a", b"b"], &|n| build::rename(root, n[0], 0x77, n[1], 0)), Err(Errno::EBADF));

    // link: a new name for the same inode; never for directories.
    call(&[b"a", b"a2"], &|n| build::link(root, n[0], etc, n[1])).unwrap();
    assert_eq!(st_ino(&t.at("a")), st_ino(&t.at("etc/a2")));
    assert_eq!(call(&[b"a", b"b"], &|n| build::link(root, n[0], root, n[1])), Err(Errno::EEXIST));
    assert_eq!(call(&[b"dir", b"dir2"], &|n| build::link(root, n[0], root, n[1])), Err(Errno::EPERM));
    assert_eq!(call(&[b"none", b"n2"], &|n| build::link(root, n[0], root, n[1])), Err(Errno::ENOENT));
    // Linking a symlink links the symlink, not its target.
    call(&[b"abs-link", b"abs-link2"], &|n| build::link(root, n[0], root, n[1])).unwrap();
    assert_eq!(std::fs::read_link(t.at("abs-link2")).unwrap().to_str(), Some("/etc/passwd"));

    // symlink with a handle to the new link.
    let (l, m) = call(&[b"sl", b"../anything/at all"], &|n| build::symlink(root, n[0], n[1], req::HANDLE, 0)).unwrap();
    assert_eq!(m as u32 & S_IFMT, S_IFLNK);
    assert_eq!(c.readlink(l, b"").unwrap(), b"../anything/at all");
    assert_eq!(call(&[b"sl", b"x"], &|n| build::symlink(root, n[0], n[1], 0, 0)), Err(Errno::EEXIST));
    assert_eq!(call(&[b"sl2", b""], &|n| build::symlink(root, n[0], n[1], 0, 0)), Err(Errno::ENOENT));

    // Single-component rules for every name argument.
    for bad in [&b"a/b"[..], b".", b"..", b"/x"] {
        assert_eq!(call(&[bad], &|n| build::mkdir(root, n[0], 0o755, 0, 0)), Err(Errno::EINVAL), "{bad:?}");
        assert_eq!(call(&[bad], &|n| build::unlink(root, n[0], 0)), Err(Errno::EINVAL));
        assert_eq!(call(&[b"a", bad], &|n| build::rename(root, n[0], root, n[1], 0)), Err(Errno::EINVAL));
        assert_eq!(call(&[b"a", bad], &|n| build::link(root, n[0], root, n[1])), Err(Errno::EINVAL));
        assert_eq!(call(&[bad, b"t"], &|n| build::symlink(root, n[0], n[1], 0, 0)), Err(Errno::EINVAL));
    }
    assert_eq!(call(&[b""], &|n| build::mkdir(root, n[0], 0o755, 0, 0)), Err(Errno::EINVAL));
    assert_eq!(call(&[&[b'n'; 256][..]], &|n| build::mkdir(root, n[0], 0o755, 0, 0)), Err(Errno::ENAMETOOLONG));
    call(&[&[b'n'; 255][..]], &|n| build::mkdir(root, n[0], 0o755, 0, 0)).unwrap();
}

#[test]
fn attributes_times_statx_statfs_xattrs() {
    let t = TestTree::standard("attr");
    let c = t.client(false);
    let root = c.root().unwrap();
    let call = |names: &[&[u8]], f: &dyn Fn(&[GuestStr]) -> Request| c.with_names(names, f).map(|_| ());
    let mode_of = |p: &str| std::fs::symlink_metadata(t.at(p)).unwrap().mode() & 0o7777;

    // chmod: opened handle (fchmod), O_PATH handle (fchmodat2 AT_EMPTY_PATH),
    // a name (not followed).
    let f = c.open(root, b"file", o::O_RDONLY, 0).unwrap();
    call(&[b""], &|n| build::chmod(f, n[0], 0o600)).unwrap();
    assert_eq!(mode_of("file"), 0o600);
    let (p, _) = c.walk(root, b"bin/prog", 0).unwrap();
    call(&[b""], &|n| build::chmod(p, n[0], 0o4755)).unwrap();
    assert_eq!(mode_of("bin/prog"), 0o4755);
    call(&[b"etc"], &|n| build::chmod(root, n[0], 0o700)).unwrap();
    assert_eq!(mode_of("etc"), 0o700);
    assert_eq!(call(&[b"abs-link"], &|n| build::chmod(root, n[0], 0o600)), Err(Errno::EOPNOTSUPP));
    assert_eq!(call(&[b""], &|n| build::chmod(p, n[0], 0o10000)), Err(Errno::EINVAL));
    assert_eq!(call(&[b"nope"], &|n| build::chmod(root, n[0], 0o600)), Err(Errno::ENOENT));

    // chown (lchown semantics for names); ID_KEEP keeps.
    call(&[b""], &|n| build::chown(p, n[0], 1234, 5678)).unwrap();
    let md = std::fs::metadata(t.at("bin/prog")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 5678));
    call(&[b""], &|n| build::chown(p, n[0], ID_KEEP, 42)).unwrap();
    let md = std::fs::metadata(t.at("bin/prog")).unwrap();
    assert_eq!((md.uid(), md.gid()), (1234, 42));
    call(&[b"rel-link"], &|n| build::chown(root, n[0], 77, 88)).unwrap();
    assert_eq!(std::fs::symlink_metadata(t.at("rel-link")).unwrap().uid(), 77, "the link itself");
    assert_eq!(std::fs::metadata(t.at("etc/passwd")).unwrap().uid(), 0, "not its target");
    assert_eq!(call(&[b""], &|n| build::chown(p, n[0], 1 << 32, 0)), Err(Errno::EINVAL));

    // utimensat: explicit, UTIME_OMIT, UTIME_NOW, on a link (not followed).
    call(&[b""], &|n| build::utimens(f, n[0], (1_000_000_000, 5), (1_100_000_000, 7))).unwrap();
    let md = std::fs::metadata(t.at("file")).unwrap();
    assert_eq!((md.atime(), md.atime_nsec(), md.mtime(), md.mtime_nsec()), (1_000_000_000, 5, 1_100_000_000, 7));
    call(&[b""], &|n| build::utimens(f, n[0], (0, utime::UTIME_OMIT), (1_200_000_000, 0))).unwrap();
    let md = std::fs::metadata(t.at("file")).unwrap();
    assert_eq!((md.atime(), md.mtime()), (1_000_000_000, 1_200_000_000));
    call(&[b"abs-link"], &|n| build::utimens(root, n[0], (0, utime::UTIME_OMIT), (1_300_000_000, 0))).unwrap();
    assert_eq!(std::fs::symlink_metadata(t.at("abs-link")).unwrap().mtime(), 1_300_000_000);
    assert_ne!(std::fs::metadata(t.at("etc/passwd")).unwrap().mtime(), 1_300_000_000);
    call(&[b""], &|n| build::utimens(p, n[0], (0, utime::UTIME_NOW), (0, utime::UTIME_NOW))).unwrap();
    let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs() as i64;
    assert!((std::fs::metadata(t.at("bin/prog")).unwrap().mtime() - now).abs() < 5);
    assert_eq!(call(&[b""], &|n| build::utimens(f, n[0], (0, 1_000_000_000), (0, 0))), Err(Errno::EINVAL));

    // statx: basic fields plus btime; device and mount ids hidden.
    let sx = c.statx(f, statx_mask::STATX_BASIC_STATS | statx_mask::STATX_BTIME | statx_mask::STATX_MNT_ID).unwrap();
    let st = c.stat(f).unwrap();
    assert_eq!((sx.stx_ino, sx.stx_size, sx.stx_mode as u32), (st.st_ino, st.st_size as u64, st.st_mode));
    assert_eq!((sx.stx_dev_major, sx.stx_dev_minor as u64), (0, st.st_dev));
    assert_eq!(sx.stx_mnt_id, 0);
    assert_eq!(sx.stx_mask & statx_mask::STATX_MNT_ID, 0);
    assert_eq!(sx.stx_mtime.tv_sec, 1_200_000_000);
    let lx = c.statx(c.walk(root, b"abs-link", resolve::NOFOLLOW).unwrap().0, statx_mask::STATX_BASIC_STATS).unwrap();
    assert_eq!(lx.stx_mode as u32 & S_IFMT, S_IFLNK, "statx of a link handle describes the link");

    // statfs: the host filesystem's type and sizes, no fsid.
    let sfs = c.statfs(root).unwrap();
    assert!(sfs.f_bsize > 0 && sfs.f_blocks > 0 && sfs.f_namelen == 255);
    assert_eq!(sfs.f_fsid, [0, 0]);

    // xattrs: user.* and security.capability, on an opened handle, on a name
    // in a directory handle, and on an O_PATH directory handle itself.
    let w = c.open(root, b"etc/passwd", o::O_RDONLY, 0).unwrap();
    let (etc, _) = c.walk(root, b"etc", 0).unwrap();
    let set = |h: u64, name: &[u8], xname: &[u8], value: &[u8], flags: u32| {
        call(&[name, xname, value], &|n| build::setxattr(h, n[0], n[1], n[2], flags))
    };
    let get = |h: u64, name: &[u8], xname: &[u8], cap: u64| -> Result<Vec<u8>, Errno> {
        c.reset();
        let n = if name.is_empty() { GuestStr::default() } else { c.put(name) };
        let x = c.put(xname);
        let out = c.alloc(cap.max(1));
        let got = c.call(build::getxattr(h, n, x, GuestStr { gpa: out, len: cap })).result()?;
        Ok(if cap == 0 { vec![got as u8] } else { c.get(out, got) })
    };
    let list = |h: u64, name: &[u8], cap: u64| -> Result<Vec<Vec<u8>>, Errno> {
        c.reset();
        let n = if name.is_empty() { GuestStr::default() } else { c.put(name) };
        let out = c.alloc(cap.max(1));
        let got = c.call(build::listxattr(h, n, GuestStr { gpa: out, len: cap })).result()?;
        if cap == 0 {
            return Ok(vec![vec![got as u8]]);
        }
        let mut v: Vec<Vec<u8>> =
            c.get(out, got).split(|&b| b == 0).filter(|s| !s.is_empty()).map(|s| s.to_vec()).collect();
        v.sort();
        Ok(v)
    };
    let remove = |h: u64, name: &[u8], xname: &[u8]| call(&[name, xname], &|n| build::removexattr(h, n[0], n[1]));

    set(w, b"", b"user.quark", b"value-1", 0).unwrap();
    assert_eq!(get(etc, b"passwd", b"user.quark", 64).unwrap(), b"value-1", "set on an opened handle, read by name");
    assert_eq!(get(w, b"", b"user.quark", 0).unwrap(), [7], "size query");
    assert_eq!(get(w, b"", b"user.quark", 3), Err(Errno::ERANGE));
    assert_eq!(get(w, b"", b"user.none", 64), Err(Errno::ENODATA));
    assert_eq!(set(etc, b"passwd", b"user.quark", b"x", xattr::XATTR_CREATE), Err(Errno::EEXIST));
    assert_eq!(set(etc, b"passwd", b"user.other", b"x", xattr::XATTR_REPLACE), Err(Errno::ENODATA));
    set(etc, b"passwd", b"user.other", b"2", xattr::XATTR_CREATE).unwrap();
    for forbidden in [&b"trusted.x"[..], b"security.selinux", b"system.posix_acl_access", b"user."] {
        assert_eq!(set(w, b"", forbidden, b"x", 0), Err(Errno::EOPNOTSUPP), "{forbidden:?}");
        assert_eq!(get(w, b"", forbidden, 64), Err(Errno::EOPNOTSUPP));
    }
    assert_eq!(get(w, b"", b"", 64), Err(Errno::ERANGE));
    // An O_PATH directory names itself (as "."); an O_PATH file cannot.
    set(etc, b"", b"user.dir", b"d", 0).unwrap();
    assert_eq!(get(root, b"etc", b"user.dir", 8).unwrap(), b"d");
    let (wp, _) = c.walk(root, b"etc/passwd", 0).unwrap();
    assert_eq!(get(wp, b"", b"user.quark", 64), Err(Errno::EBADF));
    // security.capability: a v2 vfs_cap_data (effective, CAP_NET_BIND_SERVICE).
    let mut cap = Vec::new();
    for v in [0x0200_0001u32, 1 << 10, 0, 0, 0] {
        cap.extend(v.to_le_bytes());
    }
    set(etc, b"passwd", b"security.capability", &cap, 0).unwrap();
    assert_eq!(get(w, b"", b"security.capability", 64).unwrap(), cap);
    // A host-only attribute exists but is not listed.
    set_host_xattr(&t.at("etc/passwd"), "trusted.hidden", b"h");
    let want: Vec<Vec<u8>> = [&b"security.capability"[..], b"user.other", b"user.quark"].map(|s| s.to_vec()).to_vec();
    assert_eq!(list(w, b"", 256).unwrap(), want);
    assert_eq!(list(etc, b"passwd", 256).unwrap(), want);
    assert_eq!(list(w, b"", 0).unwrap(), [[42]], "size query: the filtered length (20 + 11 + 11)");
    assert_eq!(list(w, b"", 5), Err(Errno::ERANGE));
    remove(etc, b"passwd", b"user.other").unwrap();
    assert_eq!(remove(w, b"", b"user.other"), Err(Errno::ENODATA));
    assert_eq!(remove(w, b"", b"trusted.hidden"), Err(Errno::EOPNOTSUPP));
    // user.* attributes on a symlink are refused by Linux (by name: not followed).
    assert_eq!(set(root, b"abs-link", b"user.x", b"1", 0), Err(Errno::EPERM));
    assert_eq!(set(root, b"../x", b"user.x", b"1", 0), Err(Errno::EINVAL));
}

/// setxattr by the host (test set-up), through a raw system call.
fn set_host_xattr(p: &std::path::Path, name: &str, value: &[u8]) {
    use std::os::unix::ffi::OsStrExt;
    let path = std::ffi::CString::new(p.as_os_str().as_bytes()).unwrap();
    let name = std::ffi::CString::new(name).unwrap();
    // SAFETY: valid C strings and value buffer.
    unsafe {
        qvisor::sys::syscall6(
            qvisor::sys::nr::SETXATTR,
            path.as_ptr() as u64,
            name.as_ptr() as u64,
            value.as_ptr() as u64,
            value.len() as u64,
            0,
            0,
        )
    }
    .expect("host setxattr (test set-up)");
}

#[test]
fn requests_are_checked_field_by_field() {
    let t = TestTree::standard("proto");
    let c = t.client(false);
    let root = c.root().unwrap();
    let p = c.put(b"file");
    let r = |req: Request| c.call(req).result();

    assert_eq!(c.raw(&[0u8; 63]).result(), Err(Errno::EINVAL), "short");
    assert_eq!(c.raw(&[0u8; 65]).result(), Err(Errno::EINVAL), "long");
    assert_eq!(r(Request { op: 0, ..Default::default() }), Err(Errno::ENOSYS));
    assert_eq!(r(Request { op: 29, ..Default::default() }), Err(Errno::ENOSYS));
    assert_eq!(r(Request { op: u32::MAX, ..Default::default() }), Err(Errno::ENOSYS));
    // Unused arguments and unknown flags.
    let mut w = build::walk(root, p, 0, 0);
    w.args[5] = 1;
    assert_eq!(r(w), Err(Errno::EINVAL));
    assert_eq!(r(build::walk(root, p, 1 << 20, 0)), Err(Errno::EINVAL));
    assert_eq!(r(build::walk(root, p, 0, 0x2000)), Err(Errno::EINVAL), "stat_gpa without req::STAT");
    assert_eq!(r(build::root(0, 0)).map(|_| ()), Ok(()));
    assert_eq!(r(Request::new(Op::Root, 5, 0, [0; 6])), Err(Errno::EINVAL));
    assert_eq!(r(Request::new(Op::Close, root, 1, [0; 6])), Err(Errno::EINVAL));
    // Handles.
    assert_eq!(r(build::walk(0, p, 0, 0)), Err(Errno::EBADF));
    assert_eq!(r(build::walk(u64::MAX, p, 0, 0)), Err(Errno::EBADF));
    assert_eq!(r(build::walk(root ^ (1 << 40), p, 0, 0)), Err(Errno::EBADF), "wrong generation");
    let h = c.open(root, b"file", o::O_RDONLY, 0).unwrap();
    c.close(h).unwrap();
    assert_eq!(c.close(h), Err(Errno::EBADF));
    let h2 = c.open(root, b"file", o::O_RDONLY, 0).unwrap();
    assert_eq!(h2 & 0xffff_ffff, h & 0xffff_ffff, "slot reused");
    assert_eq!(c.read(h, 0, 4), Err(Errno::EBADF), "the stale handle reaches nothing");
    assert_eq!(c.read(h2, 0, 4).unwrap(), b"hell");
    // Open flags and modes.
    let p = c.put(b"file");
    assert_eq!(r(build::open(root, p, 3, 0, 0, 0)), Err(Errno::EINVAL), "O_ACCMODE");
    assert_eq!(r(build::open(root, p, o::O_RDONLY, 0o644, 0, 0)), Err(Errno::EINVAL), "mode without O_CREAT");
    assert_eq!(r(build::open(root, p, o::O_CREAT | o::O_RDWR, 0o10000, 0, 0)), Err(Errno::EINVAL));
    assert_eq!(r(build::open(root, p, 0o20000000, 0, 0, 0)), Err(Errno::EINVAL), "O_TMPFILE");
    assert_eq!(r(build::open(root, p, 0o40000, 0, 0, 0)), Err(Errno::EINVAL), "O_DIRECT");
    assert_eq!(r(build::open(root, p, 0, 0, resolve::NOFOLLOW, 0)), Err(Errno::EINVAL), "NOFOLLOW is walk-only");
    assert!(r(build::open(
        root,
        p,
        o::O_RDONLY | o::O_NONBLOCK | o::O_CLOEXEC | o::O_NOCTTY | o::O_LARGEFILE,
        0,
        0,
        0
    ))
    .is_ok());
    // Paths.
    let nul = c.put(b"fi\0le");
    assert_eq!(r(build::walk(root, nul, 0, 0)), Err(Errno::EINVAL));
    let long = c.put(&[b'a'; 4096]);
    assert_eq!(r(build::walk(root, long, 0, 0)), Err(Errno::ENAMETOOLONG));
    let max = c.put(&[b'a'; 4095]);
    assert_eq!(r(build::walk(root, max, 0, 0)), Err(Errno::ENAMETOOLONG), "from the host: a 4095-byte component");
    // I/O arguments.
    assert_eq!(r(build::read(h2, 0, 0x2000, 1025)), Err(Errno::EINVAL), "more than UIO_MAXIOV");
    assert_eq!(r(build::read(h2, 1 << 63, 0x2000, 0)), Err(Errno::EINVAL), "negative offset");
    assert_eq!(r(build::read(h2, 0, 0x2000, 0)), Ok(0), "no iovecs: nothing read");
    assert_eq!(r(build::seek(h2, 0, 5)), Err(Errno::EINVAL));
    assert_eq!(r(build::truncate(h2, 1 << 63)), Err(Errno::EINVAL));
    assert_eq!(r(build::statx(h2, 0, 0x2000)).map(|_| ()), Ok(()));
    let mut sx = build::statx(h2, 0, 0x2000);
    sx.args[0] = 1 << 32;
    assert_eq!(r(sx), Err(Errno::EINVAL));
    assert_eq!(r(build::sync(h2, 2)), Err(Errno::EINVAL));
    assert_eq!(r(build::unlink(root, c.put(b"x"), 1)), Err(Errno::EINVAL));
    assert_eq!(r(build::mknod(root, c.put(b"x"), 0o7777 | 0o1_000_000, 0, 0)), Err(Errno::EINVAL));
}
