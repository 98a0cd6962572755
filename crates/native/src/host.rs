//! Host facts the runtime needs: KVM presence and flavour, cgroup layout,
//! overlayfs support, root, kernel release.
//!
//! The decisions are pure functions of what a [`HostProbe`] reports, so they
//! are unit-tested with fake hosts; [`RealHost`] reads the real files.
//! KVM flavour follows `shared/probes/PVM.md` §1: `/sys/module/kvm_pvm`
//! without `kvm_intel`/`kvm_amd` is a PVM host (compat mode).

use std::io;

pub const KVM_PATH: &str = "/dev/kvm";

/// What the facts are computed from.
pub trait HostProbe {
    fn exists(&self, path: &str) -> bool;
    fn read(&self, path: &str) -> Option<String>;
    /// Opens `/dev/kvm` read-write and returns `KVM_GET_API_VERSION`.
    fn kvm_api_version(&self) -> io::Result<i32>;
    fn euid(&self) -> u32;
}

/// The machine this process runs on.
pub struct RealHost;

impl HostProbe for RealHost {
    fn exists(&self, path: &str) -> bool {
        std::path::Path::new(path).exists()
    }
    fn read(&self, path: &str) -> Option<String> {
        std::fs::read_to_string(path).ok()
    }
    fn kvm_api_version(&self) -> io::Result<i32> {
        crate::sys::kvm_api_version(KVM_PATH)
    }
    fn euid(&self) -> u32 {
        crate::sys::geteuid()
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KvmFlavour {
    Vmx,
    Svm,
    Pvm,
    Unknown,
    Absent,
}

impl KvmFlavour {
    pub fn as_str(self) -> &'static str {
        match self {
            KvmFlavour::Vmx => "vmx",
            KvmFlavour::Svm => "svm",
            KvmFlavour::Pvm => "pvm",
            KvmFlavour::Unknown => "unknown",
            KvmFlavour::Absent => "absent",
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KvmFacts {
    pub present: bool,
    pub accessible: bool,
    pub flavour: KvmFlavour,
    pub api_version: Option<i32>,
    pub detail: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum CgroupVersion {
    V1,
    V2,
    Hybrid,
    None,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CgroupFacts {
    pub version: CgroupVersion,
    pub mountpoint: String,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HostFacts {
    pub kvm: KvmFacts,
    pub cgroup: CgroupFacts,
    pub overlayfs: bool,
    pub root: bool,
    pub kernel: String,
}

pub fn host_facts(host: &dyn HostProbe) -> HostFacts {
    let kernel = host.read("/proc/sys/kernel/osrelease").map(|s| s.trim().to_owned()).unwrap_or_default();
    HostFacts {
        kvm: kvm_facts(host),
        cgroup: host
            .read("/proc/self/mountinfo")
            .map(|m| cgroup_facts(&m))
            .unwrap_or(CgroupFacts { version: CgroupVersion::None, mountpoint: String::new() }),
        overlayfs: overlayfs(host, &kernel),
        root: host.euid() == 0,
        kernel,
    }
}

fn cpu_flag(cpuinfo: &str, flag: &str) -> bool {
    cpuinfo.lines().filter(|l| l.starts_with("flags")).any(|l| l.split_whitespace().any(|f| f == flag))
}

pub fn kvm_facts(host: &dyn HostProbe) -> KvmFacts {
    let present = host.exists(KVM_PATH);
    let pvm = host.exists("/sys/module/kvm_pvm");
    let intel = host.exists("/sys/module/kvm_intel");
    let amd = host.exists("/sys/module/kvm_amd");
    let cpuinfo = host.read("/proc/cpuinfo").unwrap_or_default();

    let (flavour, why) = if !present {
        (KvmFlavour::Absent, String::new())
    } else if intel {
        (KvmFlavour::Vmx, "kvm_intel (hardware VMX)".to_owned())
    } else if amd {
        (KvmFlavour::Svm, "kvm_amd (hardware SVM)".to_owned())
    } else if pvm {
        (
            KvmFlavour::Pvm,
            "kvm_pvm without kvm_intel/kvm_amd (PVM compat mode: guest user code runs natively, guest \
             supervisor code in KVM's instruction emulator; see shared/probes/PVM.md)"
                .to_owned(),
        )
    } else if cpu_flag(&cpuinfo, "vmx") {
        (KvmFlavour::Vmx, "CPU has VMX (KVM built into the kernel)".to_owned())
    } else if cpu_flag(&cpuinfo, "svm") {
        (KvmFlavour::Svm, "CPU has SVM (KVM built into the kernel)".to_owned())
    } else {
        (
            KvmFlavour::Unknown,
            "/dev/kvm exists but no kvm_intel, kvm_amd or kvm_pvm module and no vmx/svm CPU flag".to_owned(),
        )
    };

    if !present {
        let loaded: Vec<&str> = [("kvm_intel", intel), ("kvm_amd", amd), ("kvm_pvm", pvm)]
            .iter()
            .filter(|(_, on)| *on)
            .map(|(name, _)| *name)
            .collect();
        let detail = if loaded.is_empty() {
            format!("{KVM_PATH} does not exist: this host has no KVM (load kvm_intel, kvm_amd or kvm_pvm)")
        } else {
            format!(
                "{KVM_PATH} does not exist although {} is loaded: create the device node (mknod {KVM_PATH} c 10 232)",
                loaded.join(", ")
            )
        };
        return KvmFacts { present, accessible: false, flavour, api_version: None, detail };
    }

    match host.kvm_api_version() {
        Ok(version) => KvmFacts {
            present,
            accessible: true,
            flavour,
            api_version: Some(version),
            detail: format!("{why}; KVM API version {version}"),
        },
        Err(e) => {
            let reason = match e.raw_os_error().and_then(napi::errno::lookup) {
                Some((code, text)) => format!("{code} ({text})"),
                None => e.to_string(),
            };
            KvmFacts {
                present,
                accessible: false,
                flavour,
                api_version: None,
                detail: format!(
                    "{why}; cannot use {KVM_PATH}: {reason}; run as root or as a member of the device's group"
                ),
            }
        }
    }
}

/// Undoes mountinfo's octal escapes (`\040` for a space).
fn unescape(field: &str) -> String {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'\\' && i + 4 <= bytes.len() {
            if let Ok(n) = u8::from_str_radix(field.get(i + 1..i + 4).unwrap_or(""), 8) {
                out.push(n);
                i += 4;
                continue;
            }
        }
        out.push(bytes[i]);
        i += 1;
    }
    String::from_utf8_lossy(&out).into_owned()
}

/// Decides the cgroup layout from `/proc/self/mountinfo`.
pub fn cgroup_facts(mountinfo: &str) -> CgroupFacts {
    let mut v1 = Vec::new();
    let mut v2 = Vec::new();
    for line in mountinfo.lines() {
        let Some((left, right)) = line.split_once(" - ") else {
            continue;
        };
        let Some(mountpoint) = left.split_whitespace().nth(4) else {
            continue;
        };
        match right.split_whitespace().next() {
            Some("cgroup") => v1.push(unescape(mountpoint)),
            Some("cgroup2") => v2.push(unescape(mountpoint)),
            _ => {}
        }
    }
    let parent = |p: &str| match p.rsplit_once('/') {
        Some(("", _)) => "/".to_owned(),
        Some((dir, _)) => dir.to_owned(),
        None => p.to_owned(),
    };
    match (v1.first(), v2.is_empty()) {
        (Some(first), false) => CgroupFacts { version: CgroupVersion::Hybrid, mountpoint: parent(first) },
        (Some(first), true) => CgroupFacts { version: CgroupVersion::V1, mountpoint: parent(first) },
        (None, false) => CgroupFacts {
            version: CgroupVersion::V2,
            mountpoint: v2.iter().find(|m| *m == "/sys/fs/cgroup").unwrap_or(&v2[0]).clone(),
        },
        (None, true) => CgroupFacts { version: CgroupVersion::None, mountpoint: String::new() },
    }
}

fn overlayfs(host: &dyn HostProbe, kernel: &str) -> bool {
    let listed = host
        .read("/proc/filesystems")
        .is_some_and(|f| f.lines().any(|l| l.split_whitespace().last() == Some("overlay")));
    listed
        || host.exists("/sys/module/overlay")
        || ["", ".xz", ".zst", ".gz"]
            .iter()
            .any(|ext| host.exists(&format!("/lib/modules/{kernel}/kernel/fs/overlayfs/overlay.ko{ext}")))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeMap;

    #[derive(Default)]
    struct Fake {
        paths: Vec<&'static str>,
        files: BTreeMap<&'static str, String>,
        kvm: Option<Result<i32, i32>>,
        euid: u32,
    }

    impl HostProbe for Fake {
        fn exists(&self, path: &str) -> bool {
            self.paths.contains(&path) || self.files.contains_key(path)
        }
        fn read(&self, path: &str) -> Option<String> {
            self.files.get(path).cloned()
        }
        fn kvm_api_version(&self) -> io::Result<i32> {
            match self.kvm.expect("kvm_api_version called without /dev/kvm") {
                Ok(v) => Ok(v),
                Err(errno) => Err(io::Error::from_raw_os_error(errno)),
            }
        }
        fn euid(&self) -> u32 {
            self.euid
        }
    }

    fn host(paths: &[&'static str], kvm: Option<Result<i32, i32>>) -> Fake {
        Fake { paths: paths.to_vec(), kvm, ..Fake::default() }
    }

    #[test]
    fn pvm_host() {
        let h = host(&["/dev/kvm", "/sys/module/kvm", "/sys/module/kvm_pvm"], Some(Ok(12)));
        let k = kvm_facts(&h);
        assert_eq!(k.flavour, KvmFlavour::Pvm);
        assert!(k.present && k.accessible);
        assert_eq!(k.api_version, Some(12));
        assert!(k.detail.contains("compat mode") && k.detail.contains("API version 12"), "{}", k.detail);
    }

    #[test]
    fn vmx_and_svm_win_over_pvm() {
        let h = host(&["/dev/kvm", "/sys/module/kvm_pvm", "/sys/module/kvm_intel"], Some(Ok(12)));
        assert_eq!(kvm_facts(&h).flavour, KvmFlavour::Vmx);
        let h = host(&["/dev/kvm", "/sys/module/kvm_amd"], Some(Ok(12)));
        assert_eq!(kvm_facts(&h).flavour, KvmFlavour::Svm);
    }

    #[test]
    fn built_in_kvm_falls_back_to_cpu_flags() {
        let mut h = host(&["/dev/kvm"], Some(Ok(12)));
        h.files.insert("/proc/cpuinfo", "processor\t: 0\nflags\t\t: fpu svm lm\n".into());
        assert_eq!(kvm_facts(&h).flavour, KvmFlavour::Svm);
        h.files.insert("/proc/cpuinfo", "flags\t\t: fpu lm hypervisor\n".into());
        assert_eq!(kvm_facts(&h).flavour, KvmFlavour::Unknown);
    }

    #[test]
    fn absent_and_inaccessible() {
        let k = kvm_facts(&host(&[], None));
        assert_eq!(k.flavour, KvmFlavour::Absent);
        assert!(!k.present && !k.accessible && k.api_version.is_none());
        assert!(k.detail.contains("no KVM"), "{}", k.detail);

        let k = kvm_facts(&host(&["/sys/module/kvm_intel"], None));
        assert_eq!(k.flavour, KvmFlavour::Absent);
        assert!(k.detail.contains("kvm_intel is loaded"), "{}", k.detail);

        let k = kvm_facts(&host(&["/dev/kvm", "/sys/module/kvm_intel"], Some(Err(13))));
        assert_eq!(k.flavour, KvmFlavour::Vmx);
        assert!(k.present && !k.accessible && k.api_version.is_none());
        assert!(k.detail.contains("EACCES (permission denied)"), "{}", k.detail);
    }

    const HYBRID: &str = "\
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
32 31 0:29 / /sys/fs/cgroup/cpu rw,relatime - cgroup cgroup rw,cpu
33 31 0:30 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/unified rw,relatime - cgroup2 cgroup2 rw
41 31 0:38 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
";

    #[test]
    fn cgroup_layouts() {
        assert_eq!(
            cgroup_facts(HYBRID),
            CgroupFacts { version: CgroupVersion::Hybrid, mountpoint: "/sys/fs/cgroup".into() }
        );
        let v1: String = HYBRID.lines().filter(|l| !l.contains("cgroup2")).map(|l| format!("{l}\n")).collect();
        assert_eq!(cgroup_facts(&v1).version, CgroupVersion::V1);
        assert_eq!(cgroup_facts(&v1).mountpoint, "/sys/fs/cgroup");
        let v2 = "25 20 0:22 / /sys/fs/cgroup rw,nosuid - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(cgroup_facts(v2), CgroupFacts { version: CgroupVersion::V2, mountpoint: "/sys/fs/cgroup".into() });
        let none = "22 1 8:1 / / rw - ext4 /dev/vda rw\n";
        assert_eq!(cgroup_facts(none).version, CgroupVersion::None);
        let spaced = "25 20 0:22 / /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n";
        assert_eq!(cgroup_facts(spaced).mountpoint, "/mnt/my cg");
    }

    #[test]
    fn overlayfs_sources() {
        let mut h = host(&[], None);
        h.files.insert("/proc/filesystems", "nodev\tsysfs\nnodev\toverlay\n\text4\n".into());
        assert!(overlayfs(&h, "6.1.0"));
        let h = host(&["/lib/modules/6.1.0/kernel/fs/overlayfs/overlay.ko.xz"], None);
        assert!(overlayfs(&h, "6.1.0"));
        let mut h = host(&[], None);
        h.files.insert("/proc/filesystems", "nodev\toverlayish\n".into());
        assert!(!overlayfs(&h, "6.1.0"));
    }

    #[test]
    fn whole_facts() {
        let mut h = host(&["/dev/kvm", "/sys/module/kvm_pvm", "/sys/module/overlay"], Some(Ok(12)));
        h.files.insert("/proc/sys/kernel/osrelease", "6.18.44-fc\n".into());
        h.files.insert("/proc/self/mountinfo", HYBRID.into());
        let f = host_facts(&h);
        assert_eq!(f.kernel, "6.18.44-fc");
        assert!(f.root && f.overlayfs);
        assert_eq!(f.cgroup.version, CgroupVersion::Hybrid);
        h.euid = 1000;
        assert!(!host_facts(&h).root);
    }
}
