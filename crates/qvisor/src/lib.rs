//! qvisor: the Quark VMM. One `quark-sandbox` process runs one sandbox: a
//! KVM virtual machine whose guest kernel (qkernel, embedded in the binary)
//! runs the container's programs in guest user mode. See README.md.

pub mod boot;
pub mod config;
pub mod confine;
pub mod cpuid;
pub mod events;
pub mod flavour;
pub mod handles;
pub mod hostfs;
pub mod hostnet;
pub mod hostq;
pub mod kernel_image;
pub mod kvm;
pub mod log;
pub mod memory;
pub mod netevents;
pub mod rootfs;
pub mod sandbox;
pub mod services;
pub mod sys;
pub mod vcpu;
