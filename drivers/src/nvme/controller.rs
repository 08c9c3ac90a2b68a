//! The controller as a whole: taking it over from the crashed kernel,
//! enabling it with fresh admin queues, admin commands, and stopping it
//! (NVMe 1.4 §7.6.1 initialisation, §7.3 reset; Linux
//! `nvme_disable_ctrl()` / `nvme_enable_ctrl()` / `nvme_set_queue_count()`,
//! SeaBIOS `nvme_controller_enable()`).

use super::error::{AdminCommand, NvmeError};
use super::queue::{Command, QueuePair};
use super::registers::{cc, csts, Capabilities, Doorbells, Properties, PAGE_BYTES};
use crate::pci::{self, PciAddress};
use crate::{poll_until, Deadline, Platform};

/// Entries of each admin queue: minicap sends one admin command at a time.
const ADMIN_QUEUE_ENTRIES: u16 = 8;
/// How long an admin command may take (Linux `admin_timeout`, 60 s).
const ADMIN_TIMEOUT_MS: u64 = 60_000;
/// How often a wait for a completion also reads CSTS, to notice a fatal
/// controller (CFS) or one that left the bus without waiting out the
/// command's whole deadline.
const HEALTH_CHECK_US: u64 = 1_000;

/// Admin opcodes (NVMe 1.4 §5).
const CREATE_IO_SQ: u8 = 0x01;
const CREATE_IO_CQ: u8 = 0x05;
const SET_FEATURES: u8 = 0x09;
/// Feature identifier: Number of Queues (§5.21.1.7).
const FEATURE_NUMBER_OF_QUEUES: u32 = 0x07;
/// CDW11 of the queue creation commands: PC, physically contiguous.
const PHYSICALLY_CONTIGUOUS: u32 = 1 << 0;

/// A controller taken over, enabled, with its admin queue pair.
pub(crate) struct Controller<P: Platform + ?Sized> {
    function: PciAddress,
    properties: Properties<P>,
    doorbells: Doorbells<P>,
    caps: Capabilities,
    admin: QueuePair<P>,
    /// The identifier of the next admin command.
    admin_command_id: u16,
}

impl<P: Platform + ?Sized> Controller<P> {
    /// Stop whatever the crashed kernel left running and enable the
    /// controller with fresh admin queues. Bus mastering must be off (see
    /// `pci::take_over`); it is turned on only once the controller is
    /// disabled, so nothing the old queues held can reach memory. On
    /// failure the controller is left disabled if possible and bus
    /// mastering off.
    pub fn start(p: &P, function: PciAddress) -> Result<Self, NvmeError> {
        let properties = Properties::map(p, function).ok_or(NvmeError::NoRegisters)?;
        let caps = properties.capabilities(p).ok_or(NvmeError::NotResponding)?;
        // Stopped before anything else can fail, so that a refused
        // controller does not stay enabled.
        if !disable(p, &properties, caps) {
            return Err(NvmeError::DisableTimeout {
                waited_ms: caps.ready_timeout_ms(),
            });
        }
        let doorbells = Doorbells::map(p, function, caps).ok_or(NvmeError::NoRegisters)?;
        let admin = QueuePair::new(p, 0, ADMIN_QUEUE_ENTRIES).ok_or(NvmeError::NoMemory)?;
        let controller = Self {
            function,
            properties,
            doorbells,
            caps,
            admin,
            admin_command_id: 0,
        };
        // Checked with the controller stopped: refused, it stays so.
        if !caps.nvm_command_set() {
            return Err(NvmeError::NoNvmCommandSet);
        }
        let page = caps.min_page_bytes();
        if page > PAGE_BYTES || caps.max_page_bytes() < PAGE_BYTES {
            return Err(NvmeError::UnsupportedPageSize(page));
        }
        pci::enable_bus_master(p, function);
        match controller.enable(p) {
            Ok(()) => Ok(controller),
            Err(e) => {
                controller.stop(p);
                pci::stop_bus_master(p, function);
                Err(e)
            }
        }
    }

    /// CAP as read at take-over.
    pub fn capabilities(&self) -> Capabilities {
        self.caps
    }

    /// The doorbells of the admin and the I/O queue pair.
    pub fn doorbells(&self) -> &Doorbells<P> {
        &self.doorbells
    }

    /// VS: major 31:16, minor 15:8.
    pub fn version(&self, p: &P) -> u32 {
        self.properties.version(p)
    }

    /// Disable the controller (see [`disable`]); false if it stays ready.
    pub fn disable(&self, p: &P) -> bool {
        disable(p, &self.properties, self.caps)
    }

    /// Stop a controller minicap gives up on: disable it; if it will not
    /// disable, cut off its DMA.
    pub fn stop(&self, p: &P) {
        if !self.disable(p) {
            pci::stop_bus_master(p, self.function);
        }
    }

    /// Mask interrupts, point the controller at the admin queues, set
    /// CC.EN and wait (CAP.TO) for CSTS.RDY.
    fn enable(&self, p: &P) -> Result<(), NvmeError> {
        let props = &self.properties;
        props.mask_interrupts(p);
        props.set_admin_queues(
            p,
            self.admin.entries(),
            self.admin.submission_address(),
            self.admin.completion_address(),
        );
        props.set_configuration(p, cc::CONFIGURATION | cc::ENABLE);
        let timeout_ms = self.caps.ready_timeout_ms();
        let mut status = 0;
        poll_until(p, timeout_ms, || {
            status = props.status(p);
            status & (csts::READY | csts::FATAL) != 0
        });
        if status == csts::NOT_RESPONDING {
            Err(NvmeError::NotResponding)
        } else if status & csts::FATAL != 0 {
            Err(NvmeError::ControllerFatal)
        } else if status & csts::READY == 0 {
            Err(NvmeError::EnableTimeout {
                waited_ms: timeout_ms,
            })
        } else {
            Ok(())
        }
    }

