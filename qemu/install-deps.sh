#!/usr/bin/env bash
# Installs what minicap's tests and demo need on Debian (12 and later), on a
# machine with no QEMU at all as well as on one whose image already ships a
# newer `qemu-utils` than the configured package suites offer.
#
# Why the QEMU step is not a plain `apt-get install qemu-system-x86`: the
# project uses no `qemu-img` (so no `qemu-utils` is asked for), but a
# preinstalled `qemu-utils` from another suite (for example a 10.0
# backport) declares `Breaks: qemu-system-common (<< 8.0)` against the 7.2
# that the suite offers, and apt then refuses the whole install. So when an
# installed `qemu-utils` differs from the `qemu-system-x86` apt would
# install, it is moved to that same version (apt chooses it; no version
# string is written here), keeping `qemu-img` available at the matching
# version. Nothing is changed when they already agree.
#
# Usage: qemu/install-deps.sh   (as root, or with sudo available)
set -euo pipefail

export DEBIAN_FRONTEND=noninteractive
if [ "$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi

$SUDO apt-get update

candidate() { apt-cache policy "$1" | awk '/Candidate:/ { print $2; exit }'; }
installed() { dpkg-query -W -f='${db:Status-Abbrev} ${Version}\n' "$1" 2>/dev/null | awk '/^ii/ { print $2 }'; }

qemu_version=$(candidate qemu-system-x86)
if [ -z "$qemu_version" ] || [ "$qemu_version" = "(none)" ]; then
    echo "install-deps: apt offers no qemu-system-x86; check /etc/apt/sources.list*" >&2
    exit 1
fi
align=()
utils_version=$(installed qemu-utils)
if [ -n "$utils_version" ] && [ "$utils_version" != "$qemu_version" ]; then
    echo "install-deps: qemu-utils $utils_version is installed but qemu-system-x86 would be" \
         "$qemu_version; installing qemu-utils $qemu_version so the two agree"
    align=(--allow-downgrades "qemu-utils=$qemu_version")
fi

# QEMU runs the guest; kexec-tools loads minicap in it; busybox and cpio make
# the guest's initramfs; dpkg-dev gives `dpkg-deb` for the guest kernel
# package; makedumpfile, crash and gdb read the dumps minicap writes. The
# crash matrix (qemu/matrix.py) builds its module with kbuild against the
# guest kernel's headers package (unpacked, not installed): that needs the
# compiler the kernel was built with (gcc-12 for Debian 12's 6.1 kernels, as
# the headers' linux-compiler-gcc-12-x86 dependency says), make, and libelf1
# for the packaged objtool. The signed-image and Secure Boot runs sign
# minicap.bzImage and the guest's vmlinuz with sbsign (sbsigntool), make a
# throwaway key with openssl, and boot through ovmf's Secure Boot firmware
# with its snakeoil keys enrolled (OVMF_CODE_4M.secboot.fd,
# OVMF_VARS_4M.snakeoil.fd, PkKek-1-snakeoil.key/.pem); load-minicap-fallback
# builds qemu/nofileload static with gcc, which needs glibc's libc.a (libc6-dev).
$SUDO apt-get install -y --no-install-recommends "${align[@]}" \
    qemu-system-x86 kexec-tools makedumpfile crash gdb busybox-static cpio \
    dpkg-dev ca-certificates python3 gzip gcc-12 make libelf1 \
    openssl sbsigntool ovmf libc6-dev

qemu-system-x86_64 --version | head -1
