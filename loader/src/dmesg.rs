//! `minicap dmesg`: the triage text the capture kernel stored before the dump.

use std::io::Write;
use std::path::Path;

use anyhow::{ensure, Context, Result};
use minicap_dumpheader::TRIAGE_OFFSET;

use crate::device::Device;
use crate::escape::{escape, Keep};
use crate::info::describe_state;

/// `minicap dmesg DEVICE`: the stored text, control characters other than newline and tab
/// escaped (see [`crate::escape`]).
pub fn dmesg(path: &Path) -> Result<()> {
    let shown = path.display();
    let mut dev = Device::open(path, false)?;
    let h = dev.header(path)?;
    ensure!(
        h.triage_length > 0,
        "{shown}: no triage text stored (state: {}); captures by minicap versions before the \
         triage area, or ones that stopped before reading the crashed kernel, have none",
        describe_state(h.state)
    );
    let mut text = Vec::new();
    dev.copy_range(TRIAGE_OFFSET, u64::from(h.triage_length), &mut text, |_| {})
        .with_context(|| format!("cannot read the triage text on {shown}"))?;
    let mut stdout = std::io::stdout().lock();
    stdout
        .write_all(escape(&text, Keep::NewlineAndTab).as_bytes())
        .and_then(|()| stdout.flush())
        .context("cannot write the triage text")
}
