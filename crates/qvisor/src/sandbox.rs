//! One sandbox run, from the command line to the exit status.
//!
//! ```text
//! quark-sandbox (parent, host namespaces)      child: PID 1 of a new PID namespace
//!   open log, /dev/kvm                          isolate filesystem (root = nodev bind, pivot to empty tmpfs)
//!   unshare namespaces, fork ─────────────────► create VM, memory, vCPUs; build guest memory
//!   join child to a cgroup                      spawn vCPU threads (parked)
//!   forward signals, wait                       drop capabilities, no_new_privs, seccomp (all threads)
//!   exit with the child's status  ◄──────────── release vCPUs; supervise (exit, hang watchdog); exit
//! ```

use crate::boot::{self, BootConfig, InitProcess};
use crate::config::Config;
use crate::confine::{self, cgroup::Cgroup, seccomp};
use crate::cpuid;
use crate::flavour;
use crate::kernel_image::KernelImage;
use crate::kvm::{ioctl as kvmio, Kvm, Vcpu};
use crate::log::Log;
use crate::memory::GuestMemory;
use crate::rootfs::RootFs;
use crate::services::{SandboxExit, Services};
use crate::sys::{self, Errno};
use crate::vcpu::{self, Sample, KICK_SIGNAL};
use qlib::boot::{clock_mult_shift, flags, BootParams, Flavour};
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Barrier, Condvar, Mutex};
use std::time::Duration;

/// Exit status for a failed sandbox (guest kernel panic, hang, VM error).
pub const EXIT_SANDBOX_FAILED: i32 = 125;
/// Exit status when the program exists but cannot be executed.
pub const EXIT_CANNOT_EXECUTE: i32 = 126;
/// Exit status when the program was not found.
pub const EXIT_NOT_FOUND: i32 = 127;

static CHILD: AtomicI32 = AtomicI32::new(0);

extern "C" fn forward_signal(sig: i32) {
    let child = CHILD.load(Ordering::SeqCst);
    if child > 0 {
        let _ = sys::kill(child, sig as u32);
    }
}

fn open_append(path: &Option<std::path::PathBuf>) -> Result<Option<std::fs::File>, String> {
    match path {
        None => Ok(None),
        Some(p) => std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(p)
            .map(Some)
            .map_err(|e| format!("cannot open {}: {e}", p.display())),
    }
}

/// Runs the sandbox described by `cfg`; returns the process exit status.
pub fn launch(cfg: &Config) -> i32 {
    let (log_file, stats_file) = match (open_append(&cfg.log), open_append(&cfg.stats_file)) {
        (Ok(l), Ok(s)) => (l, s),
        (Err(e), _) | (_, Err(e)) => {
            eprintln!("quark-sandbox: {e}");
            return EXIT_SANDBOX_FAILED;
        }
    };
    let kvm = match Kvm::open() {
        Ok(k) => k,
        Err(e) => {
            eprintln!(
                "quark-sandbox: cannot open /dev/kvm: {e}; sandboxes need KVM (run `quark check` for what to fix)"
            );
            return EXIT_SANDBOX_FAILED;
        }
    };
    if cfg.die_with_parent {
        if let Err(e) = confine::die_with_parent() {
            eprintln!("quark-sandbox: {e}");
            return EXIT_SANDBOX_FAILED;
        }
    }
    // Facts that need the host's /sys, read before the child hides it.
    let flavour = flavour::detect();
    if let Err(e) = confine::unshare_pid_namespace() {
        eprintln!("quark-sandbox: {e}");
        return EXIT_SANDBOX_FAILED;
    }
    // The child waits until the parent has put it in its cgroup.
    let (go_read, go_write) = match sys::pipe() {
        Ok(p) => p,
        Err(e) => {
            eprintln!("quark-sandbox: pipe: {}", e.description());
            return EXIT_SANDBOX_FAILED;
        }
    };
    let child = match confine::fork() {
        Ok(c) => c,
        Err(e) => {
            eprintln!("quark-sandbox: {e}");
            return EXIT_SANDBOX_FAILED;
        }
    };
    if child == 0 {
        drop(go_write);
        let log = Log::new(log_file);
        let mut b = [0u8; 1];
        if !matches!(std::io::Read::read(&mut std::fs::File::from(go_read), &mut b), Ok(1)) {
            std::process::exit(EXIT_SANDBOX_FAILED);
        }
        let code = run_child(cfg, kvm, &log, stats_file, flavour);
        log.vmm("info", &format!("exiting with status {code}"));
        std::process::exit(code);
    }
    drop(kvm);
    drop(stats_file);
    drop(go_read);
    // Parent: put the child in a cgroup, forward signals, wait.
    CHILD.store(child, Ordering::SeqCst);
    for sig in [1u32, 2, 3, 15] {
        let _ = sys::set_signal_handler(sig, forward_signal);
    }
    let log = Log::new(log_file);
    let cgroup = match Cgroup::create(
        std::path::Path::new("/sys/fs/cgroup"),
        &cfg.id,
        child,
        cfg.memory,
        cfg.cpus as u64 + 16,
    ) {
        Ok(cg) => {
            log.vmm("info", &format!("cgroup: {:?}", cg.dirs()));
            Some(cg)
        }
        Err(e) => {
            log.vmm("warn", &format!("running without a cgroup: {e}"));
            None
        }
    };
    let _ = std::io::Write::write_all(&mut std::fs::File::from(go_write), b"g");
    let status = match sys::waitpid(child) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("quark-sandbox: waiting for the sandbox failed: {}", e.description());
            return EXIT_SANDBOX_FAILED;
        }
    };
    drop(cgroup);
    let signal = status & 0x7f;
    if signal == 31 {
        let msg = "the VMM was killed by its seccomp filter (it made a forbidden host system call)";
        log.vmm("error", msg);
        eprintln!("quark-sandbox: sandbox {} failed: {msg}", cfg.id);
        return EXIT_SANDBOX_FAILED;
    }
    if signal != 0 && signal != 0x7f {
        log.vmm("error", &format!("the VMM was killed by signal {signal}"));
    }
    sys::status_to_exit_code(status)
}

