#!/usr/bin/env python3
"""Unit tests of the crash matrix (qemu/matrix/), no QEMU: the cells, the
crash command, each cell's harness options, the table, the headers'
package names, the shown command, the panic CPU from the log and the
triage text, crash's backtraces."""

import sys
import tempfile
import unittest
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.common import HarnessError  # noqa: E402
from harness.kernel import GENERIC  # noqa: E402
from harness.checks import Results  # noqa: E402
from harness import newer_qemu  # noqa: E402
from harness.initramfs import BusyDisk, CrashPoint, build_initramfs  # noqa: E402
from matrix import backtrace, module, panic_cpu, run  # noqa: E402
from matrix import cells as cl  # noqa: E402


class Cells(unittest.TestCase):
    def test_counts(self):
        # 9 types x 7 contexts, less a soft lockup with interrupts off (irqsoff, hardirq).
        self.assertEqual(len(cl.cells([cl.BASE])), 61)
        # One CPU has no second CPU to crash at the same moment.
        self.assertEqual(len(cl.cells([cl.VARIANT_BY_NAME["1cpu"]])), 61 - 9)
        self.assertEqual(len(cl.cells(cl.VARIANTS)), 61 * len(cl.VARIANTS) - 9)
        self.assertNotIn("softhang-hardirq-2cpu", [c.name for c in cl.cells([cl.BASE])])

    def test_impossible_cells_have_reasons(self):
        one = cl.VARIANT_BY_NAME["1cpu"]
        self.assertIn("two CPUs", cl.impossible(cl.TYPE_BY_NAME["null"], cl.TWOCPU, one))
        self.assertIn("interrupts on", cl.impossible(cl.TYPE_BY_NAME["softhang"], "hardirq", cl.BASE))
        self.assertIsNone(cl.impossible(cl.TYPE_BY_NAME["softhang"], cl.TWOCPU, cl.BASE))

    def test_fast_subset_is_four_real_cells(self):
        fast = cl.cells([cl.BASE], fast=True)
        self.assertEqual(sorted((c.type.name, c.context) for c in fast), sorted(cl.FAST))
        # On one CPU the two-CPU cell cannot happen: three remain.
        self.assertEqual(len(cl.cells([cl.VARIANT_BY_NAME["1cpu"]], fast=True)), 3)

    def test_filters(self):
        got = cl.cells([cl.BASE], types=["gpf"], contexts=["tasklet", "work"])
        self.assertEqual([c.name for c in got], ["gpf-tasklet-2cpu", "gpf-work-2cpu"])

    def test_crash_cpu_is_not_the_boot_cpu(self):
        self.assertEqual(cl.VARIANT_BY_NAME["1cpu"].crash_cpu, 0)
        self.assertEqual(cl.VARIANT_BY_NAME["2cpu"].crash_cpu, 1)
        self.assertEqual(cl.VARIANT_BY_NAME["4cpu"].crash_cpu, 3)

    def test_dmesg_lines(self):
        c = cl.Cell(cl.TYPE_BY_NAME["hardhang"], "hardirq", cl.VARIANT_BY_NAME["x2apic"])
        self.assertEqual(c.dmesg_lines(), ["crashpoint: hardhang in hardirq on CPU 3", "NMI: Not continuing",
                                           "Kernel panic - not syncing", "x2apic."])  # fmt: skip

    def test_twocpu_lines(self):
        c = cl.Cell(cl.TYPE_BY_NAME["null"], cl.TWOCPU, cl.VARIANT_BY_NAME["4cpu"])
        self.assertEqual(c.crash_cpus, (3, 0))
        self.assertEqual(c.dmesg_lines(), ["crashpoint: arming null in twocpu on CPU 3 and CPU 0",
                                           "crashpoint: null in twocpu on CPU 3", "crashpoint: null in twocpu on CPU 0",
                                           "BUG: kernel NULL pointer dereference", "[#1]"])  # fmt: skip

    def test_every_type_context_and_function_is_in_the_module(self):
        src = (Path(__file__).resolve().parent / "crashpoint" / "crashpoint.c").read_text()
        for name in [t.name for t in cl.TYPES] + list(cl.CONTEXTS):
            self.assertIn(f'= "{name}"', src, name)
        for t in cl.TYPES:
            self.assertRegex(src, rf"(?m)^static [a-z ]+ {t.function}\(")
        self.assertIn('"crashpoint: arming %s in twocpu on CPU %d and CPU %d\\n"', src)

    def test_busy_variant_runs_the_busy_scenario(self):
        busy = cl.VARIANT_BY_NAME["busy"]
        self.assertTrue(busy.busy)
        self.assertFalse(cl.BASE.busy)
        self.assertEqual(busy.scenario, "busy-virtio")