    /// CSTS says the controller is working: not fatal, still on the bus.
    pub fn health(&self, p: &P) -> Result<(), NvmeError> {
        let status = self.properties.status(p);
        if status == csts::NOT_RESPONDING {
            Err(NvmeError::NotResponding)
        } else if status & csts::FATAL != 0 {
            Err(NvmeError::ControllerFatal)
        } else {
            Ok(())
        }
    }

    /// [`Controller::health`], at most once per `HEALTH_CHECK_US`
    /// (`next_us`: when the next check is due).
    pub fn periodic_health(&self, p: &P, next_us: &mut u64) -> Result<(), NvmeError> {
        let now = p.now_us();
        if now < *next_us {
            return Ok(());
        }
        *next_us = now.saturating_add(HEALTH_CHECK_US);
        self.health(p)
    }

    /// Send one admin command and wait for it; its result (DW0). A timeout
    /// or a broken controller is returned as is: the caller gives up on it.
    pub fn admin(
        &mut self,
        p: &P,
        which: AdminCommand,
        command: &Command,
    ) -> Result<u32, NvmeError> {
        let id = self.admin_command_id;
        self.admin_command_id = self.admin_command_id.wrapping_add(1);
        if self.admin.is_full() {
            // Only after a controller that never reports its queue head.
            return Err(NvmeError::BadCompletion(id));
        }
        self.admin.submit(p, &self.doorbells, id, command);
        let deadline = Deadline::after_ms(p, ADMIN_TIMEOUT_MS);
        let mut next_health_check = 0;
        loop {
            // Checked before the deadline, so a completion that arrives
            // just at the deadline still counts.
            let expired = deadline.expired(p);
            match self.admin.next_completion(p, &self.doorbells) {
                Err(bad) => return Err(NvmeError::BadCompletion(bad.0)),
                Ok(Some(done)) if done.command_id != id => {
                    return Err(NvmeError::BadCompletion(done.command_id))
                }
                Ok(Some(done)) if done.status.is_success() => return Ok(done.result),
                Ok(Some(done)) => {
                    return Err(NvmeError::AdminFailed {
                        command: which,
                        status: done.status,
                    })
                }
                Ok(None) => {}
            }
            self.periodic_health(p, &mut next_health_check)?;
            if expired {
                return Err(NvmeError::AdminTimeout { command: which });
            }
            core::hint::spin_loop();
        }
    }

    /// Ask for one I/O queue pair, then create `io`'s completion queue
    /// and its submission queue (in that order, §7.6.1), interrupts off.
    pub fn create_io_queues(&mut self, p: &P, io: &QueuePair<P>) -> Result<(), NvmeError> {
        // Number of Queues, 0's based: one submission and one completion
        // queue. Linux goes on without I/O queues when a degraded
        // controller refuses; here the queue creation below then tells.
        let queue_count = Command {
            opcode: SET_FEATURES,
            cdw10: FEATURE_NUMBER_OF_QUEUES,
            cdw11: 0,
            ..Command::default()
        };
        match self.admin(p, AdminCommand::SetQueueCount, &queue_count) {
            Ok(_) | Err(NvmeError::AdminFailed { .. }) => {}
            Err(e) => return Err(e),
        }
        let id = u32::from(io.id());
        let size_and_id = (u32::from(io.entries()) - 1) << 16 | id;
        let completion_queue = Command {
            opcode: CREATE_IO_CQ,
            prp1: io.completion_address(),
            cdw10: size_and_id,
            // IEN (bit 1) clear: this queue raises no interrupt.
            cdw11: PHYSICALLY_CONTIGUOUS,
            ..Command::default()
        };
        self.admin(p, AdminCommand::CreateCompletionQueue, &completion_queue)?;
        let submission_queue = Command {
            opcode: CREATE_IO_SQ,
            prp1: io.submission_address(),
            cdw10: size_and_id,
            // CQID 31:16, priority 0 (ignored under round robin).
            cdw11: id << 16 | PHYSICALLY_CONTIGUOUS,
            ..Command::default()
        };
        self.admin(p, AdminCommand::CreateSubmissionQueue, &submission_queue)?;
        Ok(())
    }
}

/// Clear CC.EN and wait (CAP.TO) for CSTS.RDY to follow: the controller
/// drops every queue and command (a Controller Reset). A controller found
/// enabling (EN set, RDY not yet) is first given its time to become ready,
/// as clearing EN then is undefined (§3.1.5; FreeBSD
/// `nvme_ctrlr_disable()` waits the same way). False if RDY stays set.
fn disable<P: Platform + ?Sized>(p: &P, props: &Properties<P>, caps: Capabilities) -> bool {
    let timeout_ms = caps.ready_timeout_ms();
    let configuration = props.configuration(p);
    if configuration & cc::ENABLE != 0 && props.status(p) & csts::READY == 0 {
        // Whatever the outcome, EN is cleared next: a fatal or stuck
        // controller never becomes ready.
        poll_until(p, timeout_ms, || {
            props.status(p) & (csts::READY | csts::FATAL) != 0
        });
    }
    props.set_configuration(p, 0);
    poll_until(p, timeout_ms, || {
        let status = props.status(p);
        status != csts::NOT_RESPONDING && status & csts::READY == 0
    })
}
