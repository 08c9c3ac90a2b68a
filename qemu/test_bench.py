#!/usr/bin/env python3
"""Unit tests of the benchmark package qemu/bench/ (synthetic data, no
QEMU): statistics, the crashkernel= search, the mode table, the console
markers, the kdump-compressed dump's extent, dd's output and the report.

Run: python3 qemu/test_bench.py
"""

import contextlib
import gzip
import io
import os
import shutil
import struct
import sys
import tempfile
import types
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench import cli, dumpfile, machine, modes, report, run, stats, timing  # noqa: E402
from harness import initramfs, kernel  # noqa: E402
from harness.qemu import SerialLine  # noqa: E402

MIB = 1 << 20


class StatsTests(unittest.TestCase):
    def test_summarize(self):
        self.assertIsNone(stats.summarize([]))
        self.assertEqual(stats.summarize([3.0, 1.0, 2.0]), stats.Stats(3, 2.0, 1.0, 3.0))
        self.assertEqual(stats.summarize([4.0, 1.0, 2.0, 10.0]), stats.Stats(4, 3.0, 1.0, 10.0))
        self.assertEqual(stats.summarize([7.5]), stats.Stats(1, 7.5, 7.5, 7.5))

    def test_ratio(self):
        self.assertEqual(stats.ratio(1.0, 4.0), 0.25)
        self.assertIsNone(stats.ratio(None, 4.0))
        self.assertIsNone(stats.ratio(1.0, None))
        self.assertIsNone(stats.ratio(1.0, 0))


class SearchTests(unittest.TestCase):
    def search(self, candidates, threshold, cap=None):
        """`works`: at least `threshold` (None: never) and, with `cap`, at
        most that (a crash region too large to reserve)."""
        calls = []

        def works(x):
            calls.append(x)
            return threshold is not None and x >= threshold and (cap is None or x <= cap)

        return stats.smallest_working(candidates, works), calls

    def test_finds_the_threshold_everywhere(self):
        cands = list(range(1, 65))
        for t in cands:
            s, calls = self.search(cands, t)
            self.assertEqual(s.smallest, t, f"threshold {t}")
            self.assertEqual(calls[0], 64)  # the largest first
            self.assertLessEqual(len(calls), 1 + 7)  # 1 + ceil(log2(64)) + 1 at most
            self.assertEqual(s.probes, [(x, x >= t) for x in calls])

    def test_top_of_the_range_cannot_be_reserved(self):
        cands = list(range(4, 257, 4))
        for cap in (252, 200, 128, 100, 60):
            for t in (t for t in (4, 20, 28, 56, 100) if 2 * t <= cap):  # a working window of a factor 2 or more
                s, calls = self.search(cands, t, cap)
                self.assertEqual(s.smallest, t, f"threshold {t}, cap {cap}")
                self.assertLessEqual(len(calls), 12)
        s, calls = self.search(cands, 100, cap=60)  # nothing both reservable and enough
        self.assertIsNone(s.smallest)

    def test_threshold_between_steps_and_none(self):
        s, _ = self.search(list(range(4, 257, 4)), 97)
        self.assertEqual(s.smallest, 100)
        s, calls = self.search(list(range(4, 257, 4)), None)
        self.assertIsNone(s.smallest)
        self.assertEqual(calls, [256, 128, 64, 32, 16, 8, 4])  # halving down to the smallest, then no answer
        s, calls = self.search([], 1)
        self.assertIsNone(s.smallest)
        self.assertEqual(calls, [])
        s, _ = self.search([8], 1)
        self.assertEqual(s.smallest, 8)


