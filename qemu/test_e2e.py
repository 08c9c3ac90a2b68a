#!/usr/bin/env python3
"""Unit tests of the harness package qemu/harness/ (synthetic data, no
QEMU): its parsers and checks, and the scenario table.

Run: python3 qemu/test_e2e.py
"""

import contextlib
import io
import json
import re
import struct
import sys
import tempfile
import unittest
import zlib
from pathlib import Path

TOOL = Path(__file__).resolve().parent.parent / "target/release/minicap"
BZIMAGE = Path(__file__).resolve().parent.parent / "target/minicap.bzImage"

sys.path.insert(0, str(Path(__file__).resolve().parent))
from harness import (checks, cli, common, console, device_info, disks, elf, initramfs, iomem, kdumpfile,  # noqa: E402
                     kernel, pattern, qemu, runner, scenarios, secureboot)  # fmt: skip


def resolved(argv):
    """The options a run of `--scenario ...` gets: the command line over the
    scenario's row over the defaults."""
    args = cli.parse_args(argv)
    return cli.resolve(args, scenarios.lookup(args.scenario))

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


def elf_image(segs, pn_xnum=False) -> bytes:
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
        entries = iomem.parse_iomem(IOMEM.splitlines())
        self.assertEqual(len(entries), 12)
        ck = [e for e in entries if e.name == "Crash kernel"][0]
        self.assertEqual((ck.start, ck.end, ck.depth), (0x20000000, 0x21FFFFFF, 1))
        self.assertEqual(
            iomem.expected_dump_ranges(entries),
            [(0x1000, 0x9FC00), (0x100000, 0x20000000), (0x22000000, 0x3FFDD000), (0x100000000, 0x140000000)],
        )

    def test_section_with_console_noise(self):
        log = ["[ 1.0] boot", "IOMEM-BEGIN"] + [l + "\r" for l in IOMEM.splitlines()] + ["IOMEM-END", "x"]
        self.assertEqual(len(iomem.parse_iomem(iomem.iomem_section(log))), 12)
        self.assertEqual(iomem.iomem_section(["IOMEM-BEGIN", "0-1 : System RAM"]), [])  # unterminated

    def test_range_math(self):
        self.assertEqual(iomem.merge_ranges([(5, 10), (0, 5), (20, 30), (25, 26), (40, 40)]), [(0, 10), (20, 30)])
        self.assertEqual(iomem.subtract_ranges([(0, 100)], [(10, 20), (15, 30), (90, 200)]), [(0, 10), (30, 90)])
        self.assertEqual(iomem.subtract_ranges([(0, 10)], [(0, 10)]), [])
        self.assertEqual(iomem.fmt_ranges([(0x1000, 0x2000)]), "0x1000-0x1fff")


class ElfTests(unittest.TestCase):
    def test_phdrs_and_notes(self):
        notes = (
            note(b"CORE", 1, b"\1" * 336)
            + note(b"CORE", 1, b"\2" * 336)
            + note(b"VMCOREINFO", 0, b"OSRELEASE=6.1.0-x\nPAGESIZE=4096\n")
        )
        img = elf_image(
            [
                (elf.PT_NOTE, 0, 0, notes + b"\0" * 24, None),
                (elf.PT_LOAD, 0xFFFFFFFF81000000, 0x1000000, b"k" * 16, None),
                (elf.PT_LOAD, 0xFFFF888000001000, 0x1000, b"r" * 32, 64),
            ]
        )
        for blob in (img,):
            f = io.BytesIO(blob)
            ph = elf.read_phdrs(f)
            self.assertEqual([p.type for p in ph], [4, 1, 1])
            self.assertEqual(ph[2].paddr, 0x1000)
            self.assertEqual(ph[2].memsz, 64)
            self.assertEqual(elf.vmcore_end(f), len(blob))
            f.seek(ph[0].offset)
            parsed, left = elf.parse_notes(f.read(ph[0].filesz))
            self.assertEqual([(n.name, n.type, len(n.desc)) for n in parsed],
                             [("CORE", 1, 336), ("CORE", 1, 336), ("VMCOREINFO", 0, 32)])  # fmt: skip
            self.assertEqual(left, 24)

    def test_pn_xnum(self):
        img = elf_image([(elf.PT_LOAD, 0, 0x5000, b"abcd", None)], pn_xnum=True)
        ph = elf.read_phdrs(io.BytesIO(img))
        self.assertEqual(len(ph), 1)
        self.assertEqual(ph[0].paddr, 0x5000)

    def test_not_elf(self):
        with self.assertRaises(ValueError):
            elf.read_phdrs(io.BytesIO(b"\0" * 64))


class HarnessTests(unittest.TestCase):
    def test_cpio_layout(self):
        c = initramfs.Cpio()
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

    def test_sizes(self):
        self.assertEqual(common.parse_size("2G"), 2 << 30)
        self.assertEqual(common.parse_size("4M"), 4 << 20)
        self.assertEqual(common.parse_size("512"), 512)


ID = "aac20ce4ac1e07f2efc4988ab6e828d3"
OTHER = "0123456789abcdef0123456789abcdef"


class ResultLineTests(unittest.TestCase):
    def test_success_and_failure_lines(self):
        ok = console.parse_result_line(
            "minicap: RESULT: success: wrote 1082843136 bytes (1.0 GiB) to virtio-blk 00:02.0 in 31.204 s "
            "(33.0 MiB/s), sha256 " + "ab" * 32 + "\r")
        self.assertEqual((ok.verdict, ok.code), ("success", None))
        self.assertTrue(ok.message.startswith("wrote 1082843136 bytes"))
        self.assertEqual(console.success_sha256(ok.message), "ab" * 32)
        bad = console.parse_result_line(
            "minicap: RESULT: failure [device-too-small]: dump device virtio-blk 00:01.0 (modern), 4 MiB is too "
            "small: the dump needs 1082843136 bytes; nothing was written")
        self.assertEqual((bad.verdict, bad.code), ("failure", "device-too-small"))
        self.assertTrue(bad.message.startswith("dump device virtio-blk 00:01.0"))
        # A message may itself contain brackets and colons.
        wf = console.parse_result_line(f"[  5.1] minicap: RESULT: failure [device-error]: {WRITE_FAILURE}")
        self.assertEqual((wf.code, wf.message), ("device-error", WRITE_FAILURE))

    def test_other_lines_are_not_results(self):
        for line in [
            "minicap: RESULT: failure: no virtio-blk device on the PCI bus",  # the old format, without a code
            "minicap: RESULT: failure []: empty code",
            "minicap: RESULT: failure [Device-Error]: not kebab-case",
            "minicap: RESULT: success wrote 5 bytes",
            "minicap: RESULT: maybe: x",
            "minicap:  40% 412 / 1031 MiB, 28.6 MiB/s",
            "KDUMP-RESULT: success 5 bytes",
        ]:
            self.assertIsNone(console.parse_result_line(line), line)

    def test_kernel_failure_codes(self):
        # The names FailureCode::as_str gives in formats/dumpheader (besides none), in their order.
        src = (Path(__file__).resolve().parent.parent / "formats/dumpheader/src/lib.rs").read_text()
        block = src[src.index("impl FailureCode {"):]
        block = block[: block.find("\nimpl ", 1) if "\nimpl " in block else len(block)]
        names = re.findall(r'Self::\w+ => "([a-z0-9-]+)"', block)
        self.assertEqual(names[0], "none")
        self.assertEqual(list(console.FAILURE_CODES), names[1:])
        for code in console.FAILURE_CODES:
            self.assertTrue(console.parse_result_line(f"minicap: RESULT: failure [{code}]: m"), code)


ID = "aac20ce4ac1e07f2efc4988ab6e828d3"
OTHER = "0123456789abcdef0123456789abcdef"


