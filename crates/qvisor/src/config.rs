//! quark-sandbox's command line.

use crate::hostnet::netns::Mode as NetMode;
use std::path::PathBuf;

/// Default guest memory.
pub const DEFAULT_MEMORY: u64 = 256 << 20;
/// Default task limit inside the sandbox.
pub const DEFAULT_PIDS_LIMIT: u32 = 1024;
/// Default hang timeout (a vCPU busy in supervisor mode without progress).
pub const DEFAULT_HANG_TIMEOUT_S: u64 = 10;

/// Everything one sandbox run needs.
#[derive(Debug, Clone)]
pub struct Config {
    pub rootfs: Option<PathBuf>,
    pub readonly: bool,
    pub cpus: u32,
    pub memory: u64,
    pub env: Vec<String>,
    pub cwd: String,
    pub hostname: String,
    pub uid: u32,
    pub gid: u32,
    pub pids_limit: u32,
    pub log: Option<PathBuf>,
    pub stats_file: Option<PathBuf>,
    pub id: String,
    pub debug: bool,
    /// Log every guest system call with its arguments and result.
    pub strace: bool,
    pub check: bool,
    pub net: NetMode,
    /// Most host sockets the guest may hold open (`--max-sockets`).
    pub max_sockets: usize,
    pub hang_timeout_s: u64,
    pub test_hooks: bool,
    pub die_with_parent: bool,
    pub argv: Vec<String>,
    pub help: bool,
    pub version: bool,
}

/// The usage text.
pub const USAGE: &str = "\
quark-sandbox: run one program in a Quark sandbox (a KVM VM with the qkernel guest kernel)

Usage:
  quark-sandbox --rootfs DIR [OPTIONS] -- PROGRAM [ARGS...]
  quark-sandbox --check [OPTIONS]

