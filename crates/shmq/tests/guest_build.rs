//! The guest kernel builds shmq without `std` for x86-64 without SSE/x87:
//! no floating point may sneak into the rings (scripts/check-guest-build.sh
//! builds a no_std static library instantiating every ring type with SSE and
//! x87 disabled and inspects the machine code).

use std::path::PathBuf;
use std::process::Command;

#[test]
fn guest_build_has_no_floating_point() {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let work = std::env::temp_dir().join(format!("shmq-guest-build-{}", std::process::id()));
    let out = Command::new("bash")
        .arg(dir.join("scripts/check-guest-build.sh"))
        .arg(&work)
        .output()
        .expect("run scripts/check-guest-build.sh (needs bash, cargo, ar, objdump, nm: binutils)");
    let _ = std::fs::remove_dir_all(&work);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success() && stdout.contains("ok: no floating point"),
        "guest build check failed:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}
