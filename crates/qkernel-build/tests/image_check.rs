//! The guest-image check passes on the real kernel and fails on a kernel
//! built with a planted SSE instruction.
use std::path::PathBuf;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..").canonicalize().unwrap()
}

#[test]
fn real_kernel_passes_and_planted_sse_is_rejected() {
    let root = repo();
    let kernel_dir = root.join("crates/qkernel");
    let real =
        qkernel_build::build_kernel(&kernel_dir, &root.join("target/qkernel"), &[]).expect("guest kernel builds");
    qkernel_build::check_image(&real).expect("the real guest kernel has no forbidden instructions");

    let planted = qkernel_build::build_kernel(&kernel_dir, &root.join("target/qkernel-planted"), &["planted-sse"])
        .expect("guest kernel with planted SSE builds");
    match qkernel_build::check_image(&planted) {
        Err(qkernel_build::BuildError::Forbidden(found)) => {
            assert!(
                found.iter().any(|f| f.function.contains("planted_sse") && f.instruction.contains("xmm")),
                "the planted instruction is reported: {found:?}"
            );
        }
        other => panic!("a planted SSE instruction must fail the check, got {other:?}"),
    }
}
