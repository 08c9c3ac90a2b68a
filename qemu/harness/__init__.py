"""The end-to-end test harness of minicap, by concern: kernel (the guest
kernel cache), initramfs, qemu (command line, serial console, timeouts),
disks, elf / iomem / pattern / console / device_info (what the harness
parses), checks, scenarios (the table), runner (one scenario), cli."""
