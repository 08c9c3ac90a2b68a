//! Synthetic elfcorehdr, note buffers and fake physical memory for the tests.
#![allow(dead_code)]

use minicap_elfcore::{PhysMem, PhysMemError, PF_R, PF_W, PF_X, PT_LOAD, PT_NOTE};

pub const RWX: u32 = PF_R | PF_W | PF_X;

/// Fake physical memory: explicit byte regions ("overlays", first match wins), and below
/// `ram_limit` a deterministic pattern standing for RAM contents. Everything else is unreadable.
pub struct Fake {
    pub overlays: Vec<(u64, Vec<u8>)>,
    pub ram_limit: u64,
}

/// The RAM contents at `a`.
pub fn pattern(a: u64) -> u8 {
    (a ^ (a >> 13))
        .wrapping_mul(0x9e37_79b9_7f4a_7c15)
        .to_le_bytes()[7]
}

impl Fake {
    pub fn strict() -> Self {
        Self {
            overlays: Vec::new(),
            ram_limit: 0,
        }
    }

    pub fn with_ram(ram_limit: u64) -> Self {
        Self {
            overlays: Vec::new(),
            ram_limit,
        }
    }

    pub fn put(&mut self, addr: u64, bytes: Vec<u8>) -> &mut Self {
        self.overlays.push((addr, bytes));
        self
    }

    fn byte(&self, a: u64) -> Option<u8> {
        for (base, data) in &self.overlays {
            if a >= *base {
                if let Some(b) = usize::try_from(a - base).ok().and_then(|i| data.get(i)) {
                    return Some(*b);
                }
            }
        }
        (a < self.ram_limit).then(|| pattern(a))
    }
}

impl PhysMem for Fake {
    fn read(&self, paddr: u64, buf: &mut [u8]) -> Result<(), PhysMemError> {
        let err = PhysMemError::new(paddr, buf.len());
        if buf.is_empty() {
            return Ok(());
        }
        paddr.checked_add(buf.len() as u64 - 1).ok_or(err)?;
        // Fast path: the whole range inside the first overlay that holds its first byte.
        for (base, data) in &self.overlays {
            if paddr >= *base {
                let off = usize::try_from(paddr - base).unwrap_or(usize::MAX);
                if off < data.len() {
                    if let Some(src) = data.get(off..off + buf.len()) {
                        buf.copy_from_slice(src);
                        return Ok(());
                    }
                    break;
                }
            }
        }
        for (i, b) in buf.iter_mut().enumerate() {
            *b = self.byte(paddr + i as u64).ok_or(err)?;
        }
        Ok(())
    }
}

/// One program header to write.
#[derive(Clone, Copy, Debug)]
pub struct Ph {
    pub p_type: u32,
    pub flags: u32,
    pub offset: u64,
    pub vaddr: u64,
    pub paddr: u64,
    pub filesz: u64,
    pub memsz: u64,
    pub align: u64,
}

impl Ph {
    pub fn note(addr: u64, size: u64) -> Self {
        Self {
            p_type: PT_NOTE,
            flags: 0,
            offset: addr,
            vaddr: 0,
            paddr: addr,
            filesz: size,
            memsz: size,
            align: 0,
        }
    }

    pub fn load(paddr: u64, vaddr: u64, size: u64, source: u64) -> Self {
        Self {
            p_type: PT_LOAD,
            flags: RWX,
            offset: source,
            vaddr,
            paddr,
            filesz: size,
            memsz: size,
            align: 0,
        }
    }

    pub fn bytes(&self) -> Vec<u8> {
        let mut v = Vec::with_capacity(56);
        v.extend(self.p_type.to_le_bytes());
        v.extend(self.flags.to_le_bytes());
        v.extend(self.offset.to_le_bytes());
        v.extend(self.vaddr.to_le_bytes());
        v.extend(self.paddr.to_le_bytes());
        v.extend(self.filesz.to_le_bytes());
        v.extend(self.memsz.to_le_bytes());
        v.extend(self.align.to_le_bytes());
        v
    }
}

