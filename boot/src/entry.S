/*
 * minicap entry point.
 *
 * Entered through kexec-tools' purgatory (`kexec -p minicap.elf --args-linux`) or
 * minicap's own loader, following the Linux x86_64 64-bit boot protocol:
 *   - long mode, paging on, an identity map of the old kernel's RAM;
 *   - %rsi = physical address of the Linux boot_params ("zero page");
 *   - interrupts off; CR4 may hold little more than PAE (SSE would #UD);
 *   - no IDT we can trust: any fault before ours is loaded resets the machine,
 *     so this code must not fault.
 *
 * The image is a static PIE linked at 0 and placed anywhere by the loader,
 * which applies no relocations: this code applies the R_X86_64_RELATIVE ones.
 */
/*
 * The image head: the first 0x200 bytes of the image, so that `_start` sits at image offset
 * 0x200, where the Linux x86_64 boot protocol enters a 64-bit bzImage payload (kexec_file_load's
 * bzImage64_load() and kexec-tools' do_bzImage64_load() jump to load address + 0x200). The image
 * start stays page aligned because .bss holds page tables; `linker/minicap.ld` places this
 * section first and checks that `_start` lands at 0x200.
 */
    .section .text.head, "ax"
    .code32
image_head:
    /*
     * Offset 0: where a loader using the 32-bit boot protocol would jump (the bzImage's
     * code32_start). minicap has no 32-bit entry, so it stops here, interrupts off. These bytes
     * decode the same in 32- and 64-bit mode.
     */
    cli
1:  hlt
    jmp     1b

    /*
     * The boot protocol 2.15 `kernel_info` (setup header `kernel_info_offset`, which the bzImage
     * builder in formats/bzimage sets to this fixed offset and checks): magic "LToP", its size,
     * its total size (no variable-length data) and the highest setup_data type minicap reads
     * (1, SETUP_E820_EXT; it skips every other node).
     */
    .org    image_head + 0x10
    .ascii  "LToP"
    .long   16
    .long   16
    .long   1

    .org    image_head + 0x200

    .section .text.entry, "ax"
    .code64
    .globl _start
_start:
    cli
    cld
    mov     %rsi, %r12                  /* boot_params, kept across the set-up */

    /* Our own stack inside the image (not the loader's, which lives in memory we may reuse). */
    lea     __boot_stack_top(%rip), %rsp
    and     $-16, %rsp

    /* Enable SSE: CR0.EM=0, CR0.TS=0, CR0.MP=1; CR4.OSFXSR, CR4.OSXMMEXCPT. */
    mov     %cr0, %rax
    and     $~((1 << 2) | (1 << 3)), %rax
    or      $(1 << 1), %rax
    mov     %rax, %cr0
    mov     %cr4, %rax
    or      $((1 << 9) | (1 << 10)), %rax
    mov     %rax, %cr4
    fninit

    /* Zero .bss (the stack is in it, but nothing is on it yet). */
    lea     __bss_start(%rip), %rdi
    lea     __bss_end(%rip), %rcx
    sub     %rdi, %rcx
    xor     %eax, %eax
    rep stosb

    /* Apply our dynamic relocations: walk _DYNAMIC for DT_RELA/DT_RELASZ/DT_RELAENT. */
    lea     __image_start(%rip), %r13   /* load base: the image is linked at 0 */
    lea     _DYNAMIC(%rip), %rdx
    xor     %r8, %r8                    /* DT_RELA */
    xor     %r9, %r9                    /* DT_RELASZ */
    mov     $24, %r10                   /* DT_RELAENT */
1:  mov     (%rdx), %rax
    test    %rax, %rax
    jz      4f
    cmp     $7, %rax
    jne     2f
    mov     8(%rdx), %r8
2:  cmp     $8, %rax
    jne     3f
    mov     8(%rdx), %r9
3:  cmp     $9, %rax
    jne     5f
    mov     8(%rdx), %r10
5:  add     $16, %rdx
    jmp     1b
4:  test    %r8, %r8
    jz      8f                          /* no relocations at all */
    add     %r13, %r8                   /* first Elf64_Rela */
    lea     (%r8, %r9), %r9             /* end */
6:  cmp     %r9, %r8
    jae     8f
    mov     8(%r8), %rax                /* r_info */
    cmp     $8, %eax                    /* R_X86_64_RELATIVE */
    je      7f
    test    %eax, %eax                  /* R_X86_64_NONE */
    jz      9f
    jmp     bad_relocation
7:  mov     (%r8), %rdi                 /* r_offset */
    mov     16(%r8), %rax               /* r_addend */
    add     %r13, %rax
    mov     %rax, (%r13, %rdi)
9:  add     %r10, %r8
    jmp     6b

8:  mov     %r12, %rdi                  /* arg 0: boot_params */
    mov     %r13, %rsi                  /* arg 1: load base */
    call    minicap_main
    jmp     halt_forever

/* An unknown relocation type means a build problem: say "minicap: bad relocation" on COM1. */
bad_relocation:
    lea     bad_reloc_msg(%rip), %rsi
    mov     $0x3f8, %dx
10: lodsb
    test    %al, %al
    jz      halt_forever
    out     %al, %dx
    jmp     10b

    .globl halt_forever
halt_forever:
    cli
    hlt
    jmp     halt_forever

    .section .rodata.entry, "a"
bad_reloc_msg:
    .asciz  "\r\nminicap: RESULT: failure: unsupported relocation type in image (build problem)\r\n"

    .section .bss.boot_stack, "aw", @nobits
    .balign 4096
__boot_stack_bottom:
    .skip   64 * 1024
__boot_stack_top:
