//! The memory functions the compiler calls: the host target's compiler_builtins does not
//! export them (it expects libc). Single string instructions, so that the compiler cannot turn
//! them back into calls to themselves; the purgatory copies a few KiB per 4 KiB hashed, so
//! byte steps are fast enough.

/// # Safety
/// C `memcpy`: `n` bytes readable at `src`, writable at `dest`, not overlapping.
#[no_mangle]
pub unsafe extern "C" fn memcpy(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract; rcx = n bytes forward (DF is clear per the ABI).
    unsafe {
        core::arch::asm!(
            "rep movsb",
            inout("rcx") n => _, inout("rdi") dest => _, inout("rsi") src => _,
            options(nostack, preserves_flags)
        );
    }
    dest
}

/// # Safety
/// C `memmove`: `n` bytes readable at `src`, writable at `dest`.
#[no_mangle]
pub unsafe extern "C" fn memmove(dest: *mut u8, src: *const u8, n: usize) -> *mut u8 {
    if (dest as usize) <= (src as usize) || (dest as usize) >= (src as usize).wrapping_add(n) {
        // SAFETY: a forward copy is correct when dest is below src or the ranges are apart.
        unsafe { memcpy(dest, src, n) };
    } else if n > 0 {
        // SAFETY: backwards (DF=1) from the last byte; DF is cleared again as the ABI requires.
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
/// C `memset`: `n` bytes writable at `dest`; the low byte of `value` is stored.
#[no_mangle]
pub unsafe extern "C" fn memset(dest: *mut u8, value: i32, n: usize) -> *mut u8 {
    // SAFETY: the caller's contract; rcx = n bytes of the low byte of `value`.
    unsafe {
        core::arch::asm!(
            "rep stosb",
            inout("rcx") n => _, inout("rdi") dest => _, in("al") value.to_le_bytes()[0],
            options(nostack, preserves_flags)
        );
    }
    dest
}

/// # Safety
/// C `memcmp`: `n` bytes readable at both pointers.
#[no_mangle]
pub unsafe extern "C" fn memcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    for i in 0..n {
        // SAFETY: i < n; volatile so that the loop is not recognised as memcmp itself.
        let (x, y) = unsafe { (a.add(i).read_volatile(), b.add(i).read_volatile()) };
        if x != y {
            return i32::from(x) - i32::from(y);
        }
    }
    0
}

/// # Safety
/// `bcmp`: `n` bytes readable at both pointers.
#[no_mangle]
pub unsafe extern "C" fn bcmp(a: *const u8, b: *const u8, n: usize) -> i32 {
    // SAFETY: the same contract as memcmp.
    unsafe { memcmp(a, b, n) }
}

/// libcore refers to the unwinding personality even with `panic = "abort"`; never called.
#[no_mangle]
pub extern "C" fn rust_eh_personality() {}
