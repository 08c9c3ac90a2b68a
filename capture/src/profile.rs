//! Where the time of a capture goes: the phases of the run, measured on one
//! clock (the kernel's TSC, microseconds since entry), and the split of the
//! writing phase between waiting for the device, hashing and checkpoints.
//!
//! The kernel switches phases as it goes ([`Profile::enter`]); a phase may be
//! entered several times (parsing resumes after the heap exists) and its
//! time adds up. The console shows it as one line ([`Profile::line`]) before
//! the final header, so that the stored log has it too.

use core::fmt;

/// A phase of the capture.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// From entry to minicap's own CPU tables and a calibrated clock.
    TakeOver,
    /// boot_params, command line, options, ELF core headers, ACPI tables,
    /// the vmcore layout.
    Parse,
    /// The memory plan: heap, own page tables.
    Memory,
    /// Silencing the interrupt controllers.
    Interrupts,
    /// Taking the IOMMU over.
    Iommu,
    /// The dump device: PCI scan, reset, identification.
    Device,
    /// Writing the vmcore (first header to last byte submitted).
    Write,
    /// The final flush and the final header.
    Final,
}

impl Phase {
    /// Every phase, in the order the line shows them.
    pub const ALL: [Phase; 8] = [
        Phase::TakeOver,
        Phase::Parse,
        Phase::Memory,
        Phase::Interrupts,
        Phase::Iommu,
        Phase::Device,
        Phase::Write,
        Phase::Final,
    ];

    /// Its name on the console.
    pub const fn name(self) -> &'static str {
        match self {
            Phase::TakeOver => "take-over",
            Phase::Parse => "parse",
            Phase::Memory => "memory",
            Phase::Interrupts => "interrupts",
            Phase::Iommu => "iommu",
            Phase::Device => "device",
            Phase::Write => "write",
            Phase::Final => "final",
        }
    }

    const fn index(self) -> usize {
        self as usize
    }
}

/// How the writing phase spent its time (microseconds).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct WriteSplit {
    /// Waiting for the device to complete writes (the CPU idle).
    pub device_wait_us: u64,
    /// Hashing the dump's bytes (the device writing meanwhile).
    pub hashing_us: u64,
    /// Checkpoints: console log, chunk table, flushes, header.
    pub checkpoints_us: u64,
    /// Handing writes to the device (the driver's part of each request).
    pub submitting_us: u64,
}

/// The phases' times so far.
#[derive(Debug, Clone)]
pub struct Profile {
    entry_us: u64,
    current: Phase,
    since_us: u64,
    spent_us: [u64; Phase::ALL.len()],
    /// The writing phase's split, filled in by the writer.
    pub write: WriteSplit,
}

impl Profile {
    /// A profile of a run that entered at `entry_us`, in [`Phase::TakeOver`].
    pub fn new(entry_us: u64) -> Self {
        Self {
            entry_us,
            current: Phase::TakeOver,
            since_us: entry_us,
            spent_us: [0; Phase::ALL.len()],
            write: WriteSplit::default(),
        }
    }

    /// Ends the current phase at `now_us` and starts `phase`.
    pub fn enter(&mut self, phase: Phase, now_us: u64) {
        self.spent_us[self.current.index()] += now_us.saturating_sub(self.since_us);
        self.current = phase;
        self.since_us = now_us.max(self.since_us);
    }

    /// The phase running now.
    pub fn current(&self) -> Phase {
        self.current
    }

    /// Time since entry at `now_us`.
    pub fn since_entry_us(&self, now_us: u64) -> u64 {
        now_us.saturating_sub(self.entry_us)
    }

    /// Time spent in `phase` up to `now_us` (the current phase counted up
    /// to then).
    pub fn spent_us(&self, phase: Phase, now_us: u64) -> u64 {
        let mut us = self.spent_us[phase.index()];
        if phase == self.current {
            us += now_us.saturating_sub(self.since_us);
        }
        us
    }

    /// The console line at `now_us`: `profile: take-over 21 ms, parse 2 ms,
    /// ..., write 2431 ms (device wait 2100 ms, hashing 290 ms, checkpoints
    /// 41 ms, submitting 1 ms), final 12 ms; total 2484 ms`. The write
    /// phase's remainder is the writer's own bookkeeping and console lines.
    pub fn line(&self, now_us: u64) -> ProfileLine<'_> {
        ProfileLine {
            profile: self,
            now_us,
        }
    }
}

/// [`Profile::line`].
pub struct ProfileLine<'a> {
    profile: &'a Profile,
    now_us: u64,
}

impl fmt::Display for ProfileLine<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = self.profile;
        f.write_str("profile: ")?;
        for (i, phase) in Phase::ALL.into_iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write!(
                f,
                "{} {} ms",
                phase.name(),
                ms(p.spent_us(phase, self.now_us))
            )?;
            if phase == Phase::Write {
                write!(
                    f,
                    " (device wait {} ms, hashing {} ms, checkpoints {} ms, submitting {} ms)",
                    ms(p.write.device_wait_us),
                    ms(p.write.hashing_us),
                    ms(p.write.checkpoints_us),
                    ms(p.write.submitting_us)
                )?;
            }
        }
        write!(f, "; total {} ms", ms(p.since_entry_us(self.now_us)))
    }
}

/// Microseconds to whole milliseconds, rounded to nearest.
fn ms(us: u64) -> u64 {
    us.saturating_add(500) / 1000
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn phases_add_up_and_the_line_names_each_one() {
        let mut p = Profile::new(1_000);
        p.enter(Phase::Parse, 22_000); // take-over 21 ms
        p.enter(Phase::Memory, 23_000); // parse 1 ms
        p.enter(Phase::Parse, 26_000); // memory 3 ms
        p.enter(Phase::Memory, 27_400); // parse +1.4 ms
        p.enter(Phase::Interrupts, 27_500); // memory +0.1 ms
        p.enter(Phase::Device, 27_700); // interrupts 0.2 ms
        p.enter(Phase::Iommu, 30_000); // device 2.3 ms
        p.enter(Phase::Device, 30_100); // iommu 0.1 ms
        p.enter(Phase::Write, 63_000); // device +32.9 ms
        p.write = WriteSplit {
            device_wait_us: 2_100_000,
            hashing_us: 290_400,
            checkpoints_us: 40_600,
            submitting_us: 1_499,
        };
        p.enter(Phase::Final, 2_494_000); // write 2431 ms
        assert_eq!(p.current(), Phase::Final);
        assert_eq!(p.spent_us(Phase::Parse, 0), 2_400);
        assert_eq!(p.spent_us(Phase::Final, 2_506_000), 12_000);
        assert_eq!(p.since_entry_us(2_506_000), 2_505_000);
        assert_eq!(
            p.line(2_506_000).to_string(),
            "profile: take-over 21 ms, parse 2 ms, memory 3 ms, interrupts 0 ms, iommu 0 ms, \
             device 35 ms, write 2431 ms (device wait 2100 ms, hashing 290 ms, checkpoints 41 ms, \
             submitting 1 ms), \
             final 12 ms; total 2505 ms"
        );
    }

    #[test]
    fn a_clock_that_goes_backwards_counts_nothing() {
        let mut p = Profile::new(5_000);
        p.enter(Phase::Parse, 4_000);
        assert_eq!(p.spent_us(Phase::TakeOver, 4_000), 0);
        assert_eq!(p.spent_us(Phase::Parse, 4_000), 0);
        assert_eq!(p.since_entry_us(4_000), 0);
    }
}
