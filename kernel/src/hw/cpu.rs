//! The CPU as minicap takes it over: its own GDT and TSS (with IST stacks),
//! its own IDT with a handler for every exception, control registers, MSRs.

use core::arch::{asm, global_asm};
use core::ptr::addr_of;
use spin::Once;
use x86_64::instructions::segmentation::{Segment, CS, DS, ES, FS, GS, SS};
use x86_64::instructions::tables::load_tss;
use x86_64::structures::gdt::{Descriptor, GlobalDescriptorTable, SegmentSelector};
use x86_64::structures::tss::TaskStateSegment;
use x86_64::VirtAddr;

/// Saved state of an interrupted context, as `isr_common` lays it out.
#[repr(C)]
#[derive(Debug)]
pub struct ExceptionFrame {
    pub r15: u64,
    pub r14: u64,
    pub r13: u64,
    pub r12: u64,
    pub r11: u64,
    pub r10: u64,
    pub r9: u64,
    pub r8: u64,
    pub rbp: u64,
    pub rdi: u64,
    pub rsi: u64,
    pub rdx: u64,
    pub rcx: u64,
    pub rbx: u64,
    pub rax: u64,
    pub vector: u64,
    pub error_code: u64,
    pub rip: u64,
    pub cs: u64,
    pub rflags: u64,
    pub rsp: u64,
    pub ss: u64,
}

const STACK_SIZE: usize = 16 * 1024;

#[repr(C, align(16))]
struct Stack([u8; STACK_SIZE]);

/// IST 1: exceptions, IST 2: NMI, IST 3: double fault, IST 4: machine check.
/// Separate stacks keep a fault on a broken stack from becoming a triple fault.
static mut IST_STACKS: [Stack; 4] = [const { Stack([0; STACK_SIZE]) }; 4];

const IST_EXCEPTION: u8 = 1;
const IST_NMI: u8 = 2;
const IST_DOUBLE_FAULT: u8 = 3;
const IST_MACHINE_CHECK: u8 = 4;

static TSS: Once<TaskStateSegment> = Once::new();
static GDT: Once<(
    GlobalDescriptorTable,
    SegmentSelector,
    SegmentSelector,
    SegmentSelector,
)> = Once::new();

#[repr(C, align(16))]
struct Idt([u64; 64]);

static mut IDT: Idt = Idt([0; 64]);

/// 32 gates of 16 bytes, minus one (lidt wants the last valid byte).
const IDT_LIMIT: u16 = 32 * 16 - 1;

// One stub per exception vector: push a zero error code where the CPU pushes
// none, push the vector, save every general register and call Rust.
global_asm!(
    r#"
    .section .text.isr, "ax"
    .macro ISR_NOERR n
    isr_\n:
        push $0
        push $\n
        jmp isr_common
    .endm
    .macro ISR_ERR n
    isr_\n:
        push $\n
        jmp isr_common
    .endm
    ISR_NOERR 0
    ISR_NOERR 1
    ISR_NOERR 2
    ISR_NOERR 3
    ISR_NOERR 4
    ISR_NOERR 5
    ISR_NOERR 6
    ISR_NOERR 7
    ISR_ERR 8
    ISR_NOERR 9
    ISR_ERR 10
    ISR_ERR 11
    ISR_ERR 12
    ISR_ERR 13
    ISR_ERR 14
    ISR_NOERR 15
    ISR_NOERR 16
    ISR_ERR 17
    ISR_NOERR 18
    ISR_NOERR 19
    ISR_NOERR 20
    ISR_ERR 21
    ISR_NOERR 22
    ISR_NOERR 23
    ISR_NOERR 24
    ISR_NOERR 25
    ISR_NOERR 26
    ISR_NOERR 27
    ISR_NOERR 28
    ISR_ERR 29
    ISR_ERR 30
    ISR_NOERR 31
    isr_common:
        push %rax
        push %rbx
        push %rcx
        push %rdx
        push %rsi
        push %rdi
        push %rbp
        push %r8
        push %r9
        push %r10
        push %r11
        push %r12
        push %r13
        push %r14
        push %r15
        mov %rsp, %rdi
        /* Save the x87/SSE state: an NMI returns into code that may be in
           the middle of SHA-256 or a memcpy. 176 bytes are on the stack so
           far, so %rsp is 16-byte aligned as FXSAVE requires. */
        sub $512, %rsp
        fxsave (%rsp)
        cld
        call minicap_exception
        fxrstor (%rsp)
        add $512, %rsp
        pop %r15
        pop %r14
        pop %r13
        pop %r12
        pop %r11
        pop %r10
        pop %r9
        pop %r8
        pop %rbp
        pop %rdi
        pop %rsi
        pop %rdx
        pop %rcx
        pop %rbx
        pop %rax
        add $16, %rsp
        iretq

    .section .data.rel.ro.isr_table, "aw"
    .balign 8
    .globl minicap_isr_table
    minicap_isr_table:
    .irp n, 0,1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,29,30,31
        .quad isr_\n
    .endr
    "#,
    options(att_syntax)
);

