"""Signed images and Secure Boot: sbsign/sbverify with a key made for the run or Debian's
snakeoil key, the OVMF firmware files (Secure Boot on, the snakeoil keys enrolled), the QEMU
options that boot through them, and what the locked-down first kernel says and refuses.

Debian's `ovmf` package ships OVMF_CODE_4M.secboot.fd (built with SMM: q35 with smm=on and
the flash marked secure), OVMF_VARS_4M.snakeoil.fd (PK, KEK and db hold the snakeoil
certificate, Secure Boot enabled) and the key and certificate themselves, the key encrypted
with the pass phrase "snakeoil". QEMU's `-kernel` under OVMF goes through the firmware's
LoadImage, so the vmlinuz must carry a signature the db trusts: the harness strips Debian's
own signature from a copy and signs it with the snakeoil key. Linux then sees Secure Boot on
and locks itself down (Debian: LOCK_DOWN_IN_EFI_SECURE_BOOT); it loads the db certificates into
its platform keyring, which kexec_file_load consults, so a snakeoil-signed minicap.bzImage is
trusted and an unsigned one is not."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from .common import HarnessError, run, tail

# Where Debian (12 and later) puts the firmware and the keys: the 4 MiB builds in /usr/share/OVMF,
# the snakeoil key and certificate in /usr/share/ovmf. Both are searched for every file, so a
# layout that keeps them together works too.
OVMF_DIRS = (Path("/usr/share/OVMF"), Path("/usr/share/ovmf"))
OVMF_CODE = "OVMF_CODE_4M.secboot.fd"
OVMF_VARS = "OVMF_VARS_4M.snakeoil.fd"
SNAKEOIL_KEY = "PkKek-1-snakeoil.key"
SNAKEOIL_CERT = "PkKek-1-snakeoil.pem"
SNAKEOIL_PASSPHRASE = "snakeoil"  # Debian's ovmf README: the snakeoil key's pass phrase


@dataclass(frozen=True)
class Ovmf:
    code: Path  # read-only flash: the firmware
    vars: Path  # the variable store template: copied for each run, the copy is writable flash
    key: Path  # the snakeoil private key (encrypted)
    cert: Path  # its certificate, enrolled as PK, KEK and db


def find_ovmf(dirs: tuple[Path, ...] = OVMF_DIRS) -> Ovmf:
    """The Secure Boot firmware, its snakeoil variable store, key and certificate: each the
    first found in `dirs`, in order; an error naming every missing file and the package."""
    found, missing = {}, []
    for name in (OVMF_CODE, OVMF_VARS, SNAKEOIL_KEY, SNAKEOIL_CERT):
        path = next((d / name for d in dirs if (d / name).is_file()), None)
        if path is None:
            missing.append(name)
        found[name] = path
    if missing:
        raise HarnessError(f"Secure Boot firmware files not found in {', '.join(map(str, dirs))}: "
                           f"{', '.join(missing)} (install Debian's ovmf package: qemu/install-deps.sh)")  # fmt: skip
    return Ovmf(found[OVMF_CODE], found[OVMF_VARS], found[SNAKEOIL_KEY], found[SNAKEOIL_CERT])


def firmware_options(ovmf: Ovmf, vars_copy: Path) -> tuple[list[str], str]:
    """QEMU options for a Secure Boot boot: the SMM machine property (the secboot build needs
    SMM, or it stops before anything is printed), the flash marked secure so that only SMM
    writes the variables, the code read-only and the run's own copy of the variables."""
    options = ["-global", "driver=cfi.pflash01,property=secure,value=on",
               "-drive", f"if=pflash,format=raw,unit=0,readonly=on,file={ovmf.code}",
               "-drive", f"if=pflash,format=raw,unit=1,file={vars_copy}"]  # fmt: skip
    return options, "smm=on"


def need_tools(*tools: str) -> None:
    for t in tools:
        if not shutil.which(t):
            pkg = {"sbsign": "sbsigntool", "sbverify": "sbsigntool", "sbattach": "sbsigntool"}.get(t, t)
            raise HarnessError(f"{t} not found in PATH (install {pkg}: qemu/install-deps.sh)")