Options:
  --rootfs DIR         container root filesystem (required to run a program)
  --read-only          serve the root filesystem read-only
  --cpus N             virtual CPUs (default 1, at most 64)
  --memory SIZE        guest memory, e.g. 256M, 1G (default 256M)
  --env K=V            environment variable of the program (repeatable; nothing is inherited)
  --cwd DIR            working directory inside the sandbox (default /)
  --hostname NAME      hostname inside the sandbox (default: the sandbox id)
  --user UID[:GID]     identity of the program (default 0:0)
  --pids-limit N       most tasks inside the sandbox (default 1024)
  --net MODE           none (a fresh namespace with loopback only, default), host (the host's namespace,
                       including services on its loopback) or ns:PATH (an existing namespace, e.g.
                       /run/netns/NAME from `ip netns add`)
  --max-sockets N      most host sockets (TCP/UDP) the sandbox may hold open (default 4096)
  --log FILE           append diagnostics of the VMM and guest kernel to FILE
  --stats-file FILE    append KVM and guest counters as JSON when the sandbox ends (benchmarks)
  --id ID              sandbox id (default: generated)
  --debug              verbose guest-kernel diagnostics in the log
  --strace             log every guest system call (pid, name, arguments, result); slow
  --hang-timeout SECS  abort when a vCPU spends this long in the guest kernel without progress (default 10)
  --check              boot the guest, run its platform self-test, print facts as JSON, and exit
  --die-with-parent    end the sandbox (SIGKILL) when the process that started quark-sandbox dies
  --test-hooks         enable test-only hooks (used by Quark's test suite; never in production)
  -h, --help           this text
  -V, --version        print the version

Environment: QUARK_HOSTFS_QUEUE=never|always|BYTES|default chooses how file data moves
between host files and the guest: synchronous VMM calls, or the queue (the task parks and
the vCPU runs others). default: each read/write's first MiB synchronous, the rest queued
(measured; see the section Which path of docs/hostfs.md).

Signals: SIGINT, SIGTERM, SIGHUP and SIGQUIT sent to quark-sandbox are delivered to the
sandbox's first process (PID 1), which ignores those it has no handler for, like a
container's init.

Exit status: the program's status; 128+N when it was killed by signal N; 125 when the
sandbox failed (guest kernel panic, hang, VM error), 126 when the program could not be
executed, 127 when it was not found. Diagnostics go to the --log file, never to the
program's stdout/stderr; fatal errors also print one line on stderr.
";

/// Parses a size with an optional K/M/G suffix (powers of 1024).
pub fn parse_size(s: &str) -> Result<u64, String> {
    let s = s.trim();
    let (num, mult) = match s.chars().last() {
        Some('k' | 'K') => (&s[..s.len() - 1], 1u64 << 10),
        Some('m' | 'M') => (&s[..s.len() - 1], 1 << 20),
        Some('g' | 'G') => (&s[..s.len() - 1], 1 << 30),
        _ => (s, 1),
    };
    let n: u64 =
        num.parse().map_err(|_| format!("invalid size {s:?}: use a number with an optional K, M or G suffix"))?;
    n.checked_mul(mult).ok_or_else(|| format!("size {s:?} is too large"))
}

impl Config {
    /// Parses arguments (without the program name).
    pub fn parse(args: &[String]) -> Result<Config, String> {
        let mut c = Config {
            rootfs: None,
            readonly: false,
            cpus: 1,
            memory: DEFAULT_MEMORY,
            env: Vec::new(),
            cwd: "/".into(),
            hostname: String::new(),
            uid: 0,
            gid: 0,
            pids_limit: DEFAULT_PIDS_LIMIT,
            log: None,
            stats_file: None,
            id: String::new(),
            debug: false,
            strace: false,
            check: false,
            net: NetMode::None,
            max_sockets: crate::hostnet::DEFAULT_MAX_SOCKETS,
            hang_timeout_s: DEFAULT_HANG_TIMEOUT_S,
            test_hooks: false,
            die_with_parent: false,
            argv: Vec::new(),
            help: false,
            version: false,
        };
        let mut i = 0;
        let value = |i: &mut usize, name: &str| -> Result<String, String> {
            *i += 1;
            args.get(*i).cloned().ok_or_else(|| format!("{name} needs a value (see --help)"))
        };
        while i < args.len() {
            let a = args[i].as_str();
            // --opt=value is accepted too.
            let (name, inline) = match a.split_once('=') {
                Some((n, v)) if n.starts_with("--") => (n, Some(v.to_string())),
                _ => (a, None),
            };
            let val = |i: &mut usize| match &inline {
                Some(v) => Ok(v.clone()),
                None => value(i, name),
            };
            match name {
                "--" => {
                    c.argv = args[i + 1..].to_vec();
                    break;
                }
                "-h" | "--help" => c.help = true,
                "-V" | "--version" => c.version = true,
                "--rootfs" => c.rootfs = Some(PathBuf::from(val(&mut i)?)),
                "--read-only" => c.readonly = true,
                "--cpus" => {
                    let v = val(&mut i)?;
                    c.cpus = v.parse().map_err(|_| format!("invalid --cpus {v:?}"))?;
                    if c.cpus == 0 || c.cpus > qlib::layout::MAX_VCPUS {
                        return Err(format!("--cpus must be between 1 and {}", qlib::layout::MAX_VCPUS));
                    }
                }
                "--memory" => {
                    c.memory = parse_size(&val(&mut i)?)?;
                    if c.memory < 16 << 20 {
                        return Err("--memory must be at least 16M".into());
                    }
                    c.memory = qlib::layout::align_up(c.memory, 2 << 20).ok_or("--memory is too large")?;
                }
                "--env" => {
                    let v = val(&mut i)?;
                    if !v.contains('=') {
                        return Err(format!("--env {v:?} must have the form KEY=VALUE"));
                    }
                    c.env.push(v);
                }
                "--cwd" => {
                    c.cwd = val(&mut i)?;
                    if !c.cwd.starts_with('/') {
                        return Err("--cwd must be an absolute path inside the sandbox".into());
                    }
                }
                "--hostname" => c.hostname = val(&mut i)?,
                "--user" => {
                    let v = val(&mut i)?;
                    let (u, g) = v.split_once(':').unwrap_or((&v, "0"));
                    c.uid = u.parse().map_err(|_| format!("invalid --user {v:?}: use numeric UID[:GID]"))?;
                    c.gid = g.parse().map_err(|_| format!("invalid --user {v:?}: use numeric UID[:GID]"))?;
                }
                "--pids-limit" => {
                    let v = val(&mut i)?;
                    c.pids_limit = v.parse().map_err(|_| format!("invalid --pids-limit {v:?}"))?;
                    if c.pids_limit == 0 {
                        return Err("--pids-limit must be at least 1".into());
                    }
                }
                "--net" => {
                    let v = val(&mut i)?;
                    c.net = NetMode::parse(&v).map_err(|e| e.to_string())?;
                }
                "--max-sockets" => {
                    let v = val(&mut i)?;
                    c.max_sockets = v.parse().map_err(|_| format!("invalid --max-sockets {v:?}"))?;
                    if c.max_sockets == 0 || c.max_sockets > 1 << 20 {
                        return Err("--max-sockets must be between 1 and 1048576".into());
                    }
                }
                "--log" => c.log = Some(PathBuf::from(val(&mut i)?)),
                "--stats-file" => c.stats_file = Some(PathBuf::from(val(&mut i)?)),
                "--id" => c.id = val(&mut i)?,
                "--debug" => c.debug = true,
                "--strace" => c.strace = true,
                "--check" => c.check = true,
                "--hang-timeout" => {
                    let v = val(&mut i)?;
                    c.hang_timeout_s = v.parse().map_err(|_| format!("invalid --hang-timeout {v:?}"))?;
                }
                "--test-hooks" => c.test_hooks = true,
                "--die-with-parent" => c.die_with_parent = true,
                other if other.starts_with('-') => return Err(format!("unknown option {other} (see --help)")),
                _ => {
                    // The program starts at the first non-option argument.
                    c.argv = args[i..].to_vec();
                    break;
                }
            }
            i += 1;
        }
        if c.help || c.version {
            return Ok(c);
        }
        if c.id.is_empty() {
            c.id = format!(
                "{:016x}",
                crate::sys::clock_ns(crate::sys::CLOCK_REALTIME) ^ ((crate::sys::getpid() as u64) << 40)
            );
        }
        if c.hostname.is_empty() {
            c.hostname = c.id.chars().take(12).collect();
        }
        if !c.check {
            if c.rootfs.is_none() {
                return Err("--rootfs DIR is required (see --help)".into());
            }
            if c.argv.is_empty() {
                return Err("no program given: quark-sandbox --rootfs DIR -- PROGRAM [ARGS...]".into());
            }
        }
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn args(s: &[&str]) -> Vec<String> {
        s.iter().map(|x| x.to_string()).collect()
    }

    #[test]
    fn parses_a_run() {
        let c = Config::parse(&args(&[
            "--rootfs",
            "/r",
            "--cpus",
            "2",
            "--memory=64M",
            "--env",
            "A=1",
            "--user",
            "1000:1000",
            "--",
            "/bin/sh",
            "-c",
            "x",
        ]))
        .unwrap();
        assert_eq!(c.rootfs.as_deref(), Some(std::path::Path::new("/r")));
        assert_eq!(c.cpus, 2);
        assert_eq!(c.memory, 64 << 20);
        assert_eq!(c.env, vec!["A=1"]);
        assert_eq!((c.uid, c.gid), (1000, 1000));
        assert_eq!(c.argv, vec!["/bin/sh", "-c", "x"]);
        assert_eq!(c.cwd, "/");
        assert_eq!(c.net, NetMode::None);
        let c = Config::parse(&args(&["--rootfs", "/r", "--net", "ns:/run/netns/x", "--", "x"])).unwrap();
        assert_eq!(c.net, NetMode::Ns("/run/netns/x".into()));
        let e = Config::parse(&args(&["--rootfs", "/r", "--net", "bridge", "--", "x"])).unwrap_err();
        assert!(e.contains("ns:/path/to/netns"), "{e}");
    }

    #[test]
    fn rejects_bad_input_with_guidance() {
        assert!(Config::parse(&args(&["--", "/x"])).unwrap_err().contains("--rootfs"));
        assert!(Config::parse(&args(&["--rootfs", "/r"])).unwrap_err().contains("no program"));
        assert!(Config::parse(&args(&["--rootfs", "/r", "--cpus", "0", "--", "x"])).is_err());
        assert!(Config::parse(&args(&["--rootfs", "/r", "--memory", "1M", "--", "x"])).is_err());
        assert!(Config::parse(&args(&["--rootfs", "/r", "--env", "NOEQ", "--", "x"])).is_err());
        assert!(Config::parse(&args(&["--bogus"])).unwrap_err().contains("unknown option"));
        assert!(Config::parse(&args(&["--rootfs"])).unwrap_err().contains("needs a value"));
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_size("256M").unwrap(), 256 << 20);
        assert_eq!(parse_size("1g").unwrap(), 1 << 30);
        assert_eq!(parse_size("4096").unwrap(), 4096);
        assert!(parse_size("12X").is_err());
        assert!(parse_size("99999999999999G").is_err());
    }

    #[test]
    fn check_needs_no_program() {
        let c = Config::parse(&args(&["--check"])).unwrap();
        assert!(c.check);
        assert!(!c.id.is_empty());
    }
}
