//! Preparing guest memory before the first instruction: the kernel image,
//! page tables, GDT, IDT, per-vCPU areas (TSS, per-CPU header, stacks,
//! VMM-call page), boot parameters and the init block.
//!
//! Everything trusted and fixed is built here, in the host, so the guest
//! executes almost nothing at boot (each supervisor instruction is emulated
//! on kvm_pvm hosts).

use crate::kernel_image::KernelImage;
use crate::memory::{GuestMemory, MemoryError};
use qlib::boot::{BootParams, InitBlock, ABI_VERSION, BOOT_MAGIC};
use qlib::layout::{
    align_up, percpu, phys_to_virt, selector, vcpu_area, BOOT_PARAMS_PA, DIRECT_MAP_BASE, DIRECT_MAP_MAX, GDT_PA,
    HUGE_PAGE_SIZE, IDT_PA, INIT_BLOCK_PA, INIT_BLOCK_SIZE, KERNEL_VIRT_BASE, MAX_VCPUS, PAGE_SIZE, STATS_PA,
};

const PTE_P: u64 = 1;
const PTE_W: u64 = 2;
const PTE_PS: u64 = 1 << 7;
const PTE_G: u64 = 1 << 8;
const PTE_NX: u64 = 1 << 63;

/// Why the guest could not be prepared.
#[derive(Debug)]
pub enum BootError {
    /// Guest memory access failed (a layout bug or too little memory).
    Memory(MemoryError),
    /// The configuration cannot fit.
    Layout(String),
}

impl std::fmt::Display for BootError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BootError::Memory(e) => write!(f, "preparing guest memory: {e}"),
            BootError::Layout(m) => write!(f, "{m}"),
        }
    }
}

impl std::error::Error for BootError {}

impl From<MemoryError> for BootError {
    fn from(e: MemoryError) -> Self {
        BootError::Memory(e)
    }
}

/// What the first process runs and with which identity.
#[derive(Debug, Clone, Default)]
pub struct InitProcess {
    pub argv: Vec<Vec<u8>>,
    pub env: Vec<Vec<u8>>,
    pub cwd: Vec<u8>,
    pub hostname: Vec<u8>,
    pub uid: u32,
    pub gid: u32,
}

/// Where things ended up in guest memory.
#[derive(Debug, Clone, Copy)]
pub struct GuestLayout {
    pub vcpu_area_pa: u64,
    pub pml4_pa: u64,
    pub free_start: u64,
    /// The queued-host-call rings (`qlib::hostq`), after the vCPU areas.
    pub hostq_pa: u64,
}

impl GuestLayout {
    /// Guest-physical address of vCPU `i`'s area.
    pub fn vcpu_area(&self, i: u32) -> u64 {
        self.vcpu_area_pa + i as u64 * vcpu_area::SIZE
    }
    /// Direct-map address of vCPU `i`'s per-CPU area (its GS base).
    pub fn percpu_va(&self, i: u32) -> u64 {
        phys_to_virt(self.vcpu_area(i) + vcpu_area::PERCPU)
    }
    /// Direct-map address of vCPU `i`'s TSS.
    pub fn tss_va(&self, i: u32) -> u64 {
        self.percpu_va(i) + vcpu_area::TSS_IN_PERCPU
    }
    /// Guest-physical address of vCPU `i`'s VMM-call page.
    pub fn hcall_pa(&self, i: u32) -> u64 {
        self.vcpu_area(i) + vcpu_area::HCALL
    }
    /// Initial stack pointer of vCPU `i`.
    pub fn boot_stack_top(&self, i: u32) -> u64 {
        phys_to_virt(self.vcpu_area(i) + vcpu_area::BOOT_STACK_TOP)
    }
}

fn write_u64(mem: &GuestMemory, pa: u64, v: u64) -> Result<(), BootError> {
    mem.write_obj(pa, &v).map_err(BootError::from)
}

/// Copies the kernel's loadable segments to their physical addresses.
fn load_kernel(mem: &GuestMemory, k: &KernelImage) -> Result<(), BootError> {
    for s in &k.segments {
        mem.write(s.vaddr - KERNEL_VIRT_BASE, k.segment_bytes(s))?;
    }
    Ok(())
}

