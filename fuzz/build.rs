//! Declares `cfg(fuzz_coverage)`, which `cargo xtask fuzz` sets together with
//! `-C instrument-coverage` (see `src/coverage.rs`).

fn main() {
    println!("cargo::rustc-check-cfg=cfg(fuzz_coverage)");
}
