//! The guest kernel image, embedded in quark-sandbox at build time.

use qlib::boot::{KernelHeader, ABI_VERSION, KERNEL_HEADER_SECTION, KERNEL_MAGIC};
use qlib::elf::{ElfFile, ProgramHeader, PT_LOAD};
use qlib::layout::{KERNEL_MAX_SIZE, KERNEL_PHYS_BASE, KERNEL_VIRT_BASE};

/// The image bytes (built and checked by build.rs).
pub static IMAGE: &[u8] = include_bytes!(env!("QKERNEL_IMAGE"));

/// Why the embedded image is unusable (a build problem, never user input).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageError(pub String);

impl std::fmt::Display for ImageError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "the embedded guest kernel is unusable: {} (rebuild with `cargo build --release`)", self.0)
    }
}

impl std::error::Error for ImageError {}

/// A parsed kernel image.
pub struct KernelImage {
    elf: ElfFile<'static>,
    pub header: KernelHeader,
    /// Loadable segments.
    pub segments: Vec<ProgramHeader>,
    /// Physical end of the highest segment.
    pub phys_end: u64,
    symbols: Vec<(u64, u64, String)>,
}

impl KernelImage {
    /// Parses and validates the embedded image.
    pub fn load() -> Result<KernelImage, ImageError> {
        Self::parse(IMAGE)
    }

    /// Parses and validates an image.
    pub fn parse(data: &'static [u8]) -> Result<KernelImage, ImageError> {
        let e = |m: &str| ImageError(m.to_string());
        let elf = ElfFile::parse(data).map_err(|x| e(x.message()))?;
        let sec = elf
            .section_by_name(KERNEL_HEADER_SECTION)
            .map_err(|x| e(x.message()))?
            .ok_or_else(|| e("no .qk_header section"))?;
        let bytes = elf.section_data(&sec).map_err(|x| e(x.message()))?;
        if bytes.len() < std::mem::size_of::<KernelHeader>() {
            return Err(e(".qk_header is too short"));
        }
        // SAFETY: KernelHeader is repr(C) plain integers; length checked.
        let header = unsafe { (bytes.as_ptr() as *const KernelHeader).read_unaligned() };
        if header.magic != KERNEL_MAGIC {
            return Err(e("bad kernel magic"));
        }
        if header.abi_version != ABI_VERSION {
            return Err(e("kernel ABI version differs from the VMM's"));
        }
        let mut segments = Vec::new();
        let mut phys_end = 0;
        for ph in elf.program_headers() {
            let ph = ph.map_err(|x| e(x.message()))?;
            if ph.p_type != PT_LOAD {
                continue;
            }
            let pa = ph.vaddr.wrapping_sub(KERNEL_VIRT_BASE);
            if ph.vaddr < KERNEL_VIRT_BASE
                || pa < KERNEL_PHYS_BASE
                || pa + ph.memsz > KERNEL_PHYS_BASE + KERNEL_MAX_SIZE
            {
                return Err(e("a segment lies outside the kernel image region"));
            }
            if ph.offset.checked_add(ph.filesz).is_none_or(|end| end > data.len() as u64) {
                return Err(e("a segment lies outside the file"));
            }
            phys_end = phys_end.max(pa + ph.memsz);
            segments.push(ph);
        }
        if segments.is_empty() {
            return Err(e("no loadable segments"));
        }
        let mut symbols: Vec<(u64, u64, String)> = elf
            .symbols()
            .map_err(|x| e(x.message()))?
            // Functions, and the assembly entry labels (untyped, size 0).
            .filter(|s| {
                (s.kind == qlib::elf::STT_FUNC || s.kind == 0) && s.value >= KERNEL_VIRT_BASE && !s.name.is_empty()
            })
            .map(|s| (s.value, s.size, String::from_utf8_lossy(s.name).into_owned()))
            .collect();
        symbols.sort();
        Ok(KernelImage { elf, header, segments, phys_end, symbols })
    }

    /// The file bytes of a segment.
    pub fn segment_bytes(&self, ph: &ProgramHeader) -> &'static [u8] {
        &self.elf.data()[ph.offset as usize..(ph.offset + ph.filesz) as usize]
    }

    /// Names the function containing `addr` ("name+0x12"), if any.
    pub fn symbolize(&self, addr: u64) -> Option<String> {
        if !self.is_text(addr) {
            return None;
        }
        let i = self.symbols.partition_point(|s| s.0 <= addr);
        let (start, size, name) = self.symbols.get(i.checked_sub(1)?)?;
        // Untyped assembly labels have no size: they extend to the next symbol.
        if *size != 0 && addr >= start + size {
            return None;
        }
        Some(format!("{}+{:#x}", demangle(name), addr - start))
    }

    /// True when `addr` lies in an executable segment.
    pub fn is_text(&self, addr: u64) -> bool {
        self.segments.iter().any(|s| s.flags & qlib::elf::PF_X != 0 && addr >= s.vaddr && addr < s.vaddr + s.memsz)
    }
}

/// Demangles Rust legacy symbols (`_ZN...17h<hash>E`) well enough for
/// reports; other names are returned unchanged.
pub fn demangle(name: &str) -> String {
    let Some(mut rest) = name.strip_prefix("_ZN") else {
        return name.to_string();
    };
    let mut parts = Vec::new();
    while let Some(first) = rest.chars().next() {
        if first == 'E' {
            break;
        }
        let digits: String = rest.chars().take_while(|c| c.is_ascii_digit()).collect();
        let Ok(n) = digits.parse::<usize>() else {
            return name.to_string();
        };
        rest = &rest[digits.len()..];
        if rest.len() < n {
            return name.to_string();
        }
        let part = &rest[..n];
        rest = &rest[n..];
        if !(part.len() == 17 && part.starts_with('h') && part[1..].chars().all(|c| c.is_ascii_hexdigit())) {
            parts.push(part.replace("$LT$", "<").replace("$GT$", ">").replace("$u20$", " ").replace("..", "::"));
        }
    }
    parts.join("::")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_image_is_valid() {
        let k = KernelImage::load().expect("embedded kernel parses");
        assert!(k.header.entry >= KERNEL_VIRT_BASE);
        assert!(k.is_text(k.header.entry));
        assert!(k.is_text(k.header.syscall_entry));
        assert_eq!(k.symbolize(k.header.entry).as_deref(), Some("_start+0x0"));
        assert!(k.phys_end > KERNEL_PHYS_BASE);
    }

    #[test]
    fn demangles_legacy_names() {
        assert_eq!(
            demangle("_ZN7qkernel4task4init10spawn_init17h0123456789abcdefE"),
            "qkernel::task::init::spawn_init"
        );
        assert_eq!(demangle("kmain"), "kmain");
    }
}