class CellRun(unittest.TestCase):
    def test_crash_command_pins_insmod(self):
        c = cl.Cell(cl.TYPE_BY_NAME["null"], "timer", cl.VARIANT_BY_NAME["4cpu"])
        self.assertIn("taskset -c 3 insmod /crashpoint.ko type=null context=timer\n", run.crash_command(c))
        two = cl.Cell(cl.TYPE_BY_NAME["panic"], cl.TWOCPU, cl.BASE)
        self.assertIn("taskset -c 1 insmod /crashpoint.ko type=panic context=twocpu other_cpu=0", run.crash_command(two))

    def test_busy_crash_command_follows_the_inflight_line(self):
        """In a busy run nothing of init's own (E2E-/BUSY- lines) may come between
        BUSY-INFLIGHT and the crash: the insmod is the first line after the wait."""
        c = cl.Cell(cl.TYPE_BY_NAME["null"], "process", cl.VARIANT_BY_NAME["busy"])
        cmd = run.crash_command(c)
        self.assertTrue(cmd.startswith("taskset -c 1 insmod "), cmd)
        self.assertNotIn("E2E-CRASHING", cmd)
        self.assertIn("E2E-CRASHING", run.crash_command(cl.Cell(c.type, "process", cl.BASE)))

    def test_busy_initramfs_waits_then_loads_the_module(self):
        k = mock.Mock(version="6.1.0-57-cloud-amd64")
        with mock.patch("harness.initramfs.add_busybox"), mock.patch("harness.initramfs.Cpio") as cpio:
            cpio.return_value.finish.return_value = b""
            build_initramfs(k, "", minicap=Path("/m.elf"), busy=BusyDisk("vdb", ()),
                            crash_point=CrashPoint((("/crashpoint.ko", Path("/x.ko")),), "insmod /crashpoint.ko\n"))
            init = next(c.args[1] for c in cpio.return_value.file.call_args_list if c.args[0] == "init").decode()
            files = [c.args[0] for c in cpio.return_value.host_file.call_args_list]
        self.assertIn("/crashpoint.ko", files)
        inflight = init.index("BUSY-INFLIGHT")
        self.assertLess(init.index("BUSY-WRITERS"), inflight)
        self.assertGreater(init.index("insmod /crashpoint.ko"), inflight)
        self.assertNotIn("sysrq-trigger", init)

    def test_cell_args(self):
        base = run.parse_args([]).harness
        c = cl.Cell(cl.TYPE_BY_NAME["hardhang"], "process", cl.VARIANT_BY_NAME["iommu"])
        a, s = run.cell_args(base, c, Path("/x/crashpoint.ko"), Path("/tmp/out/cell"))
        self.assertEqual((a.smp, a.iommu), (2, "intel-iommu,intremap=off"))
        self.assertIn("intel_iommu=on", a.guest_append)
        self.assertIn("unknown_nmi_panic=1", a.guest_append)
        self.assertIn("unix:/tmp/out/cell/monitor.sock,server=on,wait=off", a.qemu_extra)
        self.assertEqual(a.crash_point.files, (("/crashpoint.ko", Path("/x/crashpoint.ko")),))
        self.assertFalse(s.in_suite)
        g = cl.Cell(cl.TYPE_BY_NAME["panic"], "work", cl.VARIANT_BY_NAME["generic"])
        a, s = run.cell_args(base, g, Path("/x"), Path("/tmp/o"))
        self.assertEqual(s.guest_kernel, GENERIC)
        self.assertNotIn("-monitor", a.qemu_extra)
        self.assertEqual(a.crash_markers, ("crashpoint: panic in work on CPU 1",))
        b = cl.Cell(cl.TYPE_BY_NAME["null"], cl.TWOCPU, cl.VARIANT_BY_NAME["busy"])
        a, s = run.cell_args(base, b, Path("/x"), Path("/tmp/o"))
        self.assertTrue(s.busy)
        self.assertEqual(a.crash_markers, ("crashpoint: null in twocpu on CPU 1", "crashpoint: null in twocpu on CPU 0"))

    def test_table(self):
        recs = [{"type": "panic", "context": "process", "variant": "2cpu", "ok": True},
                {"type": "gpf", "context": "hardirq", "variant": "2cpu", "ok": False, "reason": "RESULT: none"}]
        lines = run.table(recs, cl.BASE)
        self.assertIn("| panic() | O |   |   |   |   |   |   |", lines)
        self.assertIn("| general protection |   |   |   |   |   | X1 |   |", lines)
        self.assertIn("| soft lockup |   | -1 |   |   |   | -1 |   |", lines)
        self.assertEqual(lines[-2:], ["X1: gpf/hardirq: RESULT: none",
                                      "-1: a soft lockup needs interrupts on: with them off it is the hard hang"])  # fmt: skip
        self.assertEqual(run.table(recs, cl.VARIANT_BY_NAME["1cpu"]), [])

    def test_table_one_cpu_marks_twocpu_impossible(self):
        one = cl.VARIANT_BY_NAME["1cpu"]
        lines = run.table([{"type": "null", "context": "process", "variant": "1cpu", "ok": True}], one)
        self.assertIn("| NULL dereference | O |   |   |   |   |   | -1 |", lines)
        self.assertIn("| soft lockup |   | -2 |   |   |   | -2 | -1 |", lines)
        self.assertEqual(lines[-2:], ["-1: two CPUs at once needs two CPUs",
                                      "-2: a soft lockup needs interrupts on: with them off it is the hard hang"])  # fmt: skip

    def test_shown_command(self):
        self.assertEqual(run.shown_command(["--fast", "--minicap", "/a/m.elf", "--tool=/b", "--variant", "1cpu"]),
                         "python3 qemu/matrix.py --fast --variant 1cpu")  # fmt: skip


