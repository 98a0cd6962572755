//! A small, bounds-checked ELF64 (x86-64, little-endian) reader.
//!
//! Used by the guest kernel to load user programs (hostile input: every field
//! is checked, nothing panics on malformed files) and by the host to read the
//! kernel image it embeds (header section, segments, symbols for panic
//! reports).

/// ELF type: executable.
pub const ET_EXEC: u16 = 2;
/// ELF type: shared object / position-independent executable.
pub const ET_DYN: u16 = 3;
/// Machine: x86-64.
pub const EM_X86_64: u16 = 62;
/// Loadable segment.
pub const PT_LOAD: u32 = 1;
/// Program interpreter path.
pub const PT_INTERP: u32 = 3;
/// Program header table.
pub const PT_PHDR: u32 = 6;
/// Thread-local storage template.
pub const PT_TLS: u32 = 7;
/// Stack permissions.
pub const PT_GNU_STACK: u32 = 0x6474_e551;
/// Segment is executable.
pub const PF_X: u32 = 1;
/// Segment is writable.
pub const PF_W: u32 = 2;
/// Segment is readable.
pub const PF_R: u32 = 4;
/// Symbol table section.
pub const SHT_SYMTAB: u32 = 2;
/// Function symbol type.
pub const STT_FUNC: u8 = 2;

/// Size of the ELF64 file header.
pub const EHDR_SIZE: usize = 64;
/// Size of one ELF64 program header.
pub const PHDR_SIZE: usize = 56;
/// Size of one ELF64 section header.
pub const SHDR_SIZE: usize = 64;
/// Most program headers accepted (Linux refuses more than 64 KiB of them).
pub const MAX_PHNUM: u16 = 1024;

/// Why a file is not a loadable ELF64 x86-64 object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ElfError {
    /// Shorter than an ELF header, or a table lies outside the file.
    Truncated,
    /// Not ELF, not 64-bit, not little-endian, or wrong version.
    BadMagic,
    /// Not an x86-64 object.
    WrongMachine,
    /// Neither ET_EXEC nor ET_DYN.
    WrongType,
    /// Program-header entry size or count out of range.
    BadProgramHeaders,
    /// Section-header entry size, count or string table out of range.
    BadSectionHeaders,
}

impl ElfError {
    /// A message for logs and errors.
    pub const fn message(self) -> &'static str {
        match self {
            ElfError::Truncated => "ELF file is truncated",
            ElfError::BadMagic => "not an ELF64 little-endian file",
            ElfError::WrongMachine => "ELF file is not for x86-64",
            ElfError::WrongType => "ELF file is neither an executable nor a PIE",
            ElfError::BadProgramHeaders => "ELF program headers are malformed",
            ElfError::BadSectionHeaders => "ELF section headers are malformed",
        }
    }
}

fn u16_at(b: &[u8], off: usize) -> Option<u16> {
    let s = b.get(off..off.checked_add(2)?)?;
    Some(u16::from_le_bytes([s[0], s[1]]))
}

fn u32_at(b: &[u8], off: usize) -> Option<u32> {
    let s = b.get(off..off.checked_add(4)?)?;
    Some(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
}

fn u64_at(b: &[u8], off: usize) -> Option<u64> {
    let s = b.get(off..off.checked_add(8)?)?;
    let mut a = [0u8; 8];
    a.copy_from_slice(s);
    Some(u64::from_le_bytes(a))
}

/// The ELF file header fields the loaders use.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Header {
    /// ET_EXEC or ET_DYN.
    pub e_type: u16,
    /// Entry point (unrelocated).
    pub entry: u64,
    /// File offset of the program headers.
    pub phoff: u64,
    /// Number of program headers.
    pub phnum: u16,
    /// File offset of the section headers.
    pub shoff: u64,
    /// Number of section headers.
    pub shnum: u16,
    /// Index of the section-name string table.
    pub shstrndx: u16,
}