extern "C" {
    static minicap_isr_table: [u64; 32];
}

fn stack_top(index: usize) -> VirtAddr {
    // SAFETY: only the address of the static is taken; nothing reads or
    // writes it from Rust (the CPU uses it as a stack).
    let base = unsafe { addr_of!(IST_STACKS[index]) } as u64;
    VirtAddr::new(base + STACK_SIZE as u64)
}

/// Load minicap's GDT, TSS and IDT. Until this runs any exception resets the
/// machine (kexec leaves an empty IDT), so it runs first.
pub fn take_over() {
    let tss = TSS.call_once(|| {
        let mut tss = TaskStateSegment::new();
        for (i, ist) in [IST_EXCEPTION, IST_NMI, IST_DOUBLE_FAULT, IST_MACHINE_CHECK]
            .into_iter()
            .enumerate()
        {
            tss.interrupt_stack_table[usize::from(ist - 1)] = stack_top(i);
        }
        tss
    });
    let (gdt, code, data, tss_selector) = GDT.call_once(|| {
        let mut gdt = GlobalDescriptorTable::new();
        let code = gdt.append(Descriptor::kernel_code_segment());
        let data = gdt.append(Descriptor::kernel_data_segment());
        let tss_selector = gdt.append(Descriptor::tss_segment(tss));
        (gdt, code, data, tss_selector)
    });
    gdt.load();
    // SAFETY: the selectors index the GDT just loaded, with a 64-bit code
    // segment and a flat data segment.
    unsafe {
        CS::set_reg(*code);
        SS::set_reg(*data);
        DS::set_reg(*data);
        ES::set_reg(*data);
        FS::set_reg(*data);
        GS::set_reg(*data);
        load_tss(*tss_selector);
    }
    install_idt(code.0);
    enable_machine_checks();
}

const CR4_MCE: u64 = 1 << 6;
const IA32_MCG_STATUS: u32 = 0x17a;

/// Let machine checks reach our handler (CR4.MCE is off at entry, so one
/// would shut the CPU down without a word). A crash caused by a machine
/// check may leave MCG_STATUS.MCIP set, which turns the next one into a
/// shutdown: clear it first.
fn enable_machine_checks() {
    let (_, _, _, edx) = cpuid(1, 0);
    let has_mce = edx & (1 << 7) != 0;
    let has_mca = edx & (1 << 14) != 0;
    if !has_mce {
        return;
    }
    if has_mca {
        // SAFETY: CPUID.1:EDX.MCA says IA32_MCG_STATUS exists; writing 0
        // clears MCIP/RIPV/EIPV, which is what the architecture expects once
        // a machine check has been dealt with.
        unsafe { wrmsr(IA32_MCG_STATUS, 0) };
    }
    // SAFETY: setting CR4.MCE only enables delivery of #MC to the IDT, whose
    // vector 18 has a handler on its own IST stack.
    unsafe {
        let cr4 = cr4() | CR4_MCE;
        asm!("mov cr4, {}", in(reg) cr4, options(nostack, preserves_flags));
    }
}

fn install_idt(code_selector: u16) {
    // SAFETY: the table holds the stub addresses, relocated by the entry code.
    let table = unsafe { &*addr_of!(minicap_isr_table) };
    let mut idt = [0u64; 64];
    for (vector, &handler) in table.iter().enumerate() {
        let ist = match vector {
            2 => IST_NMI,
            8 => IST_DOUBLE_FAULT,
            18 => IST_MACHINE_CHECK,
            _ => IST_EXCEPTION,
        };
        // 64-bit interrupt gate, present, DPL 0 (type 0xE, attributes 0x8E).
        let low = (handler & 0xffff)
            | (u64::from(code_selector) << 16)
            | (u64::from(ist) << 32)
            | (0x8e << 40)
            | (((handler >> 16) & 0xffff) << 48);
        let high = handler >> 32;
        idt[vector * 2] = low;
        idt[vector * 2 + 1] = high;
    }
    // SAFETY: single CPU, interrupts off; the IDT is written before lidt and
    // never again, and lives in the image for the rest of the run.
    unsafe {
        let idt_ptr = core::ptr::addr_of_mut!(IDT);
        (*idt_ptr).0 = idt;
        let pointer = x86_64::structures::DescriptorTablePointer {
            limit: IDT_LIMIT,
            base: VirtAddr::new(idt_ptr as u64),
        };
        x86_64::instructions::tables::lidt(&pointer);
    }
}