class NewerQemu(unittest.TestCase):
    """The x2apic variant's QEMU (harness/newer_qemu.py): the probe, the dependency plan, the wrapper."""

    def fake_qemu(self, d: str, body: str) -> str:
        q = Path(d) / "qemu"
        q.write_text("#!/bin/sh\n" + body)
        q.chmod(0o755)
        return str(q)

    def test_probe(self):
        with tempfile.TemporaryDirectory() as d:
            warns = f'echo "q: warning: {newer_qemu.NO_TCG_X2APIC} [bit 21]" >&2\ncat >/dev/null\n'
            ok, why = newer_qemu.tcg_has_x2apic(self.fake_qemu(d, warns))
            self.assertFalse(ok)
            self.assertIn("CPUID.01H:ECX.x2apic", why)
            self.assertEqual(newer_qemu.tcg_has_x2apic(self.fake_qemu(d, "cat >/dev/null\n")), (True, ""))
            ok, why = newer_qemu.tcg_has_x2apic(self.fake_qemu(d, "echo 'unsupported machine' >&2\nexit 1\n"))
            self.assertFalse(ok)
            self.assertIn("exit 1", why)
            self.assertFalse(newer_qemu.tcg_has_x2apic(d + "/absent")[0])

    def test_download_needs_the_qemu_package(self):
        with tempfile.TemporaryDirectory() as d, mock.patch.object(newer_qemu, "APT_DIR", Path(d)):
            debs = Path(d) / "cache" / "archives"
            debs.mkdir(parents=True)
            (debs / "stale_1_all.deb").write_text("")
            calls = []
            with mock.patch.object(newer_qemu, "apt", lambda *a: calls.append(a) or ""):
                with self.assertRaisesRegex(HarnessError, "no qemu-system-x86 from bookworm-backports"):
                    newer_qemu.download("bookworm")
                self.assertFalse((debs / "stale_1_all.deb").exists())  # a previous attempt's files go first
                self.assertEqual(calls, [("apt-get", "install", "--download-only", "-y", "--no-install-recommends",
                                          "-t", "bookworm-backports", "qemu-system-x86")])  # fmt: skip
            fetched = debs / "qemu-system-x86_1%3a10.0.2_amd64.deb"
            with mock.patch.object(newer_qemu, "apt", lambda *a: fetched.write_text("")):
                self.assertEqual(newer_qemu.download("bookworm"), debs)

    def test_wrapper(self):
        w = newer_qemu.wrapper_text(Path("/c/qemu-10/root"), libraries=False)
        self.assertIn('exec "/c/qemu-10/root/usr/bin/qemu-system-x86_64" -L "/c/qemu-10/root/usr/share/qemu" '
                      '-L "/c/qemu-10/root/usr/share/seabios" "$@"', w)  # fmt: skip
        self.assertIn("QEMU_MODULE_DIR=", w)
        self.assertNotIn("LD_LIBRARY_PATH", w)
        self.assertIn("LD_LIBRARY_PATH=", newer_qemu.wrapper_text(Path("/r"), libraries=True))

    def test_x2apic_variant(self):
        v = cl.VARIANT_BY_NAME["x2apic"]
        self.assertTrue(v.needs_tcg_x2apic)
        self.assertFalse(any(w.needs_tcg_x2apic for w in cl.VARIANTS if w is not v))
        line = ("minicap: interrupts: 8259 remapped and masked (0xff/0xff); local APIC id 3 x2APIC (not the BSP: the "
                "crash happened on another CPU), LVTs 0..=5 masked; 1 IO-APIC(s), 24 entries masked")  # fmt: skip
        for text, ok in ((line, True), (line.replace("x2APIC", "xAPIC"), False), ("", False)):
            res = Results()
            with tempfile.TemporaryDirectory() as d:
                (Path(d) / "serial.log").write_text("[ 1.0] x2apic enabled\n" + text + "\n")
                run.check_minicap_console(res, Path(d) / "serial.log", v)
            self.assertEqual(res.ok, ok, text)
        res = Results()
        run.check_minicap_console(res, Path("/nonexistent"), cl.BASE)
        self.assertEqual(res.checks, [])