impl Header {
    /// Parses and validates the file header in the first bytes of a file.
    pub fn parse(b: &[u8]) -> Result<Header, ElfError> {
        if b.len() < EHDR_SIZE {
            return Err(ElfError::Truncated);
        }
        // 0x7f 'E' 'L' 'F', class 2 (64-bit), data 1 (LE), version 1.
        if b[0..4] != [0x7f, b'E', b'L', b'F'] || b[4] != 2 || b[5] != 1 || b[6] != 1 {
            return Err(ElfError::BadMagic);
        }
        let e_type = u16_at(b, 16).ok_or(ElfError::Truncated)?;
        let machine = u16_at(b, 18).ok_or(ElfError::Truncated)?;
        if machine != EM_X86_64 {
            return Err(ElfError::WrongMachine);
        }
        if e_type != ET_EXEC && e_type != ET_DYN {
            return Err(ElfError::WrongType);
        }
        let phentsize = u16_at(b, 54).ok_or(ElfError::Truncated)?;
        let phnum = u16_at(b, 56).ok_or(ElfError::Truncated)?;
        if phentsize as usize != PHDR_SIZE || phnum == 0 || phnum > MAX_PHNUM {
            return Err(ElfError::BadProgramHeaders);
        }
        Ok(Header {
            e_type,
            entry: u64_at(b, 24).ok_or(ElfError::Truncated)?,
            phoff: u64_at(b, 32).ok_or(ElfError::Truncated)?,
            phnum,
            shoff: u64_at(b, 40).ok_or(ElfError::Truncated)?,
            shnum: u16_at(b, 60).ok_or(ElfError::Truncated)?,
            shstrndx: u16_at(b, 62).ok_or(ElfError::Truncated)?,
        })
    }

    /// Byte range of the program header table in the file.
    pub fn phdr_range(&self) -> Result<(u64, u64), ElfError> {
        let len = self.phnum as u64 * PHDR_SIZE as u64;
        let end = self.phoff.checked_add(len).ok_or(ElfError::BadProgramHeaders)?;
        Ok((self.phoff, end))
    }
}

/// One program header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ProgramHeader {
    /// Segment type (PT_*).
    pub p_type: u32,
    /// Permissions (PF_*).
    pub flags: u32,
    /// File offset.
    pub offset: u64,
    /// Virtual address (unrelocated for ET_DYN).
    pub vaddr: u64,
    /// Bytes in the file.
    pub filesz: u64,
    /// Bytes in memory (the rest is zero).
    pub memsz: u64,
    /// Alignment.
    pub align: u64,
}

impl ProgramHeader {
    /// Parses program header `index` from a buffer that holds the program header table.
    pub fn parse(table: &[u8], index: usize) -> Result<ProgramHeader, ElfError> {
        let o = index.checked_mul(PHDR_SIZE).ok_or(ElfError::BadProgramHeaders)?;
        let get32 = |off: usize| u32_at(table, o + off).ok_or(ElfError::Truncated);
        let get64 = |off: usize| u64_at(table, o + off).ok_or(ElfError::Truncated);
        Ok(ProgramHeader {
            p_type: get32(0)?,
            flags: get32(4)?,
            offset: get64(8)?,
            vaddr: get64(16)?,
            filesz: get64(32)?,
            memsz: get64(40)?,
            align: get64(48)?,
        })
    }
}

/// A whole ELF file in memory (host side: the embedded kernel image).
pub struct ElfFile<'a> {
    data: &'a [u8],
    /// The validated header.
    pub header: Header,
}

/// One section header.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SectionHeader {
    /// Offset of the name in the section-name string table.
    pub name: u32,
    /// Section type.
    pub sh_type: u32,
    /// Virtual address.
    pub addr: u64,
    /// File offset.
    pub offset: u64,
    /// Size in bytes.
    pub size: u64,
    /// Linked section (string table of a symbol table).
    pub link: u32,
    /// Entry size for tables.
    pub entsize: u64,
}

