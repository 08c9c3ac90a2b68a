//! The memory functions the compiler calls, for the two freestanding binaries built for
//! the host target (the capture kernel and the purgatory): the host target's
//! compiler_builtins does not export them (it expects libc), and a plain Rust loop could be
//! turned back into a call to itself, so they are single string instructions.
#![no_std]

/// Link anchor: referencing it from a binary keeps this crate (and thus its symbols) in
/// the link.
pub fn link_intrinsics() {}

/// # Safety
/// Standard C `memcpy` contract: `n` bytes readable at `src`, writable at
/// `dest`, not overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // Eight bytes per step, then the tail: QEMU's TCG emulates string
    // instructions one element at a time, so `movsq` moves 8x as fast as
    // `movsb` there (the kdump path copies and clears whole pages and
    // compressor tables for every page it writes).
    // SAFETY: the caller guarantees both ranges are valid for `n` bytes; the
    // two instructions cover [0, n) exactly (rcx = n / 8 quadwords, then
    // n % 8 bytes from where the first left rdi/rsi).
    unsafe {
        core::arch::asm!(
            "rep movsq",
            "mov rcx, {tail}",
            "rep movsb",
            tail = in(reg) n % 8,
            inout("rcx") n / 8 => _, inout("rdi") dest => _, inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
    dest
}

/// # Safety
/// Standard C `memmove` contract: `n` bytes readable at `src`, writable at
/// `dest`; the ranges may overlap.
#[no_mangle]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize) <= (src as usize) || (dest as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: a forward copy is correct when dest is below src or the
        // ranges do not overlap; validity is the caller's contract.
        unsafe { memcpy(dest, src, n) };
    } else if n > 0 {
        // SAFETY: copy backwards (DF=1) from the last byte; DF is restored
        // before returning as the ABI requires.
        unsafe {
            core::arch::asm!(
                "std",
                "rep movsb",
                "cld",
                inout("rcx") n => _,
                inout("rdi") dest.add(n - 1) => _,
                inout("rsi") src.add(n - 1) => _,
                options(nostack)
            );
        }
    }
    dest
}

/// # Safety
/// Standard C `memset` contract: `n` bytes writable at `dest`.
#[no_mangle]
pub unsafe extern "C" fn memset(dest: *mut u8, value: i32, n: usize) -> *mut u8 {
    // Eight bytes per step, then the tail (see `memcpy`).
    let byte = u64::from((value & 0xff) as u8);
    // SAFETY: the caller guarantees `dest` is valid for `n` bytes; rcx = n / 8
    // quadwords of the byte repeated, then n % 8 bytes, cover [0, n) exactly.
    unsafe {
        core::arch::asm!(
            "rep stosq",
            "mov rcx, {tail}",
            "rep stosb",
            tail = in(reg) n % 8,
            inout("rcx") n / 8 => _, inout("rdi") dest => _,
            in("rax") byte * 0x0101_0101_0101_0101,
            options(nostack, preserves_flags)
        );
    }
    dest
}

/// # Safety
/// Standard C `memcmp` contract: `n` bytes readable at both pointers.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    let mut i = 0;
    while i < n {
        // SAFETY: i < n and the caller guarantees n readable bytes; volatile
        // reads keep the compiler from recognising this loop as memcmp.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
        i += 1;
    }
    0
}

/// # Safety
/// Standard `bcmp` contract: `n` bytes readable at both pointers.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// libcore refers to the unwinding personality even with `panic = "abort"`;
/// it is never called.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