/// Builds the kernel's template page tables: the direct map of all guest RAM
/// (2 MiB pages, RW, NX, global) and the kernel image (4 KiB pages with
/// per-segment permissions, global). Returns the PML4 address and the first
/// free byte after the tables.
fn build_page_tables(mem: &GuestMemory, k: &KernelImage, at: u64) -> Result<(u64, u64), BootError> {
    let size = mem.size();
    if size > DIRECT_MAP_MAX {
        return Err(BootError::Layout("guest memory larger than the direct map (512 GiB)".into()));
    }
    let mut next = at;
    let mut alloc = || {
        let p = next;
        next += PAGE_SIZE;
        p
    };
    let pml4 = alloc();
    // Direct map: PML4 slot of DIRECT_MAP_BASE -> one PDPT -> PDs of 2 MiB pages.
    let dm_pdpt = alloc();
    write_u64(mem, pml4 + 8 * ((DIRECT_MAP_BASE >> 39) & 511), dm_pdpt | PTE_P | PTE_W)?;
    let gib = size.div_ceil(1 << 30);
    for g in 0..gib {
        let pd = alloc();
        write_u64(mem, dm_pdpt + 8 * g, pd | PTE_P | PTE_W)?;
        for i in 0..512u64 {
            let pa = (g << 30) + i * HUGE_PAGE_SIZE;
            if pa >= size {
                break;
            }
            write_u64(mem, pd + 8 * i, pa | PTE_P | PTE_W | PTE_PS | PTE_G | PTE_NX)?;
        }
    }
    // Kernel image: PML4[511] -> PDPT[510] -> PD -> PTs.
    let k_pdpt = alloc();
    let k_pd = alloc();
    write_u64(mem, pml4 + 8 * 511, k_pdpt | PTE_P | PTE_W)?;
    write_u64(mem, k_pdpt + 8 * ((KERNEL_VIRT_BASE >> 30) & 511), k_pd | PTE_P | PTE_W)?;
    let mut pts: Vec<(u64, u64)> = Vec::new(); // (pd index, pt pa)
    for s in &k.segments {
        let mut flags = PTE_P | PTE_G;
        if s.flags & qlib::elf::PF_W != 0 {
            flags |= PTE_W;
        }
        if s.flags & qlib::elf::PF_X == 0 {
            flags |= PTE_NX;
        }
        let start = s.vaddr & !(PAGE_SIZE - 1);
        let end = align_up(s.vaddr + s.memsz, PAGE_SIZE).unwrap_or(u64::MAX);
        let mut va = start;
        while va < end {
            let pd_index = (va >> 21) & 511;
            let pt = match pts.iter().find(|(i, _)| *i == pd_index) {
                Some((_, pt)) => *pt,
                None => {
                    let pt = alloc();
                    write_u64(mem, k_pd + 8 * pd_index, pt | PTE_P | PTE_W)?;
                    pts.push((pd_index, pt));
                    pt
                }
            };
            write_u64(mem, pt + 8 * ((va >> 12) & 511), (va - KERNEL_VIRT_BASE) | flags)?;
            va += PAGE_SIZE;
        }
    }
    Ok((pml4, next))
}

fn segment_descriptor(code: bool, dpl: u64, long: bool) -> u64 {
    let mut d = 0xffff | (0xf << 48) | (1 << 55) | (1 << 47) | (1 << 44) | (dpl << 45);
    if code {
        d |= 0xb << 40;
        d |= if long { 1 << 53 } else { 1 << 54 };
    } else {
        d |= (0x3 << 40) | (1 << 54);
    }
    d
}

fn build_gdt(mem: &GuestMemory, layout: &GuestLayout, vcpus: u32) -> Result<(), BootError> {
    let gdt = |sel: u16, v: u64| write_u64(mem, GDT_PA + (sel as u64 & !7), v);
    gdt(selector::KERNEL_CS, segment_descriptor(true, 0, true))?;
    gdt(selector::KERNEL_DS, segment_descriptor(false, 0, false))?;
    gdt(selector::USER32_CS, segment_descriptor(true, 3, false))?;
    gdt(selector::USER_DS, segment_descriptor(false, 3, false))?;
    gdt(selector::USER_CS, segment_descriptor(true, 3, true))?;
    for i in 0..vcpus {
        let base = layout.tss_va(i);
        let sel = selector::TSS_BASE + 16 * i as u16;
        let low = 0x67 | ((base & 0xff_ffff) << 16) | (0x89 << 40) | (((base >> 24) & 0xff) << 56);
        gdt(sel, low)?;
        write_u64(mem, GDT_PA + sel as u64 + 8, base >> 32)?;
    }
    Ok(())
}

/// Limit (bytes - 1) of the GDT for `vcpus` vCPUs.
pub fn gdt_limit(vcpus: u32) -> u16 {
    (selector::TSS_BASE as u32 + 16 * vcpus - 1) as u16
}

