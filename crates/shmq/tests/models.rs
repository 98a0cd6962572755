//! The planted-bug Promela models must be their correct model with only the
//! lines marked `// BUG` changed (so "spin finds the bug" says something about
//! the correct model). spin itself runs them: `node scripts/models.mjs`.

use std::fs;
use std::path::PathBuf;

fn model(name: &str) -> String {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models").join(name);
    fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn header_value<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.lines().find_map(|l| l.strip_prefix("// ")?.strip_prefix(key)?.strip_prefix(':').map(str::trim))
}

/// The model without its leading comment header and the marked lines.
fn body(text: &str, ignore_defines: bool) -> Vec<&str> {
    text.lines()
        .skip_while(|l| l.starts_with("//") || l.trim().is_empty())
        .filter(|l| !l.contains("// BUG") && !l.contains("// FIX"))
        .filter(|l| !(ignore_defines && l.starts_with("#define")))
        .collect()
}

#[test]
fn planted_bug_models_differ_from_the_correct_ones_only_in_marked_lines() {
    let pairs = [
        ("spsc_wakeup.pml", "spsc_bug_flag_before_publish.pml", true),
        ("spsc_wakeup.pml", "spsc_bug_publish_before_write.pml", true),
        ("spsc_tso.pml", "spsc_bug_tso_no_producer_fence.pml", true),
        ("spsc_tso.pml", "spsc_bug_tso_no_consumer_fence.pml", true),
        ("stream_wakeup.pml", "stream_bug_close_without_wake.pml", true),
        ("mpmc_wakeup.pml", "mpmc_bug_register_after_check.pml", true),
        ("mpmc_wakeup.pml", "mpmc_bug_no_chain_wakeup.pml", true),
        ("mpmc_wakeup.pml", "mpmc_full_wakeup.pml", false),
    ];
    for (base, variant, planted) in pairs {
        let (b, v) = (model(base), model(variant));
        assert_eq!(header_value(&b, "expect"), Some("pass"), "{base}");
        if planted {
            assert_eq!(header_value(&v, "expect"), Some("fail"), "{variant}");
            assert!(v.contains("PLANTED BUG"), "{variant} explains its bug");
            assert!(v.lines().any(|l| l.contains("// BUG")), "{variant} marks its bug");
            assert_eq!(body(&b, false), body(&v, false), "{variant} differs from {base} outside BUG/FIX lines");
        } else {
            assert_eq!(header_value(&v, "expect"), Some("pass"), "{variant}");
            assert_eq!(body(&b, true), body(&v, true), "{variant} differs from {base} outside #define lines");
        }
    }
    // Every model in the directory is covered here or is a base.
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("models");
    for entry in fs::read_dir(dir).unwrap() {
        let name = entry.unwrap().file_name().into_string().unwrap();
        if name.ends_with(".pml") {
            assert!(pairs.iter().any(|(b, v, _)| *b == name || *v == name), "{name} is not listed in tests/models.rs");
        }
    }
}