class PanicCpu(unittest.TestCase):
    DMESG = """[   10.1] crashpoint: null in twocpu on CPU 1
[   10.1] crashpoint: null in twocpu on CPU 0
[   10.2] BUG: kernel NULL pointer dereference, address: 0000000000000000
[   10.2] Oops: 0000 [#1] PREEMPT SMP NOPTI
[   10.2] CPU: 0 PID: 201 Comm: crashpoint/0 Tainted: G           OE      6.1.0-57-cloud-amd64 #1
"""
    TRIAGE = "minicap triage\npanic cpu:      cpu 0: it ran pid 201, which wrote the log's last \"Oops\" record\n"

    def test_log_and_triage(self):
        self.assertEqual(panic_cpu.log_panic_cpu(self.DMESG, "[#1]"), 0)
        self.assertIsNone(panic_cpu.log_panic_cpu(self.DMESG, "Kernel panic - not syncing"))
        # BUG() on two CPUs: both print "kernel BUG at" (report_bug() comes before die_lock);
        # only the winner the oops header and its CPU line.
        both = ("[ 7.18] kernel BUG at crashpoint.c:204!\n[ 7.18] invalid opcode: 0000 [#1] PREEMPT SMP NOPTI\n"
                "[ 7.18] CPU: 1 PID: 134 Comm: crashpoint/1 Tainted: G OE\n[ 7.18] kernel BUG at crashpoint.c:204!\n")
        self.assertEqual(panic_cpu.log_panic_cpu(both, "[#1]"), 1)
        self.assertEqual(panic_cpu.triage_panic_cpu(self.TRIAGE)[0], 0)
        self.assertEqual(panic_cpu.triage_panic_cpu("panic cpu:      none: no record announces a crash\n")[0], None)

    def check(self, dmesg: str, triage: str, cell: cl.Cell) -> Results:
        res = Results()
        with tempfile.TemporaryDirectory() as d:
            (Path(d) / "dmesg.txt").write_text(dmesg)
            (Path(d) / "triage.txt").write_text(triage)
            panic_cpu.check_panic_cpu(res, Path(d), cell)
        return res

    def test_check(self):
        two = cl.Cell(cl.TYPE_BY_NAME["null"], cl.TWOCPU, cl.BASE)
        self.assertTrue(self.check(self.DMESG, self.TRIAGE, two).ok)
        # The triage naming the other CPU, or none, fails.
        self.assertFalse(self.check(self.DMESG, self.TRIAGE.replace("cpu 0:", "cpu 1:"), two).ok)
        self.assertFalse(self.check(self.DMESG, "panic cpu:      none\n", two).ok)
        # A CPU the module did not crash on fails even when both agree ...
        one = cl.Cell(cl.TYPE_BY_NAME["null"], "process", cl.BASE)
        self.assertFalse(self.check(self.DMESG, self.TRIAGE, one).ok)
        # ... unless an NMI (sent to every CPU) ended the hang.
        nmi = self.DMESG.replace("Oops: 0000 [#1] PREEMPT SMP NOPTI", "Kernel panic - not syncing: NMI: Not continuing")
        self.assertTrue(self.check(nmi, self.TRIAGE, cl.Cell(cl.TYPE_BY_NAME["hardhang"], "process", cl.BASE)).ok)


