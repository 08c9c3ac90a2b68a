#!/usr/bin/env python3
"""End-to-end test of minicap: the entry point of the harness package in
qemu/harness/ (Python 3.11 standard library only). `e2e.py --list` lists
the scenarios, `e2e.py --scenario NAME` runs one, `e2e.py --all` all of the
suite; `--help` shows the options. See qemu/README.md."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from harness.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
