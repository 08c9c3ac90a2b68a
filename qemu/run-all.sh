#!/bin/sh
# Runs the end-to-end scenarios of the test suite in sequence:
#   capture-modern   full capture, virtio-blk modern only (disable-legacy=on)
#   capture-legacy-4kn  full capture, virtio-blk legacy only (disable-modern=on), 4 KiB logical blocks
#   no-disk          no dump disk: minicap must report failure and reboot
#   small-disk       4 MiB disk: minicap must refuse ("too small")
#   capture-qemu64-4M-3G  full capture with 4-level paging, 2 MiB pages, crashkernel=4M, RAM above 4 GiB
#   unformatted-disk random-data disk, never formatted: failure, disk unchanged
#   wrong-id         minicap.device= names another id: failure, disk unchanged
#   bad-elfcorehdr   elfcorehdr=12junk on the command line: failure, disk unchanged
#   ambiguous        two formatted disks, no minicap.device=: failure, both unchanged
#   device-error     the dump disk fails one write (QEMU blkdebug, EIO) at ~45 %:
#                    failure, header "failed" at the 40 % checkpoint, save --partial
# The capture and device-error runs also attach an unformatted decoy disk
# first on the PCI bus and check it is untouched.
#
# Usage: qemu/run-all.sh [--minicap ELF] [--tool BIN] [--pattern BIN] [other e2e.py options...]
# The paths default to $MINICAP, $TOOL, $PATTERN, else target/minicap.elf,
# target/release/minicap, target/release/minicap-pattern.  Other options
# (e.g. --with-crash, --verbose, --cpu qemu64) are passed to every run.
# Results: $OUT (default qemu/out)/<name>/, <name>.json and summary.json.
# Exit status: 0 only if every scenario passed.
set -u
cd "$(dirname "$0")/.."

MINICAP=${MINICAP:-target/minicap.elf}
TOOL=${TOOL:-target/release/minicap}
PATTERN=${PATTERN:-target/release/minicap-pattern}
OUT=${OUT:-qemu/out}
PYTHON=${PYTHON:-python3}

PASS_ARGS=""
while [ $# -gt 0 ]; do
    case "$1" in
        --minicap) MINICAP=$2; shift 2 ;;
        --minicap=*) MINICAP=${1#*=}; shift ;;
        --tool) TOOL=$2; shift 2 ;;
        --tool=*) TOOL=${1#*=}; shift ;;
        --pattern) PATTERN=$2; shift 2 ;;
        --pattern=*) PATTERN=${1#*=}; shift ;;
        --out) OUT=$2; shift 2 ;;
        --out=*) OUT=${1#*=}; shift ;;
        *) PASS_ARGS="$PASS_ARGS $(printf "'%s'" "$(printf %s "$1" | sed "s/'/'\\\\''/g")")"; shift ;;
    esac
done

for f in "$MINICAP" "$TOOL" "$PATTERN"; do
    if [ ! -f "$f" ]; then
        echo "run-all: $f does not exist; build first:" >&2
        echo "  cargo xtask build && cargo build --release -p minicap -p minicap-pattern" >&2
        exit 2
    fi
done

mkdir -p "$OUT"
FAILED=""
RESULTS=""

run() {
    name=$1
    shift
    echo "===== $name ====="
    eval "\"$PYTHON\" qemu/e2e.py --minicap \"$MINICAP\" --tool \"$TOOL\" --pattern \"$PATTERN\" \
        --out \"$OUT/$name\" --json \"$OUT/$name.json\" \"\$@\" $PASS_ARGS"
    rc=$?
    if [ $rc -eq 0 ]; then
        RESULTS="$RESULTS
  PASS  $name"
    else
        RESULTS="$RESULTS
  FAIL  $name (exit $rc)"
        FAILED="$FAILED $name"
    fi
}

run capture-modern --scenario capture --virtio modern
# The legacy interface, on a disk with 4 KiB logical blocks (4Kn).
run capture-legacy-4kn --scenario capture --virtio legacy \
    --blk-props logical_block_size=4096,physical_block_size=4096
run no-disk --scenario no-disk
run small-disk --scenario small-disk
# 4-level paging and 2 MiB pages (qemu64 has neither LA57 nor 1 GiB pages),
# in a small crash region, with 1 GiB of the RAM above 4 GiB (q35 keeps 2 GiB
# low when the guest has more than 2.75 GiB).
run capture-qemu64-4M-3G --scenario capture --cpu qemu64 --crashkernel 4M --memory 3072
# The guest leaves Intel VT-d translating (as servers with intel_iommu=on
# do): minicap must install its own tables, pass-through or identity.
run capture-iommu --scenario capture --iommu intel-iommu,intremap=off \
    --guest-append "intel_iommu=on iommu=nopt"
run capture-iommu-identity --scenario capture --iommu intel-iommu,intremap=off,pt=off \
    --guest-append "intel_iommu=on iommu=nopt"
# Bad input: a clear failure, and nothing written to any disk.
run unformatted-disk --scenario unformatted-disk
run wrong-id --scenario wrong-id
run bad-elfcorehdr --scenario bad-elfcorehdr
run ambiguous --scenario ambiguous
# The device fails in the middle of the dump: reported, nothing written is lost.
run device-error --scenario device-error

"$PYTHON" - "$OUT" capture-modern capture-legacy-4kn no-disk small-disk capture-qemu64-4M-3G capture-iommu capture-iommu-identity \
    unformatted-disk wrong-id bad-elfcorehdr ambiguous device-error <<'EOF'
import json, sys, pathlib
out = pathlib.Path(sys.argv[1])
runs = {}
for name in sys.argv[2:]:
    p = out / f"{name}.json"
    runs[name] = json.loads(p.read_text()) if p.exists() else {"ok": False, "error": "no result file"}
(out / "summary.json").write_text(json.dumps(runs, indent=2) + "\n")
print("\n===== timings =====")
for name, r in runs.items():
    t = r.get("times", {})
    def f(k):
        return f"{t[k]:7.3f} s" if k in t else "      -  "
    print(f"  {name:<17} boot->crash {f('boot_to_crash_s')}  crash->RESULT {f('crash_to_result_s')}"
          f"  crash->exit {f('crash_to_qemu_exit_s')}")
EOF

echo
echo "===== summary ====="
echo "$RESULTS" | sed '/^$/d'
passed=$(echo "$RESULTS" | grep -c '^  PASS')
failed=$(echo "$RESULTS" | grep -c '^  FAIL')
echo "e2e: $passed passed, $failed failed"
if [ -n "$FAILED" ]; then
    echo "run-all: FAILED:$FAILED"
    exit 1
fi
echo "run-all: all scenarios passed"