fn build_idt(mem: &GuestMemory, k: &KernelImage) -> Result<(), BootError> {
    let table_pa = k.header.vector_table.wrapping_sub(KERNEL_VIRT_BASE);
    for v in 0..256u64 {
        let handler: u64 = mem.read_obj(table_pa + 8 * v)?;
        if !k.is_text(handler) {
            return Err(BootError::Layout(format!("vector {v} handler {handler:#x} is not kernel text")));
        }
        let ist = if v < 32 && k.header.ist1_vectors & (1 << v) != 0 { 1 } else { 0 };
        // #BP and #OF may be raised by user code (int3/into), as on Linux.
        let dpl: u64 = if v == 3 || v == 4 { 3 } else { 0 };
        let low = (handler & 0xffff)
            | ((selector::KERNEL_CS as u64) << 16)
            | (ist << 32)
            | (0x8e << 40)
            | (dpl << 45)
            | (((handler >> 16) & 0xffff) << 48);
        write_u64(mem, IDT_PA + 16 * v, low)?;
        write_u64(mem, IDT_PA + 16 * v + 8, handler >> 32)?;
    }
    Ok(())
}

fn build_vcpu_areas(mem: &GuestMemory, layout: &GuestLayout, vcpus: u32) -> Result<(), BootError> {
    for i in 0..vcpus {
        let area = layout.vcpu_area(i);
        let pc = area + vcpu_area::PERCPU;
        write_u64(mem, pc + percpu::SELF, layout.percpu_va(i))?;
        write_u64(mem, pc + percpu::KSTACK, layout.boot_stack_top(i))?;
        write_u64(mem, pc + percpu::INDEX, i as u64)?;
        write_u64(mem, pc + percpu::HCALL, phys_to_virt(layout.hcall_pa(i)))?;
        let stats = STATS_PA
            + std::mem::offset_of!(qlib::stats::Stats, vcpu) as u64
            + i as u64 * std::mem::size_of::<qlib::stats::VcpuStats>() as u64;
        write_u64(mem, pc + percpu::STATS, phys_to_virt(stats))?;
        write_u64(mem, pc + percpu::TSS, layout.tss_va(i))?;
        // TSS: RSP0 (offset 4), IST1 (offset 36), I/O map base beyond the
        // limit (no I/O permission bitmap: user port I/O always faults).
        let tss = pc + vcpu_area::TSS_IN_PERCPU;
        mem.write(tss + 4, &layout.boot_stack_top(i).to_le_bytes())?;
        mem.write(tss + 36, &phys_to_virt(area + vcpu_area::IST_TOP).to_le_bytes())?;
        mem.write(tss + 102, &104u16.to_le_bytes())?;
    }
    Ok(())
}

/// Serialises the init block; fails when it does not fit.
pub fn init_block_bytes(p: &InitProcess) -> Result<Vec<u8>, BootError> {
    let mut strings = Vec::new();
    for s in p.argv.iter().chain(p.env.iter()).chain([&p.cwd, &p.hostname]) {
        if s.contains(&0) {
            return Err(BootError::Layout("arguments and environment must not contain NUL bytes".into()));
        }
        strings.extend_from_slice(s);
        strings.push(0);
    }
    let hdr = InitBlock {
        argc: p.argv.len() as u32,
        envc: p.env.len() as u32,
        strings_len: strings.len() as u32,
        uid: p.uid,
        gid: p.gid,
        _pad: 0,
    };
    let mut out = Vec::with_capacity(24 + strings.len());
    // SAFETY: InitBlock is repr(C) plain integers (24 bytes, asserted in qlib).
    out.extend_from_slice(unsafe { std::slice::from_raw_parts(&hdr as *const InitBlock as *const u8, 24) });
    out.extend_from_slice(&strings);
    if out.len() as u64 > INIT_BLOCK_SIZE {
        return Err(BootError::Layout(format!(
            "arguments and environment take {} bytes; at most {} fit",
            out.len(),
            INIT_BLOCK_SIZE
        )));
    }
    Ok(out)
}

/// Parameters of [`prepare`] beyond memory and image.
pub struct BootConfig<'a> {
    pub vcpus: u32,
    pub init: &'a InitProcess,
    pub params: BootParams,
}