class BadInputTests(unittest.TestCase):
    def test_device_reports(self):
        log = [
            "minicap: options: target=virtio-blk format=elf after=reboot device=any",
            "minicap: virtio-blk 00:01.0 (modern), 64 MiB: not a minicap dump device (bad magic); left alone",
            "minicap: RESULT: failure: none of the 1 virtio-blk device(s) is a prepared minicap dump device",
            "minicap: virtio-blk 00:02.0 (modern), 64 MiB: not a minicap dump device (bad magic); left alone",
        ]
        self.assertTrue(console.check_device_reports(log, unformatted=1)[0])
        self.assertFalse(console.check_device_reports(log, unformatted=2)[0])  # lines after RESULT ignored
        self.assertTrue(console.check_device_reports(log[:2] + ["minicap: RESULT: success: wrote"], 1)[0])
        self.assertFalse(console.check_device_reports(log[:1], 1)[0])
        wrong = [f"minicap: virtio-blk 00:01.0 (legacy), 64 MiB: minicap device id {ID} is not the requested "
                 f"{OTHER}; left alone", "minicap: RESULT: failure: no virtio-blk device has ..."]  # fmt: skip
        self.assertTrue(console.check_device_reports(wrong, mismatch=(ID, OTHER))[0])
        self.assertTrue(console.check_device_reports(wrong, mismatch=(ID.upper(), OTHER))[0])
        self.assertFalse(console.check_device_reports(wrong, mismatch=(OTHER, ID))[0])
        self.assertFalse(console.check_device_reports(wrong[:1] * 2 + wrong[1:], mismatch=(ID, OTHER))[0])  # 2 lines
        self.assertTrue(console.check_device_reports([], unformatted=0)[0])
        # Every kind of disk is reported the same way.
        nvme = ["minicap: NVMe 00:01.0 (QEMU NVMe Ctrl, namespace 1, 4096-byte blocks), 64 MiB: not a minicap dump "
                "device (no MINICAP signature); left alone", "minicap: RESULT: success: wrote"]  # fmt: skip
        self.assertTrue(console.check_device_reports(nvme, unformatted=1)[0])
        ahci = ["minicap: AHCI 00:1f.2 port 0 (QEMU HARDDISK), 64 MiB: not a minicap dump device (no MINICAP "
                "signature); left alone", "minicap: RESULT: success: wrote"]  # fmt: skip
        self.assertTrue(console.check_device_reports(ahci, unformatted=1)[0])

    def test_other_device_id(self):
        class Stuck:  # returns the excluded id first, then another
            def __init__(self):
                self.vals = [int(ID, 16), int(OTHER, 16)]

            def getrandbits(self, n):
                return self.vals.pop(0)

        self.assertEqual(disks.other_device_id(ID.upper(), Stuck()), OTHER)
        for _ in range(20):
            v = disks.other_device_id(ID)
            self.assertRegex(v, r"^[0-9a-f]{32}$")
            self.assertNotEqual(v, ID)

    def test_fingerprints(self):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            f = Path(d) / "img"
            data = bytearray(b"x" * 10000)
            f.write_bytes(data)
            a = disks.fingerprint(f, block=4096)
            self.assertEqual(a[0], __import__("hashlib").sha256(data).hexdigest())
            self.assertEqual(len(a[1]), 3)
            ok, detail = disks.compare_fingerprints(a, disks.fingerprint(f, block=4096), block=4096)
            self.assertTrue(ok, detail)
            data[5000] = 0
            f.write_bytes(data)
            ok, detail = disks.compare_fingerprints(a, disks.fingerprint(f, block=4096), block=4096)
            self.assertFalse(ok)
            self.assertIn("1 of 3 4 KiB blocks differ, first at offset 0x1000", detail)
            f.write_bytes(data + b"y")
            ok, detail = disks.compare_fingerprints(a, disks.fingerprint(f, block=4096), block=4096)
            self.assertFalse(ok)
            self.assertIn("offset 0x1000", detail)
            # Sparse file: holes hash as zeros.
            with open(f, "wb") as fh:
                fh.truncate(3 * 4096)
            self.assertEqual(disks.fingerprint(f, block=4096)[0],
                             __import__("hashlib").sha256(bytes(3 * 4096)).hexdigest())  # fmt: skip

    def test_qemu_disk_order(self):
        args = resolved(["--scenario", "ambiguous", "--virtio", "legacy"])
        k = kernel.GuestKernel("v", Path("/k"))
        cmd = qemu.qemu_command(args, k, Path("/i"), [Path("/a.img"), Path("/b.img")])
        devs = [cmd[i + 1] for i, c in enumerate(cmd) if c == "-device"]
        self.assertEqual(devs, ["virtio-blk-pci,drive=disk0,addr=0x1,disable-legacy=off,disable-modern=on",
                                "virtio-blk-pci,drive=disk1,addr=0x2,disable-legacy=off,disable-modern=on"])  # fmt: skip
        self.assertIn("file=/a.img,format=raw,if=none,id=disk0", cmd)
        self.assertNotIn("-drive", qemu.qemu_command(args, k, Path("/i"), []))

    def test_qemu_throttled_disk(self):
        k = kernel.GuestKernel("v", Path("/k"))
        args = resolved(["--scenario", "capture-timeout"])
        cmd = qemu.qemu_command(args, k, Path("/i"), [Path("/decoy.img"), Path("/dump.img")],
                                write_bps={Path("/dump.img"): scenarios.TIMEOUT_DISK_BPS})  # fmt: skip
        drives = [cmd[i + 1] for i, c in enumerate(cmd) if c == "-drive"]
        self.assertEqual(drives, ["file=/decoy.img,format=raw,if=none,id=disk0",
                                  "file=/dump.img,format=raw,if=none,id=disk1,throttling.bps-write=268435456"])  # fmt: skip
        # The row throttles its dump disk only, slowly enough that the 1 GiB dump outlasts the
        # limit twice over.
        row = scenarios.lookup("capture-timeout")
        target = next(d for d in row.disks if d.target)
        self.assertEqual(target.write_bps, scenarios.TIMEOUT_DISK_BPS)
        self.assertTrue(all(d.write_bps is None for d in row.disks if not d.target))
        self.assertGreaterEqual((1 << 30) / target.write_bps, 2 * scenarios.time_limit(row))

    def test_qemu_nvme_disks(self):
        k = kernel.GuestKernel("v", Path("/k"))
        args = resolved(["--scenario", "capture-nvme"])
        cmd = qemu.qemu_command(args, k, Path("/i"), [Path("/decoy.img"), Path("/dump.img")],
                                nvme=frozenset({Path("/dump.img")}))  # fmt: skip
        devs = [cmd[i + 1] for i, c in enumerate(cmd) if c == "-device"]
        self.assertEqual(devs, ["virtio-blk-pci,drive=disk0,addr=0x1,disable-legacy=on,disable-modern=off",
                                "nvme,serial=minicap1,drive=disk1,addr=0x2"])  # fmt: skip
        self.assertIn("file=/dump.img,format=raw,if=none,id=disk1", cmd)
        # The NVMe properties go to the NVMe disks only, the virtio-blk ones to the others.
        args = resolved(["--scenario", "capture-nvme", "--nvme-props", "logical_block_size=4096",
                         "--blk-props", "num-queues=1", "--iommu", "intel-iommu"])  # fmt: skip
        cmd = qemu.qemu_command(args, k, Path("/i"), [Path("/decoy.img"), Path("/dump.img")],
                                nvme=frozenset({Path("/dump.img")}))  # fmt: skip
        devs = [cmd[i + 1] for i, c in enumerate(cmd) if c == "-device"]
        self.assertEqual(devs, ["intel-iommu",
                                "virtio-blk-pci,drive=disk0,addr=0x1,disable-legacy=on,disable-modern=off,"
                                "num-queues=1,iommu_platform=on",
                                "nvme,serial=minicap1,drive=disk1,addr=0x2,logical_block_size=4096"])  # fmt: skip

    def test_qemu_amd_iommu_moves_the_disks(self):
        # amd-iommu's own PCI function takes the first free slot (1): the
        # row starts the disks at 0x10, after the IOMMU.
        k = kernel.GuestKernel("v", Path("/k"))
        args = resolved(["--scenario", "capture-amd-iommu"])
        cmd = qemu.qemu_command(args, k, Path("/i"), [Path("/decoy.img"), Path("/dump.img")])
        devs = [cmd[i + 1] for i, c in enumerate(cmd) if c == "-device"]
        self.assertEqual(devs, ["amd-iommu",
                                "virtio-blk-pci,drive=disk0,addr=0x10,disable-legacy=on,disable-modern=off,"
                                "iommu_platform=on",
                                "virtio-blk-pci,drive=disk1,addr=0x11,disable-legacy=on,disable-modern=off,"
                                "iommu_platform=on"])  # fmt: skip
        self.assertEqual(resolved(["--scenario", "capture-amd-iommu", "--disk-slot", "0x5"]).disk_slot, 5)

    def test_qemu_ahci_disks(self):
        k = kernel.GuestKernel("v", Path("/k"))
        args = resolved(["--scenario", "capture-ahci-ports-kdump", "--blk-props", "num-queues=1"])
        images = [Path("/a.img"), Path("/decoy.img"), Path("/dump.img")]
        cmd = qemu.qemu_command(args, k, Path("/i"), images, ahci=frozenset(images[1:]))
        devs = [cmd[i + 1] for i, c in enumerate(cmd) if c == "-device"]
        # The q35 HBA's ports in table order, no PCI slot taken, no virtio-blk properties.
        self.assertEqual(devs, ["virtio-blk-pci,drive=disk0,addr=0x1,disable-legacy=on,disable-modern=off,num-queues=1",
                                "ide-hd,drive=disk1,bus=ide.0", "ide-hd,drive=disk2,bus=ide.1"])  # fmt: skip
        self.assertIn("file=/dump.img,format=raw,if=none,id=disk2", cmd)

    def test_disk_size_defaults(self):
        size = lambda *a: resolved(list(a)).disk_size  # noqa: E731
        self.assertEqual(size("--scenario", "unformatted-disk"), "16M")
        self.assertEqual(size("--scenario", "wrong-id"), "64M")
        self.assertEqual(size("--scenario", "ambiguous"), "64M")
        self.assertEqual(size("--scenario", "small-disk"), "4M")
        self.assertEqual(size("--scenario", "bad-elfcorehdr"), "64M")
        self.assertEqual(size(), "2G")
        self.assertEqual(size("--scenario", "capture-qemu64-4M-3G"), "4G")  # 3072 MiB RAM + 64 MiB
        self.assertEqual(size("--scenario", "small-disk", "--disk-size", "8M"), "8M")
        self.assertFalse(cli.parse_args([]).no_decoy)
        self.assertTrue(cli.parse_args(["--no-decoy"]).no_decoy)


def module_object(modinfo: dict[str, str]) -> bytes:
    """A relocatable ELF64 object with a .modinfo section of `key=value`
    strings, as a kernel module carries it (and nothing else)."""
    info = b"".join(f"{k}={v}".encode() + b"\0" for k, v in modinfo.items())
    names = b"\0.modinfo\0.shstrtab\0"
    info_off, names_off = 64, 64 + len(info)
    shoff = names_off + len(names) + (-(names_off + len(names)) % 8)
    eh = bytearray(64)
    eh[:7] = b"\x7fELF\x02\x01\x01"
    struct.pack_into("<HHIQQQIHHHHHH", eh, 16, 1, 62, 1, 0, 0, shoff, 0, 64, 0, 0, 64, 3, 2)
    sections = bytes(64)  # the null section
    sections += struct.pack("<IIQQQQIIQQ", 1, 1, 2, 0, info_off, len(info), 0, 0, 1, 0)  # .modinfo, PROGBITS
    sections += struct.pack("<IIQQQQIIQQ", 10, 3, 0, 0, names_off, len(names), 0, 0, 1, 0)  # .shstrtab, STRTAB
    return bytes(eh) + info + names + bytes(shoff - names_off - len(names)) + sections


# As the guest's init printed them in a real busy-virtio run.
BUSY_LOG = ["BUSY-LOAD virtio_ring.ko virtio.ko virtio_blk.ko",
            "BUSY-WRITERS 4 /dev/vdb at MiB 64 128 192 256 7.91 4.12",
            "E2E-CRASHING 10.02 6.31",
            "[    4.976049] BUSY-INFLIGHT /dev/vdb reads 0 writes 1 sectors-written 378880",
            "[    8.823198] sysrq: Trigger a crash",
            "[    8.823500] Kernel panic - not syncing: sysrq triggered crash"]  # fmt: skip


