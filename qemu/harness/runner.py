"""Runs one scenario record: disks, initramfs, QEMU, then the checks the
record asks for. `args` are the command-line options with the record's
defaults filled in (cli.resolve)."""

from __future__ import annotations

import random
import re
import shutil
import struct
import time
from pathlib import Path

from . import scenarios as sc
from .checks import (Results, check_complete_header, check_crash, check_device_error, check_filtered_elf, check_gdb,
                     check_iommu_takeover, check_kdump, check_serial_stream, check_stored_log, check_time_limit,
                     check_triage, check_triage_text, check_unsaved_kept, check_vmcore_tools,
                     read_header)  # fmt: skip
from .common import MIB, QEMU_DIR, HarnessError, log, parse_size, run, tail
from .console import (CRASH_MARKERS, KDUMP_RESULT_RE, RESULT_MARKER, check_busy_writes, check_candidates,
                      check_device_reports, kernel_warnings, parse_result_line)  # fmt: skip
from .disks import (blkdebug_config, compare_fingerprints, fingerprint, inject_offset, make_blank_disk,
                    make_formatted_disk, make_random_disk, make_unsaved_dump_disk, other_device_id,
                    sparse_copy)  # fmt: skip
from .elf import vmcore_end
from .initramfs import (BusyDisk, ImageLoad, MinicapLoad, build_initramfs, build_nofileload, guest_disk_name,
                        shell_quote)  # fmt: skip
from .kernel import ensure_kernel
from .modules import load_order
from .qemu import check_qemu_version, qemu_command, run_qemu
from .secureboot import (check_lockdown, check_refusals, find_ovmf, firmware_options, init_block, lockdown_mode,
                         make_throwaway_key, sbverify, sign, snakeoil_key)  # fmt: skip

KDUMP_APPEND = "console=ttyS0 irqpoll nr_cpus=1 reset_devices panic=0 loglevel=7 printk.time=1"
# The lines `minicap log` must hold after a capture, by outcome.
STORED_LOG_WANT = {
    "success": ["capture kernel starting", "target: ", "bytes written and flushed"],
    "failure": ["capture kernel starting", "capture failed after"],
}
# The first kernel's drivers for the dump disk of a busy run, by bus (their
# dependencies are found by modules.load_order; built-in ones need nothing).
BUSY_DRIVERS = {sc.VIRTIO: ("virtio_pci", "virtio_blk"), sc.NVME: ("nvme",), sc.AHCI: ("ahci", "sd_mod")}
OUTPUT_FILES = ("serial.log", "vmcore", "dmesg.txt", "crash.txt", "pattern-verify.log", "qemu.stderr",
                "partial.vmcore", "blkdebug.cfg", "info.log", "save.log", "save-partial.log", "stored.log",
                "format.log", "gdb.txt", "makedumpfile.log", "triage.txt", "stream.bin", "receive.log",
                "vmcore.flat", "vmcore.triage", "vmcore.log", "vmcore.console", "minicap-signed.bzImage",
                "vmlinuz-signed", "OVMF_VARS.fd", "throwaway.key", "throwaway.pem", "snakeoil.key",
                "minicap-untrusted.bzImage", "nofileload")  # fmt: skip
# The guest paths of minicap's bzImage, of its signed copy (Scenario.signed_by) and, in a Secure
# Boot run, of a copy signed by a throwaway key no keyring trusts.
GUEST_BZIMAGE = "/minicap.bzImage"
GUEST_SIGNED_BZIMAGE = "/minicap-signed.bzImage"
GUEST_UNTRUSTED_BZIMAGE = "/minicap-untrusted.bzImage"


# What minicap's purgatory prints when a segment's SHA-256 differs from the stored one
# (minicap_purgatory::CheckError::Mismatch), and how long to watch after it: the purgatory
# halts for good, so minicap must print nothing in that time.
PURGATORY_REFUSAL_RE = re.compile(r"minicap purgatory: segment (\d+) at (0x[0-9a-f]+), (\d+) bytes: SHA-256 mismatch")
PURGATORY_HALT_WAIT_S = 5.0