/// Ehdr as kexec-tools writes it (e_phoff 64).
pub fn ehdr(phnum: u16) -> Vec<u8> {
    let mut v = vec![0x7f, b'E', b'L', b'F', 2, 1, 1, 0];
    v.extend([0u8; 8]);
    v.extend(4u16.to_le_bytes()); // ET_CORE
    v.extend(62u16.to_le_bytes()); // EM_X86_64
    v.extend(1u32.to_le_bytes()); // EV_CURRENT
    v.extend(0u64.to_le_bytes()); // e_entry
    v.extend(64u64.to_le_bytes()); // e_phoff
    v.extend(0u64.to_le_bytes()); // e_shoff
    v.extend(0u32.to_le_bytes()); // e_flags
    v.extend(64u16.to_le_bytes());
    v.extend(56u16.to_le_bytes());
    v.extend(phnum.to_le_bytes());
    v.extend([0u8; 6]);
    assert_eq!(v.len(), 64);
    v
}

/// Ehdr + phdrs, padded to 1 KiB like kexec-tools' ELF_CORE_HEADER_ALIGN.
pub fn elfcorehdr(phdrs: &[Ph]) -> Vec<u8> {
    let mut v = ehdr(u16::try_from(phdrs.len()).unwrap());
    for p in phdrs {
        v.extend(p.bytes());
    }
    v.resize(v.len().div_ceil(1024) * 1024, 0);
    v
}

pub fn set16(v: &mut [u8], off: usize, x: u16) {
    v[off..off + 2].copy_from_slice(&x.to_le_bytes());
}
pub fn set32(v: &mut [u8], off: usize, x: u32) {
    v[off..off + 4].copy_from_slice(&x.to_le_bytes());
}
pub fn set64(v: &mut [u8], off: usize, x: u64) {
    v[off..off + 8].copy_from_slice(&x.to_le_bytes());
}
pub fn get16(v: &[u8], off: usize) -> u16 {
    u16::from_le_bytes(v[off..off + 2].try_into().unwrap())
}
pub fn get32(v: &[u8], off: usize) -> u32 {
    u32::from_le_bytes(v[off..off + 4].try_into().unwrap())
}
pub fn get64(v: &[u8], off: usize) -> u64 {
    u64::from_le_bytes(v[off..off + 8].try_into().unwrap())
}

/// One ELF note: header, name padded to 4, desc padded to 4. `name` includes its NUL.
pub fn note(name: &[u8], ntype: u32, desc: &[u8]) -> Vec<u8> {
    let mut v = Vec::new();
    v.extend(u32::try_from(name.len()).unwrap().to_le_bytes());
    v.extend(u32::try_from(desc.len()).unwrap().to_le_bytes());
    v.extend(ntype.to_le_bytes());
    v.extend(name);
    v.resize(v.len().div_ceil(4) * 4, 0);
    v.extend(desc);
    v.resize(v.len().div_ceil(4) * 4, 0);
    v
}

/// A 336-byte `struct elf_prstatus` with pid and regs (every register distinct).
pub fn prstatus_desc(pid: u32, rip: u64, rsp: u64, seed: u64) -> Vec<u8> {
    let mut d = vec![0u8; 336];
    set32(&mut d, 32, pid);
    for i in 0..27u64 {
        let off = 112 + 8 * usize::try_from(i).unwrap();
        set64(&mut d, off, seed.wrapping_mul(0x100).wrapping_add(i));
    }
    set64(&mut d, 112 + 16 * 8, rip);
    set64(&mut d, 112 + 19 * 8, rsp);
    d
}

/// The 356-byte NT_PRSTATUS note of one CPU.
pub fn prstatus_note(pid: u32, rip: u64, rsp: u64, seed: u64) -> Vec<u8> {
    note(b"CORE\0", 1, &prstatus_desc(pid, rip, rsp, seed))
}

/// A per-CPU crash_notes buffer as the kernel leaves it: one NT_PRSTATUS + terminator = 368.
pub fn cpu_buf(pid: u32, rip: u64, rsp: u64, seed: u64) -> Vec<u8> {
    let mut v = prstatus_note(pid, rip, rsp, seed);
    assert_eq!(v.len(), 356);
    v.extend([0u8; 12]);
    assert_eq!(v.len(), 368);
    v
}

/// The VMCOREINFO note (n_type 0).
pub fn vmcoreinfo_note(text: &[u8]) -> Vec<u8> {
    note(b"VMCOREINFO\0", 0, text)
}

/// The 4132-byte vmcoreinfo_note buffer: the note, a terminator, zeros.
pub fn vmcoreinfo_buf(text: &[u8]) -> Vec<u8> {
    let mut v = vmcoreinfo_note(text);
    v.extend([0u8; 12]);
    assert!(v.len() <= 4132);
    v.resize(4132, 0);
    v
}