/// CR2: the faulting address of the last page fault.
pub fn cr2() -> u64 {
    let value: u64;
    // SAFETY: reading CR2 has no side effects at CPL 0.
    unsafe { asm!("mov {}, cr2", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// CR3: the root of the current page tables.
pub fn cr3() -> u64 {
    let value: u64;
    // SAFETY: reading CR3 has no side effects at CPL 0.
    unsafe { asm!("mov {}, cr3", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// CR4.
pub fn cr4() -> u64 {
    let value: u64;
    // SAFETY: reading CR4 has no side effects at CPL 0.
    unsafe { asm!("mov {}, cr4", out(reg) value, options(nomem, nostack, preserves_flags)) };
    value
}

/// Switch to new page tables.
///
/// # Safety
/// `root` must be a complete page-table hierarchy of the current paging mode
/// that maps the running code, its stacks and everything still used, at the
/// same addresses.
pub unsafe fn write_cr3(root: u64) {
    // SAFETY: the caller guarantees the new tables map all live memory.
    unsafe { asm!("mov cr3, {}", in(reg) root, options(nostack, preserves_flags)) };
}

/// CPUID leaf/subleaf: (eax, ebx, ecx, edx).
pub fn cpuid(leaf: u32, subleaf: u32) -> (u32, u32, u32, u32) {
    // CPUID exists on every x86_64 CPU and has no side effects.
    let r = core::arch::x86_64::__cpuid_count(leaf, subleaf);
    (r.eax, r.ebx, r.ecx, r.edx)
}

/// Read a model-specific register.
///
/// # Safety
/// The MSR must exist on this CPU (else #GP).
pub unsafe fn rdmsr(msr: u32) -> u64 {
    let (low, high): (u32, u32);
    // SAFETY: the caller guarantees the MSR exists.
    unsafe {
        asm!("rdmsr", in("ecx") msr, out("eax") low, out("edx") high, options(nomem, nostack, preserves_flags))
    };
    u64::from(low) | (u64::from(high) << 32)
}

/// Write a model-specific register.
///
/// # Safety
/// The MSR must exist and the value must be valid for it.
pub unsafe fn wrmsr(msr: u32, value: u64) {
    let low = (value & 0xffff_ffff) as u32;
    let high = (value >> 32) as u32;
    // SAFETY: the caller guarantees the MSR and value are valid.
    unsafe {
        asm!("wrmsr", in("ecx") msr, in("eax") low, in("edx") high, options(nostack, preserves_flags))
    };
}

/// Write back (and invalidate) every cache line of [start, start+len) to
/// memory, then fence: for tables a device reads without snooping the CPU
/// caches (a VT-d unit with ECAP.C = 0).
pub(super) fn flush_cache_range(start: u64, len: u64) {
    // CPUID.1:EBX[15:8]: the CLFLUSH line size in 8-byte units (64 bytes on
    // every x86_64 CPU so far).
    let line_size = match u64::from((cpuid(1, 0).1 >> 8) & 0xff) * 8 {
        0 => 64,
        size => size,
    };
    let end = start.saturating_add(len);
    let mut line = start - start % line_size;
    while line < end {
        // SAFETY: CLFLUSH only writes a cache line back; callers pass memory
        // the identity map covers (heap pages), so it cannot fault.
        unsafe { asm!("clflush [{}]", in(reg) line, options(nostack, preserves_flags)) };
        line += line_size;
    }
    // SAFETY: MFENCE orders the flushes before later stores (the register
    // write that makes the device read the tables); no other effect.
    unsafe { asm!("mfence", options(nostack, preserves_flags)) };
}

/// Read the time-stamp counter.
pub fn rdtsc() -> u64 {
    // SAFETY: RDTSC is unprivileged and side-effect free.
    unsafe { core::arch::x86_64::_rdtsc() }
}

/// Stop this CPU for good (interrupts stay off; an NMI returns to the loop).
pub fn halt_forever() -> ! {
    loop {
        // SAFETY: cli; hlt only stops this CPU.
        unsafe { asm!("cli", "hlt", options(nomem, nostack)) };
    }
}

/// Make any further exception reset the machine (used as the last resort of
/// a reboot: an empty IDT turns the next fault into a triple fault).
pub fn triple_fault() -> ! {
    let pointer = x86_64::structures::DescriptorTablePointer {
        limit: 0,
        base: VirtAddr::new(0),
    };
    // SAFETY: deliberately loads an empty IDT and raises an exception: the
    // CPU shuts down and the chipset resets it.
    unsafe {
        x86_64::instructions::tables::lidt(&pointer);
        asm!("int3", options(nomem, nostack));
    }
    halt_forever()
}