def check_purgatory_refusal(res: Results, texts: list[str], crash, segment: int) -> None:
    """The purgatory named `segment` after the crash, and minicap never started."""
    refusal = next((t for t in texts if PURGATORY_REFUSAL_RE.search(t)), None)
    m = PURGATORY_REFUSAL_RE.search(refusal) if refusal else None
    res.add(f"purgatory refused segment {segment}", bool(m and int(m.group(1)) == segment and crash),
            refusal.strip() if refusal else "no 'minicap purgatory: segment N ... SHA-256 mismatch' line")  # fmt: skip
    started = [t for t in texts if t.startswith("minicap: ") or "starting minicap" in t]
    res.add("minicap never started", not started, started[0].strip() if started else "no minicap line")


def check_console_lines(res: Results, texts: list[str], patterns: tuple[str, ...], where: str = "console") -> None:
    """Each of `patterns` (Scenario.console_lines) matches some line of `texts` from its start."""
    for i, pattern in enumerate(patterns):
        hit = next((t.strip() for t in texts if re.match(pattern, t.strip())), None)
        res.add(f"{where} line {i + 1} of {len(patterns)}", hit is not None, hit or f"no line matches /{pattern}/")


def check_skipped_recorded(res: Results, header, ranges: list[tuple[int, int]]) -> None:
    """The header counts the PT_LOAD ranges the dump skipped (zeros in their place)."""
    want = (len(ranges), sum(end - start for start, end in ranges))
    got = (header.skipped_ranges, header.skipped_bytes)
    res.add("header: skipped ranges recorded", got == want,
            f"{got[0]} range(s), {got[1]} bytes skipped" + ("" if got == want else f", want {want[0]}, {want[1]}"))


def check_load_lines(res: Results, texts: list[str], patterns: tuple[str, ...]) -> None:
    """Each of `patterns` (Scenario.load_lines) is found in some line before the crash."""
    before = texts[: next((i for i, t in enumerate(texts) if any(m in t for m in CRASH_MARKERS)), len(texts))]
    for i, pattern in enumerate(patterns):
        hit = next((t.strip() for t in before if re.search(pattern, t)), None)
        res.add(f"loader line {i + 1} of {len(patterns)}", hit is not None, hit or f"no line matches /{pattern}/")


def check_no_kernel_warning(res: Results, texts: list[str], markers: tuple[str, ...]) -> None:
    warned = kernel_warnings(texts, markers)
    res.add("no kernel warning before the crash", not warned,
            f"{len(warned)} warning line(s), the first: {warned[0]}" if warned
            else "no WARNING/BUG/cut here line")  # fmt: skip


def prepare_image_load(res: Results, args, s: sc.Scenario, out: Path) -> ImageLoad | None:
    """A bzImage row's files: the bzImage and, signed_by set, a copy signed with sbsign (a key
    made now, or the snakeoil key) that `sbverify --cert` must pass, where the unsigned one fails."""
    if s.image != sc.IMAGE_BZIMAGE:
        return None
    bzimage = Path(args.bzimage)
    files = [(GUEST_BZIMAGE, bzimage)]
    if s.secure_boot:
        key, cert = make_throwaway_key(out)
        untrusted = out / GUEST_UNTRUSTED_BZIMAGE.lstrip("/")
        sign(bzimage, key, cert, untrusted)
        files.append((GUEST_UNTRUSTED_BZIMAGE, untrusted))
    if s.signed_by is None:
        return ImageLoad(tuple(files), GUEST_BZIMAGE, s.kexec_file)
    if s.signed_by == sc.SIGN_THROWAWAY:
        key, cert = make_throwaway_key(out)
    else:
        ovmf = find_ovmf()
        key, cert = snakeoil_key(ovmf, out), ovmf.cert
    signed = out / GUEST_SIGNED_BZIMAGE.lstrip("/")
    sign(bzimage, key, cert, signed)
    ok, detail = sbverify(signed, cert)
    res.add(f"sbverify --cert ({s.signed_by}): signed bzImage passes", ok, detail)
    ok, detail = sbverify(bzimage, cert)
    res.add(f"sbverify --cert ({s.signed_by}): unsigned bzImage fails", not ok, detail)
    return ImageLoad(tuple(files + [(GUEST_SIGNED_BZIMAGE, signed)]), GUEST_SIGNED_BZIMAGE, s.kexec_file)


