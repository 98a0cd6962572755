//! Building and checking the guest kernel image.
//!
//! `crates/qvisor/build.rs` calls [`build_kernel`] so one `cargo build` builds
//! everything. The guest crate lives outside the workspace (it needs
//! `panic = "abort"`, a link script and target features Cargo cannot set per
//! package), so it is built by a nested `cargo build` with its own manifest,
//! its own `.cargo/config.toml` and its own target directory (sharing the
//! outer one would deadlock on Cargo's build-directory lock).
//!
//! [`check_image`] disassembles the result and rejects instructions that end
//! the VM on hosts that emulate supervisor code (docs/platform.md): SSE/AVX
//! registers, x87, MMX, POPCNT, CRC32, XGETBV, `int n`, and `int3` other than
//! the padding the compiler places between functions.

use std::path::{Path, PathBuf};
use std::process::Command;

/// Why the guest image could not be built or checked.
#[derive(Debug)]
pub enum BuildError {
    /// `cargo` could not be started.
    Spawn(std::io::Error),
    /// The nested cargo build failed; its output follows.
    Cargo(String),
    /// `objdump` (Debian's binutils) could not be run.
    Objdump(String),
    /// Forbidden instructions were found.
    Forbidden(Vec<Finding>),
}

impl std::fmt::Display for BuildError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BuildError::Spawn(e) => write!(f, "cannot run cargo to build the guest kernel: {e}"),
            BuildError::Cargo(out) => write!(f, "building the guest kernel (crates/qkernel) failed:\n{out}"),
            BuildError::Objdump(e) => {
                write!(f, "cannot disassemble the guest kernel: {e} (install binutils: scripts/prereqs.sh)")
            }
            BuildError::Forbidden(found) => {
                writeln!(
                    f,
                    "the guest kernel contains {} instruction(s) that end the VM on hosts emulating supervisor code \
                     (SSE/x87/MMX/POPCNT/CRC32/XGETBV/INT n; see docs/platform.md):",
                    found.len()
                )?;
                for x in found.iter().take(20) {
                    writeln!(f, "  {:#x} in {}: {}", x.address, x.function, x.instruction)?;
                }
                write!(
                    f,
                    "build the guest without those target features, and avoid core::fmt and core::arch intrinsics"
                )
            }
        }
    }
}

impl std::error::Error for BuildError {}

/// One forbidden instruction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Finding {
    pub address: u64,
    pub function: String,
    pub instruction: String,
}

/// Builds the guest kernel in `kernel_dir` (the `crates/qkernel` directory)
/// with extra `features`, into `target_dir`; returns the image path.
pub fn build_kernel(kernel_dir: &Path, target_dir: &Path, features: &[&str]) -> Result<PathBuf, BuildError> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(kernel_dir).arg("build").arg("--release").arg("--offline").arg("--target-dir").arg(target_dir);
    if !features.is_empty() {
        cmd.arg("--features").arg(features.join(","));
    }
    // The outer build's settings must not leak into the guest build: its
    // rustflags, wrappers (clippy), profile and target selections.
    for (k, _) in std::env::vars_os() {
        let k = k.to_string_lossy().into_owned();
        let leaks = (k.starts_with("CARGO_") && k != "CARGO_HOME")
            || matches!(
                k.as_str(),
                "RUSTFLAGS"
                    | "RUSTC_WRAPPER"
                    | "RUSTC_WORKSPACE_WRAPPER"
                    | "RUSTDOCFLAGS"
                    | "CARGO"
                    | "RUSTC"
                    | "TARGET"
                    | "HOST"
                    | "OUT_DIR"
                    | "OPT_LEVEL"
                    | "PROFILE"
                    | "DEBUG"
                    | "NUM_JOBS"
            );
        if leaks {
            cmd.env_remove(&k);
        }
    }
    let out = cmd.output().map_err(BuildError::Spawn)?;
    if !out.status.success() {
        let mut text = String::from_utf8_lossy(&out.stderr).into_owned();
        text.push_str(&String::from_utf8_lossy(&out.stdout));
        // Drop rustc's known warning about disabling SSE on this target (see
        // docs/building.md) so the real error is visible.
        let text: String = text
            .lines()
            .filter(|l| !l.contains("target feature") && !l.contains("#116344") && !l.contains("previously accepted"))
            .collect::<Vec<_>>()
            .join("\n");
        return Err(BuildError::Cargo(text));
    }
    Ok(target_dir.join("x86_64-unknown-linux-gnu").join("release").join("qkernel"))
}