class BusyTests(unittest.TestCase):
    def test_writes_in_flight_at_the_crash(self):
        ok, detail = console.check_busy_writes(BUSY_LOG)
        self.assertTrue(ok, detail)
        self.assertIn("4 writers on /dev/vdb", detail)
        idle = BUSY_LOG[:3] + ["BUSY-INFLIGHT /dev/vdb reads 0 writes 0 sectors-written 378880"] + BUSY_LOG[4:]
        self.assertFalse(console.check_busy_writes(idle)[0])  # the loop gave up: nothing in flight
        nothing_written = BUSY_LOG[:3] + ["BUSY-INFLIGHT /dev/vdb reads 0 writes 1 sectors-written 0"] + BUSY_LOG[4:]
        self.assertFalse(console.check_busy_writes(nothing_written)[0])
        other_disk = BUSY_LOG[:3] + ["BUSY-INFLIGHT /dev/vda reads 0 writes 1 sectors-written 8"] + BUSY_LOG[4:]
        self.assertFalse(console.check_busy_writes(other_disk)[0])
        self.assertFalse(console.check_busy_writes(BUSY_LOG[:4])[0])  # no crash after it
        late = BUSY_LOG[:4] + ["PATTERN-EXIT 0"] + BUSY_LOG[4:]  # the crash did not follow the reading
        self.assertFalse(console.check_busy_writes(late)[0])
        self.assertFalse(console.check_busy_writes(BUSY_LOG[2:])[0])  # writers never said they started
        ok, detail = console.check_busy_writes(["BUSY-ABORT: no /dev/sda; disks: vda"])
        self.assertEqual((ok, detail), (False, "BUSY-ABORT: no /dev/sda; disks: vda"))

    def test_guest_disk_names(self):
        name = initramfs.guest_disk_name
        self.assertEqual([name("virtio", 1), name("nvme", 0), name("nvme", 1), name("ahci", 0), name("ahci", 2)],
                         ["vdb", "nvme0n1", "nvme1n1", "sda", "sdc"])  # fmt: skip
        for bad in (("scsi", 0), ("virtio", 26), ("ahci", -1)):
            with self.assertRaises(common.HarnessError):
                name(*bad)
        self.assertEqual(set(runner.BUSY_DRIVERS), set(scenarios.BUSES))

    def test_busy_init(self):
        busy = initramfs.BusyDisk("sda", (Path("/m/scsi_mod.ko"), Path("/m/libata.ko"), Path("/m/ahci.ko")))
        start, crash = initramfs.busy_block(busy), initramfs.busy_crash(busy)
        # The driver's modules in load order, before the disk is waited for.
        self.assertEqual(re.findall(r"^insmod /modules/(\S+)", start, re.M), ["scsi_mod.ko", "libata.ko", "ahci.ko"])
        self.assertLess(start.index("insmod"), start.index("[ ! -b /dev/sda ]"))
        self.assertIn('insmod /modules/libata.ko || { echo "BUSY-ABORT: insmod libata.ko failed"; poweroff -f; }', start)
        # The writers: direct 1 MiB writes, each to its own span inside the
        # dump area (from 2 MiB) and within a 2 GiB capture disk.
        seeks = [int(x) for x in re.search(r"for seek in ([\d ]+); do", start).group(1).split()]
        self.assertEqual(len(seeks), initramfs.BUSY_WRITERS)
        self.assertIn("of=/dev/sda bs=1M seek=$seek oflag=direct", start)
        self.assertTrue(all(s >= 2 for s in seeks))
        self.assertTrue(all(b - a >= initramfs.BUSY_SPAN_MIB for a, b in zip(seeks, seeks[1:])))
        self.assertLessEqual(seeks[-1] + initramfs.BUSY_SPAN_MIB, 2048)
        # Between reading inflight and the sysrq, only shell builtins run.
        tail = crash[crash.index("n=0") : crash.index("echo c > /proc/sysrq-trigger")]
        self.assertIsNone(re.search(r"\$\((?!\()|`", tail))  # no command substitution ($((...)) is arithmetic)
        self.assertIn("read r w < /sys/block/sda/inflight", tail)
        self.assertIn('echo "BUSY-INFLIGHT /dev/sda reads $r writes $w sectors-written $wsect" > /dev/kmsg', tail)
        self.assertIn('echo "BUSY-LOAD (built in)"', initramfs.busy_block(initramfs.BusyDisk("nvme0n1", ())))

    def test_flavour_version(self):
        fv = kernel.flavour_version
        self.assertEqual(fv("6.1.0-57-cloud-amd64", "generic"), "6.1.0-57-amd64")
        self.assertEqual(fv("6.1.0-57-amd64", "generic"), "6.1.0-57-amd64")
        self.assertEqual(fv("6.1.0-57-amd64", "cloud"), "6.1.0-57-cloud-amd64")
        for bad in (("6.1.0-57-cloud-arm64", "generic"), ("6.1.0-57-cloud-amd64", "rt")):
            with self.assertRaises(common.HarnessError):
                fv(*bad)

    def test_module_load_order(self):
        import tempfile

        from harness import modules

        with tempfile.TemporaryDirectory() as d:
            k = kernel.GuestKernel("6.1.0-57-amd64", Path(d))
            base = k.modules
            deps = {"drivers/ata/ahci.ko": "libahci,libata", "drivers/ata/libahci.ko": "libata",
                    "drivers/ata/libata.ko": "scsi_mod", "drivers/scsi/scsi_mod.ko": "scsi_common",
                    "drivers/scsi/scsi_common.ko": "", "drivers/scsi/sd_mod.ko": "scsi_mod,t10-pi",
                    "block/t10-pi.ko": "crc-t10dif", "lib/crc-t10dif.ko": "",
                    "drivers/nvme/host/nvme.ko": "nvme-core"}  # fmt: skip
            for rel, dep in deps.items():
                (base / rel).parent.mkdir(parents=True, exist_ok=True)
                (base / rel).write_bytes(module_object({"license": "GPL", "depends": dep, "vermagic": "6.1.0"}))
            (base.parent / "modules.builtin").write_text("kernel/drivers/nvme/host/nvme-core.ko\n")
            order = lambda *names: [p.name for p in modules.load_order(k, names)]  # noqa: E731
            self.assertEqual(order("ahci", "sd_mod"),
                             ["scsi_common.ko", "scsi_mod.ko", "libata.ko", "libahci.ko", "ahci.ko", "crc-t10dif.ko",
                              "t10-pi.ko", "sd_mod.ko"])  # fmt: skip
            self.assertEqual(order("nvme"), ["nvme.ko"])  # nvme-core is built in
            self.assertEqual(order("nvme_core"), [])
            with self.assertRaises(common.HarnessError):
                order("virtio_blk")  # neither a module nor built in
            (base / "lib/crc-t10dif.ko").write_bytes(module_object({"depends": "t10-pi"}))
            with self.assertRaisesRegex(common.HarnessError, "cycle"):
                order("sd_mod")
            (base / "lib/crc-t10dif.ko").rename(base / "lib/crc-t10dif.ko.xz")
            with self.assertRaisesRegex(common.HarnessError, "compressed"):
                order("sd_mod")
            self.assertIsNone(modules.elf_section(module_object({}), ".text"))
            with self.assertRaises(ValueError):
                modules.elf_section(b"\x7fELF\x01\x01" + bytes(58), ".modinfo")

    def test_candidates(self):
        # As minicap printed them in a real no-ahci-disk run.
        lines = ["minicap: virtio-blk 00:01.0: not a candidate (minicap.target=ahci); left alone",
                 "minicap: NVMe 00:02.0: not a candidate (minicap.target=ahci); left alone",
                 "minicap: dump disk candidates (minicap.target=ahci): AHCI 00:1f.2",
                 "minicap: RESULT: failure [no-device]: no AHCI disk on the PCI bus (minicap.target=ahci); ..."]
        left_out, chosen = ["virtio-blk 00:01.0", "NVMe 00:02.0"], ["AHCI 00:1f.2"]
        ok, detail = console.check_candidates(lines, "ahci", left_out, chosen)
        self.assertTrue(ok, detail)
        self.assertFalse(console.check_candidates(lines, "nvme", left_out, chosen)[0])  # another target
        self.assertFalse(console.check_candidates(lines[1:], "ahci", left_out, chosen)[0])  # one line missing
        self.assertFalse(console.check_candidates(lines[:1] + lines, "ahci", left_out, chosen)[0])  # said twice
        self.assertFalse(console.check_candidates(lines, "ahci", left_out, [])[0])  # the candidates line differs
        self.assertFalse(console.check_candidates(lines[:2] + lines[3:], "ahci", left_out, chosen)[0])
        nvme = ["minicap: AHCI 00:1f.2: not a candidate (minicap.target=nvme); left alone",
                "minicap: dump disk candidates (minicap.target=nvme): none"]
        self.assertTrue(console.check_candidates(nvme, "nvme", ["AHCI 00:1f.2"], [])[0])
        # Where the scan meets each disk's function: slots in table order, the HBA last, there even without a disk.
        self.assertEqual(scenarios.pci_functions(["virtio", "ahci", "nvme", "ahci"]),
                         [("virtio", "00:01.0"), ("nvme", "00:03.0"), ("ahci", "00:1f.2")])  # fmt: skip
        self.assertEqual(scenarios.pci_functions([]), [("ahci", "00:1f.2")])
        self.assertEqual(scenarios.dump_target(scenarios.lookup("no-ahci-disk")), "ahci")
        self.assertEqual(scenarios.dump_target(scenarios.lookup("capture-modern")), "any")
        from dataclasses import replace

        bad = replace(scenarios.lookup("no-ahci-disk"), capture_append=("minicap.target=sata",))
        self.assertNotEqual(scenarios.problems(bad), [])

    def test_device_reports_of_a_folded_run(self):
        # An unformatted NVMe namespace and an AHCI disk with another id, in one run.
        lines = ["minicap: NVMe 00:01.0 (QEMU NVMe Ctrl, namespace 1), 64 MiB: not a minicap dump device (no MINICAP "
                 "signature); left alone",
                 f"minicap: AHCI 00:1f.2 port 0 (QEMU HARDDISK), 64 MiB: minicap device id {ID} is not the requested "
                 f"{OTHER}; left alone",
                 "minicap: RESULT: failure [device-id-mismatch]: no disk has minicap device id ..."]  # fmt: skip
        ok, detail = console.check_device_reports(lines, unformatted=1, mismatch=(ID, OTHER))
        self.assertTrue(ok, detail)
        self.assertIn("NVMe 00:01.0", detail)
        self.assertIn("AHCI 00:1f.2", detail)
        self.assertFalse(console.check_device_reports(lines, unformatted=0, mismatch=(ID, OTHER))[0])
        self.assertFalse(console.check_device_reports(lines[1:], unformatted=1, mismatch=(ID, OTHER))[0])
        self.assertFalse(console.check_device_reports(lines[:1] + lines[2:], unformatted=1, mismatch=(ID, OTHER))[0])


# As the kernel printed it in a real device-error run.
WRITE_FAILURE = ("writing memory 0x1a100000 to byte 0x1c9d1000: write at byte 0x1c9d1000 "
                 "failed with virtio status 1")  # fmt: skip


