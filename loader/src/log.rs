//! `minicap log`: the console log the capture kernel stored.

use std::io::Write;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use minicap_dumpheader::LOG_OFFSET;

use crate::device::Device;
use crate::escape::{escape, Keep};
use crate::info::describe_state;

/// `minicap log DEVICE`: the stored text, control characters other than newline and tab
/// escaped (see [`crate::escape`]).
pub fn log(path: &Path) -> Result<()> {
    let shown = path.display();
    let mut dev = Device::open(path, false)?;
    let h = dev.header(path)?;
    ensure!(
        h.log_length > 0,
        "{shown}: no console log stored (state: {})",
        describe_state(h.state)
    );
    let mut text = Vec::new();
    dev.copy_range(LOG_OFFSET, u64::from(h.log_length), &mut text, |_| {})
        .with_context(|| format!("cannot read the log on {shown}"))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(escape(&text, Keep::NewlineAndTab).as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write the log")
}