/// True for an instruction (objdump AT&T text) the guest must never contain.
pub fn is_forbidden(insn: &str) -> bool {
    let mnemonic = insn.split_whitespace().next().unwrap_or("");
    // Extended state saving is allowed: FXSAVE/FXRSTOR are emulated correctly
    // everywhere, XSAVE/XRSTOR/XSETBV run only when the host selected them
    // (VMX/SVM hosts, boot flag USE_XSAVE).
    const ALLOWED: [&str; 8] = ["fxsave64", "fxrstor64", "fxsave", "fxrstor", "xsave64", "xrstor64", "xsetbv", "fnop"];
    if ALLOWED.contains(&mnemonic) {
        return false;
    }
    if insn.contains("%xmm")
        || insn.contains("%ymm")
        || insn.contains("%zmm")
        || insn.contains("%mm")
        || insn.contains("%st")
    {
        return true;
    }
    // x87 mnemonics all start with 'f' (fld, fstp, fnstcw, fxch, ...); the
    // only other 'f' mnemonic x86 has is none in our code.
    if mnemonic.starts_with('f') {
        return true;
    }
    matches!(
        mnemonic,
        "popcnt"
            | "crc32b"
            | "crc32w"
            | "crc32l"
            | "crc32q"
            | "crc32"
            | "xgetbv"
            | "ldmxcsr"
            | "stmxcsr"
            | "emms"
            | "lzcnt"
            | "tzcnt"
            | "int"
            | "into"
    )
}

/// Parses `objdump -d` output and returns the forbidden instructions.
/// `int3` is compiler padding only when a run of them is followed directly by
/// the next function's label; anywhere else it is forbidden.
pub fn scan_disassembly(text: &str) -> Vec<Finding> {
    let mut found = Vec::new();
    let mut function = String::new();
    let mut pending_int3: Vec<Finding> = Vec::new();
    for line in text.lines() {
        // "ffffffff80200000 <name>:" starts a function.
        if let Some(rest) = line.strip_suffix(">:") {
            if let Some(pos) = rest.find(" <") {
                function = rest[pos + 2..].to_string();
                pending_int3.clear(); // padding before a label
                continue;
            }
        }
        // "ffffffff80200000:\t0f 0b     \tud2"
        let mut parts = line.splitn(3, '\t');
        let (Some(addr), Some(_bytes), Some(insn)) = (parts.next(), parts.next(), parts.next()) else {
            continue;
        };
        let Ok(address) = u64::from_str_radix(addr.trim().trim_end_matches(':'), 16) else {
            continue;
        };
        let insn = insn.trim().to_string();
        if insn == "int3" {
            pending_int3.push(Finding { address, function: function.clone(), instruction: insn });
            continue;
        }
        // Code followed the int3s: they were not padding.
        found.append(&mut pending_int3);
        if is_forbidden(&insn) {
            found.push(Finding { address, function: function.clone(), instruction: insn });
        }
    }
    found
}

/// Disassembles the image with objdump and checks it.
pub fn check_image(image: &Path) -> Result<(), BuildError> {
    let out = Command::new("objdump")
        .arg("-d")
        .arg("--no-show-raw-insn")
        .arg("-M")
        .arg("suffix")
        .arg(image)
        .output()
        .map_err(|e| BuildError::Objdump(e.to_string()))?;
    if !out.status.success() {
        return Err(BuildError::Objdump(String::from_utf8_lossy(&out.stderr).into_owned()));
    }
    // --no-show-raw-insn leaves "addr:\tinsn"; normalise to three fields.
    let text = String::from_utf8_lossy(&out.stdout).replace(":\t", ":\t-\t");
    let found = scan_disassembly(&text);
    if found.is_empty() {
        Ok(())
    } else {
        Err(BuildError::Forbidden(found))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn classifies_instructions() {
        assert!(is_forbidden("movdqa %xmm0,(%rax)"));
        assert!(is_forbidden("vmovdqu %ymm1,%ymm2"));
        assert!(is_forbidden("fldl (%rax)"));
        assert!(is_forbidden("popcnt %rax,%rbx"));
        assert!(is_forbidden("crc32q %rax,%rbx"));
        assert!(is_forbidden("xgetbv"));
        assert!(is_forbidden("int $0x80"));
        assert!(is_forbidden("movq %mm0,%rax"));
        assert!(!is_forbidden("fxsave64 (%rax)"));
        assert!(!is_forbidden("movq %rsp,%gs:0x8"));
        assert!(!is_forbidden("rep movsq %ds:(%rsi),%es:(%rdi)"));
        assert!(!is_forbidden("sysretq"));
    }

    #[test]
    fn int3_padding_is_allowed_only_before_a_label() {
        let padded = "ffff0000 <a>:\nffff0000:\t-\tret\nffff0001:\t-\tint3\nffff0002:\t-\tint3\nffff0010 <b>:\nffff0010:\t-\tret\n";
        assert!(scan_disassembly(padded).is_empty());
        let inline = "ffff0000 <a>:\nffff0000:\t-\tint3\nffff0001:\t-\tret\n";
        let f = scan_disassembly(inline);
        assert_eq!(f.len(), 1);
        assert_eq!(f[0].function, "a");
        let sse = "ffff0000 <a>:\nffff0000:\t-\tpxor %xmm0,%xmm0\n";
        assert_eq!(scan_disassembly(sse).len(), 1);
    }
}
