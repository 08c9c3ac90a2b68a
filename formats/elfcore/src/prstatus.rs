//! `struct elf_prstatus` (x86_64) as saved by `crash_save_cpu()`.

/// Number of registers in `pr_reg` (`struct user_regs_struct`).
pub const REG_COUNT: usize = 27;

/// Offset of `pr_pid` in `struct elf_prstatus`.
const PR_PID_OFFSET: usize = 32;

/// Offset of `pr_reg` in `struct elf_prstatus`.
pub const PRSTATUS_REGS_OFFSET: usize = 112;

/// Smallest descriptor that holds `pr_reg` (112 + 27 * 8 = 328; the full struct is 336 bytes).
pub const PRSTATUS_MIN_SIZE: usize = PRSTATUS_REGS_OFFSET + REG_COUNT * 8;

/// Names of the `pr_reg` entries, in order (`ELF_CORE_COPY_REGS` / `struct user_regs_struct`).
pub const REG_NAMES: [&str; REG_COUNT] = [
    "r15", "r14", "r13", "r12", "rbp", "rbx", "r11", "r10", "r9", "r8", "rax", "rcx", "rdx", "rsi",
    "rdi", "orig_rax", "rip", "cs", "eflags", "rsp", "ss", "fs_base", "gs_base", "ds", "es", "fs",
    "gs",
];

const RBP: usize = 4;
const RIP: usize = 16;
const EFLAGS: usize = 18;
const RSP: usize = 19;

/// The registers one CPU saved at crash time (a "CORE"/`NT_PRSTATUS` note).
///
/// Only `pr_pid` and `pr_reg` are filled in by the kernel; the rest of the struct is zero.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PrStatus {
    /// `pr_pid`: the task that was running on the CPU (0 for the idle task).
    pub pid: u32,
    /// `pr_reg`, in the order of [`REG_NAMES`].
    pub regs: [u64; REG_COUNT],
}

impl PrStatus {
    /// Decodes a `struct elf_prstatus` note descriptor; `None` if shorter than
    /// [`PRSTATUS_MIN_SIZE`].
    pub fn decode(desc: &[u8]) -> Option<Self> {
        if desc.len() < PRSTATUS_MIN_SIZE {
            return None;
        }
        let pid = u32::from_le_bytes(
            desc.get(PR_PID_OFFSET..PR_PID_OFFSET + 4)?
                .try_into()
                .ok()?,
        );
        let mut regs = [0u64; REG_COUNT];
        let raw = desc.get(PRSTATUS_REGS_OFFSET..PRSTATUS_MIN_SIZE)?;
        for (reg, bytes) in regs.iter_mut().zip(raw.chunks_exact(8)) {
            *reg = u64::from_le_bytes(bytes.try_into().ok()?);
        }
        Some(Self { pid, regs })
    }

    /// The instruction pointer.
    pub fn rip(&self) -> u64 {
        self.regs[RIP]
    }

    /// The stack pointer.
    pub fn rsp(&self) -> u64 {
        self.regs[RSP]
    }

    /// The frame pointer.
    pub fn rbp(&self) -> u64 {
        self.regs[RBP]
    }

    /// RFLAGS.
    pub fn eflags(&self) -> u64 {
        self.regs[EFLAGS]
    }

    /// The register called `name` (one of [`REG_NAMES`]), if it exists.
    pub fn reg(&self, name: &str) -> Option<u64> {
        let i = REG_NAMES.iter().position(|&n| n == name)?;
        Some(self.regs[i])
    }

    /// Every register with its name, in `pr_reg` order (for printing).
    pub fn named_regs(&self) -> impl Iterator<Item = (&'static str, u64)> + '_ {
        REG_NAMES.iter().copied().zip(self.regs.iter().copied())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decode_layout() {
        let mut desc = [0u8; 336];
        desc[32..36].copy_from_slice(&1234u32.to_le_bytes());
        for i in 0..REG_COUNT {
            let off = PRSTATUS_REGS_OFFSET + i * 8;
            desc[off..off + 8].copy_from_slice(&(0x1000 + i as u64).to_le_bytes());
        }
        let p = PrStatus::decode(&desc).unwrap();
        assert_eq!(p.pid, 1234);
        // docs/core-headers.md, "NT_PRSTATUS": rip at desc+240, rsp at desc+264.
        assert_eq!(
            p.rip(),
            u64::from_le_bytes(desc[240..248].try_into().unwrap())
        );
        assert_eq!(
            p.rsp(),
            u64::from_le_bytes(desc[264..272].try_into().unwrap())
        );
        assert_eq!(p.rip(), 0x1000 + 16);
        assert_eq!(p.rsp(), 0x1000 + 19);
        assert_eq!(p.rbp(), 0x1000 + 4);
        assert_eq!(p.eflags(), 0x1000 + 18);
        assert_eq!(p.reg("r15"), Some(0x1000));
        assert_eq!(p.reg("gs"), Some(0x1000 + 26));
        assert_eq!(p.reg("xmm0"), None);
        let named: Vec<_> = p.named_regs().collect();
        assert_eq!(named.len(), 27);
        assert_eq!(named[16], ("rip", 0x1010));
        assert!(PrStatus::decode(&desc[..327]).is_none());
        assert!(PrStatus::decode(&desc[..328]).is_some());
    }
}
