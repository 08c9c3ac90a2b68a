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


def header_bytes(state=3, written=432869376, length=1081782272, message=b"boom", crc_ok=True) -> bytes:
    b = bytearray(512)
    b[:8] = b"MINICAP\0"
    struct.pack_into("<II16sIIQQQQq", b, 8, 1, 512, bytes(range(16)), state, 1, 1 << 20, length, written,
                     2 << 30, 1795417046)  # fmt: skip
    b[112:112 + 13] = b"minicap 0.1.0"
    b[144:144 + 20] = b"6.1.0-56-cloud-amd64"
    b[208:208 + len(message)] = message
    crc = __import__("zlib").crc32(bytes(b[:508]))
    struct.pack_into("<I", b, 508, crc if crc_ok else crc ^ 1)
    return bytes(b)


# As the kernel printed it in a real device-error run.
WRITE_FAILURE = ("writing memory 0x1a100000 to byte 0x1c9d1000: write at byte 0x1c9d1000 "
                 "failed with virtio status 1")  # fmt: skip


class DeviceErrorTests(unittest.TestCase):
    def test_inject_offset_and_config(self):
        off = e2e.inject_offset(1024, 45)
        self.assertEqual(off, (1 << 20) + (int(1024 * (1 << 20) * 0.45) & ~4095))
        self.assertEqual(off % 4096, 0)
        self.assertEqual(e2e.inject_offset(1024, 50), (1 << 20) + (512 << 20))
        for bad in (0, 100, -1):
            with self.assertRaises(e2e.HarnessError):
                e2e.inject_offset(1024, bad)
        cfg = e2e.blkdebug_config(945760)
        self.assertEqual(cfg, '[inject-error]\nevent = "pwritev"\nerrno = "5"\nsector = "945760"\nonce = "on"\n')

    def test_qemu_blkdebug_drive(self):
        args = e2e.parse_args(["--scenario", "device-error"])
        self.assertEqual(args.fail_at_percent, 45.0)
        self.assertEqual(args.disk_size, "2G")
        k = e2e.GuestKernel("v", Path("/k"))
        cmd = e2e.qemu_command(args, k, Path("/i"), [Path("/decoy.img"), Path("/dump.img")],
                               {Path("/dump.img"): Path("/bd.cfg")})  # fmt: skip
        drives = [cmd[i + 1] for i, c in enumerate(cmd) if c == "-drive"]
        self.assertEqual(drives, [
            "file=/decoy.img,format=raw,if=none,id=disk0",
            "driver=blkdebug,config=/bd.cfg,image.driver=file,image.filename=/dump.img,if=none,id=disk1,"
            "werror=report,rerror=report",
        ])  # fmt: skip

    def test_parse_dump_header(self):
        h = e2e.parse_dump_header(header_bytes(message=WRITE_FAILURE.encode()))
        self.assertEqual((h.state, h.format, h.dump_offset, h.written, h.dump_length),
                         ("failed", 1, 1 << 20, 432869376, 1081782272))  # fmt: skip
        self.assertEqual((h.writer, h.osrelease, h.message), ("minicap 0.1.0", "6.1.0-56-cloud-amd64", WRITE_FAILURE))
        self.assertEqual(h.crash_time, 1795417046)
        self.assertEqual(e2e.parse_dump_header(header_bytes(state=9)).state, "unknown (9)")
        for bad in (header_bytes(crc_ok=False), b"\0" * 512, header_bytes()[:100]):
            with self.assertRaises(ValueError):
                e2e.parse_dump_header(bad)

    def test_write_failure(self):
        wf = e2e.parse_write_failure(": " + WRITE_FAILURE)
        self.assertEqual((wf.source, wf.offset, wf.request, wf.status), (0x1A100000, 0x1C9D1000, 0x1C9D1000, 1))
        self.assertIsNone(e2e.parse_write_failure("flush after 40%: flush at byte 0x0 failed with virtio status 1"))
        self.assertTrue(e2e.check_failure_reason("device-error", WRITE_FAILURE)[0])
        self.assertFalse(e2e.check_failure_reason("device-error", REASONS["small-disk"])[0])
        self.assertTrue(e2e.check_write_failure(WRITE_FAILURE, 0x1CDCC000)[0])  # inside the 4 MiB request
        self.assertTrue(e2e.check_write_failure(WRITE_FAILURE, 0x1C9D1000)[0])
        self.assertFalse(e2e.check_write_failure(WRITE_FAILURE, 0x1C9D1000 + (4 << 20))[0])  # past it
        self.assertFalse(e2e.check_write_failure(WRITE_FAILURE, 0x1C9D0000)[0])  # before it
        self.assertFalse(e2e.check_write_failure(WRITE_FAILURE.replace("status 1", "status 2"), 0x1CDCC000)[0])
        self.assertFalse(e2e.check_write_failure("timed out", 0x1CDCC000)[0])

    def test_checkpoint(self):
        total = 1081782272
        failed = 0x1C9D1000 - (1 << 20)  # 44 %
        self.assertTrue(e2e.check_checkpoint(432869376, total, failed)[0])  # the real run
        self.assertTrue(e2e.check_checkpoint(-(-40 * total // 100), total, failed)[0])  # exactly 40 %
        self.assertFalse(e2e.check_checkpoint(0, total, failed)[0])  # nothing recorded
        self.assertFalse(e2e.check_checkpoint(324000000, total, failed)[0])  # an older checkpoint (30 %)
        self.assertFalse(e2e.check_checkpoint(432869376 + (4 << 20), total, failed)[0])  # > one request past 40 %
        self.assertFalse(e2e.check_checkpoint(failed + 4096, total, failed)[0])  # past the failure
        self.assertFalse(e2e.check_checkpoint(total, total, total - 1)[0])  # complete is not partial
        self.assertFalse(e2e.check_checkpoint(5, 0, 5)[0])

    def test_decoy_report(self):
        log = ["minicap: virtio-blk 00:01.0 (modern), 64 MiB: not a minicap dump device (no MINICAP signature); "
               "left alone", "minicap: RESULT: failure: " + WRITE_FAILURE]  # fmt: skip
        self.assertTrue(e2e.check_device_reports("device-error", log, 1)[0])
        self.assertFalse(e2e.check_device_reports("device-error", log[1:], 1)[0])

    def test_same_bytes(self):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            a, b = Path(d) / "a", Path(d) / "b"
            a.write_bytes(b"abcdef")
            b.write_bytes(b"XXabcdeZ")
            self.assertTrue(e2e.same_bytes(a, 0, b, 2, 5)[0])
            ok, detail = e2e.same_bytes(a, 0, b, 2, 6)
            self.assertFalse(ok)
            self.assertIn("0x5", detail)
            self.assertFalse(e2e.same_bytes(a, 0, b, 2, 7)[0])  # b too short

    def test_pattern(self):
        # splitmix64 as qemu/pattern/src/lib.rs's reference values.
        self.assertEqual(e2e.splitmix64(0), 0xE220A8397B1DCDAF)
        self.assertEqual(e2e.splitmix64(0x9E3779B97F4A7C15), 0x6E789E6AA1B965F4)
        page = e2e.pattern_page(1, 3)
        self.assertEqual(len(page), 4096)
        self.assertEqual(struct.unpack_from("<Q", page, 7 * 8)[0], e2e.splitmix64(1 ^ (3 << 9) ^ 7))
        serial = ["PATTERN-START 2.4", "x PATTERN-SEED 00000000000000ab", "PATTERN-RUN 10 0 2",
                  "PATTERN-RUN 20 2 1", "PATTERN-READY 3"]  # fmt: skip
        log = e2e.parse_pattern_log(serial)
        self.assertEqual((log.seed, log.runs, log.pages), (0xAB, [(0x10, 0, 2), (0x20, 2, 1)], 3))
        with self.assertRaises(ValueError):
            e2e.parse_pattern_log(serial[:-1])
        with self.assertRaises(ValueError):
            e2e.parse_pattern_log(serial[:3] + serial[4:])  # runs cover 2 of 3 pages
        # pfns 0x10, 0x11 in the first PT_LOAD, 0x20 in the second; save cut after the first.
        p0 = e2e.pattern_page(0xAB, 0) + e2e.pattern_page(0xAB, 1)
        img = elf([(e2e.PT_LOAD, 0xFFFF888000010000, 0x10000, p0, None),
                   (e2e.PT_LOAD, 0xFFFF888000020000, 0x20000, e2e.pattern_page(0xAB, 2), None)])  # fmt: skip
        ph = e2e.read_phdrs(io.BytesIO(img))
        saved = ph[1].offset
        self.assertEqual(e2e.check_partial_pattern(io.BytesIO(img[:saved]), saved, ph, log), (2, 1, []))
        self.assertEqual(e2e.check_partial_pattern(io.BytesIO(img), len(img), ph, log), (3, 0, []))
        broken = bytearray(img)
        broken[ph[0].offset + 4096 + 100] ^= 1
        intact, beyond, problems = e2e.check_partial_pattern(io.BytesIO(bytes(broken)), len(img), ph, log)
        self.assertEqual((intact, beyond, len(problems)), (2, 0, 1))
        self.assertIn("page 1", problems[0])
        missing = e2e.PatternLog(0xAB, [(0x99, 0, 1)], 1)
        self.assertIn("no PT_LOAD", e2e.check_partial_pattern(io.BytesIO(img), len(img), ph, missing)[2][0])



class IommuTests(unittest.TestCase):
    UNIT = "minicap: IOMMU: VT-d unit 0xfed90000 (segment 0, listed devices, version 1.0): "

    def test_takeover_lines(self):
        ok = [
            self.UNIT + "translation was on; queued invalidation disabled; own root table, "
            "pass-through for 00:01.0 00:02.0; all other DMA blocked; translation on",
            self.UNIT + "translation was on; queued invalidation disabled; own root table, "
            "identity map of [0, 0x40000000) for 00:01.0 00:02.0; all other DMA blocked; translation on",
            self.UNIT + "translation was on; queued invalidation disabled; scalable mode switched to "
            "legacy with translation off for 7870 us; own root table, pass-through for 00:01.0 "
            "00:02.0; all other DMA blocked; translation on",
        ]
        bad = [
            self.UNIT + "translation off; left alone",
            self.UNIT + "translation was on; queued invalidation disabled; own root table, "
            "pass-through for no device; all other DMA blocked; translation on",
            "minicap: IOMMU: none (no DMAR or IVRS table)",
        ]
        for line in ok:
            self.assertTrue(e2e.IOMMU_TAKEOVER.search(line), line)
        for line in bad:
            self.assertFalse(e2e.IOMMU_TAKEOVER.search(line), line)


class QemuVersionTests(unittest.TestCase):
    def test_parse(self):
        self.assertEqual(e2e.parse_qemu_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n"),
                         (7, 2, 22))
        self.assertEqual(e2e.parse_qemu_version("QEMU emulator version 10.0\n"), (10, 0, 0))
        self.assertIsNone(e2e.parse_qemu_version("something else"))

    def test_old_qemu_refused_with_a_clear_message(self):
        import tempfile, os
        with tempfile.TemporaryDirectory() as d:
            fake = Path(d) / "qemu"
            fake.write_text("#!/bin/sh\necho 'QEMU emulator version 6.2.0'\n")
            os.chmod(fake, 0o755)
            with self.assertRaisesRegex(e2e.HarnessError, "needs QEMU 7.2 or newer"):
                e2e.check_qemu_version(str(fake))
            fake.write_text("#!/bin/sh\necho 'QEMU emulator version 7.2.22'\n")
            self.assertEqual(e2e.check_qemu_version(str(fake)), (7, 2, 22))


if __name__ == "__main__":
    unittest.main()
