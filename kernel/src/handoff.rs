//! What the loader handed over: boot_params, the e820 map (zero page plus
//! SETUP_E820_EXT nodes), the command line, the `minicap.*` options and the
//! `elfcorehdr=` argument.

use crate::failure::{Detail, Failure};
use crate::hw::phys::IdentityMem;
use crate::say;
use minicap_bootinfo::cmdline::{self, ElfCoreHdrArg, MinicapOptions};
use minicap_bootinfo::{walk_e820_ext, BootParams, E820Entry, E820Kind};
use minicap_physmem::{PhysMem, PAGE_BYTES, PAGE_SIZE};
use spin::{Mutex, MutexGuard};

/// kexec-tools' ELF path allows 2048 bytes; leave room for the kernel paths.
const MAX_CMDLINE: usize = 4096;
/// kexec-tools passes at most 1024 ranges (128 in the zero page, the rest in
/// SETUP_E820_EXT nodes).
const MAX_E820: usize = 1024;

/// The loader's hand-over, copied out of crash-region memory that minicap
/// may later reuse.
pub struct Handoff {
    /// ACPI RSDP address the loader found (0 if none).
    pub acpi_rsdp: u64,
    e820: [E820Entry; MAX_E820],
    e820_len: usize,
    /// Where the command line was, and its buffer size.
    pub cmdline_range: (u64, u64),
    cmdline: [u8; MAX_CMDLINE],
    cmdline_len: usize,
}

impl Handoff {
    const EMPTY: Handoff = Handoff {
        acpi_rsdp: 0,
        e820: [E820Entry {
            addr: 0,
            size: 0,
            kind: E820Kind::Reserved,
        }; MAX_E820],
        e820_len: 0,
        cmdline_range: (0, 0),
        cmdline: [0; MAX_CMDLINE],
        cmdline_len: 0,
    };

    /// Read boot_params at `boot_params` (the %rsi the loader passed). The
    /// result lives in a static (it is too big for the boot stack) and is
    /// filled in place.
    pub fn read(boot_params: u64) -> Result<MutexGuard<'static, Handoff>, Failure> {
        static HANDOFF: Mutex<Handoff> = Mutex::new(Handoff::EMPTY);
        let mut handoff = HANDOFF.lock();
        let mut zero_page = [0u8; PAGE_BYTES];
        IdentityMem
            .read(boot_params, &mut zero_page)
            .map_err(|error| Failure::BootParamsUnreadable {
                addr: boot_params,
                error,
            })?;
        let params = BootParams::parse(&zero_page).map_err(|error| Failure::BadBootParams {
            addr: boot_params,
            error,
        })?;

        handoff.acpi_rsdp = params.acpi_rsdp_addr();
        handoff.e820_len = 0;
        for entry in params.e820_entries() {
            handoff.push_e820(entry);
        }
        let ext = walk_e820_ext(
            params.setup_data(),
            |addr, buf| IdentityMem.read(addr, buf),
            |entry| handoff.push_e820(entry),
        );
        if let Err(e) = ext {
            say!("warning: setup_data chain: {e}");
        }

        let addr = params.cmd_line_addr();
        let size = usize::try_from(params.cmdline_size())
            .unwrap_or(MAX_CMDLINE)
            .min(MAX_CMDLINE);
        handoff.cmdline_range = (addr, size as u64);
        handoff.cmdline_len = read_until_unmapped(addr, &mut handoff.cmdline[..size]);
        if handoff.acpi_rsdp == 0 {
            // Loaders that leave boot_params.acpi_rsdp_addr empty (older
            // kexec-tools on UEFI) pass it on the command line instead.
            handoff.acpi_rsdp = handoff.rsdp_from_cmdline().unwrap_or(0);
        }
        Ok(handoff)
    }

    fn push_e820(&mut self, entry: E820Entry) {
        if self.e820_len < MAX_E820 {
            self.e820[self.e820_len] = entry;
            self.e820_len += 1;
        }
    }

    /// The e820 map, in the order the loader gave it.
    pub fn e820(&self) -> impl Iterator<Item = E820Entry> + Clone + '_ {
        self.e820[..self.e820_len].iter().copied()
    }

    /// The command line (up to its first NUL; a non-UTF-8 tail is dropped).
    pub fn cmdline(&self) -> &str {
        match cmdline::from_bytes(&self.cmdline[..self.cmdline_len]) {
            Ok(s) => s,
            Err(e) => core::str::from_utf8(&self.cmdline[..e.valid_up_to()]).unwrap_or(""),
        }
    }

    /// `acpi_rsdp=ADDR` from the command line (the last one wins).
    fn rsdp_from_cmdline(&self) -> Option<u64> {
        cmdline::params(self.cmdline())
            .filter(|p| p.key == "acpi_rsdp")
            .filter_map(|p| cmdline::memparse(p.value?).ok())
            .filter(|(_, rest)| rest.is_empty())
            .map(|(addr, _)| addr)
            .last()
    }

    /// The `minicap.*` options; unknown ones are reported and ignored.
    pub fn options(&self) -> Result<MinicapOptions, Failure> {
        MinicapOptions::parse(self.cmdline(), |w| say!("warning: {w}"))
            .map_err(|e| Failure::BadOption(Detail::display(e)))
    }

    /// The `elfcorehdr=` argument, which only a capture load provides.
    pub fn elfcorehdr(&self) -> Result<ElfCoreHdrArg, Failure> {
        cmdline::elfcorehdr(self.cmdline())
            .map_err(|e| Failure::BadElfcorehdr(Detail::display(e)))?
            .ok_or(Failure::NoElfcorehdr)
    }
}

/// Read as much of `buf` as is mapped, page by page; returns the bytes read.
fn read_until_unmapped(addr: u64, buf: &mut [u8]) -> usize {
    let mut done = 0;
    while done < buf.len() {
        let here = addr + done as u64;
        let to_page_end = usize::try_from(PAGE_SIZE - here % PAGE_SIZE).unwrap_or(PAGE_BYTES);
        let take = to_page_end.min(buf.len() - done);
        if IdentityMem.read(here, &mut buf[done..done + take]).is_err() {
            break;
        }
        done += take;
    }
    done
}
