#!/usr/bin/env python3
"""Unit tests of the parsing helpers of qemu/e2e.py (synthetic data, no QEMU).

Run: python3 qemu/test_e2e.py
"""

import io
import struct
import sys
import unittest
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import e2e  # noqa: E402

IOMEM = """\
00000000-00000fff : Reserved
00001000-0009fbff : System RAM
0009fc00-0009ffff : Reserved
000a0000-000bffff : PCI Bus 0000:00
000f0000-000fffff : Reserved
  000f0000-000fffff : System ROM
00100000-3ffdcfff : System RAM
  1e000000-1effffff : Kernel code
  20000000-21ffffff : Crash kernel
3ffdd000-3fffffff : Reserved
b0000000-bfffffff : PCI MMCONFIG 0000 [bus 00-ff]
100000000-13fffffff : System RAM
"""


def note(name: bytes, ntype: int, desc: bytes) -> bytes:
    n = name + b"\0"
    pad = lambda b: b + b"\0" * (-len(b) % 4)  # noqa: E731
    return struct.pack("<III", len(n), len(desc), ntype) + pad(n) + pad(desc)


def elf(segs, pn_xnum=False) -> bytes:
    """segs: (p_type, vaddr, paddr, data, memsz or None)."""
    n = len(segs)
    phoff = 64
    shoff = phoff + 56 * n
    data_off = shoff + (64 if pn_xnum else 0)
    eh = bytearray(64)
    eh[:7] = b"\x7fELF\x02\x01\x01"
    struct.pack_into("<HHIQQQIHHHHHH", eh, 16, 4, 62, 1, 0, phoff, shoff if pn_xnum else 0, 0, 64, 56,
                     0xFFFF if pn_xnum else n, 64 if pn_xnum else 0, 1 if pn_xnum else 0, 0)  # fmt: skip
    ph = b""
    off = data_off
    for t, va, pa, data, memsz in segs:
        ph += struct.pack("<IIQQQQQQ", t, 0, off, va, pa, len(data), memsz if memsz is not None else len(data), 0)
        off += len(data)
    sh = b""
    if pn_xnum:
        sh = bytearray(64)
        struct.pack_into("<I", sh, 0x2C, n)
        sh = bytes(sh)
    return bytes(eh) + ph + sh + b"".join(s[3] for s in segs)


class IomemTests(unittest.TestCase):
    def test_parse_and_expected(self):
        entries = e2e.parse_iomem(IOMEM.splitlines())
        self.assertEqual(len(entries), 12)
        ck = [e for e in entries if e.name == "Crash kernel"][0]
        self.assertEqual((ck.start, ck.end, ck.depth), (0x20000000, 0x21FFFFFF, 1))
        self.assertEqual(
            e2e.expected_dump_ranges(entries),
            [(0x1000, 0x9FC00), (0x100000, 0x20000000), (0x22000000, 0x3FFDD000), (0x100000000, 0x140000000)],
        )

    def test_section_with_console_noise(self):
        log = ["[ 1.0] boot", "IOMEM-BEGIN"] + [l + "\r" for l in IOMEM.splitlines()] + ["IOMEM-END", "x"]
        self.assertEqual(len(e2e.parse_iomem(e2e.iomem_section(log))), 12)
        self.assertEqual(e2e.iomem_section(["IOMEM-BEGIN", "0-1 : System RAM"]), [])  # unterminated

    def test_range_math(self):
        self.assertEqual(e2e.merge_ranges([(5, 10), (0, 5), (20, 30), (25, 26), (40, 40)]), [(0, 10), (20, 30)])
        self.assertEqual(e2e.subtract_ranges([(0, 100)], [(10, 20), (15, 30), (90, 200)]), [(0, 10), (30, 90)])
        self.assertEqual(e2e.subtract_ranges([(0, 10)], [(0, 10)]), [])
        self.assertEqual(e2e.fmt_ranges([(0x1000, 0x2000)]), "0x1000-0x1fff")