fn run_child(cfg: &Config, kvm: Kvm, log: &Log, stats_file: Option<std::fs::File>, flavour: Flavour) -> i32 {
    match run_vm(cfg, kvm, log, stats_file, flavour) {
        Ok(code) => code,
        Err(e) => {
            log.vmm("error", &e);
            eprintln!("quark-sandbox: {e}");
            EXIT_SANDBOX_FAILED
        }
    }
}

fn host_random(buf: &mut [u8]) {
    // SAFETY: `buf` is valid for writes of its length.
    let _ = unsafe { sys::syscall3(sys::nr::GETRANDOM, buf.as_mut_ptr() as u64, buf.len() as u64, 0) };
}

fn run_vm(
    cfg: &Config,
    kvm: Kvm,
    log: &Log,
    stats_file: Option<std::fs::File>,
    flavour: Flavour,
) -> Result<i32, String> {
    let t0 = sys::clock_ns(sys::CLOCK_MONOTONIC);
    sys::single_malloc_arena();
    // A process group of its own: terminal signals reach the parent, which
    // forwards them exactly once (to the guest's init, through events.rs).
    // SAFETY: setpgid(0, 0) takes integers.
    let _ = unsafe { sys::syscall3(sys::nr::SETPGID, 0, 0, 0) };
    confine::die_with_parent().map_err(|e| e.to_string())?;
    confine::unshare_namespaces(cfg.net.unshares()).map_err(|e| e.to_string())?;
    // The network namespace: joined or set up before any thread exists and
    // while /proc and the namespace path are still reachable.
    let prepared = crate::hostnet::netns::prepare(&cfg.net).map_err(|e| e.to_string())?;
    let root: OwnedFd = confine::isolate_filesystem(cfg.rootfs.as_deref(), cfg.readonly).map_err(|e| e.to_string())?;
    confine::set_hostname(cfg.hostname.as_bytes()).map_err(|e| e.to_string())?;

    log.vmm("info", &format!("network: {:?} ({prepared:?})", cfg.net));
    log.vmm(
        "info",
        &format!("sandbox {} on a {} host, {} vCPU(s), {} MiB", cfg.id, flavour.name(), cfg.cpus, cfg.memory >> 20),
    );
    let kernel = KernelImage::load().map_err(|e| e.to_string())?;
    let mem = GuestMemory::new(cfg.memory).map_err(|e| e.to_string())?;
    let vm = kvm.create_vm().map_err(|e| e.to_string())?;
    vm.create_irqchip().map_err(|e| e.to_string())?;
    // A stray VMCALL must be a #UD in the guest, not a vCPU that KVM keeps
    // re-patching forever (docs/platform.md).
    if let Err(e) = vm.enable_cap(kvmio::KVM_CAP_DISABLE_QUIRKS2, kvmio::KVM_X86_QUIRK_FIX_HYPERCALL_INSN) {
        log.vmm("warn", &format!("cannot disable the hypercall-patching quirk: {e}"));
    }
    if flavour == Flavour::Vmx && cfg.memory <= 0xfffb_d000 {
        vm.set_tss_addr(0xfffb_d000).map_err(|e| e.to_string())?;
    }
    vm.set_memory(0, 0, mem.size(), mem.host_base()).map_err(|e| e.to_string())?;
    let supported = kvm.supported_cpuid().map_err(|e| e.to_string())?;
    let mmap_size = kvm.vcpu_mmap_size().map_err(|e| e.to_string())?;
    let vcpus: Vec<Vcpu> =
        (0..cfg.cpus).map(|i| vm.create_vcpu(i, mmap_size)).collect::<Result<_, _>>().map_err(|e| e.to_string())?;
    let cpuid0 = cpuid::guest_cpuid(&supported, 0, flavour);

    let tsc_khz = vcpus[0].tsc_khz().map_err(|e| e.to_string())?;
    let (tsc_mult, tsc_shift) = clock_mult_shift(tsc_khz);
    let tsc_base = vcpus[0].msr(0x10).map_err(|e| e.to_string())?;
    let mut seed = [0u8; 32];
    host_random(&mut seed);
    let mut flag_bits = 0;
    if cfg.debug {
        flag_bits |= flags::DEBUG;
    }
    if cfg.check {
        flag_bits |= flags::CHECK_ONLY;
    }
    if cpuid0.use_xsave {
        flag_bits |= flags::USE_XSAVE;
    }
    if cfg.test_hooks {
        flag_bits |= flags::TEST_HOOKS;
    }
    if cfg.readonly {
        flag_bits |= flags::READ_ONLY_ROOT;
    }
    if cfg.strace {
        flag_bits |= flags::STRACE;
    }
    let params = BootParams {
        flags: flag_bits,
        flavour: flavour as u32,
        pids_limit: cfg.pids_limit,
        xcr0: cpuid0.xcr0,
        fpu_state_size: cpuid0.fpu_state_size,
        tsc_khz,
        tsc_mult,
        tsc_shift,
        tsc_base,
        monotonic_base_ns: sys::clock_ns(sys::CLOCK_MONOTONIC),
        realtime_base_ns: sys::clock_ns(sys::CLOCK_REALTIME),
        seed,
        user_mem_limit: cfg.memory,
        ..BootParams::default()
    };
    let init = InitProcess {
        argv: cfg.argv.iter().map(|s| s.as_bytes().to_vec()).collect(),
        env: cfg.env.iter().map(|s| s.as_bytes().to_vec()).collect(),
        cwd: cfg.cwd.as_bytes().to_vec(),
        hostname: cfg.hostname.as_bytes().to_vec(),
        uid: cfg.uid,
        gid: cfg.gid,
    };
    let layout =
        boot::prepare(&mem, &kernel, BootConfig { vcpus: cfg.cpus, init: &init, params }).map_err(|e| e.to_string())?;
    for v in &vcpus {
        let c = cpuid::guest_cpuid(&supported, v.id, flavour);
        vcpu::configure(v, &layout, cfg.cpus, kernel.header.entry, kernel.header.syscall_entry, &c)
            .map_err(|e| format!("configuring vCPU {}: {e}", v.id))?;
    }
    let stats_fds: Vec<_> = vcpus.iter().map(|v| v.stats().ok()).collect();
    // Queued host calls: the guest rings this doorbell only when the I/O
    // thread sleeps. With KVM's ioeventfd the port write signals the eventfd
    // in the kernel; otherwise the vCPU thread relays it.
    let doorbell = shmq::host::EventFd::new().map_err(|e| format!("hostq doorbell: {e}"))?;
    let relay = match vm.ioeventfd(qlib::layout::port::HOSTQ_DOORBELL, doorbell.as_fd().as_raw_fd()) {
        Ok(()) => None,
        Err(e) => {
            log.vmm("info", &format!("hostq: {e}; the vCPU threads relay the doorbell"));
            Some(doorbell.try_clone().map_err(|e| format!("hostq doorbell: {e}"))?)
        }
    };

    let n = cfg.cpus as usize;
    // The file service gets its own descriptor of the root (the loader's
    // RootFs keeps the other). Constructed before the seccomp filter: it
    // calls fstat, fstatfs and umask.
    let nofile = nofile_limit(cfg.max_sockets);
    let hostfs_root =
        sys::dup_cloexec(root.as_raw_fd()).map_err(|e| format!("duplicating the root descriptor: {e:?}"))?;
    let hostfs = crate::hostfs::HostFs::with_capacity(
        hostfs_root,
        cfg.readonly,
        (nofile as usize).saturating_sub(cfg.max_sockets + crate::hostnet::netns::NOFILE_RESERVE as usize),
    )
    .map_err(|e| e.to_string())?;
    let net = crate::hostnet::HostNet::new(cfg.max_sockets)
        .map_err(|e| format!("starting the socket service: {}", e.description()))?;
    let svc = Arc::new(Services {
        mem,
        rootfs: RootFs::new(root),
        hostfs,
        net,
        log: log.clone(),
        kernel,
        hcall_pa: (0..cfg.cpus).map(|i| layout.hcall_pa(i)).collect(),
        exit: Mutex::new(None),
        exit_signal: Condvar::new(),
        stopping: AtomicBool::new(false),
        vcpu_tids: (0..n).map(|_| AtomicI32::new(0)).collect(),
        sample_requested: (0..n).map(|_| AtomicBool::new(false)).collect(),
        samples: (0..n).map(|_| Mutex::new(Sample::default())).collect(),
        ready: Barrier::new(n + 2),
        check_report: Mutex::new(None),
        test_hooks: cfg.test_hooks,
        hostq_doorbell: relay,
    });
    let svc_log = log;
    vcpu::install_kick_handler().map_err(|e| format!("installing the vCPU kick handler: {}", e.description()))?;
    let events_hva = svc.mem.check(qlib::layout::HOST_EVENTS_PA, 8).map_err(|e| e.to_string())?;
    crate::events::install(vm.raw_fd(), events_hva)
        .map_err(|e| format!("installing the signal forwarding: {}", e.description()))?;
    sys::mask_signals(&[13], true); // SIGPIPE: writes to a closed stdout return EPIPE instead
    let hostq = crate::hostq::start(crate::hostq::Setup {
        mem: svc.clone(),
        area_pa: layout.hostq_pa,
        vcpus: cfg.cpus,
        dispatcher: crate::hostq::Dispatcher::sandbox(svc.clone()),
        doorbell,
        log: log.clone(),
    })?;
    let threads: Vec<_> = vcpus
        .into_iter()
        .map(|v| {
            let s = svc.clone();
            std::thread::Builder::new()
                .name(format!("vcpu{}", v.id))
                .stack_size(256 << 10)
                .spawn(move || vcpu::run_loop(v, s))
        })
        .collect::<Result<_, _>>()
        .map_err(|e| format!("starting vCPU threads: {e}"))?;

    // The socket readiness thread (docs/hostnet.md): posts host socket
    // events into the guest's ring; started before the filter (no thread
    // creation after it), released with the vCPUs.
    let net_events = Arc::new(crate::netevents::NetEvents::init(
        svc.mem.check(crate::netevents::page_pa(), qlib::layout::PAGE_SIZE).map_err(|e| e.to_string())?,
    )?);
    {
        let ne = net_events.clone();
        svc.net.set_pump(Box::new(move |net| ne.pump(net).0));
    }
    let net_tid = Arc::new(AtomicI32::new(0));
    let net_thread = {
        let s = svc.clone();
        let started = net_tid.clone();
        std::thread::Builder::new()
            .name("net-events".into())
            .stack_size(256 << 10)
            .spawn(move || {
                started.store(sys::gettid(), Ordering::SeqCst);
                s.ready.wait();
                net_events.run(&s.net, &s.stopping, crate::events::kick_guest);
            })
            .map_err(|e| format!("starting the socket events thread: {e}"))?
    };
    // Wait until every thread has finished the C library's thread start-up
    // (rseq and robust-list registration are not in the filter).
    while net_tid.load(Ordering::SeqCst) == 0 || svc.vcpu_tids.iter().any(|t| t.load(Ordering::SeqCst) == 0) {
        std::thread::sleep(Duration::from_micros(20));
    }
    // Confinement completes before any guest instruction: the vCPU threads
    // wait on the barrier until the filter is in force on all threads.
    confine::drop_privileges(nofile).map_err(|e| e.to_string())?;
    seccomp::install(&seccomp::build()).map_err(|e| format!("installing the seccomp filter: {}", e.description()))?;
    let t_ready = sys::clock_ns(sys::CLOCK_MONOTONIC);
    svc_log.vmm("info", &format!("confined and starting the guest after {} us", (t_ready - t0) / 1000));
    svc.ready.wait();

    let how = supervise(&svc, cfg, svc_log);
    svc.stopping.store(true, Ordering::SeqCst);
    let pid = sys::getpid();
    for t in &svc.vcpu_tids {
        let tid = t.load(Ordering::SeqCst);
        if tid > 0 {
            let _ = sys::tgkill(pid, tid, KICK_SIGNAL);
        }
    }
    for t in threads {
        let _ = t.join();
    }
    // The events thread sleeps in epoll_wait: the kick signal ends it.
    let _ = sys::tgkill(pid, net_tid.load(Ordering::SeqCst), KICK_SIGNAL);
    let _ = net_thread.join();
    let c = &hostq.counters;
    svc_log.vmm(
        "info",
        &format!(
            "hostq: {} requests ({} waited for a descriptor, {} hostfs on worker threads), {} completion interrupts, {} doorbells, {} sleeps",
            c.requests.load(Ordering::Relaxed),
            c.waited.load(Ordering::Relaxed),
            c.offloaded.load(Ordering::Relaxed),
            c.interrupts.load(Ordering::Relaxed),
            c.doorbells.load(Ordering::Relaxed),
            c.sleeps.load(Ordering::Relaxed)
        ),
    );
    hostq.stop();
    let t_end = sys::clock_ns(sys::CLOCK_MONOTONIC);
    svc_log.vmm("info", &format!("guest ran {} us", (t_end - t_ready) / 1000));
    if let Some(file) = stats_file {
        write_stats(file, svc.as_ref(), &stats_fds, t_ready - t0, t_end - t_ready);
    }
    drop(vm);
    Ok(report_exit(&how, cfg, flavour, svc_log))
}

