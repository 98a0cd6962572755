//! quark-sandbox: runs one program in a Quark sandbox. See `--help`.
use qvisor::config::{Config, USAGE};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let cfg = match Config::parse(&args) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("quark-sandbox: {e}");
            std::process::exit(qvisor::sandbox::EXIT_SANDBOX_FAILED);
        }
    };
    if cfg.help {
        print!("{USAGE}");
        return;
    }
    if cfg.version {
        println!("quark-sandbox {}", env!("CARGO_PKG_VERSION"));
        return;
    }
    std::process::exit(qvisor::sandbox::launch(&cfg));
}
