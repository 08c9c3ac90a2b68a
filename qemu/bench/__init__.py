"""Side by side: minicap against stock kdump on the same first kernel, the
same QEMU command line and the same crash (qemu/benchmark.py, `cargo xtask
bench`). Built on the e2e harness's modules (qemu/harness/)."""
