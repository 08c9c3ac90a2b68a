//! Link the purgatory like the kernel: a freestanding static PIE with no crt or libc, its own
//! linker script (the parameter block first) and entry point. Only the binary gets these flags;
//! the library is an ordinary host crate for the tests and the loader.
fn main() {
    let manifest = std::env::var("CARGO_MANIFEST_DIR").expect("cargo sets CARGO_MANIFEST_DIR");
    let script = std::path::Path::new(&manifest).join("../linker/purgatory.ld");
    println!("cargo:rerun-if-changed={}", script.display());
    println!("cargo:rerun-if-changed=src/bin/purgatory/entry.S");
    for arg in [
        "-nostartfiles",
        "-nostdlib",
        "-static-pie",
        "-Wl,--no-dynamic-linker",
        "-Wl,--gc-sections",
        "-Wl,-z,norelro",
        "-Wl,-z,noexecstack",
        "-Wl,--build-id=none",
        "-Wl,-e,purgatory_start",
    ] {
        println!("cargo:rustc-link-arg-bins={arg}");
    }
    println!("cargo:rustc-link-arg-bins=-Wl,-T,{}", script.display());
}
