//! Which kind of KVM this host offers (see docs/platform.md).

use qlib::boot::Flavour;
use std::path::Path;

/// Decides the flavour from which KVM modules are present. Pure, so it is
/// unit-tested with fake inputs; [`detect`] feeds it the real `/sys/module`.
pub fn decide(has_module: impl Fn(&str) -> bool) -> Flavour {
    if has_module("kvm_intel") {
        Flavour::Vmx
    } else if has_module("kvm_amd") {
        Flavour::Svm
    } else if has_module("kvm_pvm") {
        Flavour::Pvm
    } else {
        Flavour::Unknown
    }
}

/// Detects this host's flavour.
pub fn detect() -> Flavour {
    decide(|m| Path::new("/sys/module").join(m).exists())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decides() {
        assert_eq!(decide(|m| m == "kvm_pvm"), Flavour::Pvm);
        assert_eq!(decide(|m| m == "kvm_intel" || m == "kvm_pvm"), Flavour::Vmx);
        assert_eq!(decide(|m| m == "kvm_amd"), Flavour::Svm);
        assert_eq!(decide(|_| false), Flavour::Unknown);
    }

    #[test]
    fn this_host_is_known() {
        // The development and CI machines are kvm_pvm hosts (docs/platform.md).
        assert_ne!(detect(), Flavour::Unknown, "no KVM module found in /sys/module");
    }
}
