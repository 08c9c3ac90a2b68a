//! Why a capture stopped: one human-readable sentence, built without a heap
//! (some failures happen before there is one).

use crate::console::FixedString;
use core::fmt::Write;

/// The reason, as printed after `minicap: RESULT: failure:` and stored in the
/// dump header's message field.
pub struct Failure(FixedString<256>);

impl Failure {
    /// Format a failure.
    pub fn new(args: core::fmt::Arguments<'_>) -> Self {
        let mut text = FixedString::new();
        let _ = text.write_fmt(args);
        Failure(text)
    }

    /// The sentence.
    pub fn as_str(&self) -> &str {
        self.0.as_str()
    }
}

/// `failure!("...", args)`: build a [`Failure`].
#[macro_export]
macro_rules! failure {
    ($($arg:tt)*) => { $crate::failure::Failure::new(format_args!($($arg)*)) };
}
