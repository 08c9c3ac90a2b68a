"""The crash matrix: the crash-point module (qemu/crashpoint/) crashes the
guest in one way from one context, minicap captures it, and the harness
verifies the dump; a table of crash type x context per machine variant,
like Table 2 of "Evaluating Linux Kernel Crash Dumping Mechanisms" (OLS
2006). See qemu/README.md, "The crash matrix"."""
