"""The matrix as data: crash types (with the message each crash prints,
which the dump's log must hold), contexts, machine variants, and the cells
they make. The module's own names (qemu/crashpoint/crashpoint.c) are used
throughout."""

from __future__ import annotations

from dataclasses import dataclass

from harness import scenarios as sc
from harness.kernel import CLOUD, GENERIC


@dataclass(frozen=True)
class CrashType:
    name: str  # the module's type= value
    label: str  # the table's row heading
    message: str  # the crash's own line in the kernel log
    guest_append: str = ""  # what the first kernel needs for this crash to end in a panic
    needs_nmi: bool = False  # only an NMI from outside ends it (QEMU's monitor `nmi`)
    needs_irqs: bool = False  # cannot happen with interrupts off (irqsoff, hardirq)
    # The module's function the crashing CPU is in when it dies (crashpoint.c): what `crash`'s
    # backtrace of the panic task must show, as a frame or as the exception frame's RIP.
    function: str = "crash_now"
    # An oops (die()) with panic_on_oops goes straight to the crash kernel from oops_end(),
    # before the panic() that would print "Kernel panic": its log ends with the oops, whose
    # header carries the oops count, "[#1]". The others call panic() themselves.
    oops: bool = False


# The guest always runs with oops=panic (panic_on_oops), so every oops ends in the crash kernel.
TYPES = (
    CrashType("panic", "panic()", "Kernel panic - not syncing: crashpoint: panic"),
    CrashType("bug", "BUG() (oops)", "kernel BUG at", oops=True),
    CrashType("null", "NULL dereference", "BUG: kernel NULL pointer dereference", oops=True, function="crash_null"),
    CrashType("divide", "divide error", "divide error", oops=True, function="crash_divide"),
    CrashType("gpf", "general protection", "general protection fault", oops=True, function="crash_gpf"),
    CrashType("overflow", "stack overflow (guard page)", "stack guard page", oops=True, function="recurse"),
    CrashType("smash", "stack corrupted (canary)", "stack-protector: Kernel stack is corrupted",
              function="crash_smash"),
    CrashType("hardhang", "hang, irqs off + NMI", "NMI: Not continuing", "unknown_nmi_panic=1", needs_nmi=True,
              function="hang_irqs_off"),
    # watchdog_thresh=5: a soft lockup after 10 s of not scheduling (the default, 20 s, only costs time).
    CrashType("softhang", "soft lockup", "soft lockup", "softlockup_panic=1 watchdog_thresh=5", needs_irqs=True,
              function="hang_preempt_off"),
)
TYPE_BY_NAME = {t.name: t for t in TYPES}
PANIC_LINE = "Kernel panic - not syncing"
OOPS_COUNT = "[#1]"  # __die_header(): "<message>: <error code> [#1] PREEMPT SMP NOPTI"

# The module's context= values, in table order, with their column headings.
CONTEXTS = {
    "process": "process",
    "irqsoff": "irqs off",
    "timer": "timer (softirq)",
    "tasklet": "tasklet",
    "work": "workqueue",
    "hardirq": "hardirq",
    "twocpu": "two CPUs at once",
}
IRQS_OFF_CONTEXTS = ("irqsoff", "hardirq")
# Two kthreads, on the cell's crash CPU and on TWOCPU_OTHER (the boot CPU), crash at the same moment.
TWOCPU = "twocpu"
TWOCPU_OTHER = 0


@dataclass(frozen=True)
class Variant:
    name: str
    about: str
    smp: int = 2
    cpu: str | None = None  # QEMU -cpu (None: the harness's, max)
    memory: int | None = None  # MiB (None: 1024)
    iommu: str | None = None
    guest_append: str = ""
    kernel: str = CLOUD
    expect_line: str = ""  # a line the crashed kernel's log must hold to show the variant took effect
    # The harness scenario each cell runs as (its disks and checks); a busy one has the
    # first kernel writing to the dump disk when it crashes.
    scenario: str = "capture-modern"
    # QEMU's TCG must emulate x2APIC (harness/newer_qemu.py fetches a QEMU that does).
    needs_tcg_x2apic: bool = False
    # A regular expression minicap's own console must match: that minicap, not only the
    # crashed kernel, saw the variant (its interrupt line names the local APIC's mode).
    minicap_console: str = ""

    @property
    def busy(self) -> bool:
        return sc.lookup(self.scenario).busy

    @property
    def crash_cpu(self) -> int:
        """The last CPU: not the boot CPU whenever there are two or more."""
        return self.smp - 1


