#!/usr/bin/env python3
"""minicap against stock kdump, side by side (`cargo xtask bench`); the
code is the package qemu/bench/, on top of the e2e harness qemu/harness/."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench.cli import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