class ModeTests(unittest.TestCase):
    def test_table(self):
        names = [m.name for m in modes.MODES]
        self.assertEqual(len(set(names)), len(names))
        for m in modes.MODES:
            if m.kind == modes.KDUMP:
                self.assertIn(m.kdump_writer, initramfs.KDUMP_WRITERS)
            else:
                self.assertIsNone(m.kdump_writer)
                self.assertTrue(all(o.startswith("minicap.") for o in m.minicap_append.split()))
        self.assertEqual([m.kdump_writer for m in modes.KDUMP_MODES], ["dd", "makedumpfile-l", "makedumpfile-c"])

    def test_select(self):
        self.assertEqual(modes.select(None, modes.MODES), list(modes.MODES))
        got = modes.select(["minicap-elf", "kdump-dd", "minicap-elf"], modes.MODES)
        self.assertEqual([m.name for m in got], ["minicap-elf", "kdump-dd"])
        with self.assertRaisesRegex(ValueError, "unknown mode.*kdump-x.*known: kdump-dd"):
            modes.select(["kdump-x"], modes.MODES)

    def test_variant(self):
        v = modes.parse_variant("sha=minicap.verify=sha256 minicap.after=halt")
        self.assertEqual((v.name, v.kind, v.minicap_append), ("minicap-sha", modes.MINICAP,
                                                              "minicap.verify=sha256 minicap.after=halt"))
        self.assertEqual(modes.parse_variant("minicap-none=minicap.verify=none").name, "minicap-none")
        for bad in ("noequals", "=x", "a b=x"):
            with self.assertRaises(ValueError):
                modes.parse_variant(bad)

    def test_default_search(self):
        names = lambda ms: [m.name for m in ms]  # noqa: E731
        self.assertEqual(names(modes.default_search(list(modes.MODES))),
                         ["kdump-mdf-c", "minicap-elf", "minicap-kdump-lzo-31"])
        dd = modes.select(["kdump-dd", "kdump-mdf-l"], modes.MODES)
        self.assertEqual(names(modes.default_search(dd)), ["kdump-dd", "kdump-mdf-l"])
        self.assertEqual(names(modes.default_search([modes.parse_variant("x=minicap.a=b")])), ["minicap-x"])

    def test_search_candidates(self):
        self.assertEqual(modes.search_candidates(modes.MINICAP, 512), list(range(1, 65)))
        self.assertEqual(modes.search_candidates(modes.KDUMP, 512), list(range(4, 257, 4)))
        self.assertEqual(modes.search_candidates(modes.KDUMP, 8192), list(range(4, 513, 4)))
        self.assertEqual(modes.search_candidates(modes.MINICAP, 100), list(range(1, 51)))


def lines(*pairs):
    return [SerialLine(t, text) for t, text in pairs]


class TimingTests(unittest.TestCase):
    def test_minicap(self):
        log = lines((1.0, "minicap: target: stale line before the crash"), (5.0, "[ 4.1] sysrq: Trigger a crash"),
                    (5.1, "Kernel panic - not syncing: sysrq triggered crash"), (5.2, "minicap: minicap 0.1.0 ..."),
                    (5.5, "minicap: target: virtio-blk 00:01.0 (modern), 2048 MiB id 00"),
                    (35.5, "minicap: RESULT: success: wrote 1 bytes, sha256 " + "0" * 64))  # fmt: skip
        t = timing.measure(log, modes.MINICAP)
        self.assertTrue(t.success)
        self.assertAlmostEqual(t.crash_to_first_write_s, 0.5)
        self.assertAlmostEqual(t.crash_to_complete_s, 30.5)
        self.assertTrue(t.verdict.startswith("minicap: RESULT: success"))

    def test_minicap_failure_and_old_format(self):
        log = lines((2.0, "sysrq: Trigger a crash"), (2.1, "minicap: RESULT: failure [no-device]: no disk"))
        t = timing.measure(log, modes.MINICAP)
        self.assertFalse(t.success)
        self.assertIsNone(t.crash_to_first_write_s)
        self.assertAlmostEqual(t.crash_to_complete_s, 0.1)
        old = lines((2.0, "sysrq: Trigger a crash"), (2.1, "minicap: RESULT: failure: no disk"))
        self.assertFalse(timing.measure(old, modes.MINICAP).success)

    def test_kdump(self):
        log = lines((3.0, "[ 3.0] sysrq: Trigger a crash"), (6.0, "KDUMP: capture kernel up 1.6 0.0"),
                    (6.25, f"{initramfs.KDUMP_WRITE_START} 1.71 0.00"),
                    (60.0, "KDUMP-RESULT: success 846913536 bytes 55.1 0.00"))  # fmt: skip
        t = timing.measure(log, modes.KDUMP)
        self.assertTrue(t.success)
        self.assertAlmostEqual(t.crash_to_first_write_s, 3.25)
        self.assertAlmostEqual(t.crash_to_complete_s, 57.0)
        bad = lines((3.0, "sysrq: Trigger a crash"), (9.0, "KDUMP-RESULT: failure: makedumpfile-c: oops"))
        self.assertFalse(timing.measure(bad, modes.KDUMP).success)

    def test_missing_lines(self):
        t = timing.measure(lines((1.0, "KEXEC-FAILED 1")), modes.KDUMP)
        self.assertFalse(t.success)
        self.assertIn("no crash line", t.verdict)
        t = timing.measure(lines((1.0, "sysrq: Trigger a crash"), (2.0, "KDUMP-WRITE-START 1")), modes.KDUMP)
        self.assertFalse(t.success)
        self.assertIn("no result line", t.verdict)
        self.assertAlmostEqual(t.crash_to_first_write_s, 1.0)
        self.assertIsNone(t.crash_to_complete_s)