fn progress(svc: &Services, i: usize) -> u64 {
    let at = qlib::layout::STATS_PA
        + std::mem::offset_of!(qlib::stats::Stats, vcpu) as u64
        + (i * std::mem::size_of::<qlib::stats::VcpuStats>()) as u64;
    match svc.mem.read_obj::<qlib::stats::VcpuStats>(at) {
        Ok(s) => s.user_returns + s.idle_entries + s.hcalls + s.interrupts + s.page_faults,
        Err(_) => 0,
    }
}

/// Waits for the sandbox to end, checking every second that no vCPU hangs
/// in the guest kernel.
fn supervise(svc: &Services, cfg: &Config, log: &Log) -> SandboxExit {
    let n = svc.vcpu_tids.len();
    let pid = sys::getpid();
    let mut last_progress = vec![u64::MAX; n];
    let mut stuck_since: Vec<Option<u64>> = vec![None; n];
    let mut guard = match svc.exit.lock() {
        Ok(g) => g,
        Err(_) => return SandboxExit::Failed("internal lock poisoned".into()),
    };
    loop {
        if let Some(how) = guard.clone() {
            return how;
        }
        let (g, _) = match svc.exit_signal.wait_timeout(guard, Duration::from_secs(1)) {
            Ok(r) => r,
            Err(_) => return SandboxExit::Failed("internal lock poisoned".into()),
        };
        guard = g;
        if guard.is_some() {
            continue;
        }
        let now = sys::clock_ns(sys::CLOCK_MONOTONIC);
        for i in 0..n {
            // Judge the sample taken at the previous tick, then ask for a new one.
            let sample = svc.samples[i].lock().map(|s| *s).unwrap_or_default();
            let p = progress(svc, i);
            if sample.taken_ns != 0 && sample.busy_in_kernel && p == last_progress[i] {
                let since = *stuck_since[i].get_or_insert(sample.taken_ns);
                if now.saturating_sub(since) >= cfg.hang_timeout_s * 1_000_000_000 {
                    let msg = format!(
                        "vCPU {i} hung in the guest kernel for {} s without progress; {}",
                        (now - since) / 1_000_000_000,
                        svc.describe_regs(&sample.regs)
                    );
                    log.vmm("error", &msg);
                    return SandboxExit::Failed(msg);
                }
            } else {
                stuck_since[i] = None;
            }
            last_progress[i] = p;
            svc.sample_requested[i].store(true, Ordering::SeqCst);
            let tid = svc.vcpu_tids[i].load(Ordering::SeqCst);
            if tid > 0 {
                let _ = sys::tgkill(pid, tid, KICK_SIGNAL);
            }
        }
    }
}

