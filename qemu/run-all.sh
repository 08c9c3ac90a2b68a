#!/bin/sh
# Runs every scenario of the suite, in the order of the table in
# qemu/harness/scenarios.py (`python3 qemu/e2e.py --list` shows them):
# the same as `python3 qemu/e2e.py --all`.
#
# Usage: qemu/run-all.sh [--minicap ELF] [--tool BIN] [--pattern BIN] [--out DIR] [other e2e.py options...]
# The paths default to $MINICAP, $TOOL, $PATTERN, else target/minicap.elf,
# target/release/minicap, target/release/minicap-pattern; options (e.g.
# --with-crash, --verbose, --cpu qemu64) apply to every run.
# Results: $OUT (default qemu/out)/<name>/, <name>.json and summary.json;
# then a timing table, one PASS/FAIL line per run and, last,
# `e2e: N passed, M failed`. Exit status: 0 only if every scenario passed.
set -u
cd "$(dirname "$0")/.."
[ -n "${MINICAP:-}" ] && set -- --minicap "$MINICAP" "$@"
[ -n "${TOOL:-}" ] && set -- --tool "$TOOL" "$@"
[ -n "${PATTERN:-}" ] && set -- --pattern "$PATTERN" "$@"
[ -n "${OUT:-}" ] && set -- --out "$OUT" "$@"
exec "${PYTHON:-python3}" qemu/e2e.py --all "$@"
