//! hostfs costs measured against the same host calls made directly, in the
//! same run: open+fstat+close, a stat of a deep path, a 4 KiB pread, and
//! 64 MiB sequential read and write with data moved straight between the
//! file and (scattered) guest frames. Figures are printed as JSON lines in
//! the bench format; the test asserts that every byte arrived intact (the
//! figures themselves vary with the machine and are not asserted).
//!
//! Run with `cargo test -p qvisor --release --test hostfs_perf -- --nocapture`
//! for optimised figures.

use qlib::hcall::GuestIovec;
use qlib::hostfs::{build, open as o, req, resolve};
use qvisor::hostfs::testkit::{Client, TestTree};
use qvisor::hostfs::HostFs;
use qvisor::sys::{self, nr};
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::time::Instant;

fn report(name: &str, value: f64, unit: &str, baseline: f64, baseline_name: &str) {
    println!(
        "{{\"name\":\"{name}\",\"value\":{value:.3},\"unit\":\"{unit}\",\"baseline\":{baseline:.3},\"baseline_name\":\"{baseline_name}\",\"ratio\":{:.3}}}",
        value / baseline
    );
}

fn cpath(p: &std::path::Path) -> CString {
    CString::new(p.as_os_str().as_bytes()).unwrap()
}

/// Microseconds per iteration of `f` over `n` iterations.
fn per_op(n: u32, mut f: impl FnMut()) -> f64 {
    let t = Instant::now();
    for _ in 0..n {
        f();
    }
    t.elapsed().as_secs_f64() * 1e6 / n as f64
}

const PAGE: u64 = 4096;
const CHUNK: u64 = 1 << 20;
const TOTAL: u64 = 64 << 20;
const DATA_GPA: u64 = 16 << 20;
const LIST_GPA: u64 = 8 << 20;

/// Writes an iovec list of CHUNK/PAGE guest pages in a scattered order (as
/// a guest's frame allocator hands them out).
fn scattered_list(c: &Client) -> u64 {
    let pages = CHUNK / PAGE;
    for i in 0..pages {
        let page = (i * 97) % pages;
        c.mem.write_obj(LIST_GPA + 16 * i, &GuestIovec { gpa: DATA_GPA + page * PAGE, len: PAGE }).unwrap();
    }
    pages
}