/// Writes KVM's and the guest's counters (for benchmarks) as one JSON object.
fn write_stats(mut file: std::fs::File, svc: &Services, kvm: &[Option<crate::kvm::Stats>], setup_ns: u64, run_ns: u64) {
    let mut vcpus = Vec::new();
    for (i, s) in kvm.iter().enumerate() {
        let get = |name: &str| s.as_ref().and_then(|s| s.get(name)).map(|v| v.to_string()).unwrap_or("null".into());
        let at = qlib::layout::STATS_PA
            + std::mem::offset_of!(qlib::stats::Stats, vcpu) as u64
            + (i * std::mem::size_of::<qlib::stats::VcpuStats>()) as u64;
        let g: qlib::stats::VcpuStats = svc.mem.read_obj(at).unwrap_or_default();
        vcpus.push(format!(
            "{{\"insn_emulation\":{},\"exits\":{},\"io_exits\":{},\"halt_exits\":{},\"syscalls\":{},\"page_faults\":{},\"hcalls\":{},\"interrupts\":{},\"syscalls_via_pf\":{},\"user_returns\":{},\"copied_bytes\":{}}}",
            get("insn_emulation"), get("exits"), get("io_exits"), get("halt_exits"), g.syscalls, g.page_faults, g.hcalls, g.interrupts, g.syscalls_via_pf, g.user_returns, g.copied_bytes
        ));
    }
    let text = format!("{{\"setup_ns\":{setup_ns},\"run_ns\":{run_ns},\"vcpus\":[{}]}}\n", vcpus.join(","));
    // Opened before confinement; writing needs no path access.
    let _ = std::io::Write::write_all(&mut file, text.as_bytes());
}

