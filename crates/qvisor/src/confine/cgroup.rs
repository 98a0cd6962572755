//! A cgroup per sandbox, when the host lets us make one: the memory limit
//! sits above guest RAM plus VMM overhead (the guest enforces the user's
//! limit itself; the host cgroup only bounds the VMM), and a small pids
//! limit (the VMM never creates processes after start-up).

use std::path::{Path, PathBuf};

/// Bytes the VMM may use beyond guest RAM before the cgroup stops it.
pub const VMM_OVERHEAD: u64 = 128 << 20;

/// The cgroup directories made for one sandbox (removed on drop).
pub struct Cgroup {
    dirs: Vec<PathBuf>,
}

fn write(p: &Path, v: &str) -> std::io::Result<()> {
    std::fs::write(p, v)
}

impl Cgroup {
    /// Creates `quark/<id>` under the memory and pids controllers (v1) or
    /// the unified hierarchy (v2), with the limits set, and moves `pid` in.
    /// Returns an error string when the host does not allow it.
    pub fn create(root: &Path, id: &str, pid: i32, guest_ram: u64, pids: u64) -> Result<Cgroup, String> {
        let mem_limit = (guest_ram + VMM_OVERHEAD).to_string();
        let mut cg = Cgroup { dirs: Vec::new() };
        let unified = root.join("cgroup.controllers").exists();
        let err = |what: &str, p: &Path, e: std::io::Error| format!("{what} {}: {e}", p.display());
        if unified {
            let dir = root.join("quark").join(id);
            std::fs::create_dir_all(&dir).map_err(|e| err("creating", &dir, e))?;
            cg.dirs.push(dir.clone());
            let _ = write(&root.join("quark/cgroup.subtree_control"), "+memory +pids");
            write(&dir.join("memory.max"), &mem_limit).map_err(|e| err("writing", &dir, e))?;
            write(&dir.join("pids.max"), &pids.to_string()).map_err(|e| err("writing", &dir, e))?;
            write(&dir.join("cgroup.procs"), &pid.to_string()).map_err(|e| err("joining", &dir, e))?;
        } else {
            for (ctrl, file, value) in
                [("memory", "memory.limit_in_bytes", mem_limit.as_str()), ("pids", "pids.max", &pids.to_string())]
            {
                let base = root.join(ctrl);
                if !base.is_dir() {
                    continue;
                }
                let dir = base.join("quark").join(id);
                std::fs::create_dir_all(&dir).map_err(|e| err("creating", &dir, e))?;
                cg.dirs.push(dir.clone());
                write(&dir.join(file), value).map_err(|e| err("writing", &dir.join(file), e))?;
                write(&dir.join("cgroup.procs"), &pid.to_string()).map_err(|e| err("joining", &dir, e))?;
            }
            if cg.dirs.is_empty() {
                return Err("no memory or pids controller is mounted".into());
            }
        }
        Ok(cg)
    }

    /// The directories (for logs).
    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }
}

impl Drop for Cgroup {
    fn drop(&mut self) {
        for d in &self.dirs {
            // The sandbox has exited, so the group is empty and rmdir works.
            let _ = std::fs::remove_dir(d);
        }
    }
}