class ElfTests(unittest.TestCase):
    def test_phdrs_and_notes(self):
        notes = (
            note(b"CORE", 1, b"\1" * 336)
            + note(b"CORE", 1, b"\2" * 336)
            + note(b"VMCOREINFO", 0, b"OSRELEASE=6.1.0-x\nPAGESIZE=4096\n")
        )
        img = elf(
            [
                (e2e.PT_NOTE, 0, 0, notes + b"\0" * 24, None),
                (e2e.PT_LOAD, 0xFFFFFFFF81000000, 0x1000000, b"k" * 16, None),
                (e2e.PT_LOAD, 0xFFFF888000001000, 0x1000, b"r" * 32, 64),
            ]
        )
        for blob in (img,):
            f = io.BytesIO(blob)
            ph = e2e.read_phdrs(f)
            self.assertEqual([p.type for p in ph], [4, 1, 1])
            self.assertEqual(ph[2].paddr, 0x1000)
            self.assertEqual(ph[2].memsz, 64)
            self.assertEqual(e2e.vmcore_end(f), len(blob))
            f.seek(ph[0].offset)
            parsed, left = e2e.parse_notes(f.read(ph[0].filesz))
            self.assertEqual([(n.name, n.type, len(n.desc)) for n in parsed],
                             [("CORE", 1, 336), ("CORE", 1, 336), ("VMCOREINFO", 0, 32)])  # fmt: skip
            self.assertEqual(left, 24)

    def test_pn_xnum(self):
        img = elf([(e2e.PT_LOAD, 0, 0x5000, b"abcd", None)], pn_xnum=True)
        ph = e2e.read_phdrs(io.BytesIO(img))
        self.assertEqual(len(ph), 1)
        self.assertEqual(ph[0].paddr, 0x5000)

    def test_not_elf(self):
        with self.assertRaises(ValueError):
            e2e.read_phdrs(io.BytesIO(b"\0" * 64))


class HarnessTests(unittest.TestCase):
    def test_cpio_layout(self):
        c = e2e.Cpio()
        c.file("a/b/c", b"12345")
        c.symlink("bin/sh", "/bin/busybox")
        c.chardev("dev/console", 5, 1)
        raw = __import__("gzip").decompress(c.finish())
        self.assertTrue(raw.startswith(b"070701"))
        self.assertIn(b"a/b/c\0", raw)
        self.assertIn(b"TRAILER!!!\0", raw)
        self.assertEqual(len(raw) % 4, 0)
        # 'a' and 'a/b' directories were created before the file.
        self.assertLess(raw.index(b"a/b\0"), raw.index(b"a/b/c\0"))

    def test_result_regex_and_sizes(self):
        m = e2e.RESULT_RE.search("minicap: RESULT: failure: no dump device found")
        self.assertEqual(m.group(1), "failure")
        self.assertEqual(e2e.parse_size("2G"), 2 << 30)
        self.assertEqual(e2e.parse_size("4M"), 4 << 20)
        self.assertEqual(e2e.parse_size("512"), 512)


ID = "aac20ce4ac1e07f2efc4988ab6e828d3"
OTHER = "0123456789abcdef0123456789abcdef"
# Failure reasons as the kernel prints them (kernel/src/capture.rs, bootinfo's elfcorehdr parser).
REASONS = {
    "no-disk": "no virtio-blk device on the PCI bus (minicap.target=virtio-blk); nothing was written",
    "small-disk": "dump device virtio-blk 00:01.0 (modern), 4 MiB is too small: the dump needs 1082843136 bytes "
                  "(1.0 GiB), the device has 4194304 bytes (4.0 MiB); nothing was written",
    "unformatted-disk": "none of the 1 virtio-blk device(s) is a prepared minicap dump device "
                        "(run `minicap format DEVICE` first); nothing was written",
    "wrong-id": f"no virtio-blk device has minicap device id {OTHER}; nothing was written",
    "bad-elfcorehdr": 'invalid elfcorehdr="12junk": unexpected "junk" (expected ADDR or SIZE@ADDR)',
    "ambiguous": "more than one prepared minicap device and no minicap.device=<id> to choose; nothing was written",
}


