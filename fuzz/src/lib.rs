//! A mutation fuzzer for minicap's parsers of crashed-kernel and user input, on the stable
//! toolchain (`cargo fuzz` needs nightly): see the README's "Fuzzing" paragraph.
//!
//! * [`targets`]: one entry point per parser, with its dictionary.
//! * [`mutate`]: AFL-style byte mutations; [`rng`]: the seeded generator behind them.
//! * [`coverage`]: edge feedback from LLVM's coverage counters, when built with them.
//! * [`engine`]: the loop, `catch_unwind`, failure saving; [`limits`]: the per-input time and
//!   heap limits; [`seeds`]: the generated part of the seed corpus.

pub mod coverage;
pub mod engine;
pub mod limits;
pub mod mutate;
pub mod rng;
pub mod seeds;
pub mod targets;