/// One symbol.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Symbol<'a> {
    /// Name bytes (not demangled).
    pub name: &'a [u8],
    /// Address.
    pub value: u64,
    /// Size in bytes.
    pub size: u64,
    /// Type (STT_*).
    pub kind: u8,
}

impl<'a> ElfFile<'a> {
    /// Validates the header of a complete file.
    pub fn parse(data: &'a [u8]) -> Result<ElfFile<'a>, ElfError> {
        let header = Header::parse(data)?;
        let (start, end) = header.phdr_range()?;
        if end > data.len() as u64 || start > end {
            return Err(ElfError::Truncated);
        }
        Ok(ElfFile { data, header })
    }

    /// The whole file.
    pub fn data(&self) -> &'a [u8] {
        self.data
    }

    /// Program header `i`.
    pub fn program_header(&self, i: usize) -> Result<ProgramHeader, ElfError> {
        let (start, end) = self.header.phdr_range()?;
        ProgramHeader::parse(&self.data[start as usize..end as usize], i)
    }

    /// Iterates over the program headers.
    pub fn program_headers(&self) -> impl Iterator<Item = Result<ProgramHeader, ElfError>> + '_ {
        (0..self.header.phnum as usize).map(move |i| self.program_header(i))
    }

    /// Section header `i`.
    pub fn section_header(&self, i: usize) -> Result<SectionHeader, ElfError> {
        if i >= self.header.shnum as usize {
            return Err(ElfError::BadSectionHeaders);
        }
        let o = (self.header.shoff as usize)
            .checked_add(i.checked_mul(SHDR_SIZE).ok_or(ElfError::BadSectionHeaders)?)
            .ok_or(ElfError::BadSectionHeaders)?;
        let b = self.data;
        let e = ElfError::BadSectionHeaders;
        Ok(SectionHeader {
            name: u32_at(b, o).ok_or(e)?,
            sh_type: u32_at(b, o + 4).ok_or(e)?,
            addr: u64_at(b, o + 16).ok_or(e)?,
            offset: u64_at(b, o + 24).ok_or(e)?,
            size: u64_at(b, o + 32).ok_or(e)?,
            link: u32_at(b, o + 40).ok_or(e)?,
            entsize: u64_at(b, o + 56).ok_or(e)?,
        })
    }

    /// The bytes of a section.
    pub fn section_data(&self, s: &SectionHeader) -> Result<&'a [u8], ElfError> {
        let start = s.offset as usize;
        let end = start.checked_add(s.size as usize).ok_or(ElfError::BadSectionHeaders)?;
        self.data.get(start..end).ok_or(ElfError::Truncated)
    }

    fn c_str(table: &'a [u8], off: usize) -> &'a [u8] {
        let rest = table.get(off..).unwrap_or(&[]);
        let n = rest.iter().position(|&c| c == 0).unwrap_or(rest.len());
        &rest[..n]
    }

    /// Finds a section by name.
    pub fn section_by_name(&self, name: &str) -> Result<Option<SectionHeader>, ElfError> {
        let strtab = self.section_header(self.header.shstrndx as usize)?;
        let names = self.section_data(&strtab)?;
        for i in 0..self.header.shnum as usize {
            let s = self.section_header(i)?;
            if Self::c_str(names, s.name as usize) == name.as_bytes() {
                return Ok(Some(s));
            }
        }
        Ok(None)
    }

    /// Iterates over the symbols of the (first) symbol table, if any.
    pub fn symbols(&self) -> Result<impl Iterator<Item = Symbol<'a>> + 'a, ElfError> {
        let mut found = None;
        for i in 0..self.header.shnum as usize {
            let s = self.section_header(i)?;
            if s.sh_type == SHT_SYMTAB {
                found = Some(s);
                break;
            }
        }
        let (table, strings) = match found {
            Some(s) if s.entsize == 24 => {
                let strs = self.section_header(s.link as usize)?;
                (self.section_data(&s)?, self.section_data(&strs)?)
            }
            _ => (&[][..], &[][..]),
        };
        Ok(table.chunks_exact(24).map(move |e| Symbol {
            name: Self::c_str(strings, u32_at(e, 0).unwrap_or(0) as usize),
            kind: e[4] & 0xf,
            value: u64_at(e, 8).unwrap_or(0),
            size: u64_at(e, 16).unwrap_or(0),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn minimal(e_type: u16, machine: u16) -> [u8; 64 + 56] {
        let mut b = [0u8; 64 + 56];
        b[0..4].copy_from_slice(&[0x7f, b'E', b'L', b'F']);
        b[4] = 2;
        b[5] = 1;
        b[6] = 1;
        b[16..18].copy_from_slice(&e_type.to_le_bytes());
        b[18..20].copy_from_slice(&machine.to_le_bytes());
        b[24..32].copy_from_slice(&0x401000u64.to_le_bytes());
        b[32..40].copy_from_slice(&64u64.to_le_bytes());
        b[54..56].copy_from_slice(&56u16.to_le_bytes());
        b[56..58].copy_from_slice(&1u16.to_le_bytes());
        // One PT_LOAD, R+X, file 0..0x78 at 0x400000.
        b[64..68].copy_from_slice(&PT_LOAD.to_le_bytes());
        b[68..72].copy_from_slice(&(PF_R | PF_X).to_le_bytes());
        b[64 + 16..64 + 24].copy_from_slice(&0x400000u64.to_le_bytes());
        b[64 + 32..64 + 40].copy_from_slice(&0x78u64.to_le_bytes());
        b[64 + 40..64 + 48].copy_from_slice(&0x1000u64.to_le_bytes());
        b
    }

    #[test]
    fn parses_a_minimal_executable() {
        let b = minimal(ET_EXEC, EM_X86_64);
        let f = ElfFile::parse(&b).unwrap();
        assert_eq!(f.header.entry, 0x401000);
        let ph = f.program_header(0).unwrap();
        assert_eq!(ph.p_type, PT_LOAD);
        assert_eq!(ph.vaddr, 0x400000);
        assert_eq!(ph.memsz, 0x1000);
        assert!(f.program_header(1).is_err());
    }

    #[test]
    fn rejects_bad_files() {
        assert_eq!(Header::parse(&[0u8; 10]), Err(ElfError::Truncated));
        assert_eq!(Header::parse(&[0u8; 64]), Err(ElfError::BadMagic));
        assert_eq!(Header::parse(&minimal(ET_EXEC, 3)), Err(ElfError::WrongMachine));
        assert_eq!(Header::parse(&minimal(1, EM_X86_64)), Err(ElfError::WrongType));
        let mut b = minimal(ET_EXEC, EM_X86_64);
        b[56..58].copy_from_slice(&0u16.to_le_bytes());
        assert_eq!(Header::parse(&b), Err(ElfError::BadProgramHeaders));
        let mut b = minimal(ET_EXEC, EM_X86_64);
        b[32..40].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(ElfFile::parse(&b).is_err());
    }

    #[test]
    fn garbage_never_panics() {
        // A deterministic pseudo-random sweep over mutated headers.
        let base = minimal(ET_DYN, EM_X86_64);
        let mut x: u64 = 0x1234_5678_9abc_def1;
        for _ in 0..20_000 {
            let mut b = base;
            for _ in 0..4 {
                x ^= x << 13;
                x ^= x >> 7;
                x ^= x << 17;
                let i = (x as usize) % b.len();
                b[i] = (x >> 32) as u8;
            }
            if let Ok(f) = ElfFile::parse(&b) {
                for ph in f.program_headers() {
                    let _ = ph;
                }
                let _ = f.section_by_name(".text");
                let _ = f.symbols().map(|s| s.count());
            }
        }
    }
}