fn report_exit(how: &SandboxExit, cfg: &Config, flavour: Flavour, log: &Log) -> i32 {
    let log_hint = cfg.log.as_ref().map(|p| format!(" (details in {})", p.display())).unwrap_or_default();
    match how {
        SandboxExit::Exited(code) => *code,
        SandboxExit::Signaled(sig) => 128 + *sig as i32,
        SandboxExit::CheckDone { via_pf, direct } => {
            println!(
                "{{\"flavour\":\"{}\",\"booted\":true,\"syscalls_via_pf_redirect\":{via_pf},\"syscalls_direct\":{direct}}}",
                flavour.name()
            );
            0
        }
        SandboxExit::ExecFailed { errno, path } => {
            let what = if *errno == Errno::ENOENT && !path.contains('/') {
                "executable file not found in $PATH".to_string()
            } else {
                errno.description().to_lowercase()
            };
            eprintln!("quark-sandbox: cannot run {path}: {what}{log_hint}");
            log.vmm("error", &format!("exec {path}: {}", errno.name()));
            if *errno == Errno::ENOENT {
                EXIT_NOT_FOUND
            } else {
                EXIT_CANNOT_EXECUTE
            }
        }
        SandboxExit::Failed(msg) => {
            let first = msg.split(';').next().unwrap_or(msg);
            eprintln!("quark-sandbox: sandbox {} failed: {first}{log_hint}", cfg.id);
            EXIT_SANDBOX_FAILED
        }
    }
}

/// The descriptor limit of the confined VMM: room for the host sockets
/// (`max_sockets`, one descriptor each), the file service's handles and the
/// VMM's own descriptors. Raised (soft and hard) while the VMM still holds
/// CAP_SYS_RESOURCE, never beyond `fs.nr_open`; without the capability it
/// stays within the hard limit we were given.
fn nofile_limit(max_sockets: usize) -> u64 {
    let want = crate::hostnet::netns::nofile_needed(max_sockets, crate::hostfs::DEFAULT_MAX_HANDLES);
    match crate::hostnet::netns::raise_nofile(want) {
        Ok(l) => l.min(want).max(256),
        Err(_) => sys::nofile_hard_limit().unwrap_or(1024).min(want).max(256),
    }
}

impl Services {
    /// The root descriptor (for the seccomp filter's openat2 rule).
    pub fn rootfs_fd(&self) -> i32 {
        self.rootfs.root_fd()
    }
}