/// Lays out and writes everything; returns the layout. `cfg.params` carries
/// the fields the caller decided (flags, clocks, seed, limits); the layout
/// fields are filled in here.
pub fn prepare(mem: &GuestMemory, k: &KernelImage, cfg: BootConfig) -> Result<GuestLayout, BootError> {
    if cfg.vcpus == 0 || cfg.vcpus > MAX_VCPUS {
        return Err(BootError::Layout(format!("vCPU count must be 1..={MAX_VCPUS}")));
    }
    load_kernel(mem, k)?;
    let vcpu_area_pa = align_up(k.phys_end, PAGE_SIZE).unwrap_or(u64::MAX);
    let hostq_pa = vcpu_area_pa + cfg.vcpus as u64 * vcpu_area::SIZE;
    let tables_at = hostq_pa + qlib::hostq::area_size(cfg.vcpus);
    if tables_at >= mem.size() {
        return Err(BootError::Layout("guest memory too small for the kernel".into()));
    }
    let (pml4_pa, tables_end) = build_page_tables(mem, k, tables_at)?;
    let free_start = align_up(tables_end, PAGE_SIZE).unwrap_or(u64::MAX);
    if free_start + (4 << 20) > mem.size() {
        return Err(BootError::Layout("guest memory too small: at least 4 MiB beyond the kernel are needed".into()));
    }
    let layout = GuestLayout { vcpu_area_pa, pml4_pa, free_start, hostq_pa };
    crate::hostq::init_rings(mem, hostq_pa, cfg.vcpus).map_err(BootError::Layout)?;
    build_gdt(mem, &layout, cfg.vcpus)?;
    build_idt(mem, k)?;
    build_vcpu_areas(mem, &layout, cfg.vcpus)?;
    mem.write_obj(STATS_PA, &qlib::stats::STATS_MAGIC)?;
    mem.write(INIT_BLOCK_PA, &init_block_bytes(cfg.init)?)?;
    let params = BootParams {
        magic: BOOT_MAGIC,
        abi_version: ABI_VERSION,
        vcpu_count: cfg.vcpus,
        mem_size: mem.size(),
        vcpu_area_pa,
        kernel_pml4_pa: pml4_pa,
        free_start,
        free_end: mem.size(),
        hostq_pa,
        hostq_size: qlib::hostq::area_size(cfg.vcpus),
        ..cfg.params
    };
    mem.write_obj(BOOT_PARAMS_PA, &params)?;
    Ok(layout)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn walk(mem: &GuestMemory, pml4: u64, va: u64) -> Option<u64> {
        let mut t = pml4;
        for level in (1..4).rev() {
            let e: u64 = mem.read_obj(t + 8 * ((va >> (12 + 9 * level)) & 511)).ok()?;
            if e & PTE_P == 0 {
                return None;
            }
            if e & PTE_PS != 0 {
                let size = 1u64 << (12 + 9 * level);
                return Some((e & 0x000f_ffff_ffff_f000 & !(size - 1)) + (va & (size - 1)));
            }
            t = e & 0x000f_ffff_ffff_f000;
        }
        let e: u64 = mem.read_obj(t + 8 * ((va >> 12) & 511)).ok()?;
        (e & PTE_P != 0).then_some((e & 0x000f_ffff_ffff_f000) + (va & 0xfff))
    }

    #[test]
    fn tables_map_the_direct_map_and_the_kernel() {
        let mem = GuestMemory::new(64 << 20).unwrap();
        let k = KernelImage::load().unwrap();
        let init = InitProcess { argv: vec![b"/hello".to_vec()], cwd: b"/".to_vec(), ..Default::default() };
        let l = prepare(&mem, &k, BootConfig { vcpus: 2, init: &init, params: BootParams::default() }).unwrap();
        assert_eq!(walk(&mem, l.pml4_pa, phys_to_virt(0x12_3456)), Some(0x12_3456));
        assert_eq!(walk(&mem, l.pml4_pa, phys_to_virt((64 << 20) - 8)), Some((64 << 20) - 8));
        assert_eq!(walk(&mem, l.pml4_pa, k.header.entry), Some(k.header.entry - KERNEL_VIRT_BASE));
        assert_eq!(walk(&mem, l.pml4_pa, 0x40_0000), None, "the user half is empty");
        let p: BootParams = mem.read_obj(BOOT_PARAMS_PA).unwrap();
        assert_eq!(p.magic, BOOT_MAGIC);
        assert_eq!(p.vcpu_count, 2);
        assert!(p.free_start > l.vcpu_area(1));
        // The IDT's #PF gate points at kernel text.
        let lo: u64 = mem.read_obj(IDT_PA + 16 * 14).unwrap();
        let hi: u64 = mem.read_obj(IDT_PA + 16 * 14 + 8).unwrap();
        let handler = (lo & 0xffff) | ((lo >> 48) << 16) | (hi << 32);
        assert!(k.is_text(handler));
    }

    #[test]
    fn init_block_limits() {
        let big = InitProcess { argv: vec![vec![b'a'; INIT_BLOCK_SIZE as usize]], ..Default::default() };
        assert!(init_block_bytes(&big).is_err());
        let nul = InitProcess { argv: vec![b"a\0b".to_vec()], ..Default::default() };
        assert!(init_block_bytes(&nul).is_err());
    }
}
