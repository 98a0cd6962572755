//! `qkernel-image-check IMAGE`: checks a guest kernel image (see the crate docs).
fn main() {
    let Some(path) = std::env::args_os().nth(1) else {
        eprintln!("usage: qkernel-image-check IMAGE");
        std::process::exit(2);
    };
    match qkernel_build::check_image(std::path::Path::new(&path)) {
        Ok(()) => println!("{}: no forbidden instructions", path.to_string_lossy()),
        Err(e) => {
            eprintln!("{e}");
            std::process::exit(1);
        }
    }
}