VARIANTS = (
    Variant("2cpu", "2 CPUs, crash on CPU 1 (the base)"),
    Variant("1cpu", "1 CPU", smp=1),
    Variant("4cpu", "4 CPUs, crash on CPU 3", smp=4),
    # Linux keeps x2APIC mode off unless interrupt remapping supports it (or a hypervisor says
    # x2APIC is safe, which TCG does not): so VT-d with interrupt remapping and EIM. Linux then
    # prints "Switched APIC routing to cluster x2apic." (or physical); the line that x2APIC was
    # refused ("x2apic: IRQ remapping doesn't support X2APIC mode") lacks the final dot. TCG
    # emulates x2APIC from QEMU 9.0 on: the run takes a newer QEMU where the system's lacks it.
    Variant("x2apic", "x2APIC mode: -cpu max,+x2apic, VT-d with interrupt remapping (EIM), 4 CPUs, crash on CPU 3",
            smp=4, cpu="max,+x2apic", iommu="intel-iommu,intremap=on,eim=on",
            guest_append="intel_iommu=on", expect_line="x2apic.", needs_tcg_x2apic=True,
            minicap_console=r"minicap: interrupts: .*local APIC id \d+ x2APIC .*LVTs 0\.\.=\d+ masked"),
    Variant("highmem", "5 GiB RAM (above 4 GiB)", memory=5120),
    Variant("iommu", "intel-iommu, guest translating", iommu="intel-iommu,intremap=off",
            guest_append="intel_iommu=on iommu=nopt"),
    Variant("generic", "Debian's generic kernel instead of the cloud one", kernel=GENERIC),
    # The harness's busy-virtio writers: 4 loops of 1 MiB O_DIRECT writes into the dump area through
    # Linux's virtio-blk driver; the crash-point module is loaded once /sys/block/vdb/inflight shows
    # a write in flight.
    Variant("busy", "2 CPUs, crash on CPU 1, the dump disk (virtio-blk) under O_DIRECT write load at the crash",
            scenario="busy-virtio"),
)
VARIANT_BY_NAME = {v.name: v for v in VARIANTS}
BASE = VARIANTS[0]

# The fast subset (the CI's): one crash from process context, one from a
# softirq, a hard hang ended by an NMI, and an oops on two CPUs at once.
FAST = (("panic", "process"), ("null", "timer"), ("hardhang", "irqsoff"), ("null", TWOCPU))


def impossible(t: CrashType, context: str, v: Variant) -> str | None:
    """Why the crash cannot happen there (the table's `-` and its note), or None."""
    if t.needs_irqs and context in IRQS_OFF_CONTEXTS:
        return "a soft lockup needs interrupts on: with them off it is the hard hang"
    if context == TWOCPU and v.smp < 2:
        return "two CPUs at once needs two CPUs"
    return None


def applies(t: CrashType, context: str, v: Variant) -> bool:
    return impossible(t, context, v) is None


@dataclass(frozen=True)
class Cell:
    type: CrashType
    context: str
    variant: Variant

    @property
    def name(self) -> str:
        return f"{self.type.name}-{self.context}-{self.variant.name}"

    @property
    def crash_cpus(self) -> tuple[int, ...]:
        """The CPUs the module crashes on: the last, and for twocpu the boot CPU too."""
        cpu = self.variant.crash_cpu
        return (cpu, TWOCPU_OTHER) if self.context == TWOCPU else (cpu,)

    def announcements(self) -> list[str]:
        """The lines the module prints right before the crash (type, context, CPU), one per CPU."""
        return [f"crashpoint: {self.type.name} in {self.context} on CPU {n}" for n in self.crash_cpus]

    def dmesg_lines(self) -> list[str]:
        """What the dump's log must hold: for twocpu the line naming both CPUs, the
        module's announcement on each CPU, the crash's own message, and the oops
        header's count or the panic."""
        armed = []
        if self.context == TWOCPU:
            here, there = self.crash_cpus
            armed = [f"crashpoint: arming {self.type.name} in {TWOCPU} on CPU {here} and CPU {there}"]
        lines = armed + self.announcements() + [self.type.message, OOPS_COUNT if self.type.oops else PANIC_LINE]
        return lines + ([self.variant.expect_line] if self.variant.expect_line else [])


def cells(variants, types=None, contexts=None, fast: bool = False) -> list[Cell]:
    out = []
    for v in variants:
        for t in TYPES:
            for c in CONTEXTS:
                if types and t.name not in types or contexts and c not in contexts:
                    continue
                if fast and (t.name, c) not in FAST:
                    continue
                if applies(t, c, v):
                    out.append(Cell(t, c, v))
    return out