#[test]
fn hostfs_costs_against_direct_host_calls() {
    let t = TestTree::standard("perf");
    let deep = "a/b/c/d/e/f/g/h";
    std::fs::create_dir_all(t.at(deep)).unwrap();
    std::fs::write(t.at(&format!("{deep}/file")), b"deep").unwrap();
    let c = Client::new(HostFs::new(t.root_fd(), false).unwrap(), 96 << 20);
    let root = c.root().unwrap();
    let n = 20_000;

    // open + fstat + close: two requests (Open with a stat, Close).
    let path = c.put(b"etc/passwd");
    let st = c.alloc(144);
    let open_req = build::open(root, path, o::O_RDONLY | req::STAT, 0, 0, st).to_bytes();
    let hostfs = per_op(n, || {
        let r = qlib::hostfs::Response::from_bytes(&c.fs.handle(&c.mem, &open_req)).unwrap();
        c.fs.handle(&c.mem, &build::close(r.handle).to_bytes());
    });
    let native_path = cpath(&t.at("etc/passwd"));
    let native = per_op(n, || {
        let mut stat = qlib::linux::types::Stat::default();
        // SAFETY: a valid C string; `stat` is a writable struct stat.
        unsafe {
            let fd =
                sys::syscall6(nr::OPENAT, (-100i64) as u64, native_path.as_ptr() as u64, 0o2000000, 0, 0, 0).unwrap();
            sys::syscall3(nr::FSTAT, fd, &mut stat as *mut _ as u64, 0).unwrap();
            sys::syscall3(nr::CLOSE, fd, 0, 0).unwrap();
        }
    });
    report("hostfs open+fstat+close", hostfs, "us", native, "openat+fstat+close");
    assert_eq!(c.fs.stats().open_handles, 1, "every handle was closed");

    // stat of a deep path (one Walk without a handle).
    let dpath = c.put(format!("{deep}/file").as_bytes());
    let walk_req = build::walk(root, dpath, req::STAT | resolve::NOFOLLOW, st).to_bytes();
    let hostfs = per_op(n, || {
        c.fs.handle(&c.mem, &walk_req);
    });
    let native_deep = cpath(&t.at(&format!("{deep}/file")));
    let native = per_op(n, || {
        let mut stat = qlib::linux::types::Stat::default();
        // SAFETY: a valid C string; `stat` is a writable struct stat.
        unsafe {
            sys::syscall6(
                nr::NEWFSTATAT,
                (-100i64) as u64,
                native_deep.as_ptr() as u64,
                &mut stat as *mut _ as u64,
                0x100,
                0,
                0,
            )
            .unwrap();
        }
    });
    let s: qlib::linux::types::Stat = c.mem.read_obj(st).unwrap();
    assert_eq!(s.st_size, 4);
    report("hostfs stat of a 9-component path", hostfs, "us", native, "newfstatat");

    // 4 KiB pread into one guest page.
    let big: Vec<u8> = (0..TOTAL).map(|i| (i ^ (i >> 12) ^ (i >> 20)) as u8).collect();
    std::fs::write(t.at("big"), &big).unwrap();
    let h = c.open(root, b"big", o::O_RDONLY, 0).unwrap();
    c.mem.write_obj(LIST_GPA, &GuestIovec { gpa: DATA_GPA, len: PAGE }).unwrap();
    let mut off = 0u64;
    let hostfs = per_op(n, || {
        let r = c.fs.handle(&c.mem, &build::read(h, off, LIST_GPA, 1).to_bytes());
        assert_eq!(qlib::hostfs::Response::from_bytes(&r).unwrap().ret, PAGE as i64);
        off = (off + 7 * PAGE) % TOTAL;
    });
    // The baselines read into and write from the same kind of memory as
    // guest RAM (a shared memfd mapping): on this host, copies into private
    // anonymous memory are several times slower, which would flatter hostfs.
    let f = std::fs::File::open(t.at("big")).unwrap();
    let fd = std::os::fd::AsRawFd::as_raw_fd(&f) as u64;
    let native_buf = qvisor::memory::GuestMemory::new(2 * CHUNK).unwrap();
    let nb = native_buf.check(0, CHUNK).unwrap();
    let mut off = 0u64;
    let native = per_op(n, || {
        // SAFETY: [nb, nb + PAGE) lies in our own mapping.
        let got = unsafe { sys::syscall6(nr::PREAD64, fd, nb, PAGE, off, 0, 0) }.unwrap();
        assert_eq!(got, PAGE);
        off = (off + 7 * PAGE) % TOTAL;
    });
    report("hostfs 4 KiB pread", hostfs, "us", native, "pread64");

    // Sequential read, 1 MiB per request over 256 scattered guest pages;
    // best of three interleaved runs (the machine is shared).
    let pages = scattered_list(&c);
    let (mut hostfs, mut native) = (0f64, 0f64);
    for _ in 0..3 {
        let start = Instant::now();
        for chunk in 0..TOTAL / CHUNK {
            let r = c.fs.handle(&c.mem, &build::read(h, chunk * CHUNK, LIST_GPA, pages).to_bytes());
            assert_eq!(qlib::hostfs::Response::from_bytes(&r).unwrap().ret, CHUNK as i64);
        }
        hostfs = hostfs.max(TOTAL as f64 / start.elapsed().as_secs_f64() / 1e6);
        let start = Instant::now();
        for chunk in 0..TOTAL / CHUNK {
            // SAFETY: [nb, nb + CHUNK) lies in our own mapping.
            let got = unsafe { sys::syscall6(nr::PREAD64, fd, nb, CHUNK, chunk * CHUNK, 0, 0) }.unwrap();
            assert_eq!(got, CHUNK);
        }
        native = native.max(TOTAL as f64 / start.elapsed().as_secs_f64() / 1e6);
    }
    report(
        "hostfs sequential read (64 MiB, 1 MiB requests, 256 guest pages each)",
        hostfs,
        "MB/s",
        native,
        "pread64 1 MiB",
    );
    // Every page of every chunk arrived where the list put it.
    for chunk in 0..TOTAL / CHUNK {
        let r = c.fs.handle(&c.mem, &build::read(h, chunk * CHUNK, LIST_GPA, pages).to_bytes());
        assert_eq!(qlib::hostfs::Response::from_bytes(&r).unwrap().ret, CHUNK as i64);
        for i in (0..pages).step_by(17) {
            let g: GuestIovec = c.mem.read_obj(LIST_GPA + 16 * i).unwrap();
            let mut page = vec![0u8; PAGE as usize];
            c.mem.read(g.gpa, &mut page).unwrap();
            let at = (chunk * CHUNK + i * PAGE) as usize;
            assert_eq!(page, big[at..at + PAGE as usize]);
        }
    }

    // Sequential write from the same scattered pages.
    let w = c.open(root, b"out", o::O_WRONLY | o::O_CREAT | o::O_TRUNC, 0o644).unwrap();
    let out = std::fs::File::create(t.at("native-out")).unwrap();
    let out_fd = std::os::fd::AsRawFd::as_raw_fd(&out) as u64;
    let (mut hostfs, mut native) = (0f64, 0f64);
    for _ in 0..3 {
        let start = Instant::now();
        for chunk in 0..TOTAL / CHUNK {
            let r = c.fs.handle(&c.mem, &build::write(w, chunk * CHUNK, LIST_GPA, pages).to_bytes());
            assert_eq!(qlib::hostfs::Response::from_bytes(&r).unwrap().ret, CHUNK as i64);
        }
        hostfs = hostfs.max(TOTAL as f64 / start.elapsed().as_secs_f64() / 1e6);
        let start = Instant::now();
        for chunk in 0..TOTAL / CHUNK {
            // SAFETY: [nb, nb + CHUNK) lies in our own mapping.
            let put = unsafe { sys::syscall6(nr::PWRITE64, out_fd, nb, CHUNK, chunk * CHUNK, 0, 0) }.unwrap();
            assert_eq!(put, CHUNK);
        }
        native = native.max(TOTAL as f64 / start.elapsed().as_secs_f64() / 1e6);
    }
    report(
        "hostfs sequential write (64 MiB, 1 MiB requests, 256 guest pages each)",
        hostfs,
        "MB/s",
        native,
        "pwrite64 1 MiB",
    );
    // The written file is the guest's pages in list order, chunk after chunk.
    let written = std::fs::read(t.at("out")).unwrap();
    assert_eq!(written.len() as u64, TOTAL);
    let mut guest_chunk = vec![0u8; CHUNK as usize];
    for i in 0..pages {
        let g: GuestIovec = c.mem.read_obj(LIST_GPA + 16 * i).unwrap();
        c.mem.read(g.gpa, &mut guest_chunk[(i * PAGE) as usize..((i + 1) * PAGE) as usize]).unwrap();
    }
    assert!(written.chunks(CHUNK as usize).all(|w| w == &guest_chunk[..]));
}