def make_throwaway_key(out: Path) -> tuple[Path, Path]:
    """A 2048-bit RSA key and a self-signed certificate made for this run (no pass phrase)."""
    need_tools("openssl")
    key, cert = out / "throwaway.key", out / "throwaway.pem"
    p = run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", cert, "-days", "1",
             "-subj", "/CN=minicap e2e throwaway signing key/"])  # fmt: skip
    if p.returncode != 0 or not key.is_file() or not cert.is_file():
        raise HarnessError(f"openssl req -x509 failed (exit {p.returncode}):\n{tail(p.stdout, 10)}")
    return key, cert


def snakeoil_key(ovmf: Ovmf, out: Path) -> Path:
    """The snakeoil key without its pass phrase (sbsign cannot be given one)."""
    need_tools("openssl")
    plain = out / "snakeoil.key"
    p = run(["openssl", "pkey", "-in", ovmf.key, "-passin", f"pass:{SNAKEOIL_PASSPHRASE}", "-out", plain])
    if p.returncode != 0:
        raise HarnessError(f"cannot decrypt {ovmf.key} with the pass phrase {SNAKEOIL_PASSPHRASE!r}:\n"
                           f"{tail(p.stdout, 5)}")  # fmt: skip
    return plain


def signatures(image: Path) -> int:
    """How many signatures `sbverify --list` finds in a PE file."""
    need_tools("sbverify")
    p = run(["sbverify", "--list", image])
    return len(re.findall(r"^signature \d+$", p.stdout, re.M))


def sign(image: Path, key: Path, cert: Path, out: Path) -> None:
    """`out`: a copy of `image` with every signature it had removed, then signed with `key`, so
    that only this signature can make it trusted."""
    need_tools("sbsign", "sbattach", "sbverify")
    stripped = out.with_name(out.name + ".unsigned")
    shutil.copyfile(image, stripped)
    for _ in range(signatures(stripped)):
        p = run(["sbattach", "--remove", stripped])
        if p.returncode != 0:
            raise HarnessError(f"sbattach --remove {stripped} failed:\n{tail(p.stdout, 5)}")
    if signatures(stripped):
        raise HarnessError(f"{stripped}: signatures left after sbattach --remove")
    p = run(["sbsign", "--key", key, "--cert", cert, "--output", out, stripped])
    stripped.unlink()
    if p.returncode != 0 or not out.is_file():
        raise HarnessError(f"sbsign {image} failed (exit {p.returncode}):\n{tail(p.stdout, 5)}")


def sbverify(image: Path, cert: Path) -> tuple[bool, str]:
    """`sbverify --cert CERT IMAGE`: whether it passes, and its last line."""
    need_tools("sbverify")
    p = run(["sbverify", "--cert", cert, image])
    return p.returncode == 0, f"exit {p.returncode}: {tail(p.stdout, 1).strip()}"


# ---------------------------------------------------------------------------
# The guest side: what /init prints before the signed load, and the checks on it.

LOCKDOWN_PREFIX = "LOCKDOWN: "
REFUSAL_PREFIX = "REFUSAL-"
REFUSAL_RE = re.compile(r"REFUSAL-(?P<label>[a-z0-9-]+) rc=(?P<rc>\d+) loaded=(?P<loaded>\S*):(?: (?P<output>.*))?$")
# What Linux prints at boot when the firmware says Secure Boot is on (arch/x86/kernel/setup.c,
# "secureboot: Secure boot enabled") and when that locks it down (Debian's lockdown patch:
# "Kernel is locked down from EFI Secure Boot; see man kernel_lockdown.7").
SECURE_BOOT_LINE = "secureboot: Secure boot enabled"
LOCKED_DOWN_LINE = "Kernel is locked down from EFI Secure Boot"
REFUSAL_DETAIL_CHARS = 240  # kexec-tools follows its error with the segment list: cut the detail


def init_block(refusals, capture_append: str, quote) -> str:
    """The /init lines of a Secure Boot run, before the real load: the lockdown state from
    securityfs, then each refusal (scenarios.Refusal) run with its output collected on one
    line with its exit status and /sys/kernel/kexec_crash_loaded after it."""
    lines = ["mount -t securityfs securityfs /sys/kernel/security 2>/dev/null",
             f'echo "{LOCKDOWN_PREFIX}$(cat /sys/kernel/security/lockdown 2>&1)"']  # fmt: skip
    for r in refusals:
        command = r.command.format(append=quote(capture_append))
        lines += [f'echo "REFUSAL-CMD {r.label}: {command}"',
                  f"{command} >/tmp/refusal.out 2>&1",
                  "rc=$?",
                  f'echo "{REFUSAL_PREFIX}{r.label} rc=$rc loaded=$(cat /sys/kernel/kexec_crash_loaded): '
                  "$(tr '\\n' ' ' < /tmp/refusal.out)\""]  # fmt: skip
    return "\n" + "\n".join(lines) + "\n"


def lockdown_mode(texts: list[str]) -> str | None:
    """The selected mode of /sys/kernel/security/lockdown ("none [integrity] confidentiality"
    -> "integrity"), None if /init printed no such line or nothing is selected."""
    line = next((t for t in texts if t.startswith(LOCKDOWN_PREFIX)), None)
    m = re.search(r"\[(\w+)\]", line or "")
    return m.group(1) if m else None


def check_lockdown(res, texts: list[str]) -> None:
    """Secure Boot enabled and the kernel locked down: the boot lines and securityfs."""
    for want in (SECURE_BOOT_LINE, LOCKED_DOWN_LINE):
        hit = next((t.strip() for t in texts if want in t), None)
        res.add(f"kernel log: {want}", hit is not None, hit or f"no line with {want!r}")
    mode = lockdown_mode(texts)
    line = next((t.strip() for t in texts if t.startswith(LOCKDOWN_PREFIX)), "no LOCKDOWN: line")
    res.add("lockdown active", mode in ("integrity", "confidentiality"), line)


def check_refusals(res, texts: list[str], refusals) -> dict[str, dict[str, str]]:
    """Each refusal failed (non-zero exit), said what its `output` asks for, left no crash
    kernel loaded, and the kernel printed its reason (`kernel_says`) while it ran. Returns
    label -> what the loader and the kernel said, for the run's record."""
    seen = {}
    for r in refusals:
        start = next((i for i, t in enumerate(texts) if t.startswith(f"REFUSAL-CMD {r.label}: ")), None)
        end = next((i for i, t in enumerate(texts) if (m := REFUSAL_RE.match(t.strip())) and m["label"] == r.label),
                   None)  # fmt: skip
        if start is None or end is None or end < start:
            res.add(f"refused: {r.label}", False,
                    f"no REFUSAL-CMD {r.label} line followed by {REFUSAL_PREFIX}{r.label}")  # fmt: skip
            continue
        m = REFUSAL_RE.match(texts[end].strip())
        output = (m.group("output") or "").strip()
        said = re.search(r.output, output)
        reason = next((t.strip() for t in texts[start + 1 : end] if r.kernel_says and re.search(r.kernel_says, t)), "")
        seen[r.label] = {"said": said.group(0) if said else output[:REFUSAL_DETAIL_CHARS], "kernel": reason}
        ok = int(m.group("rc")) != 0 and m.group("loaded") == "0" and said is not None
        cut = output if len(output) <= REFUSAL_DETAIL_CHARS else output[:REFUSAL_DETAIL_CHARS] + " ..."
        res.add(f"refused: {r.label}", ok, f"exit {m.group('rc')}, kexec_crash_loaded {m.group('loaded')}: "
                + (said.group(0) if said else f"{cut}  (want /{r.output}/)"))  # fmt: skip
        if r.kernel_says:
            res.add(f"refused: {r.label}: the kernel's reason", bool(reason),
                    reason or f"no kernel line matches /{r.kernel_says}/ while it ran")  # fmt: skip
    return seen
