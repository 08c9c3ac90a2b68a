/*
 * The purgatory's entry point, where Linux's relocate_kernel jumps after a
 * panic when minicap was loaded with `minicap load`.
 *
 * What holds here (relocate_kernel_64.S, identity_mapped): 64-bit mode,
 * paging on with the kexec page tables (an identity map of RAM), interrupts
 * off, CR4 reduced to PAE (and LA57/MCE if they were on), so SSE is off.
 * Nothing else: no usable stack, no register contract, and a GDTR still
 * pointing at the old kernel's per-CPU GDT, whose virtual address the
 * identity map may not cover. So, like kexec-tools' entry64.S, this code
 * loads its own GDT and segments before anything else can reload them.
 *
 * The purgatory is linked at 0 and placed by the loader, which applies its
 * R_X86_64_RELATIVE relocations before loading it: nothing is relocated here.
 */
    .section .text.entry, "ax"
    .code64
    .globl purgatory_start
purgatory_start:
    cli
    cld
    lea     stack_top(%rip), %rsp
    and     $-16, %rsp

    /* SSE on (Rust code uses it): CR0.EM=0, CR0.TS=0, CR0.MP=1; CR4.OSFXSR, CR4.OSXMMEXCPT. */
    mov     %cr0, %rax
    and     $~((1 << 2) | (1 << 3)), %rax
    or      $(1 << 1), %rax
    mov     %rax, %cr0
    mov     %cr4, %rax
    or      $((1 << 9) | (1 << 10)), %rax
    mov     %rax, %cr4
    fninit

    /* Our GDT (its physical address is only known now), then every segment register. */
    lea     gdt(%rip), %rax
    mov     %rax, gdt_pointer+2(%rip)
    lgdt    gdt_pointer(%rip)
    mov     $0x10, %eax
    mov     %eax, %ds
    mov     %eax, %es
    mov     %eax, %ss
    mov     %eax, %fs
    mov     %eax, %gs
    lea     1f(%rip), %rax
    pushq   $0x08
    push    %rax
    lretq
1:
    /* Zero .bss (the stack is in it, but nothing is on it yet). */
    lea     __bss_start(%rip), %rdi
    lea     __bss_end(%rip), %rcx
    sub     %rdi, %rcx
    xor     %eax, %eax
    rep stosb

    call    purgatory_main
2:  cli
    hlt
    jmp     2b

    .section .rodata, "a"
    .balign 8
/* Null, 64-bit code (selector 0x08), flat data (selector 0x10). */
gdt:
    .quad   0
    .quad   0x00af9a000000ffff
    .quad   0x00cf92000000ffff
gdt_end:

    .section .data, "aw"
    .balign 8
gdt_pointer:
    .word   gdt_end - gdt - 1
    .quad   0

    .section .bss, "aw", @nobits
    .balign 16
stack_bottom:
    .skip   16 * 1024
stack_top:
