//! Architecture support. Only x86-64 exists; `x86_64::platform` holds the
//! few places where VMX/SVM and this host's compat-mode PVM differ.
pub mod x86_64;
