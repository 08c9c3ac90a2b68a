#!/usr/bin/env python3
"""The crash matrix (qemu/matrix/): `python3 qemu/matrix.py [--full | --fast] [--variant V] [--type T]
[--context C] [--crash-bt]`, plus any option of qemu/e2e.py (--minicap, --tool, --kernel-version, --keep, -v)."""

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from matrix.run import main  # noqa: E402

if __name__ == "__main__":
    sys.exit(main())