class Backtrace(unittest.TestCase):
    BT = """PID: 201      TASK: ff2757020125c180  CPU: 1    COMMAND: "crashpoint/1"
 #0 [ff5232204009b9a8] machine_kexec at ffffffffaa86f2a3
 #1 [ff5232204009ba00] __crash_kexec at ffffffffaa9a3e3a
 #6 [ff5232204009bc50] asm_exc_page_fault at ffffffffab600b26
    [exception RIP: crash_null+5]
    RIP: ffffffffc07a1005  RSP: ff5232204009bd00  RFLAGS: 00010246
 #7 [ff5232204009bd08] crash_now at ffffffffc07a1187 [crashpoint]
 #8 [ff5232204009bd20] twocpu_fn at ffffffffc07a1301 [crashpoint]
"""
    LOSER = """PID: 200      TASK: ff2757020125a000  CPU: 0    COMMAND: "crashpoint/0"
 #0 [fffffe0000009e50] crash_nmi_callback at ffffffffaa85e2f1
--- <NMI exception stack> ---
 #5 [ff52322040093c10] oops_begin at ffffffffaa83a1b5
 #9 [ff52322040093d00] asm_exc_page_fault at ffffffffab600b26
    [exception RIP: crash_null+5]
 #10 [ff52322040093d08] crash_now.cold at ffffffffc07a1187 [crashpoint]
"""

    def test_parse(self):
        t = backtrace.parse_backtraces(self.BT)
        self.assertEqual(len(t), 1)
        self.assertEqual((t[0].pid, t[0].cpu, t[0].command), (201, 1, "crashpoint/1"))
        self.assertEqual(t[0].functions, ("machine_kexec", "__crash_kexec", "asm_exc_page_fault", "crash_null",
                                          "crash_now", "twocpu_fn"))  # fmt: skip

    def test_verdict(self):
        null = cl.TYPE_BY_NAME["null"]
        ok, detail = backtrace.backtrace_verdict(self.BT, None, cl.Cell(null, "process", cl.BASE))
        self.assertTrue(ok, detail)
        ok, detail = backtrace.backtrace_verdict(self.BT, None, cl.Cell(cl.TYPE_BY_NAME["gpf"], "process", cl.BASE))
        self.assertFalse(ok)
        self.assertIn("no crash_gpf", detail)
        two = cl.Cell(null, cl.TWOCPU, cl.BASE)
        self.assertTrue(backtrace.backtrace_verdict(self.BT, self.BT + self.LOSER, two)[0])
        ok, detail = backtrace.backtrace_verdict(self.BT, self.BT, two)
        self.assertFalse(ok)
        self.assertIn("CPU 0 missing", detail)
        self.assertFalse(backtrace.backtrace_verdict("", None, two)[0])
        # gcc's split-off part counts as the function (crash_now.cold for crash_now).
        panic = cl.Cell(cl.TYPE_BY_NAME["panic"], cl.TWOCPU, cl.BASE)
        self.assertTrue(backtrace.backtrace_verdict(self.BT, self.BT + self.LOSER, panic)[0])


class Headers(unittest.TestCase):
    def test_packages_from_apt_cache(self):
        out = ("linux-headers-6.1.0-57-cloud-amd64\n  Depends: linux-headers-6.1.0-57-common\n"
               "  Depends: linux-kbuild-6.1\n  Depends: linux-compiler-gcc-12-x86\n")  # fmt: skip
        with mock.patch.object(module, "run", return_value=mock.Mock(returncode=0, stdout=out)):
            self.assertEqual(module.header_packages("6.1.0-57-cloud-amd64"),
                             ["linux-headers-6.1.0-57-cloud-amd64", "linux-headers-6.1.0-57-common",
                              "linux-kbuild-6.1"])  # fmt: skip

    def test_common_include_made_relative(self):
        want = "include $(dir $(lastword $(MAKEFILE_LIST)))../linux-headers-6.1.0-57-common/Makefile\n"
        for text in ("include /usr/src/linux-headers-6.1.0-57-common/Makefile\n",
                     "include /work/wt-x/qemu/cache/headers-6.1.0-57-cloud-amd64/usr/src/"
                     "linux-headers-6.1.0-57-common/Makefile\n"):  # fmt: skip
            self.assertEqual(module.relative_common_include(text), want)
        self.assertEqual(module.relative_common_include(want), want)
        with mock.patch.object(module, "run", return_value=mock.Mock(returncode=100, stdout="E: no package")):
            with self.assertRaises(HarnessError):
                module.header_packages("9.9")


if __name__ == "__main__":
    unittest.main()