def prepare_secure_boot(res: Results, k, out: Path) -> tuple[Path, tuple[list[str], str]]:
    """The snakeoil-signed copy of the guest's vmlinuz (Debian's own signature stripped) and the
    OVMF options with a fresh copy of the snakeoil variable store."""
    ovmf = find_ovmf()
    vars_copy = out / "OVMF_VARS.fd"
    shutil.copyfile(ovmf.vars, vars_copy)
    vmlinuz = out / "vmlinuz-signed"
    sign(k.vmlinuz, snakeoil_key(ovmf, out), ovmf.cert, vmlinuz)
    ok, detail = sbverify(vmlinuz, ovmf.cert)
    res.add("sbverify --cert (snakeoil): signed vmlinuz passes", ok, detail)
    return vmlinuz, firmware_options(ovmf, vars_copy)


def out_dir(args, s: sc.Scenario) -> Path:
    return Path(args.out) if args.out else QEMU_DIR / "out" / s.name


def needed_files(args, s: sc.Scenario) -> list[str]:
    """The --minicap/--tool/--pattern binaries this run uses."""
    if args.recheck:
        return ["pattern"]
    needs = []
    if s.capture_kernel == "minicap":
        needs.append("minicap")
        if (any(d.content == sc.FORMATTED for d in s.disks) or s.checks & {sc.VMCORE, sc.STORED_LOG}
                or s.loader == sc.LOADER_MINICAP):
            needs.append("tool")
        if s.loader == sc.LOADER_MINICAP:
            needs.append("purgatory")
        if s.image == sc.IMAGE_BZIMAGE:
            needs.append("bzimage")
    if s.pattern:
        needs.append("pattern")
    return needs


