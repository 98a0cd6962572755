//! Builds the guest kernel (crates/qkernel, outside the workspace), checks its
//! instructions, and points `QKERNEL_IMAGE` at it so `src/kernel_image.rs`
//! embeds it: quark-sandbox is then one self-contained binary.
use std::path::PathBuf;

fn main() {
    let manifest = PathBuf::from(std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR"));
    let root = manifest.join("../..");
    let kernel_dir = root.join("crates/qkernel");
    let target = root.join("target/qkernel");
    for dir in ["src", "build.rs", "linker.ld", "Cargo.toml", ".cargo/config.toml"] {
        println!("cargo:rerun-if-changed={}", kernel_dir.join(dir).display());
    }
    println!("cargo:rerun-if-changed={}", root.join("crates/qlib/src").display());
    println!("cargo:rerun-if-changed={}", root.join("crates/shmq/src").display());
    let image = match qkernel_build::build_kernel(&kernel_dir, &target, &[]) {
        Ok(p) => p,
        Err(e) => panic!("{e}"),
    };
    if let Err(e) = qkernel_build::check_image(&image) {
        panic!("{e}");
    }
    println!("cargo:rustc-env=QKERNEL_IMAGE={}", image.display());
}
