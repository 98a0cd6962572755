//! Passes the link script to the linker and generates the 256 interrupt
//! vector stubs (the integrated assembler has no `.altmacro` arithmetic).
use std::fmt::Write;

/// Vectors for which the CPU pushes an error code.
const ERROR_CODE_VECTORS: [u32; 10] = [8, 10, 11, 12, 13, 14, 17, 21, 29, 30];

fn main() {
    let dir = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{dir}/linker.ld");
    println!("cargo:rerun-if-changed=linker.ld");
    println!("cargo:rerun-if-changed=build.rs");

    let mut s = String::from("    .text\n");
    for v in 0..256u32 {
        // Vector 14 (#PF) has its own stub with the SYSCALL redirect (entry.rs).
        if v == 14 {
            continue;
        }
        writeln!(s, "    .balign 16\nvector_{v}:").unwrap();
        if !ERROR_CODE_VECTORS.contains(&v) {
            s.push_str("    pushq $0\n");
        }
        writeln!(s, "    pushq ${v}\n    jmp trap_common").unwrap();
    }
    s.push_str("    .section .rodata\n    .balign 8\n    .globl qk_vector_table\nqk_vector_table:\n");
    for v in 0..256u32 {
        writeln!(s, "    .quad vector_{v}").unwrap();
    }
    let out = std::env::var("OUT_DIR").expect("cargo sets OUT_DIR");
    std::fs::write(format!("{out}/vectors.s"), s).expect("writing vectors.s");
    build_vdso(&dir, &out);
}

/// Builds the vDSO (user-mode code, a tiny shared object) with gcc.
fn build_vdso(dir: &str, out: &str) {
    println!("cargo:rerun-if-changed=vdso/vdso.c");
    println!("cargo:rerun-if-changed=vdso/vdso.lds");
    let status = std::process::Command::new("gcc")
        .args([
            "-O2",
            "-fPIC",
            "-shared",
            "-nostdlib",
            "-fno-stack-protector",
            "-fno-asynchronous-unwind-tables",
            "-Wl,-soname=linux-vdso.so.1",
            "-Wl,--hash-style=both",
            "-Wl,-Bsymbolic",
            "-Wl,--build-id=none",
        ])
        .arg(format!("-Wl,-T,{dir}/vdso/vdso.lds"))
        .arg("-o")
        .arg(format!("{out}/vdso.so"))
        .arg(format!("{dir}/vdso/vdso.c"))
        .status()
        .expect("running gcc for the vDSO (install build-essential: scripts/prereqs.sh)");
    assert!(status.success(), "building the vDSO failed");
    let size = std::fs::metadata(format!("{out}/vdso.so")).expect("vdso.so").len();
    assert!(size <= 4096, "the vDSO must fit in one page (it is {size} bytes)");
}