def run_scenario(args, s: sc.Scenario) -> tuple[Results, dict]:
    res = Results()
    info: dict = {"scenario": s.name, "virtio": args.virtio, "cpu": args.cpu, "memory_mib": args.memory,
                  "smp": args.smp, "crashkernel": args.crashkernel}  # fmt: skip
    out = out_dir(args, s)
    out.mkdir(parents=True, exist_ok=True)
    info["out"] = str(out)
    args.out_dir = str(out)
    if not args.recheck:
        for name in OUTPUT_FILES:
            (out / name).unlink(missing_ok=True)
    for n in needed_files(args, s):
        p = Path(getattr(args, n))
        if not p.is_file():
            raise HarnessError(f"--{n} {p} does not exist (build it first)")
    for t in ("kexec", "busybox", args.qemu) + (("makedumpfile",) if s.checks & {sc.VMCORE, sc.ELF_FILTERED} else ()):
        if not shutil.which(t):
            raise HarnessError(f"{t} not found in PATH")

    info["qemu_version"] = ".".join(map(str, check_qemu_version(args.qemu)))

    k = ensure_kernel(args.kernel_version, s.guest_kernel)
    info["kernel"] = k.version
    log(f"guest kernel {k.version}")

    if args.recheck:
        vmcore = out / "vmcore"
        if sc.VMCORE not in s.checks:
            raise HarnessError(f"--recheck redoes the vmcore checks; scenario {s.name} has none")
        if not vmcore.is_file() or not (out / "serial.log").is_file():
            raise HarnessError(f"--recheck needs {vmcore} and {out / 'serial.log'} from a run with --keep")
        info["vmcore_bytes"] = vmcore.stat().st_size
        check_vmcore_tools(res, args, out, vmcore, k, k.version, sc.loads_with_kexec_file(s))
        return res, info

    # Disk images, attached in table order (PCI slots 1, 2, ...); `guarded`
    # ones are fingerprinted now and compared after the run.
    attached: list[Path] = []
    nvme: set[Path] = set()  # attached as NVMe controllers, the others as virtio-blk
    ahci: set[Path] = set()  # ... or as ATA disks on the q35 AHCI HBA's ports
    guarded: dict[str, Path] = {}
    ids: dict[str, str] = {}
    target: Path | None = None
    target_bus = sc.VIRTIO
    random_disks = 0
    decoy = False
    format_logs = []
    for d in s.disks:
        (out / d.image).unlink(missing_ok=True)
        if d.decoy and args.no_decoy:
            continue
        img = out / d.image
        size = parse_size(d.size or args.disk_size)
        if d.content == sc.FORMATTED:
            ids[d.image], text = make_formatted_disk(args.tool, img, size)
            format_logs.append(text)
        elif d.content in (sc.UNSAVED, sc.SAVED):
            ids[d.image], text = make_unsaved_dump_disk(args.tool, img, size, saved=d.content == sc.SAVED)
            format_logs.append(text)
        elif d.content == sc.RANDOM:
            make_random_disk(img, size)
            random_disks += 1
        else:
            make_blank_disk(img, size)
        attached.append(img)
        if d.bus == sc.NVME:
            nvme.add(img)
        elif d.bus == sc.AHCI:
            ahci.add(img)
        decoy = decoy or d.decoy
        if d.guarded:
            guarded[d.label] = img
        if d.target:
            target, target_bus = img, d.bus
    if format_logs:
        (out / "format.log").write_text("\n".join(format_logs))
    before = {name: fingerprint(img) for name, img in guarded.items()}
    info["disks"] = [{"image": img.name, "bytes": img.stat().st_size, "minicap_device": ids.get(img.name),
                      "bus": sc.NVME if img in nvme else sc.AHCI if img in ahci else sc.VIRTIO}
                     for img in attached]  # fmt: skip
    data_area_before = target.read_bytes()[:MIB] if target and sc.DATA_AREA_ZERO in s.checks else b""
    # The target may fail one write part-way through the dump area.
    blkdebug: dict[Path, Path] = {}
    injected = 0
    if target and any(d.fails_write for d in s.disks):
        injected = inject_offset(args.memory, args.fail_at_percent)
        cfg = out / "blkdebug.cfg"
        cfg.write_text(blkdebug_config(injected // 512))
        blkdebug[target] = cfg
        info["inject_error_at_byte"] = injected
        log(f"blkdebug: EIO on the first write covering sector {injected // 512} (byte {injected:#x}, "
            f"{args.fail_at_percent:g} % of {args.memory} MiB into the dump area)")

    linux = s.capture_kernel == "linux"
    wanted_id = None
    target_id = ids.get(target.name) if target else None
    if linux:
        append = KDUMP_APPEND
        result_re = KDUMP_RESULT_RE
    else:
        opts = []
        if s.device_option == sc.DEVICE_OTHER:
            wanted_id = other_device_id(target_id)
            opts.append(f"minicap.device={wanted_id}")
        elif s.device_option == sc.DEVICE_TARGET:
            opts.append(f"minicap.device={target_id}")
        opts.append("minicap.after=reboot")
        append = " ".join(opts + list(s.capture_append) + [args.append_extra]).strip()
        result_re = re.compile(re.escape(RESULT_MARKER))
    refusal = s.corrupt_digest is not None
    exit_grace = args.exit_grace
    if refusal:
        # The purgatory's refusal ends the run: it halts for good, so after a few seconds
        # (to see that minicap does not start anyway) QEMU is stopped.
        result_re = PURGATORY_REFUSAL_RE
        exit_grace = PURGATORY_HALT_WAIT_S
    image_load = prepare_image_load(res, args, s, out)
    vmlinuz, firmware = prepare_secure_boot(res, k, out) if s.secure_boot else (None, None)
    minicap_load = None
    if s.loader == sc.LOADER_MINICAP:
        minicap_load = MinicapLoad(Path(args.tool), Path(args.purgatory), s.corrupt_digest, s.corrupt_core_headers,
                                   s.omit_elfcorehdr, image_load.loaded if image_load else "/minicap.elf",
                                   s.minicap_syscall, build_nofileload(out) if s.no_kexec_file else None)  # fmt: skip
    info["capture_append"] = append
    busy = None
    if s.busy and target is not None:
        same_bus = [img for img in attached if (sc.NVME if img in nvme else sc.AHCI if img in ahci else sc.VIRTIO)
                    == target_bus]  # fmt: skip
        busy = BusyDisk(guest_disk_name(target_bus, same_bus.index(target)),
                        tuple(load_order(k, BUSY_DRIVERS[target_bus])))  # fmt: skip
        info["busy_disk"] = busy.device
    seed = int(args.seed, 16) if args.seed else random.getrandbits(64)
    initrd = out / "initramfs.cpio.gz"
    initrd.write_bytes(build_initramfs(
        k, append, minicap=None if linux else Path(args.minicap), kexec_args=args.kexec_args,
        pattern=Path(args.pattern) if s.pattern else None, pattern_mib=args.pattern_mib, seed=seed,
        busy=busy, minicap_load=minicap_load, crash_point=getattr(args, "crash_point", None), image_load=image_load,
        before_load=init_block(s.refusals, append, shell_quote) if s.secure_boot else ""))  # fmt: skip
    log(f"initramfs {initrd} ({initrd.stat().st_size // 1024} KiB), seed {seed:016x}")

    throttled = {img: d.write_bps for d in s.disks if d.write_bps for img in attached if img.name == d.image}
    cmd = qemu_command(args, k, initrd, attached, blkdebug, frozenset(nvme), frozenset(ahci), vmlinuz, firmware,
                       throttled)
    stream = out / "stream.bin"
    if sc.SERIAL_STREAM in s.checks:
        # The second -serial is COM2 (minicap.serial=0x2f8): the stream, into a file.
        cmd += ["-serial", f"file:{stream}"]
    info["qemu"] = cmd
    r = run_qemu(cmd, out / "serial.log", args.timeout, args.verbose, result_re, exit_grace)
    texts = r.texts()

    # A crash other than the sysrq (qemu/matrix/) names its own first line: a panic in NMI
    # context reaches the console only through printk's deferred flush, which kexec preempts.
    markers = getattr(args, "crash_markers", None) or CRASH_MARKERS
    crash = r.first(lambda t: any(m in t for m in markers))
    result = r.first(lambda t: bool(result_re.search(t)))
    first_mc = r.first(lambda t: t.startswith("minicap: "))
    ready = r.first(lambda t: "PATTERN-READY" in t)
    times = {}
    if crash:
        times["boot_to_crash_s"] = crash.t - r.t_start
        if first_mc and first_mc.t >= crash.t:
            times["crash_to_first_minicap_line_s"] = first_mc.t - crash.t
        if result:
            times["crash_to_result_s"] = result.t - crash.t
        if r.t_exit is not None:
            times["crash_to_qemu_exit_s"] = r.t_exit - crash.t
    if ready:
        times["boot_to_pattern_ready_s"] = ready.t - r.t_start
    times["qemu_total_s"] = (r.t_exit or time.monotonic()) - r.t_start
    info["times"] = {k2: round(v, 3) for k2, v in times.items()}
    info["qemu_returncode"] = r.returncode

    if r.timed_out:
        res.add("QEMU run", False, f"timed out after {args.timeout:.0f} s; last 50 lines:\n" + "\n".join(texts[-50:]))
    kl = r.first(lambda t: t.startswith("KEXEC-LOADED") or t.startswith("KEXEC-FAILED"))
    loaded_by = "minicap load" if s.loader == sc.LOADER_MINICAP else "kexec -p load"
    res.add(loaded_by, bool(kl and kl.text.startswith("KEXEC-LOADED")), kl.text if kl else "no KEXEC-* line")
    checked = r.first(lambda t: "minicap purgatory:" in t)
    if s.loader == sc.LOADER_MINICAP and sc.loads_with_kexec_file(s):
        # kexec_file_load: the kernel placed its own purgatory; minicap's must not have run.
        res.add("the kernel's purgatory, not minicap's (kexec_file_load)", checked is None,
                checked.text.strip() if checked else "no 'minicap purgatory:' line")  # fmt: skip
    elif s.loader == sc.LOADER_MINICAP and not refusal:
        # minicap's purgatory ran (not some other loader's) and checked every segment.
        res.add("purgatory checked the segments", bool(checked and "match their SHA-256" in checked.text),
                checked.text.strip() if checked else "no 'minicap purgatory:' line")  # fmt: skip
    res.add("crash triggered", crash is not None, crash.text.strip() if crash else "no sysrq/panic line")
    if s.pattern:
        res.add("pattern ready in guest", ready is not None, ready.text.strip() if ready else "no PATTERN-READY")

    if busy is not None:
        ok, detail = check_busy_writes(texts, tuple(markers))
        res.add("writes in flight at the crash", ok, detail)

    want = "success" if s.failure is None else f"failure [{s.failure}]"
    parsed = None
    if refusal:
        check_purgatory_refusal(res, texts, crash, s.corrupt_digest)
        result = None  # no capture ran: none of the dump checks below apply
    elif result:
        info["result"] = result.text.strip()
        detail = result.text.strip()
        if linux:
            ok = KDUMP_RESULT_RE.search(result.text).group(1) == "success"
        else:
            parsed = parse_result_line(result.text)
            if parsed is None:
                ok = False
                detail += "  (not `RESULT: success: ...` or `RESULT: failure [<code>]: ...`)"
            else:
                ok = parsed.verdict == ("success" if s.failure is None else "failure") and parsed.code == s.failure
                info["failure_code"] = parsed.code
        res.add(f"RESULT {want}", ok, detail)
    else:
        res.add(f"RESULT {want}", False, "no RESULT line; last 50 lines:\n" + "\n".join(texts[-50:]))
    exited = r.t_exit is not None and not r.timed_out and not r.killed_after_result and r.returncode == 0
    if not refusal:  # the purgatory halts after refusing: QEMU is stopped, not exited
        res.add(
            "QEMU exited (reboot)",
            exited,
            f"exit status {r.returncode}" if exited else ("killed: no exit after RESULT" if r.killed_after_result
                                                          else "killed")
            + (("\nqemu stderr: " + tail(r.stderr, 5)) if r.stderr.strip() else ""),
        )  # fmt: skip

    check_console_lines(res, texts, s.console_lines)
    check_load_lines(res, texts, s.load_lines)
    if s.secure_boot:
        check_lockdown(res, texts)
        info["lockdown"] = lockdown_mode(texts)
        info["refusals"] = check_refusals(res, texts, s.refusals)
    if sc.NO_KERNEL_WARNING in s.checks:
        check_no_kernel_warning(res, texts, tuple(markers))

    if sc.LEFT_ALONE in s.checks:
        if s.device_option == sc.DEVICE_OTHER:
            ok, detail = check_device_reports(texts, unformatted=random_disks, mismatch=(target_id, wanted_id))
            res.add("per-device report", ok, detail)
        elif random_disks:
            ok, detail = check_device_reports(texts, unformatted=random_disks)
            res.add("decoy disk seen and left alone" if decoy else "per-device report", ok, detail)
    if sc.CANDIDATES in s.checks:
        target_kinds = sc.dump_target(s)
        functions = sc.pci_functions([sc.NVME if img in nvme else sc.AHCI if img in ahci else sc.VIRTIO
                                      for img in attached])  # fmt: skip
        named = [(f"{sc.KIND_NAMES[bus]} {address}", target_kinds in sc.KIND_TARGETS[bus])
                 for bus, address in functions]  # fmt: skip
        ok, detail = check_candidates(texts, target_kinds, [n for n, chosen in named if not chosen],
                                      [n for n, chosen in named if chosen])  # fmt: skip
        res.add("other kinds not candidates", ok, detail)
    for name, img in guarded.items():
        after = fingerprint(img)
        ok, detail = compare_fingerprints(before[name], after)
        for d in info["disks"]:
            if d["image"] == img.name:
                d["sha256_before"], d["sha256_after"] = before[name][0], after[0]
        res.add(f"{name} untouched", ok, f"{img.name}: {detail}")

    serial = (out / "serial.log").read_text(errors="replace").splitlines()
    if sc.DEVICE_ERROR in s.checks and result:
        header = read_header(res, args, target, info)
        check_device_error(res, args, out, target, parsed.message if parsed else "", parsed.code if parsed else None,
                           header, injected, texts, k.version, info)  # fmt: skip
    if sc.TIME_LIMIT in s.checks and result:
        header = read_header(res, args, target, info)
        check_time_limit(res, args, out, target, parsed.message if parsed else "", header, texts, k.version,
                         sc.time_limit(s), info)  # fmt: skip
    if sc.UNSAVED_KEPT in s.checks and result:
        check_unsaved_kept(res, parsed.message if parsed else "")
    if sc.STORED_LOG in s.checks and result:
        check_stored_log(res, args, out, target, serial, STORED_LOG_WANT["success" if s.failure is None else "failure"])
        stored = out / "stored.log"
        # What the console said about bad input is on the device too.
        check_console_lines(res, stored.read_text(errors="replace").splitlines() if stored.is_file() else [],
                            s.console_lines, "stored log")  # fmt: skip
    target_props = {sc.NVME: args.nvme_props, sc.VIRTIO: args.blk_props}.get(target_bus, "")
    block = re.search(r"logical_block_size=(\d+)", target_props or "")
    if block and int(block.group(1)) != 512 and result:
        want_blocks = f"{block.group(1)}-byte blocks"
        hit = next((l.rstrip("\r") for l in serial if l.startswith("minicap: target:")), "")
        res.add(f"dump device used with {want_blocks}", want_blocks in hit, hit or "no 'minicap: target:' line")
    if args.iommu and result:
        check_iommu_takeover(res, serial)

    vmcore = out / "vmcore"
    streamed = sc.SERIAL_STREAM in s.checks
    if streamed and result and check_serial_stream(res, args, out, stream, vmcore, serial, info):
        info["vmcore_bytes"] = vmcore.stat().st_size
        level, codec = sc.kdump_settings(s)
        check_kdump(res, out, vmcore, serial, None, k.version, args.smp, level, codec)
        if sc.TRIAGE in s.checks:
            dmesg = out / "dmesg.txt"
            triage = out / "vmcore.triage"
            check_triage_text(res, "minicap receive: vmcore.triage",
                              triage.read_text(errors="replace") if triage.is_file() else "",
                              0 if triage.is_file() else 1, "no vmcore.triage",
                              dmesg.read_text(errors="replace") if dmesg.is_file() else None)  # fmt: skip
    if sc.KDUMP in s.checks and result and not streamed:
        p = run([args.tool, "save", target, vmcore])
        (out / "save.log").write_text(p.stdout)
        res.add("minicap save", p.returncode == 0 and vmcore.is_file(),
                f"exit {p.returncode}: " + tail(p.stdout, 3 if p.returncode else 1))  # fmt: skip
        if vmcore.is_file():
            info["vmcore_bytes"] = vmcore.stat().st_size
            level, codec = sc.kdump_settings(s)
            check_kdump(res, out, vmcore, serial, read_header(res, args, target, info), k.version, args.smp,
                        level, codec)  # fmt: skip
            if args.with_crash:
                check_crash(res, out, vmcore, k)
    if sc.ELF_FILTERED in s.checks and result:
        p = run([args.tool, "save", target, vmcore])
        (out / "save.log").write_text(p.stdout)
        res.add("minicap save", p.returncode == 0 and vmcore.is_file(),
                f"exit {p.returncode}: " + tail(p.stdout, 3 if p.returncode else 1))  # fmt: skip
        if vmcore.is_file():
            info["vmcore_bytes"] = vmcore.stat().st_size
            check_filtered_elf(res, out, vmcore, serial, read_header(res, args, target, info), k.version, args.smp,
                               sc.dump_level(s))  # fmt: skip
            if args.with_crash:
                vmlinux = check_crash(res, out, vmcore, k)
                if vmlinux is not None:
                    check_gdb(res, out, vmlinux, vmcore)
    if sc.VMCORE in s.checks and result:
        if linux:
            with open(target, "rb") as f:
                try:
                    n = vmcore_end(f)
                except (ValueError, struct.error) as e:
                    n = 0
                    res.add("vmcore on disk", False, str(e))
            if n:
                sparse_copy(target, vmcore, n)
        else:
            p = run([args.tool, "save", target, vmcore])
            (out / "save.log").write_text(p.stdout)
            res.add("minicap save", p.returncode == 0 and vmcore.is_file(),
                    f"exit {p.returncode}: " + tail(p.stdout, 3 if p.returncode else 1))  # fmt: skip
    if sc.HEADER_COMPLETE in s.checks and result:
        header = read_header(res, args, target, info)
        if header is not None:
            check_complete_header(res, header, parsed.message if parsed else "",
                                  vmcore.stat().st_size if vmcore.is_file() else None, k.version,
                                  "kdump-compressed" if sc.KDUMP in s.checks else "elf-vmcore")  # fmt: skip
            if "load-outside-ram" in s.corrupt_core_headers:
                check_skipped_recorded(res, header, [sc.OUTSIDE_RAM_PAGE])
    if sc.VMCORE in s.checks:
        if vmcore.is_file():
            info["vmcore_bytes"] = vmcore.stat().st_size
            check_vmcore_tools(res, args, out, vmcore, k, k.version, sc.loads_with_kexec_file(s))
        else:
            res.add("vmcore checks", False, "no vmcore to check")

    if sc.TRIAGE in s.checks and result and not streamed:
        dmesg = out / "dmesg.txt"
        check_triage(res, args, out, target, dmesg.read_text(errors="replace") if dmesg.is_file() else None,
                     getattr(args, "crash_lines", None))

    if sc.DATA_AREA_ZERO in s.checks:
        data = target.read_bytes()
        nonzero = [i for i in range(MIB, len(data), 4096) if any(data[i : i + 4096])]
        res.add("small disk: data area untouched", not nonzero,
                "all bytes after 1 MiB are zero" if not nonzero
                else f"{len(nonzero)} non-zero 4K blocks after 1 MiB, first at {nonzero[0]:#x}")  # fmt: skip
        diff = [i for i in range(min(len(data_area_before), MIB)) if data_area_before[i] != data[i]]
        info["small_disk_header_changed_bytes"] = len(diff)
        log("header (first MiB): "
            + ("unchanged" if not diff else f"{len(diff)} bytes changed in {diff[0]:#x}..{diff[-1]:#x}"))  # fmt: skip

    if res.ok and not args.keep:
        for img in attached + [out / "vmcore", out / "partial.vmcore", stream, out / "vmcore.flat",
                               out / "vmlinuz-signed"]:  # fmt: skip
            img.unlink(missing_ok=True)
    return res, info