def kdump_compressed(pages: dict[int, bytes], max_mapnr: int = 64, block: int = 4096, sub_blocks: int = 1,
                     eraseinfo: bytes = b"") -> bytes:  # fmt: skip
    """A kdump-compressed file laid out as makedumpfile writes it: header,
    sub-header, two bitmaps, one page descriptor per dumpable page, the
    pages' data (here: `pages`, pfn -> stored bytes), then erase info."""
    bitmap_bytes = -(-max_mapnr // 8)
    half_blocks = -(-bitmap_bytes // block)
    head = bytearray(block)
    head[:8] = b"KDUMP   "
    struct.pack_into("<IiiII", head, 424, 0, block, sub_blocks, 2 * half_blocks, max_mapnr)
    sub = bytearray(sub_blocks * block)
    bitmap2 = bytearray(half_blocks * block)
    for pfn in pages:
        bitmap2[pfn // 8] |= 1 << (pfn % 8)
    bitmap1 = bytes(b"\xff" * bitmap_bytes).ljust(half_blocks * block, b"\0")
    descs_at = (1 + sub_blocks + 2 * half_blocks) * block
    data_at = descs_at + 24 * len(pages)
    descs, data = b"", b""
    for pfn in sorted(pages):
        descs += struct.pack("<qIIQ", data_at + len(data), len(pages[pfn]), 1, 0)
        data += pages[pfn]
    erase_at = data_at + len(data)
    struct.pack_into("<qQ", sub, 64, erase_at if eraseinfo else 0, len(eraseinfo))
    return bytes(head) + bytes(sub) + bitmap1 + bytes(bitmap2) + descs + data + eraseinfo


class DumpFileTests(unittest.TestCase):
    def test_kdump_compressed_end(self):
        pages = {0: b"a" * 100, 5: b"b" * 4096, 63: b"c" * 7}
        img = kdump_compressed(pages)
        self.assertEqual(dumpfile.kdump_compressed_end(io.BytesIO(img + b"\0" * 8192)), len(img))
        img = kdump_compressed(pages, max_mapnr=70000, sub_blocks=2, eraseinfo=b"erase x\n")
        self.assertEqual(dumpfile.dump_end(io.BytesIO(img + b"\0" * 100), modes.KDUMP_COMPRESSED), len(img))
        img = kdump_compressed({})
        self.assertEqual(dumpfile.kdump_compressed_end(io.BytesIO(img)), len(img))

    def test_rejects_what_is_not_one(self):
        with self.assertRaisesRegex(ValueError, "signature"):
            dumpfile.kdump_compressed_end(io.BytesIO(b"\x7fELF" + b"\0" * 5000))
        img = kdump_compressed({1: b"x" * 10})
        with self.assertRaisesRegex(ValueError, "descriptors"):
            dumpfile.kdump_compressed_end(io.BytesIO(img[: len(img) - 10 - 12]))
        bad = bytearray(img)
        struct.pack_into("<i", bad, 428, 3000)
        with self.assertRaisesRegex(ValueError, "implausible"):
            dumpfile.kdump_compressed_end(io.BytesIO(bytes(bad)))
        with self.assertRaises(ValueError):
            dumpfile.dump_end(io.BytesIO(img), "lkcd")

    def test_elf_end(self):
        eh = bytearray(64)
        eh[:7] = b"\x7fELF\x02\x01\x01"
        struct.pack_into("<QQ", eh, 0x20, 64, 0)
        struct.pack_into("<HH", eh, 0x36, 56, 1)
        ph = struct.pack("<IIQQQQQQ", 1, 7, 4096, 0, 0, 1000, 1000, 4096)
        img = bytes(eh) + ph
        self.assertEqual(dumpfile.dump_end(io.BytesIO(img.ljust(8192, b"\0")), modes.ELF), 5096)


class MachineTests(unittest.TestCase):
    def test_dd_output(self):
        out = ("1024+0 records in\n1024+0 records out\n"
               "1073741824 bytes (1.1 GB, 1.0 GiB) copied, 2.5 s, 429 MB/s\n")  # fmt: skip
        self.assertEqual(machine.parse_dd_output(out), (1 << 30, 2.5))
        self.assertEqual(machine.parse_dd_output("10 bytes copied, 1,5 s, 6 B/s"), (10, 1.5))
        with self.assertRaises(ValueError):
            machine.parse_dd_output("dd: failed to open")

    def test_cpu_model(self):
        self.assertEqual(machine.cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\nflags: x\n"),
                         "AMD EPYC 7B13")  # fmt: skip
        self.assertEqual(machine.cpu_model(""), "unknown")


def run_record(mode, mem, index, ok, complete=None, first=None, size=None):
    return {"mode": mode, "memory_mib": mem, "crashkernel": "256M", "index": index, "ok": ok,
            "detail": "d" if ok else "no result line", "crash_to_first_write_s": first,
            "crash_to_complete_s": complete, "dump_bytes": size}  # fmt: skip


def sample_report():
    runs = [run_record("kdump-dd", 1024, i, True, c, 3.0 + i, 800 * MIB) for i, c in enumerate([60.0, 50.0, 55.0])]
    runs += [run_record("minicap-elf", 1024, i, True, c, 0.1, 400 * MIB) for i, c in enumerate([30.0, 20.0])]
    runs += [run_record("minicap-elf", 1024, 2, False), run_record("minicap-elf", 1024, -1, True, 1.0, 0.1, 1)]
    return {
        "command": "cargo xtask bench --sizes 1024",
        "machine": {"nproc": 2, "cpu_model": "AMD EPYC", "qemu": "QEMU emulator version 7.2.22", "kernel": "6.1",
                    "date": "2026-12-02 07:00 UTC"},
        "setup": {"kernel": "6.1.0-57-cloud-amd64", "cpu": "max", "smp": 2, "virtio": "modern",
                  "crashkernel": "256M", "pattern_mib": 64},
        "modes": [{"name": "kdump-dd", "about": "kdump dd", "kind": "kdump", "image_bytes": 40 * MIB},
                  {"name": "minicap-elf", "about": "minicap", "kind": "minicap", "image_bytes": 10 * MIB}],
        "host_write": {"command": "dd ...", "bytes": 1 << 30, "seconds": 2.0, "mib_per_s": 512.0},
        "runs": runs,
        "search": [{"memory_mib": 512, "mode": "minicap-elf", "smallest_mib": 3, "probes": [(64, True), (2, False)],
                    "range": [1, 64]},
                   {"memory_mib": 512, "mode": "kdump-dd", "smallest_mib": 120, "probes": [(256, True)],
                    "range": [4, 256]}],
    }  # fmt: skip


class ReportTests(unittest.TestCase):
    def test_summary_counts_only_timed_runs_that_worked(self):
        s = report.summarize_runs(sample_report()["runs"])
        self.assertEqual(set(s), {(1024, "kdump-dd"), (1024, "minicap-elf")})
        mc = s[(1024, "minicap-elf")]
        self.assertEqual((mc["runs"], mc["ok"]), (3, 2))
        self.assertEqual(mc["complete"], stats.Stats(2, 25.0, 20.0, 30.0))
        self.assertEqual(s[(1024, "kdump-dd")]["first_write"], stats.Stats(3, 4.0, 3.0, 5.0))
        self.assertEqual(mc["dump_bytes"], 400 * MIB)

    def test_markdown(self):
        md = report.markdown(sample_report())
        self.assertIn("Command: `cargo xtask bench --sizes 1024`", md)
        self.assertIn("2 CPU(s), AMD EPYC, QEMU emulator version 7.2.22", md)
        self.assertIn("**512 MiB/s**", md)
        self.assertIn("| 1024 MiB | kdump-dd | 3/3 | 55.00 s (50.00 – 60.00) | 4.00 s (3.00 – 5.00) | 800.0 MiB | 14.5 |",
                      md)
        self.assertIn("| 1024 MiB | minicap-elf | 2/3 | 25.00 s (20.00 – 30.00) | 0.10 s (0.10 – 0.10) | 400.0 MiB |"
                      " 16.0 |", md)  # fmt: skip
        self.assertIn("| 1024 MiB | minicap-elf | kdump-dd | 0.45 | 0.50 |", md)  # 25/55, 400/800
        self.assertIn("| 512 MiB | minicap-elf | 3M | 64M ok, 2M fail |", md)
        self.assertIn("| 512 MiB | minicap-elf | kdump-dd | 0.025 |", md)  # 3/120
        self.assertIn("| minicap-elf | kdump-dd | 0.25 |", md)  # 10/40 MiB image
        self.assertIn("- minicap-elf 1024 MiB run 3: no result line", md)
        for line in md.splitlines():
            if line.startswith("|"):
                self.assertTrue(line.endswith("|"), line)

    def test_ratio_format(self):
        self.assertEqual([report.fmt_ratio(x) for x in (None, 1.5, 0.1, 0.0236, 0.00123)],
                         ["–", "1.50", "0.10", "0.0236", "0.00123"])  # fmt: skip

    def test_markdown_without_search_or_runs(self):
        rep = sample_report()
        rep["search"], rep["host_write"] = [], None
        rep["runs"] = [run_record("kdump-dd", 2048, 0, False)]
        md = report.markdown(rep)
        self.assertNotIn("crashkernel=`\n", md)
        self.assertNotIn("Host raw write", md)
        self.assertIn("| 2048 MiB | kdump-dd | 0/1 | – | – | – | – |", md)


class CliTests(unittest.TestCase):
    def test_options(self):
        a = cli.parse_args(["--sizes", "1024", "--runs", "1", "--modes", "minicap-elf,kdump-dd",
                            "--no-crashkernel-search"])  # fmt: skip
        self.assertEqual((a.sizes, a.runs, a.modes, a.no_crashkernel_search),
                         ([1024], 1, ["minicap-elf", "kdump-dd"], True))  # fmt: skip
        d = cli.parse_args([])
        self.assertEqual((d.sizes, d.runs, d.search_sizes, d.crashkernel), ([1024, 2048, 4096], 3, [512, 2048, 8192],
                                                                            "256M"))  # fmt: skip
        self.assertEqual(cli.parse_args(["--runs", "0"]).runs, 0)
        for bad in (["--sizes", "1G"], ["--runs", "-1"]):
            with contextlib.redirect_stderr(io.StringIO()), self.assertRaises(SystemExit):
                cli.parse_args(bad)

    def test_mode_table_and_command(self):
        a = cli.parse_args(["--minicap-variant", "none=minicap.verify=none"])
        self.assertEqual([m.name for m in cli.mode_table(a)][-2:], ["minicap-kdump-zlib-1", "minicap-none"])
        with self.assertRaisesRegex(ValueError, "built-in"):
            cli.mode_table(cli.parse_args(["--minicap-variant", "elf=x"]))  # minicap-elf
        saved = os.environ.pop("MINICAP_BENCH_COMMAND", None)
        try:
            self.assertEqual(cli.command_line(["--sizes", "1024", "a b"]),
                             "python3 qemu/benchmark.py --sizes 1024 'a b'")  # fmt: skip
            os.environ["MINICAP_BENCH_COMMAND"] = "cargo xtask bench --runs 1"
            self.assertEqual(cli.command_line(["--minicap", "/x"]), "cargo xtask bench --runs 1")
        finally:
            os.environ.pop("MINICAP_BENCH_COMMAND", None)
            if saved is not None:
                os.environ["MINICAP_BENCH_COMMAND"] = saved

    def test_the_dump_disk_is_on_the_modes_bus(self):
        cfg = types.SimpleNamespace(qemu="qemu-system-x86_64", cpu="max", smp=2, virtio="modern")
        k = kernel.GuestKernel("v", Path("/k"))
        by_name = {m.name: m for m in modes.MODES}
        want = {"minicap-elf": "virtio-blk-pci,drive=disk0,", "minicap-elf-nvme": "nvme,serial=minicap0,drive=disk0,",
                "minicap-elf-ahci": "ide-hd,drive=disk0,bus=ide.0", "kdump-dd": "virtio-blk-pci,drive=disk0,"}
        for name, device in want.items():
            cmd = run.mode_qemu_command(cfg, k, by_name[name], 1024, "32M", Path("/o"), Path("/i"), Path("/d.img"))
            devices = [cmd[i + 1] for i, a in enumerate(cmd) if a == "-device"]
            self.assertEqual(len(devices), 1, name)
            self.assertTrue(devices[0].startswith(device), (name, devices))


def cpio_names(blob: bytes) -> set[str]:
    raw, names, at = gzip.decompress(blob), set(), 0
    while raw[at : at + 6] == b"070701":
        fields = [int(raw[at + 6 + 8 * i : at + 14 + 8 * i], 16) for i in range(13)]
        namesize, filesize = fields[11], fields[6]
        name = raw[at + 110 : at + 110 + namesize - 1].decode()
        at += 110 + namesize
        at += -at % 4
        at += filesize + (-filesize % 4)
        names.add(name)
    return names


class KdumpInitramfsTests(unittest.TestCase):
    def test_init_marks_the_write_and_the_end(self):
        for writer, cmd in initramfs.KDUMP_WRITERS.items():
            init = initramfs.kdump_init(writer)
            start, run_at = init.index(initramfs.KDUMP_WRITE_START), init.index(cmd)
            self.assertLess(start, run_at, writer)
            self.assertLess(init.index("&& sync"), init.index("KDUMP-RESULT: success"))
            self.assertIn("/dev/vda", cmd)
        self.assertIn("-l -d 31", initramfs.KDUMP_WRITERS["makedumpfile-l"])
        self.assertIn("-c -d 31", initramfs.KDUMP_WRITERS["makedumpfile-c"])
        with self.assertRaisesRegex(Exception, "unknown kdump writer"):
            initramfs.kdump_init("cp")

    @unittest.skipUnless(shutil.which("makedumpfile") and shutil.which("busybox"), "needs makedumpfile, busybox")
    def test_makedumpfile_and_its_libraries_are_in_it(self):
        with tempfile.TemporaryDirectory() as d:
            k = kernel.GuestKernel("6.1.0-0-test", Path(d))
            for rel in initramfs.KDUMP_MODULES.values():
                (k.modules / rel).parent.mkdir(parents=True, exist_ok=True)
                (k.modules / rel).write_bytes(b"\0ko")
            with_mdf = cpio_names(initramfs.build_kdump_initramfs(k, "makedumpfile-c"))
            plain = cpio_names(initramfs.build_kdump_initramfs(k, "dd"))
        self.assertIn("usr/sbin/makedumpfile", with_mdf)
        self.assertTrue(any(n.startswith("lib") and "libz.so" in n for n in with_mdf), sorted(with_mdf)[:20])
        self.assertNotIn("usr/sbin/makedumpfile", plain)
        self.assertIn("modules/virtio_blk.ko", plain)
        self.assertIn("init", plain)


if __name__ == "__main__":
    unittest.main()