class DeviceErrorTests(unittest.TestCase):
    def test_inject_offset_and_config(self):
        off = disks.inject_offset(1024, 45)
        self.assertEqual(off, (2 << 20) + (int(1024 * (1 << 20) * 0.45) & ~4095))
        self.assertEqual(off % 4096, 0)
        self.assertEqual(disks.inject_offset(1024, 50), (2 << 20) + (512 << 20))
        for bad in (0, 100, -1):
            with self.assertRaises(common.HarnessError):
                disks.inject_offset(1024, bad)
        cfg = disks.blkdebug_config(945760)
        self.assertEqual(cfg, '[inject-error]\nevent = "pwritev"\nerrno = "5"\nsector = "945760"\nonce = "on"\n')

    def test_qemu_blkdebug_drive(self):
        args = resolved(["--scenario", "device-error"])
        self.assertEqual(args.fail_at_percent, 45.0)
        self.assertEqual(args.disk_size, "2G")
        k = kernel.GuestKernel("v", Path("/k"))
        cmd = qemu.qemu_command(args, k, Path("/i"), [Path("/decoy.img"), Path("/dump.img")],
                               {Path("/dump.img"): Path("/bd.cfg")})  # fmt: skip
        drives = [cmd[i + 1] for i, c in enumerate(cmd) if c == "-drive"]
        self.assertEqual(drives, [
            "file=/decoy.img,format=raw,if=none,id=disk0",
            "driver=blkdebug,config=/bd.cfg,image.driver=file,image.filename=/dump.img,if=none,id=disk1,"
            "werror=report,rerror=report",
        ])  # fmt: skip

    def test_write_failure(self):
        wf = console.parse_write_failure(": " + WRITE_FAILURE)
        self.assertEqual((wf.source, wf.offset, wf.request, wf.status), (0x1A100000, 0x1C9D1000, 0x1C9D1000, 1))
        self.assertIsNone(console.parse_write_failure("flush after 40%: flush at byte 0x0 failed with virtio status 1"))
        self.assertTrue(console.check_write_failure(WRITE_FAILURE, 0x1CBCC000)[0])  # inside the 2 MiB request
        self.assertTrue(console.check_write_failure(WRITE_FAILURE, 0x1C9D1000)[0])
        self.assertFalse(console.check_write_failure(WRITE_FAILURE, 0x1C9D1000 + (2 << 20))[0])  # past it
        self.assertFalse(console.check_write_failure(WRITE_FAILURE, 0x1C9D0000)[0])  # before it
        self.assertFalse(console.check_write_failure(WRITE_FAILURE.replace("status 1", "status 2"), 0x1CBCC000)[0])
        self.assertFalse(console.check_write_failure("timed out", 0x1CBCC000)[0])

    def test_checkpoint(self):
        total = 1081782272
        failed = 0x1C9D1000 - (1 << 20)  # 44 %
        self.assertTrue(checks.check_checkpoint(432869376, total, failed)[0])  # the real run
        self.assertTrue(checks.check_checkpoint(-(-40 * total // 100), total, failed)[0])  # exactly 40 %
        self.assertFalse(checks.check_checkpoint(0, total, failed)[0])  # nothing recorded
        self.assertFalse(checks.check_checkpoint(324000000, total, failed)[0])  # an older checkpoint (30 %)
        self.assertFalse(checks.check_checkpoint(432869376 + (4 << 20), total, failed)[0])  # > one request past 40 %
        self.assertFalse(checks.check_checkpoint(failed + 4096, total, failed)[0])  # past the failure
        self.assertFalse(checks.check_checkpoint(total, total, total - 1)[0])  # complete is not partial
        self.assertFalse(checks.check_checkpoint(5, 0, 5)[0])

    def test_decoy_report(self):
        log = ["minicap: virtio-blk 00:01.0 (modern), 64 MiB: not a minicap dump device (no MINICAP signature); "
               "left alone", "minicap: RESULT: failure: " + WRITE_FAILURE]  # fmt: skip
        self.assertTrue(console.check_device_reports(log, 1)[0])
        self.assertFalse(console.check_device_reports(log[1:], 1)[0])

    def test_same_bytes(self):
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            a, b = Path(d) / "a", Path(d) / "b"
            a.write_bytes(b"abcdef")
            b.write_bytes(b"XXabcdeZ")
            self.assertTrue(disks.same_bytes(a, 0, b, 2, 5)[0])
            ok, detail = disks.same_bytes(a, 0, b, 2, 6)
            self.assertFalse(ok)
            self.assertIn("0x5", detail)
            self.assertFalse(disks.same_bytes(a, 0, b, 2, 7)[0])  # b too short

    def test_pattern(self):
        # splitmix64 as qemu/pattern/src/lib.rs's reference values.
        self.assertEqual(pattern.splitmix64(0), 0xE220A8397B1DCDAF)
        self.assertEqual(pattern.splitmix64(0x9E3779B97F4A7C15), 0x6E789E6AA1B965F4)
        page = pattern.pattern_page(1, 3)
        self.assertEqual(len(page), 4096)
        self.assertEqual(struct.unpack_from("<Q", page, 7 * 8)[0], pattern.splitmix64(1 ^ (3 << 9) ^ 7))
        serial = ["PATTERN-START 2.4", "x PATTERN-SEED 00000000000000ab", "PATTERN-RUN 10 0 2",
                  "PATTERN-RUN 20 2 1", "PATTERN-READY 3"]  # fmt: skip
        log = pattern.parse_pattern_log(serial)
        self.assertEqual((log.seed, log.runs, log.pages), (0xAB, [(0x10, 0, 2), (0x20, 2, 1)], 3))
        with self.assertRaises(ValueError):
            pattern.parse_pattern_log(serial[:-1])
        with self.assertRaises(ValueError):
            pattern.parse_pattern_log(serial[:3] + serial[4:])  # runs cover 2 of 3 pages
        # pfns 0x10, 0x11 in the first PT_LOAD, 0x20 in the second; save cut after the first.
        p0 = pattern.pattern_page(0xAB, 0) + pattern.pattern_page(0xAB, 1)
        img = elf_image([(elf.PT_LOAD, 0xFFFF888000010000, 0x10000, p0, None),
                   (elf.PT_LOAD, 0xFFFF888000020000, 0x20000, pattern.pattern_page(0xAB, 2), None)])  # fmt: skip
        ph = elf.read_phdrs(io.BytesIO(img))
        saved = ph[1].offset
        self.assertEqual(pattern.check_partial_pattern(io.BytesIO(img[:saved]), saved, ph, log), (2, 1, []))
        self.assertEqual(pattern.check_partial_pattern(io.BytesIO(img), len(img), ph, log), (3, 0, []))
        broken = bytearray(img)
        broken[ph[0].offset + 4096 + 100] ^= 1
        intact, beyond, problems = pattern.check_partial_pattern(io.BytesIO(bytes(broken)), len(img), ph, log)
        self.assertEqual((intact, beyond, len(problems)), (2, 0, 1))
        self.assertIn("page 1", problems[0])
        missing = pattern.PatternLog(0xAB, [(0x99, 0, 1)], 1)
        self.assertIn("no PT_LOAD", pattern.check_partial_pattern(io.BytesIO(img), len(img), ph, missing)[2][0])



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
            self.assertTrue(console.IOMMU_TAKEOVER.search(line), line)
        for line in bad:
            self.assertFalse(console.IOMMU_TAKEOVER.search(line), line)

    AMD = "minicap: IOMMU: AMD-Vi unit 0xfed80000 (segment 0, IOMMU 00:01.0, IVHD type 0x10): "

    def test_amd_vi_takeover_lines(self):
        ok = self.AMD + ("translation was on; own device table (65536 entries), untranslated DMA for 00:10.0 "
                         "00:11.0 00:1f.2; all other DMA and every interrupt blocked; unit off for 135 us while it "
                         "was switched; caches flushed (INVALIDATE_IOMMU_ALL); translation on")
        self.assertTrue(console.IOMMU_TAKEOVER.search(ok), ok)
        bad = [
            self.AMD + "translation off; left alone",
            ok.replace("00:10.0 00:11.0 00:1f.2", "no device"),
            ok.replace("translation on", "translation OFF"),
            "minicap: warning: AMD-Vi IOMMU at 0xfed80000: translation ON: the dump device's DMA will likely "
            "fault; minicap does not handle AMD-Vi yet",
        ]
        for line in bad:
            self.assertFalse(console.IOMMU_TAKEOVER.search(line), line)


class QemuVersionTests(unittest.TestCase):
    def test_parse(self):
        self.assertEqual(qemu.parse_qemu_version("QEMU emulator version 7.2.22 (Debian 1:7.2+dfsg-7+deb12u18+b3)\n"),
                         (7, 2, 22))
        self.assertEqual(qemu.parse_qemu_version("QEMU emulator version 10.0\n"), (10, 0, 0))
        self.assertIsNone(qemu.parse_qemu_version("something else"))

    def test_old_qemu_refused_with_a_clear_message(self):
        import tempfile, os
        with tempfile.TemporaryDirectory() as d:
            fake = Path(d) / "qemu"
            fake.write_text("#!/bin/sh\necho 'QEMU emulator version 6.2.0'\n")
            os.chmod(fake, 0o755)
            with self.assertRaisesRegex(common.HarnessError, "needs QEMU 7.2 or newer"):
                qemu.check_qemu_version(str(fake))
            fake.write_text("#!/bin/sh\necho 'QEMU emulator version 7.2.22'\n")
            self.assertEqual(qemu.check_qemu_version(str(fake)), (7, 2, 22))

# `minicap info --json` of the dump disk after the device-error run (the schema of helper-common.md).
INFO = {
    "device": "qemu/out/device-error/dump.img", "device_id": ID, "state": "failed", "format": "elf-vmcore",
    "dump_offset": 2 << 20, "dump_length": 1081782272, "written": 432869376, "capacity": 2 << 30,
    "crash_time": 1795417046, "sha256": "00" * 32, "writer": "minicap 0.1.0", "osrelease": "6.1.0-56-cloud-amd64",
    "message": WRITE_FAILURE, "failure_code": "device-error", "skipped_ranges": 0, "skipped_bytes": 0,
    "log_length": 2345, "verify": "xxh64-chunks", "chunk_size": 1 << 20, "triage_length": 25877,
    "dump_level_requested": 0, "dump_level": 0, "level_note": "", "compression": "none", "pages_ram": 0,
    "pages_dumped": 0, "saved_time": 0,
}  # fmt: skip


def synthetic_kdump(pages: dict[int, tuple[bytes, int]], max_mapnr: int = 64, status: int = 1) -> bytes:
    """A kdump-compressed file laid out as the format describes: header, one sub-header
    block, one block per bitmap, the descriptors, then the data of `pages` (pfn ->
    (stored bytes, flags))."""
    block = 4096
    head = bytearray(block)
    head[:8] = b"KDUMP   "
    struct.pack_into("<i", head, 8, 6)
    head[12 + 130:12 + 130 + 6] = b"6.1.0x"
    struct.pack_into("<IiiII", head, 424, status, block, 1, 2, max_mapnr)
    struct.pack_into("<i", head, 460, 2)
    sub = bytearray(block)
    struct.pack_into("<i", sub, 8, 31)
    struct.pack_into("<Q", sub, 96, max_mapnr)
    ram, dumped = bytearray(block), bytearray(block)
    for pfn in range(max_mapnr):
        ram[pfn // 8] |= 1 << (pfn % 8)
    for pfn in pages:
        dumped[pfn // 8] |= 1 << (pfn % 8)
    descs = bytearray()
    data = bytearray()
    data_at = 4 * block + block  # after one block of descriptors
    for pfn in sorted(pages):
        stored, flags = pages[pfn]
        descs += struct.pack("<QIIQ", data_at + len(data), len(stored), flags, 0)
        data += stored
    return bytes(head + sub + ram + dumped + descs.ljust(block, b"\0") + data)


class KdumpReaderTests(unittest.TestCase):
    def test_pages_bitmaps_and_codecs(self):
        raw = bytes(range(256)) * 16
        text = b"minicap " * 512
        f = io.BytesIO(synthetic_kdump({3: (raw, 0), 9: (zlib.compress(text, 1), 1), 10: (b"lzo!", 2)}))
        k = kdumpfile.KdumpFile(f)
        self.assertEqual((k.header_version, k.release, k.nr_cpus, k.dump_level, k.max_mapnr), (6, "6.1.0x", 2, 31, 64))
        self.assertFalse(k.incomplete)
        self.assertEqual(k.dumped_pages(), 3)
        self.assertTrue(k.is_ram(5) and not k.is_dumped(5))
        self.assertIsNone(k.page(5))
        self.assertEqual(k.page(3), raw)
        self.assertEqual(k.page(9), text)
        with self.assertRaisesRegex(kdumpfile.KdumpFormatError, "lzo pages are not read here"):
            k.page(10)

    def test_damage_is_an_error(self):
        good = synthetic_kdump({1: (b"x" * 4096, 0)})
        with self.assertRaisesRegex(kdumpfile.KdumpFormatError, "signature"):
            kdumpfile.KdumpFile(io.BytesIO(b"ELF" + good[3:]))
        with self.assertRaisesRegex(kdumpfile.KdumpFormatError, "file ends"):
            kdumpfile.KdumpFile(io.BytesIO(good[:5000]))
        k = kdumpfile.KdumpFile(io.BytesIO(synthetic_kdump({1: (b"not zlib", 1)}, status=9)))
        self.assertTrue(k.incomplete)
        with self.assertRaisesRegex(kdumpfile.KdumpFormatError, "pfn 0x1"):
            k.page(1)


class DeviceInfoTests(unittest.TestCase):
    def test_parse(self):
        h = device_info.parse_device_info(json.dumps(INFO))
        self.assertEqual((h.state, h.format, h.dump_offset, h.written, h.dump_length),
                         ("failed", "elf-vmcore", 2 << 20, 432869376, 1081782272))  # fmt: skip
        self.assertEqual((h.writer, h.osrelease, h.message, h.failure_code),
                         ("minicap 0.1.0", "6.1.0-56-cloud-amd64", WRITE_FAILURE, "device-error"))  # fmt: skip
        self.assertEqual((h.crash_time, h.skipped_ranges, h.log_length), (1795417046, 0, 2345))
        self.assertEqual((h.verify, h.chunk_size), ("xxh64-chunks", 1 << 20))

    def test_rejects_what_the_schema_does_not_allow(self):
        def bad(**change):
            obj = dict(INFO)
            for k, v in change.items():
                if v is None:
                    del obj[k]
                else:
                    obj[k] = v
            return json.dumps(obj)

        for text in [bad(state="broken"), bad(format="kdump"), bad(written="12"), bad(written=True),
                     bad(message=None), bad(extra=1), bad(device_id="xyz"), bad(sha256="ab"),
                     bad(verify="crc"), bad(chunk_size="1M"),
                     "[1, 2]", "state: failed", ""]:  # fmt: skip
            with self.assertRaises(ValueError, msg=text):
                device_info.parse_device_info(text)

    def test_read_runs_the_tool(self):
        import os
        import tempfile

        with tempfile.TemporaryDirectory() as d:
            tool = Path(d) / "minicap"
            tool.write_text(f"#!/bin/sh\n[ \"$1 $2 $3\" = 'info --json {d}/img' ] || exit 9\n"
                            f"cat <<'X'\n{json.dumps(INFO)}\nX\n")  # fmt: skip
            os.chmod(tool, 0o755)
            self.assertEqual(device_info.read_device_info(tool, Path(d) / "img").written, 432869376)
            with self.assertRaisesRegex(ValueError, "exit 9"):
                device_info.read_device_info(tool, Path(d) / "other")

    def test_complete_header(self):
        sha = "cd" * 32
        result = f"wrote 1082843136 bytes (1.0 GiB) to virtio-blk 00:02.0 in 31.204 s (33.0 MiB/s), sha256 {sha}"
        good = dict(INFO, state="complete", failure_code="none", message="", written=1082843136,
                    dump_length=1082843136, sha256=sha, verify="sha256", chunk_size=0)  # fmt: skip

        def run(overrides, size=1082843136, text=result, dump_format="elf-vmcore"):
            res = checks.Results()
            h = device_info.parse_device_info(json.dumps(dict(good, **overrides)))
            with contextlib.redirect_stdout(io.StringIO()):  # Results prints each check
                checks.check_complete_header(res, h, text, size, "6.1.0-56-cloud-amd64", dump_format)
            return res.ok

        self.assertTrue(run({}))
        self.assertFalse(run({}, dump_format="kdump-compressed"))
        self.assertTrue(run({"format": "kdump-compressed"}, dump_format="kdump-compressed"))
        self.assertFalse(run({"dump_offset": 1 << 20}))
        self.assertTrue(run({}, size=None))  # no vmcore saved: that is the save check's failure
        self.assertFalse(run({"state": "failed"}))
        self.assertFalse(run({"failure_code": "device-error"}))
        self.assertFalse(run({"written": 5}))
        self.assertFalse(run({}, size=5))
        self.assertFalse(run({"osrelease": "6.2"}))
        self.assertFalse(run({"sha256": "ee" * 32}))
        self.assertFalse(run({}, text="wrote 1082843136 bytes"))  # no sha256 printed
        # minicap.verify=chunks (the default): the line names the chunk size and count, the header's verify matches.
        chunks = "wrote 1082843136 bytes (1.0 GiB) to virtio-blk 00:02.0 in 9.1 s (113.4 MiB/s), " \
                 "xxh64 per 1 MiB chunk (1033 chunks), table xxh64 0123456789abcdef"  # fmt: skip
        as_chunks = {"verify": "xxh64-chunks", "chunk_size": 1 << 20, "sha256": "00" * 32}
        self.assertTrue(run(as_chunks, text=chunks))
        self.assertFalse(run(as_chunks, text=chunks.replace("1033 chunks", "1032 chunks")))
        self.assertFalse(run(dict(as_chunks, chunk_size=2 << 20), text=chunks))
        self.assertFalse(run({}, text=chunks))  # the header says sha256
        self.assertFalse(run(as_chunks))  # the line says sha256
        # minicap.verify=none.
        none = "wrote 1082843136 bytes (1.0 GiB) to virtio-blk 00:02.0 in 9.1 s (113.4 MiB/s), " \
               "not verified (minicap.verify=none)"  # fmt: skip
        self.assertTrue(run({"verify": "none", "sha256": "00" * 32}, text=none))
        self.assertFalse(run({"verify": "sha256"}, text=none))


# As the kernel prints them (capture/src/failure.rs).
TIMED_OUT = ("the capture ran past its time limit: 2.004 s since minicap started, limit 2 s (minicap.timeout=); "
             "no further write was started, what the device confirmed is kept")  # fmt: skip
KEPT = ("dump device virtio-blk 00:01.0 (modern), 2048 MiB holds a complete dump of kernel 6.1.0-first-crash-amd64 "
        "that crashed at 2023-11-14 22:13:20 UTC, 1048576 of 1048576 bytes (1.0 MiB) on the device, not yet saved: "
        "it is kept; copy it off with `minicap save DEVICE` (the next crash is then captured), or boot the capture "
        "kernel with minicap.overwrite=any to replace it; nothing was written")  # fmt: skip


class LimitsTests(unittest.TestCase):
    def test_time_limit_message(self):
        self.assertEqual(checks.check_time_limit_message(TIMED_OUT, 2),
                         (True, "elapsed 2.004 s, limit 2 s (asked for 2 s)"))
        self.assertFalse(checks.check_time_limit_message(TIMED_OUT, 3)[0])
        self.assertFalse(checks.check_time_limit_message(TIMED_OUT.replace("2.004", "1.999"), 2)[0])
        self.assertFalse(checks.check_time_limit_message(WRITE_FAILURE, 2)[0])
        self.assertEqual(scenarios.time_limit(scenarios.lookup("capture-timeout")), 2)
        self.assertIsNone(scenarios.time_limit(scenarios.lookup("capture-modern")))

    def test_unsaved_kept(self):
        res = checks.Results()
        checks.check_unsaved_kept(res, KEPT)
        self.assertTrue(res.ok)
        res = checks.Results()
        checks.check_unsaved_kept(res, KEPT.replace("2023-11-14", "2023-11-15"))
        self.assertFalse(res.ok)

    @unittest.skipUnless(TOOL.is_file(), f"{TOOL} not built")
    def test_unsaved_dump_disk(self):
        with tempfile.TemporaryDirectory() as d:
            img = Path(d) / "dump.img"
            device_id, _ = disks.make_unsaved_dump_disk(str(TOOL), img, 8 << 20)
            info = device_info.read_device_info(str(TOOL), img)
            self.assertEqual((info.device_id, info.state, info.format, info.saved_time), (device_id, "complete",
                             "elf-vmcore", 0))  # fmt: skip
            self.assertEqual((info.written, info.osrelease, info.crash_time),
                             (disks.UNSAVED_DUMP_BYTES, disks.UNSAVED_OSRELEASE, disks.UNSAVED_CRASH_TIME))
            disks.make_unsaved_dump_disk(str(TOOL), img, 8 << 20, saved=True)
            info = device_info.read_device_info(str(TOOL), img)
            self.assertEqual((info.state, info.saved_time), ("complete", disks.UNSAVED_CRASH_TIME + 3600))


# The runs of run-all.sh before the table, in its order, plus the two
# integrity-check variants added with `minicap.verify=`.
SUITE = ["capture-modern", "capture-legacy-4kn", "capture-nvme", "capture-ahci", "capture-verify-sha256",
         "capture-verify-none", "capture-kdump-zlib-1", "capture-kdump-lzo-31", "capture-kdump-lzo-1",
         "capture-kdump-zlib-31", "capture-nvme-4kn-kdump", "capture-ahci-ports-kdump", "capture-elf-31",
         "capture-serial-kdump", "serial-fallback", "no-disk",
         "small-disk", "capture-qemu64-4M-3G", "capture-iommu",
         "capture-iommu-identity", "capture-nvme-iommu", "capture-amd-iommu", "unformatted-disk", "wrong-id",
         "bad-elfcorehdr", "other-target-kind", "ambiguous", "device-error",
         "capture-timeout", "unsaved-dump", "no-ahci-disk",
         "nvme-unformatted-ahci-wrong-id", "ahci-unformatted-nvme-wrong-id", "busy-virtio", "load-minicap", "load-bad-digest",
         "load-kexec-file-signed", "load-kexec-bzimage", "secure-boot-lockdown", "load-minicap-file",
         "corrupt-overlapping-loads", "corrupt-outside-ram-note", "bad-options"]
# The runs left out of the suite (on demand: `e2e.py --scenario NAME`).
ON_DEMAND = ["saved-dump-replaced", "no-nvme-disk", "nvme-unformatted", "ahci-unformatted", "nvme-wrong-id", "ahci-wrong-id",
             "busy-nvme", "busy-ahci", "load-kexec-file", "secure-boot-minicap-load", "load-minicap-fallback",
             "linux-kdump", "corrupt-bad-magic", "corrupt-absurd-phnum", "no-elfcorehdr",
             "unknown-option"]
# The failure code each failure scenario must see.
CODES = {"no-disk": "no-device", "small-disk": "device-too-small", "unformatted-disk": "no-prepared-device",
         "wrong-id": "device-id-mismatch", "ambiguous": "ambiguous-device", "bad-elfcorehdr": "bad-elfcorehdr",
         "device-error": "device-error", "other-target-kind": "no-device", "no-ahci-disk": "no-device",
         "nvme-unformatted-ahci-wrong-id": "device-id-mismatch", "ahci-unformatted-nvme-wrong-id": "device-id-mismatch",
         "no-nvme-disk": "no-device", "nvme-unformatted": "no-prepared-device",
         "ahci-unformatted": "no-prepared-device",
         "nvme-wrong-id": "device-id-mismatch", "ahci-wrong-id": "device-id-mismatch",
         "capture-timeout": "timeout", "unsaved-dump": "unsaved-dump",
         "corrupt-overlapping-loads": "bad-core-headers", "bad-options": "bad-option",
         "corrupt-bad-magic": "bad-core-headers", "corrupt-absurd-phnum": "bad-core-headers",
         "no-elfcorehdr": "no-elfcorehdr"}  # fmt: skip


REFUSAL = ("minicap purgatory: segment 0 at 0x3d000000, 716800 bytes: SHA-256 mismatch, not starting the "
           "capture kernel")  # fmt: skip


class MinicapLoadTests(unittest.TestCase):
    def test_purgatory_refusal(self):
        crash = object()
        log = ["KEXEC-LOADED", "[    7.361966] sysrq: Trigger a crash", REFUSAL]

        def verdicts(texts, crash=crash, segment=0):
            res = checks.Results()
            with contextlib.redirect_stdout(io.StringIO()):
                runner.check_purgatory_refusal(res, texts, crash, segment)
            return [c.ok for c in res.checks]

        self.assertEqual(verdicts(log), [True, True])
        self.assertEqual(verdicts(log, segment=2), [False, True])  # another segment named
        self.assertEqual(verdicts(log[:2]), [False, True])  # no refusal at all
        self.assertEqual(verdicts(log, crash=None), [False, True])  # no crash before it
        self.assertEqual(verdicts(log + ["minicap: minicap 0.1.0 starting"]), [True, False])
        ok = "minicap purgatory: 3 segments match their SHA-256, starting minicap"
        self.assertEqual(verdicts([ok]), [False, False])

    def test_the_initramfs_loads_with_minicap_and_has_no_kexec(self):
        tool = Path(sys.executable)  # any dynamically linked program stands for the host tool
        with tempfile.TemporaryDirectory() as d:
            image, purgatory = Path(d, "minicap.elf"), Path(d, "purgatory.elf")
            image.write_bytes(b"image")
            purgatory.write_bytes(b"purgatory")
            load = initramfs.MinicapLoad(tool, purgatory, corrupt_digest=0)
            raw = __import__("gzip").decompress(initramfs.build_initramfs(
                None, "minicap.device=ab minicap.after=reboot", minicap=image, minicap_load=load))  # fmt: skip
        self.assertNotIn(b"sbin/kexec\0", raw)
        for name in (b"sbin/minicap\0", b"purgatory.elf\0", b"minicap.elf\0"):
            self.assertIn(name, raw)
        init = raw[raw.index(b"#!/bin/busybox sh"):].decode(errors="replace")
        self.assertIn("minicap load --image /minicap.elf --corrupt-digest 0 "
                      "--append='minicap.device=ab minicap.after=reboot'", init)  # fmt: skip
        self.assertNotIn("kexec -p", init)


class BadInputTests(unittest.TestCase):
    """The rows that damage what the capture kernel receives, and their checks."""

    def test_the_load_command_carries_the_damage(self):
        tool = Path(sys.executable)
        with tempfile.TemporaryDirectory() as d:
            image, purgatory = Path(d, "minicap.elf"), Path(d, "purgatory.elf")
            image.write_bytes(b"image")
            purgatory.write_bytes(b"purgatory")
            s = scenarios.lookup("corrupt-outside-ram-note")
            load = initramfs.MinicapLoad(tool, purgatory, s.corrupt_digest, s.corrupt_core_headers, s.omit_elfcorehdr)
            raw = __import__("gzip").decompress(initramfs.build_initramfs(
                None, "minicap.after=reboot", minicap=image, minicap_load=load))  # fmt: skip
            init = raw[raw.index(b"#!/bin/busybox sh"):].decode(errors="replace")
            self.assertIn("\nminicap load --image /minicap.elf --test-corrupt-core-headers=load-outside-ram,"
                          "note-past-segment --append=minicap.after=reboot\n", init)  # fmt: skip
            load = initramfs.MinicapLoad(tool, purgatory, omit_elfcorehdr=True)
            raw = __import__("gzip").decompress(initramfs.build_initramfs(
                None, "minicap.after=reboot", minicap=image, minicap_load=load))  # fmt: skip
            self.assertIn(b"minicap load --image /minicap.elf --test-omit-elfcorehdr --append=", raw)

    def test_every_defect_has_a_row(self):
        made = {d for s in scenarios.SCENARIOS for d in s.corrupt_core_headers}
        self.assertEqual(made, set(scenarios.CORE_HEADER_DEFECTS))
        self.assertEqual(sum(s.omit_elfcorehdr for s in scenarios.SCENARIOS), 1)
        # At most three of these rows in the suite (CI's budget).
        bad_input = [s.name for s in scenarios.SCENARIOS if s.in_suite and s.console_lines]
        self.assertEqual(bad_input, ["corrupt-overlapping-loads", "corrupt-outside-ram-note", "bad-options"])

    def test_damage_needs_minicap_load_and_known_defects(self):
        from dataclasses import replace

        base = scenarios.lookup("corrupt-bad-magic")
        self.assertEqual(scenarios.problems(base), [])
        self.assertTrue(scenarios.problems(replace(base, loader=scenarios.LOADER_KEXEC)))
        self.assertTrue(scenarios.problems(replace(base, corrupt_core_headers=("bad-magik",))))
        self.assertTrue(scenarios.problems(replace(base, console_lines=("(unclosed",))))

    def test_console_lines_must_match_exactly(self):
        overlap = scenarios.lookup("corrupt-overlapping-loads").console_lines
        line = ("minicap: RESULT: failure [bad-core-headers]: ELF core headers at elfcorehdr=0x3efff000 are unusable: "
                "ELF core headers: PT_LOAD #6 (0x1e800000-0x1f7da000) overlaps PT_LOAD #5 (0x100000-0x3cf00000): the "
                "same memory described twice; nothing was written")  # fmt: skip

        def verdicts(texts, patterns=overlap):
            res = checks.Results()
            with contextlib.redirect_stdout(io.StringIO()):
                runner.check_console_lines(res, texts, patterns)
            return [c.ok for c in res.checks]

        self.assertEqual(verdicts(["minicap: capture kernel starting", line + "\r"]), [True])
        self.assertEqual(verdicts([line.replace("PT_LOAD #5", "PT_NOTE #5")]), [False])
        self.assertEqual(verdicts([line.replace("; nothing was written", "")]), [False])
        self.assertEqual(verdicts(["[ 1.0] " + line]), [False])  # minicap's own line, not an echo
        note = scenarios.lookup("corrupt-outside-ram-note").console_lines
        said = ["minicap: warning: PT_NOTE #0: note at offset 0x0 (n_namesz 0x5, n_descsz 0x150) exceeds p_memsz, "
                "dropped",
                "minicap: warning: PT_LOAD range 0xfec00000-0xfec01000 (4 KiB) is not memory in the memory map "
                "(device registers or firmware-reserved): not read, zeros in the dump",
                "minicap: warning: 1 PT_LOAD range(s), 4096 bytes, skipped (recorded in the dump header)"]  # fmt: skip
        self.assertEqual(verdicts(said, note), [True, True, True])
        self.assertEqual(verdicts(said[1:], note), [False, True, True])
        options = scenarios.lookup("bad-options").console_lines
        said = ["minicap: warning: ignoring unknown option minicap.colour",
                "minicap: RESULT: failure [bad-option]: bad minicap option: invalid value \"bogus\" for "
                "minicap.format: accepted values: elf, kdump; nothing was written", "minicap: powering off"]  # fmt: skip
        self.assertEqual(verdicts(said, options), [True, True, True])
        self.assertEqual(verdicts(said[:2] + ["minicap: rebooting"], options), [True, True, False])

    def test_skipped_ranges_in_the_header(self):
        from types import SimpleNamespace

        def verdict(ranges, nbytes):
            res = checks.Results()
            with contextlib.redirect_stdout(io.StringIO()):
                runner.check_skipped_recorded(res, SimpleNamespace(skipped_ranges=ranges, skipped_bytes=nbytes),
                                              [scenarios.OUTSIDE_RAM_PAGE])  # fmt: skip
            return res.checks[0].ok

        self.assertTrue(verdict(1, 4096))
        self.assertFalse(verdict(0, 0))
        self.assertFalse(verdict(2, 8192))


class ScenarioTableTests(unittest.TestCase):
    def test_every_row_is_valid(self):
        for s in scenarios.SCENARIOS:
            self.assertEqual(scenarios.problems(s), [], s.name)

    def test_validation_finds_bad_rows(self):
        base = scenarios.lookup("wrong-id")
        from dataclasses import replace

        for bad in [replace(base, name="Wrong Id"), replace(base, failure="too-small"),
                    replace(base, checks=frozenset({"vmcore"})), replace(base, checks=frozenset({"typo"})),
                    replace(base, disks=()), replace(base, disks=base.disks * 2),
                    replace(base, device_option="maybe"), replace(base, options=scenarios.Options(virtio="v2")),
                    replace(scenarios.lookup("capture-modern"), pattern=False),
                    replace(base, disks=(replace(base.disks[0], bus="scsi"),)),
                    replace(scenarios.lookup("capture-modern"), options=scenarios.Options(nvme_props="x=1")),
                    replace(base, disks=tuple(replace(base.disks[0], image=f"{i}.img", label=f"disk {i}",
                                                      bus="ahci", target=i == 0) for i in range(7))),
                    replace(scenarios.lookup("device-error"), checks=frozenset()),
                    replace(scenarios.lookup("busy-ahci"), guest_kernel="cloud"),
                    replace(scenarios.lookup("busy-nvme"), guest_kernel="rt"),
                    replace(base, loader="tftp"),
                    replace(scenarios.lookup("load-bad-digest"), loader=scenarios.LOADER_KEXEC),
                    replace(base, busy=True),  # a busy run must succeed
                    replace(scenarios.lookup("linux-kdump"), busy=True)]:  # fmt: skip
            self.assertNotEqual(scenarios.problems(bad), [], bad)

    def test_names_unique(self):
        names = [s.name for s in scenarios.SCENARIOS]
        self.assertEqual(len(names), len(set(names)))
        self.assertFalse(set(scenarios.ALIASES) & set(names))

    def test_suite_is_the_run_all_list(self):
        self.assertEqual(list(scenarios.SUITE), SUITE)
        self.assertEqual([s.name for s in scenarios.SCENARIOS if s.in_suite], SUITE)
        self.assertEqual([s.name for s in scenarios.SCENARIOS if not s.in_suite], ON_DEMAND)
        # run-all.sh runs exactly the suite: it hands everything to `e2e.py --all`.
        script = (Path(__file__).resolve().parent / "run-all.sh").read_text()
        self.assertEqual(re.findall(r"^exec .*$", script, re.M), ['exec "${PYTHON:-python3}" qemu/e2e.py --all "$@"'])

    def test_expected_outcomes(self):
        for s in scenarios.SCENARIOS:
            self.assertEqual(s.failure, CODES.get(s.name), s.name)

    def test_what_each_scenario_checks(self):
        get = scenarios.lookup
        for name in ("capture-modern", "capture-legacy-4kn", "capture-qemu64-4M-3G", "capture-iommu",
                     "capture-iommu-identity", "capture-amd-iommu"):  # fmt: skip
            s = get(name)
            self.assertEqual(s.checks, {"left-alone", "stored-log", "vmcore", "header-complete", "triage"}, name)
            self.assertEqual([(d.image, d.content, d.guarded, d.target) for d in s.disks],
                             [("decoy.img", "random", True, False), ("dump.img", "formatted", False, True)])
            self.assertTrue(s.pattern)
        self.assertEqual(get("no-disk").disks, ())
        self.assertEqual(get("small-disk").checks, {"data-area-zero"})
        for name in ("unformatted-disk", "wrong-id", "bad-elfcorehdr", "other-target-kind", "ambiguous"):
            s = get(name)
            self.assertTrue(s.disks and all(d.guarded for d in s.disks), name)
            self.assertFalse(s.pattern)
        self.assertEqual(get("unformatted-disk").checks, {"left-alone"})
        self.assertEqual((get("wrong-id").checks, get("wrong-id").device_option), ({"left-alone"}, "other"))
        self.assertEqual(get("bad-elfcorehdr").capture_append, ("elfcorehdr=12junk",))
        self.assertEqual(get("other-target-kind").capture_append, ("minicap.target=nvme",))
        self.assertEqual((len(get("ambiguous").disks), get("ambiguous").device_option), (2, "none"))
        de = get("device-error")
        self.assertEqual(de.checks, {"left-alone", "device-error", "stored-log", "triage"})
        self.assertEqual([d.fails_write for d in de.disks], [False, True])
        for name, level, codec in (("capture-kdump-zlib-1", 1, "zlib"), ("capture-kdump-lzo-31", 31, "lzo"),
                                   ("capture-kdump-lzo-1", 1, "lzo"), ("capture-kdump-zlib-31", 31, "zlib"),
                                   ("capture-nvme-4kn-kdump", 1, "none"),
                                   ("capture-ahci-ports-kdump", 31, "lzo")):  # fmt: skip
            s = get(name)
            self.assertEqual(s.checks, {"left-alone", "stored-log", "kdump", "header-complete", "triage"}, name)
            self.assertEqual(scenarios.kdump_settings(s), (level, codec))
            self.assertIn("minicap.format=kdump", s.capture_append)
            self.assertTrue(s.pattern)
        # The disks' buses: virtio-blk everywhere but in the NVMe and AHCI rows.
        buses = {s.name: [d.bus for d in s.disks] for s in scenarios.SCENARIOS}
        self.assertEqual(buses.pop("capture-nvme"), ["virtio", "nvme"])
        self.assertEqual(buses.pop("capture-nvme-iommu"), ["virtio", "nvme"])
        self.assertEqual(buses.pop("capture-nvme-4kn-kdump"), ["nvme", "nvme"])
        self.assertEqual(buses.pop("capture-ahci"), ["virtio", "ahci"])
        self.assertEqual(buses.pop("capture-ahci-ports-kdump"), ["ahci", "ahci"])
        self.assertEqual(buses.pop("no-ahci-disk"), ["virtio", "nvme"])
        self.assertEqual(buses.pop("no-nvme-disk"), ["virtio", "ahci"])
        self.assertEqual(buses.pop("nvme-unformatted-ahci-wrong-id"), ["nvme", "ahci"])
        self.assertEqual(buses.pop("ahci-unformatted-nvme-wrong-id"), ["ahci", "nvme"])
        for kind in ("nvme", "ahci"):
            self.assertEqual(buses.pop(f"{kind}-unformatted"), [kind])
            self.assertEqual(buses.pop(f"{kind}-wrong-id"), [kind])
            self.assertEqual(buses.pop(f"busy-{kind}"), ["virtio", kind])
        self.assertEqual({b for bs in buses.values() for b in bs}, {"virtio"})
        for name in ("capture-nvme", "capture-nvme-iommu", "capture-ahci"):
            s = get(name)
            self.assertEqual(s.checks, {"left-alone", "stored-log", "vmcore", "header-complete", "triage"}, name)
            self.assertEqual([(d.image, d.content, d.guarded, d.target) for d in s.disks],
                             [("decoy.img", "random", True, False), ("dump.img", "formatted", False, True)])
        for name in ("capture-nvme-4kn-kdump", "capture-ahci-ports-kdump"):
            self.assertEqual([(d.content, d.guarded, d.target) for d in get(name).disks],
                             [("random", True, False), ("formatted", False, True)])  # fmt: skip
        # The NVMe and AHCI bad inputs: every disk guarded, the failure's own
        # "left alone" lines; the folded ones report one disk of each kind.
        for name in ("no-ahci-disk", "no-nvme-disk", "nvme-unformatted", "ahci-unformatted", "nvme-wrong-id",
                     "ahci-wrong-id", "nvme-unformatted-ahci-wrong-id", "ahci-unformatted-nvme-wrong-id"):
            s = get(name)
            self.assertTrue(s.disks and all(d.guarded for d in s.disks), name)
            self.assertFalse(s.pattern or s.busy, name)
        self.assertEqual(get("no-ahci-disk").capture_append, ("minicap.target=ahci",))
        self.assertEqual(get("no-nvme-disk").capture_append, ("minicap.target=nvme",))
        for name in ("no-ahci-disk", "no-nvme-disk"):
            self.assertEqual((get(name).checks, get(name).device_option), ({"candidates"}, "target"))
        for name in ("nvme-unformatted", "ahci-unformatted"):
            self.assertEqual((get(name).checks, get(name).device_option), ({"left-alone"}, "none"))
        for name in ("nvme-wrong-id", "ahci-wrong-id", "nvme-unformatted-ahci-wrong-id",
                     "ahci-unformatted-nvme-wrong-id"):
            self.assertEqual((get(name).checks, get(name).device_option), ({"left-alone"}, "other"))
        self.assertEqual([d.content for d in get("nvme-unformatted-ahci-wrong-id").disks], ["random", "formatted"])
        # The busy runs: a full capture, the crashed kernel writing to the
        # dump disk; only AHCI needs the generic kernel.
        for name in ("busy-virtio", "busy-nvme", "busy-ahci"):
            s = get(name)
            self.assertEqual(s.checks, {"left-alone", "stored-log", "vmcore", "header-complete", "triage"}, name)
            self.assertTrue(s.busy and s.pattern and s.failure is None, name)
            self.assertEqual(s.guest_kernel, "generic" if name == "busy-ahci" else "cloud", name)
        self.assertEqual([s.name for s in scenarios.SCENARIOS if s.busy], ["busy-virtio", "busy-nvme", "busy-ahci"])
        self.assertEqual([s.name for s in scenarios.SCENARIOS if s.guest_kernel != "cloud"], ["capture-amd-iommu", "busy-ahci"])
        s = get("capture-elf-31")
        self.assertEqual(s.checks, {"left-alone", "stored-log", "elf-filtered", "header-complete", "triage"})
        self.assertEqual(s.capture_append, ("minicap.format=elf", "minicap.dump_level=31"))
        self.assertEqual(scenarios.dump_level(s), 31)
        self.assertTrue(s.pattern)
        from dataclasses import replace

        self.assertNotEqual(scenarios.problems(replace(s, capture_append=("minicap.format=elf",))), [])
        self.assertNotEqual(scenarios.problems(replace(s, checks=s.checks | {"vmcore"})), [])
        # The serial stream: no disk is the target, COM2 carries the dump, the disk
        # checks of a kdump read what `minicap receive` rebuilt.
        s = get("capture-serial-kdump")
        self.assertEqual(s.checks, {"serial-stream", "kdump", "triage"})
        self.assertEqual(s.capture_append, ("minicap.target=serial", "minicap.serial=0x2f8"))
        self.assertEqual(scenarios.kdump_settings(s), (31, "lzo"))
        self.assertEqual([(d.content, d.guarded, d.target) for d in s.disks], [("random", True, False)])
        self.assertEqual(s.device_option, "none")
        self.assertNotEqual(scenarios.problems(replace(s, capture_append=("minicap.target=serial",))), [])
        self.assertNotEqual(scenarios.problems(replace(s, checks=frozenset({"kdump", "triage"}))), [])
        self.assertNotEqual(scenarios.problems(replace(s, disks=(scenarios.decoy(), scenarios.dump_disk()))), [])
        s = get("serial-fallback")
        self.assertEqual(s.checks, {"serial-stream", "kdump", "triage", "left-alone"})
        self.assertEqual(s.capture_append, ("minicap.fallback=serial", "minicap.serial=0x2f8"))
        self.assertNotEqual(scenarios.problems(replace(s, capture_append=("minicap.serial=0x2f8",))), [])

    def test_options_row_then_command_line(self):
        a = resolved(["--scenario", "capture-qemu64-4M-3G"])
        self.assertEqual((a.cpu, a.crashkernel, a.memory, a.virtio), ("qemu64", "4M", 3072, "modern"))
        a = resolved(["--scenario", "capture-qemu64-4M-3G", "--cpu", "max", "--memory", "2048"])
        self.assertEqual((a.cpu, a.crashkernel, a.memory), ("max", "4M", 2048))
        a = resolved(["--scenario", "capture-legacy-4kn"])
        self.assertEqual((a.virtio, a.blk_props), ("legacy", "logical_block_size=4096,physical_block_size=4096"))
        a = resolved(["--scenario", "capture-nvme-4kn-kdump"])
        self.assertEqual((a.nvme_props, a.blk_props), ("logical_block_size=4096,physical_block_size=4096", ""))
        self.assertEqual(resolved(["--scenario", "capture-nvme"]).nvme_props, "")
        a = resolved(["--scenario", "capture-nvme-iommu"])
        self.assertEqual((a.iommu, a.guest_append), ("intel-iommu,intremap=off", "intel_iommu=on iommu=nopt"))
        a = resolved(["--scenario", "capture-iommu"])
        self.assertEqual((a.iommu, a.guest_append), ("intel-iommu,intremap=off", "intel_iommu=on iommu=nopt"))
        a = resolved([])
        self.assertEqual((a.scenario, a.cpu, a.memory, a.crashkernel, a.iommu, a.guest_append, a.blk_props),
                         ("capture-modern", "max", 1024, "32M", "", "", ""))  # fmt: skip
        self.assertEqual(resolved(["--scenario", "capture", "--virtio", "legacy"]).scenario, "capture-modern")
        self.assertEqual(resolved(["--scenario", "linux-kdump"]).crashkernel, "256M")
        self.assertTrue(resolved(["--demo"]).verbose)
        self.assertEqual(resolved(["--qemu-extra", "-s -S"]).qemu_extra, ["-s", "-S"])
        with self.assertRaises(common.HarnessError):
            resolved(["--disk-size", "lots"])

    def test_binaries_each_run_needs(self):
        def need(name, *more):
            return runner.needed_files(resolved(["--scenario", name, *more]), scenarios.lookup(name))

        self.assertEqual(need("capture-modern"), ["minicap", "tool", "pattern"])
        self.assertEqual(need("device-error"), ["minicap", "tool", "pattern"])
        self.assertEqual(need("no-disk"), ["minicap"])
        self.assertEqual(need("unformatted-disk"), ["minicap"])
        self.assertEqual(need("wrong-id"), ["minicap", "tool"])
        self.assertEqual(need("linux-kdump"), ["pattern"])
        self.assertEqual(need("capture-modern", "--recheck"), ["pattern"])

    def test_timing_table(self):
        lines = cli.timing_table({"no-disk": {"times": {"boot_to_crash_s": 3.61, "crash_to_result_s": 0.08}},
                                  "x": {"ok": False}})  # fmt: skip
        self.assertEqual(lines[0], "  no-disk           boot->crash   3.610 s  crash->RESULT   0.080 s"
                                   "  crash->exit       -  ")  # fmt: skip
        self.assertIn("boot->crash       -  ", lines[1])


class FileLoadTests(unittest.TestCase):
    """The bzImage rows: kexec_file_load, signed images, Secure Boot (qemu/harness/secureboot.py)."""

    APPEND = "minicap.device=ab minicap.after=reboot"

    def test_kexec_command_strings(self):
        cmd = initramfs.kexec_command
        self.assertEqual(cmd("/minicap.elf", self.APPEND, "--args-linux"),
                         "kexec -p /minicap.elf --args-linux --append='minicap.device=ab minicap.after=reboot'")
        self.assertEqual(cmd("/minicap.bzImage", self.APPEND, "--args-linux"),
                         "kexec -p /minicap.bzImage --append='minicap.device=ab minicap.after=reboot'")
        self.assertEqual(cmd("/minicap-signed.bzImage", self.APPEND, kexec_file=True),
                         "kexec -s -p /minicap-signed.bzImage --append='minicap.device=ab minicap.after=reboot'")
        with self.assertRaises(common.HarnessError):
            cmd("/minicap.elf", self.APPEND, kexec_file=True)  # kexec_file_load takes no ELF

    def test_minicap_load_of_the_bzimage(self):
        tool = Path(sys.executable)
        with tempfile.TemporaryDirectory() as d:
            purgatory = Path(d, "purgatory.elf")
            purgatory.write_bytes(b"p")
            c = initramfs.Cpio()
            line = initramfs.minicap_load_block(c, initramfs.MinicapLoad(tool, purgatory, image="/minicap.bzImage",
                                                                         syscall="load"), self.APPEND)  # fmt: skip
        self.assertEqual(line, "minicap load --image /minicap.bzImage --syscall load "
                               "--append='minicap.device=ab minicap.after=reboot'")  # fmt: skip

    def test_the_initramfs_carries_the_bzimages_and_the_probe(self):
        with tempfile.TemporaryDirectory() as d:
            elf, bz, signed = Path(d, "minicap.elf"), Path(d, "bz"), Path(d, "signed")
            for p in (elf, bz, signed):
                p.write_bytes(p.name.encode())
            load = initramfs.ImageLoad((("/minicap.bzImage", bz), ("/minicap-signed.bzImage", signed)),
                                       "/minicap-signed.bzImage", kexec_file=True)  # fmt: skip
            probe = secureboot.init_block(scenarios.KEXEC_REFUSALS, self.APPEND, initramfs.shell_quote)
            raw = __import__("gzip").decompress(initramfs.build_initramfs(
                None, self.APPEND, minicap=elf, image_load=load, before_load=probe))  # fmt: skip
        for name in (b"minicap.bzImage\0", b"minicap-signed.bzImage\0", b"minicap.elf\0", b"sbin/kexec\0"):
            self.assertIn(name, raw)
        init = raw[raw.index(b"#!/bin/busybox sh"):].decode(errors="replace")
        load_at = init.index("KEXEC-CMD: kexec -s -p /minicap-signed.bzImage --append=")
        # The probe runs first: the lockdown state, then each refusal with its exit status.
        self.assertLess(init.index("mount -t securityfs"), init.index("REFUSAL-CMD kexec-load-elf"))
        self.assertLess(init.index("REFUSAL-CMD kexec-file-untrusted"), load_at)
        self.assertIn("kexec -p /minicap.elf --args-linux --append='minicap.device=ab minicap.after=reboot' "
                      ">/tmp/refusal.out 2>&1", init)  # fmt: skip

    REFUSED = [
        "LOCKDOWN: none [integrity] confidentiality",
        "REFUSAL-CMD kexec-load-elf: kexec -p /minicap.elf --args-linux --append='x'",
        "[    1.972607] ima: impossible to appraise a kernel image without a file descriptor; try using "
        "kexec_file_load syscall.",
        "REFUSAL-kexec-load-elf rc=255 loaded=0: kexec_load failed: Permission denied entry       = 0x380b8760 ",
        "REFUSAL-CMD kexec-file-unsigned: kexec -s -p /minicap.bzImage --append='x'",
        "[    2.053854] kexec_file: Enforced kernel signature verification failed (-61).",
        "REFUSAL-kexec-file-unsigned rc=255 loaded=0: kexec_file_load failed: No data available ",
        "REFUSAL-CMD kexec-file-untrusted: kexec -s -p /minicap-untrusted.bzImage --append='x'",
        "[    2.153854] kexec_file: Enforced kernel signature verification failed (-126).",
        "REFUSAL-kexec-file-untrusted rc=255 loaded=0: kexec_file_load failed: Required key not available ",
    ]

    def refusals(self, lines):
        res = checks.Results()
        with contextlib.redirect_stdout(io.StringIO()):
            seen = secureboot.check_refusals(res, lines, scenarios.KEXEC_REFUSALS)
        return [c.ok for c in res.checks], seen

    def test_refusals_recorded(self):
        oks, seen = self.refusals(self.REFUSED)
        self.assertEqual(oks, [True] * 6)
        self.assertEqual(seen["kexec-load-elf"]["said"], "kexec_load failed: Permission denied")
        self.assertIn("(-61)", seen["kexec-file-unsigned"]["kernel"])
        self.assertEqual(seen["kexec-file-untrusted"]["said"], "kexec_file_load failed: Required key not available")

    def test_a_load_that_went_through_is_no_refusal(self):
        lines = list(self.REFUSED)
        lines[6] = "REFUSAL-kexec-file-unsigned rc=0 loaded=1: "
        self.assertEqual(self.refusals(lines)[0], [True, True, False, True, True, True])
        lines = list(self.REFUSED)
        lines[3] = "REFUSAL-kexec-load-elf rc=255 loaded=0: kexec_load failed: Invalid argument"  # not lockdown
        self.assertEqual(self.refusals(lines)[0], [False, True, True, True, True, True])
        lines = list(self.REFUSED)
        del lines[5]  # the kernel gave no reason while it ran
        self.assertEqual(self.refusals(lines)[0], [True, True, True, False, True, True])
        self.assertEqual(self.refusals(self.REFUSED[:4])[0], [True, True, False, False])  # never ran

    def test_lockdown(self):
        boot = ["[    0.000000] Kernel is locked down from EFI Secure Boot; see man kernel_lockdown.7",
                "[    0.000000] secureboot: Secure boot enabled"]  # fmt: skip

        def verdicts(lines):
            res = checks.Results()
            with contextlib.redirect_stdout(io.StringIO()):
                secureboot.check_lockdown(res, lines)
            return [c.ok for c in res.checks]

        self.assertEqual(verdicts(boot + self.REFUSED[:1]), [True, True, True])
        self.assertEqual(verdicts(boot + ["LOCKDOWN: [none] integrity confidentiality"]), [True, True, False])
        self.assertEqual(verdicts(["[    0.000000] secureboot: Secure boot disabled", self.REFUSED[0]]),
                         [False, False, True])  # fmt: skip
        self.assertEqual(secureboot.lockdown_mode(["LOCKDOWN: none integrity [confidentiality]"]), "confidentiality")
        self.assertIsNone(secureboot.lockdown_mode(["LOCKDOWN: cat: can't open"]))

    def test_ovmf_discovery(self):
        with tempfile.TemporaryDirectory() as d:
            a, b = Path(d, "OVMF"), Path(d, "ovmf")
            a.mkdir()
            b.mkdir()
            with self.assertRaises(common.HarnessError) as e:
                secureboot.find_ovmf((a, b))
            self.assertIn("OVMF_CODE_4M.secboot.fd, OVMF_VARS_4M.snakeoil.fd, PkKek-1-snakeoil.key", str(e.exception))
            self.assertIn("ovmf", str(e.exception))
            for name in ("OVMF_CODE_4M.secboot.fd", "OVMF_VARS_4M.snakeoil.fd"):
                (a / name).write_bytes(b"fw")
            for name in ("PkKek-1-snakeoil.key", "PkKek-1-snakeoil.pem", "OVMF_VARS_4M.snakeoil.fd"):
                (b / name).write_bytes(b"k")
            found = secureboot.find_ovmf((a, b))
            self.assertEqual((found.code, found.vars, found.key, found.cert),
                             (a / "OVMF_CODE_4M.secboot.fd", a / "OVMF_VARS_4M.snakeoil.fd",
                              b / "PkKek-1-snakeoil.key", b / "PkKek-1-snakeoil.pem"))  # fmt: skip

    def test_qemu_boots_through_the_firmware(self):
        args = resolved(["--scenario", "secure-boot-lockdown"])
        args.out_dir = "/tmp"
        ovmf = secureboot.Ovmf(Path("/fw/CODE.fd"), Path("/fw/VARS.fd"), Path("/k"), Path("/c"))
        k = kernel.GuestKernel("6.1.0-57-cloud-amd64", Path("/cache/k"))
        cmd = qemu.qemu_command(args, k, Path("/i.gz"), [], vmlinuz=Path("/out/vmlinuz-signed"),
                                firmware=secureboot.firmware_options(ovmf, Path("/out/OVMF_VARS.fd")))  # fmt: skip
        self.assertEqual(cmd[cmd.index("-machine") + 1], "q35,accel=tcg,smm=on")
        self.assertEqual(cmd[cmd.index("-kernel") + 1], "/out/vmlinuz-signed")
        text = " ".join(cmd)
        self.assertIn("-global driver=cfi.pflash01,property=secure,value=on", text)
        self.assertIn("-drive if=pflash,format=raw,unit=0,readonly=on,file=/fw/CODE.fd", text)
        self.assertIn("-drive if=pflash,format=raw,unit=1,file=/out/OVMF_VARS.fd", text)
        plain = qemu.qemu_command(args, k, Path("/i.gz"), [])
        self.assertEqual(plain[plain.index("-machine") + 1], "q35,accel=tcg")
        self.assertNotIn("pflash", " ".join(plain))
        self.assertEqual(plain[plain.index("-kernel") + 1], str(k.vmlinuz))

    def test_kernel_warnings_before_the_crash(self):
        log = ["KEXEC-CMD: kexec -s -p /minicap.bzImage", "[    2.62] ------------[ cut here ]------------",
               "[    2.62] memcpy: detected field-spanning write (size 127) of single field \"&params->hdr\"",
               "[    2.62] WARNING: CPU: 1 PID: 92 at arch/x86/kernel/kexec-bzimage64.c:490 bzImage64_load+0x55a",
               "KEXEC-LOADED"]  # fmt: skip
        crash = ["[    3.87] sysrq: Trigger a crash", "[    3.87] Kernel panic - not syncing: sysrq triggered crash",
                 "[    3.87] WARNING: CPU: 0 PID: 1 at whatever", "[    3.87] BUG: after the crash"]  # fmt: skip
        warned = console.kernel_warnings(log + crash)
        self.assertEqual(len(warned), 2)
        self.assertIn("memcpy: detected field-spanning write", warned[0])
        self.assertEqual(console.kernel_warnings(log[:1] + log[-1:] + crash), [])  # the crash's own trace is fine
        self.assertEqual(console.kernel_warnings(["[ 1.0] BUG: kernel NULL pointer dereference"]),
                         ["[ 1.0] BUG: kernel NULL pointer dereference"])  # fmt: skip

    def test_kexec_file_load_leaves_out_the_first_mib(self):
        entries = iomem.parse_iomem(IOMEM.splitlines())
        self.assertEqual(iomem.expected_dump_ranges(entries, low_1m_excluded=True),
                         [(0x100000, 0x20000000), (0x22000000, 0x3FFDD000), (0x100000000, 0x140000000)])
        self.assertEqual(iomem.expected_dump_ranges(entries)[0], (0x1000, 0x9FC00))
        who = {s.name: scenarios.loads_with_kexec_file(s) for s in scenarios.SCENARIOS}
        self.assertEqual(sorted(n for n, yes in who.items() if yes),
                         ["load-kexec-file", "load-kexec-file-signed", "load-minicap-file", "secure-boot-lockdown",
                          "secure-boot-minicap-load"])  # fmt: skip

    def test_rows(self):
        get = scenarios.lookup
        for name in ("load-kexec-file-signed", "load-kexec-bzimage", "secure-boot-lockdown", "load-minicap-file",
                     "load-kexec-file", "secure-boot-minicap-load", "load-minicap-fallback"):  # fmt: skip
            s = get(name)
            self.assertEqual(s.checks, scenarios.CAPTURE_CHECKS | {"no-kernel-warning"}, name)
            self.assertEqual((s.image, s.failure, s.pattern), ("bzimage", None, True), name)
        self.assertEqual([(get(n).loader, get(n).kexec_file, get(n).signed_by, get(n).secure_boot)
                          for n in ("load-kexec-file-signed", "load-kexec-bzimage", "secure-boot-lockdown",
                                    "secure-boot-minicap-load")],
                         [("kexec", True, "throwaway", False), ("kexec", False, None, False),
                          ("kexec", True, "snakeoil", True), ("minicap", False, "snakeoil", True)])  # fmt: skip
        self.assertEqual([r.label for r in get("secure-boot-lockdown").refusals],
                         ["kexec-load-elf", "kexec-file-unsigned", "kexec-file-untrusted"])  # fmt: skip
        s = get("load-minicap-fallback")
        self.assertEqual((s.minicap_syscall, s.no_kexec_file, scenarios.loads_with_kexec_file(s)),
                         (None, True, False))
        self.assertTrue(re.search(s.load_lines[1], "warning: kexec_file_load: ENOSYS (Function not implemented); "
                                                   "falling back to kexec_load"))  # fmt: skip
        self.assertEqual([r.label for r in get("secure-boot-minicap-load").refusals],
                         ["minicap-load-elf", "minicap-load-unsigned", "minicap-load-untrusted"])
        unsigned = get("secure-boot-minicap-load").refusals[1].output
        self.assertTrue(re.search(unsigned, "Error: kexec_file_load: ENODATA (No data available): the image is not "
                                            "signed: the kernel requires a signed image it trusts. Sign ..."))
        self.assertFalse(re.search(unsigned, "warning: kexec_file_load: ENOEXEC (Exec format error); falling back"))
        line = get("load-minicap-file").load_lines[0]
        self.assertTrue(re.search(line, "loaded minicap as the crash kernel with kexec_file_load: /minicap.bzImage "
                                        "(552960 bytes, unsigned), command line: minicap.device=ab"))
        self.assertFalse(re.search(line, "loaded minicap as the crash kernel: 5 segments in 0x3d000000-0x3effffff"))
        self.assertFalse(re.search(get("secure-boot-minicap-load").load_lines[0],
                                   "loaded minicap as the crash kernel with kexec_file_load: /minicap-signed.bzImage "
                                   "(552960 bytes, unsigned), command line: minicap.device=ab"))  # fmt: skip

    def test_bad_load_rows(self):
        from dataclasses import replace

        base = scenarios.lookup("secure-boot-lockdown")
        elf = scenarios.lookup("capture-modern")
        for bad in [replace(elf, kexec_file=True), replace(elf, signed_by="throwaway"),
                    replace(base, signed_by="throwaway"), replace(base, kexec_file=False),
                    replace(base, image="vmlinux"),
                    replace(scenarios.lookup("load-kexec-file"), refusals=base.refusals),
                    replace(base, refusals=base.refusals[:1] * 2),
                    replace(base, refusals=(scenarios.Refusal("Bad Label", "kexec -p x", "y"),)),
                    replace(base, refusals=(scenarios.Refusal("x", "kexec {nope}", "y"),)),
                    replace(base, refusals=(scenarios.Refusal("x", "minicap load", "y"),)),
                    replace(base, refusals=(scenarios.Refusal("x", "kexec -p", "(unclosed"),)),
                    replace(scenarios.lookup("load-minicap-fallback"), minicap_syscall="both"),
                    replace(scenarios.lookup("load-kexec-bzimage"), minicap_syscall="load"),
                    replace(scenarios.lookup("load-minicap-file"), load_lines=("(",)),
                    replace(scenarios.lookup("load-kexec-file"), no_kexec_file=True),
                    replace(scenarios.lookup("load-minicap-fallback"), minicap_syscall="file"),
                    replace(scenarios.lookup("secure-boot-minicap-load"), no_kexec_file=True)]:  # fmt: skip
            self.assertNotEqual(scenarios.problems(bad), [], bad)

    @unittest.skipUnless(__import__("shutil").which("gcc"), "needs gcc")
    def test_nofileload_builds_and_goes_in_before_minicap(self):
        with tempfile.TemporaryDirectory() as d, contextlib.redirect_stdout(io.StringIO()):
            binary = initramfs.build_nofileload(Path(d))
            self.assertFalse(initramfs.needs_interpreter(binary))  # static: the initramfs has no libc
            purgatory = Path(d, "purgatory.elf")
            purgatory.write_bytes(b"p")
            c = initramfs.Cpio()
            load = initramfs.MinicapLoad(Path(sys.executable), purgatory, image="/minicap.bzImage", nofileload=binary)
            line = initramfs.minicap_load_block(c, load, self.APPEND)
        self.assertEqual(line, "nofileload minicap load --image /minicap.bzImage "
                               "--append='minicap.device=ab minicap.after=reboot'")  # fmt: skip

    def test_binaries_the_rows_need(self):
        def need(name):
            return runner.needed_files(resolved(["--scenario", name]), scenarios.lookup(name))

        self.assertEqual(need("load-kexec-file-signed"), ["minicap", "tool", "bzimage", "pattern"])
        self.assertEqual(need("load-minicap-file"), ["minicap", "tool", "purgatory", "bzimage", "pattern"])
        self.assertTrue(resolved([]).bzimage.endswith("target/minicap.bzImage"))

    @unittest.skipUnless(all(map(__import__("shutil").which, ("openssl", "sbsign", "sbverify", "sbattach")))
                         and BZIMAGE.is_file(), "needs openssl, sbsigntool and target/minicap.bzImage")  # fmt: skip
    def test_sign_with_a_throwaway_key(self):
        with tempfile.TemporaryDirectory() as d, contextlib.redirect_stdout(io.StringIO()):
            out = Path(d)
            key, cert = secureboot.make_throwaway_key(out)
            signed = out / "signed.bzImage"
            secureboot.sign(BZIMAGE, key, cert, signed)
            self.assertEqual(secureboot.signatures(signed), 1)
            self.assertEqual(secureboot.sbverify(signed, cert)[0], True)
            self.assertEqual(secureboot.sbverify(BZIMAGE, cert)[0], False)
            again = out / "again.bzImage"  # a signed input: its signature is replaced, not added to
            (out / "2").mkdir()
            secureboot.sign(signed, *secureboot.make_throwaway_key(out / "2"), again)
            self.assertEqual(secureboot.signatures(again), 1)
            self.assertEqual(secureboot.sbverify(again, cert)[0], False)


class SuiteTests(unittest.TestCase):
    def test_runs_every_row_and_ends_with_the_count(self):
        import tempfile

        ran = []

        def fake_run_one(args, name):  # stands in for a QEMU run
            ran.append((name, args.out, args.json))
            if name != "no-disk":
                Path(args.json).write_text(json.dumps({"ok": name != "wrong-id", "times": {"boot_to_crash_s": 1}}))
            return {"wrong-id": 1, "no-disk": 2}.get(name, 0)

        with tempfile.TemporaryDirectory() as d:
            for n in ("m", "t", "p"):
                (Path(d) / n).write_text("")
            args = cli.parse_args(["--all", "--out", d, "--minicap", f"{d}/m", "--tool", f"{d}/t",
                                   "--pattern", f"{d}/p"])  # fmt: skip
            real, cli.run_one = cli.run_one, fake_run_one
            try:
                out = io.StringIO()
                with contextlib.redirect_stdout(out):
                    rc = cli.run_suite(args)
            finally:
                cli.run_one = real
            self.assertEqual(rc, 1)
            self.assertEqual([r[0] for r in ran], SUITE)
            self.assertEqual(ran[0][1:], (f"{d}/capture-modern", f"{d}/capture-modern.json"))
            lines = out.getvalue().splitlines()
            self.assertEqual(lines[-1], f"e2e: {len(SUITE) - 2} passed, 2 failed")
            self.assertIn("  FAIL  no-disk (exit 2)", lines)
            self.assertIn("  FAIL  wrong-id (exit 1)", lines)
            summary = json.loads((Path(d) / "summary.json").read_text())
            self.assertEqual(list(summary), SUITE)
            self.assertEqual(summary["no-disk"], {"ok": False, "error": "no result file"})
            os_missing = cli.parse_args(["--all", "--minicap", f"{d}/none"])
            with contextlib.redirect_stderr(io.StringIO()):
                self.assertEqual(cli.run_suite(os_missing), 2)


if __name__ == "__main__":
    unittest.main()
