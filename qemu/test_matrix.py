#!/usr/bin/env python3
"""Unit tests of the crash matrix (qemu/matrix/), no QEMU: the cells, the
crash command, each cell's harness options, the table, the headers'
package names, the shown command."""

import sys
import unittest
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.common import HarnessError  # noqa: E402
from harness.kernel import GENERIC  # noqa: E402
from matrix import cells as cl  # noqa: E402
from matrix import module, run  # noqa: E402


class Cells(unittest.TestCase):
    def test_counts(self):
        # 9 types x 6 contexts, less a soft lockup with interrupts off (irqsoff, hardirq).
        self.assertEqual(len(cl.cells([cl.BASE])), 52)
        self.assertEqual(len(cl.cells(cl.VARIANTS)), 52 * len(cl.VARIANTS))
        self.assertNotIn("softhang-hardirq-2cpu", [c.name for c in cl.cells([cl.BASE])])

    def test_fast_subset_is_three_real_cells(self):
        fast = cl.cells([cl.BASE], fast=True)
        self.assertEqual([(c.type.name, c.context) for c in fast], list(cl.FAST))

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

    def test_every_type_and_context_is_in_the_module(self):
        src = (Path(__file__).resolve().parent / "crashpoint" / "crashpoint.c").read_text()
        for name in [t.name for t in cl.TYPES] + list(cl.CONTEXTS):
            self.assertIn(f'= "{name}"', src, name)


class CellRun(unittest.TestCase):
    def test_crash_command_pins_insmod(self):
        c = cl.Cell(cl.TYPE_BY_NAME["null"], "timer", cl.VARIANT_BY_NAME["4cpu"])
        self.assertIn("taskset -c 3 insmod /crashpoint.ko type=null context=timer", run.crash_command(c))

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

    def test_table(self):
        recs = [{"type": "panic", "context": "process", "variant": "2cpu", "ok": True},
                {"type": "gpf", "context": "hardirq", "variant": "2cpu", "ok": False, "reason": "RESULT: none"}]
        lines = run.table(recs, cl.BASE)
        self.assertIn("| panic() | O |   |   |   |   |   |", lines)
        self.assertIn("| general protection |   |   |   |   |   | X1 |", lines)
        self.assertIn("| soft lockup |   | - |   |   |   | - |", lines)
        self.assertEqual(lines[-1], "X1: gpf/hardirq: RESULT: none")
        self.assertEqual(run.table(recs, cl.VARIANT_BY_NAME["1cpu"]), [])

    def test_shown_command(self):
        self.assertEqual(run.shown_command(["--fast", "--minicap", "/a/m.elf", "--tool=/b", "--variant", "1cpu"]),
                         "python3 qemu/matrix.py --fast --variant 1cpu")  # fmt: skip


class Headers(unittest.TestCase):
    def test_packages_from_apt_cache(self):
        out = ("linux-headers-6.1.0-57-cloud-amd64\n  Depends: linux-headers-6.1.0-57-common\n"
               "  Depends: linux-kbuild-6.1\n  Depends: linux-compiler-gcc-12-x86\n")  # fmt: skip
        with mock.patch.object(module, "run", return_value=mock.Mock(returncode=0, stdout=out)):
            self.assertEqual(module.header_packages("6.1.0-57-cloud-amd64"),
                             ["linux-headers-6.1.0-57-cloud-amd64", "linux-headers-6.1.0-57-common",
                              "linux-kbuild-6.1"])  # fmt: skip
        with mock.patch.object(module, "run", return_value=mock.Mock(returncode=100, stdout="E: no package")):
            with self.assertRaises(HarnessError):
                module.header_packages("9.9")


if __name__ == "__main__":
    unittest.main()