class BadInputTests(unittest.TestCase):
    def test_failure_reasons(self):
        for scenario, reason in REASONS.items():
            with self.subTest(scenario=scenario):
                ok, _ = e2e.check_failure_reason(scenario, ": " + reason, OTHER)
                self.assertTrue(ok)
                # Every other scenario's reason is rejected.
                for other, text in REASONS.items():
                    if other != scenario and not (scenario == "no-disk" and "no " in text):
                        self.assertFalse(e2e.check_failure_reason(scenario, text, OTHER)[0], other)
        # The id in the reason must be the requested one (upper case is fine).
        self.assertTrue(e2e.check_failure_reason("wrong-id", REASONS["wrong-id"].upper(), OTHER)[0])
        self.assertFalse(e2e.check_failure_reason("wrong-id", REASONS["wrong-id"], ID)[0])
        self.assertFalse(e2e.check_failure_reason("capture", "anything")[0])

    def test_device_reports(self):
        log = [
            "minicap: options: target=virtio-blk format=elf after=reboot device=any",
            "minicap: virtio-blk 00:01.0 (modern), 64 MiB: not a minicap dump device (bad magic); left alone",
            "minicap: RESULT: failure: none of the 1 virtio-blk device(s) is a prepared minicap dump device",
            "minicap: virtio-blk 00:02.0 (modern), 64 MiB: not a minicap dump device (bad magic); left alone",
        ]
        self.assertTrue(e2e.check_device_reports("unformatted-disk", log, 1)[0])
        self.assertFalse(e2e.check_device_reports("unformatted-disk", log, 2)[0])  # lines after RESULT ignored
        self.assertTrue(e2e.check_device_reports("capture", log[:2] + ["minicap: RESULT: success: wrote"], 1)[0])
        self.assertFalse(e2e.check_device_reports("capture", log[:1], 1)[0])
        wrong = [f"minicap: virtio-blk 00:01.0 (legacy), 64 MiB: minicap device id {ID} is not the requested "
                 f"{OTHER}; left alone", "minicap: RESULT: failure: no virtio-blk device has ..."]  # fmt: skip
        self.assertTrue(e2e.check_device_reports("wrong-id", wrong, 1, ID, OTHER)[0])
        self.assertFalse(e2e.check_device_reports("wrong-id", wrong, 1, OTHER, ID)[0])
        self.assertTrue(e2e.check_device_reports("ambiguous", [], 2)[0])

    def test_other_device_id(self):
        class Stuck:  # returns the excluded id first, then another
            def __init__(self):
                self.vals = [int(ID, 16), int(OTHER, 16)]

            def getrandbits(self, n):
                return self.vals.pop(0)

        self.assertEqual(e2e.other_device_id(ID.upper(), Stuck()), OTHER)
        for _ in range(20):
            v = e2e.other_device_id(ID)
            self.assertRegex(v, r"^[0-9a-f]{32}$")
            self.assertNotEqual(v, ID)

    def test_fingerprints(self):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            f = Path(d) / "img"
            data = bytearray(b"x" * 10000)
            f.write_bytes(data)
            a = e2e.fingerprint(f, block=4096)
            self.assertEqual(a[0], __import__("hashlib").sha256(data).hexdigest())
            self.assertEqual(len(a[1]), 3)
            ok, detail = e2e.compare_fingerprints(a, e2e.fingerprint(f, block=4096), block=4096)
            self.assertTrue(ok, detail)
            data[5000] = 0
            f.write_bytes(data)
            ok, detail = e2e.compare_fingerprints(a, e2e.fingerprint(f, block=4096), block=4096)
            self.assertFalse(ok)
            self.assertIn("1 of 3 4 KiB blocks differ, first at offset 0x1000", detail)
            f.write_bytes(data + b"y")
            ok, detail = e2e.compare_fingerprints(a, e2e.fingerprint(f, block=4096), block=4096)
            self.assertFalse(ok)
            self.assertIn("offset 0x1000", detail)
            # Sparse file: holes hash as zeros.
            with open(f, "wb") as fh:
                fh.truncate(3 * 4096)
            self.assertEqual(e2e.fingerprint(f, block=4096)[0],
                             __import__("hashlib").sha256(bytes(3 * 4096)).hexdigest())  # fmt: skip

    def test_qemu_disk_order(self):
        args = e2e.parse_args(["--scenario", "ambiguous", "--virtio", "legacy"])
        k = e2e.GuestKernel("v", Path("/k"))
        cmd = e2e.qemu_command(args, k, Path("/i"), [Path("/a.img"), Path("/b.img")])
        devs = [cmd[i + 1] for i, c in enumerate(cmd) if c == "-device"]
        self.assertEqual(devs, ["virtio-blk-pci,drive=disk0,addr=0x1,disable-legacy=off,disable-modern=on",
                                "virtio-blk-pci,drive=disk1,addr=0x2,disable-legacy=off,disable-modern=on"])  # fmt: skip
        self.assertIn("file=/a.img,format=raw,if=none,id=disk0", cmd)
        self.assertNotIn("-drive", e2e.qemu_command(args, k, Path("/i"), []))

    def test_disk_size_defaults(self):
        size = lambda *a: e2e.parse_args(list(a)).disk_size  # noqa: E731
        self.assertEqual(size("--scenario", "unformatted-disk"), "16M")
        self.assertEqual(size("--scenario", "wrong-id"), "64M")
        self.assertEqual(size("--scenario", "ambiguous"), "64M")
        self.assertEqual(size("--scenario", "small-disk"), "4M")
        self.assertEqual(size(), "2G")
        self.assertFalse(e2e.parse_args([]).no_decoy)
        self.assertTrue(e2e.parse_args(["--no-decoy"]).no_decoy)


if __name__ == "__main__":
    unittest.main()
