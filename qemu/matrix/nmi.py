"""The NMI button: QEMU's human monitor on a Unix socket, and a watcher
that sends `nmi` once the guest says it is hanging. QEMU 7.2's `nmi`
delivers an NMI to every CPU; with unknown_nmi_panic=1 the kernel panics
on the first that has no NMI handler claiming it ("NMI: Not continuing"),
as a server's NMI button or a BMC would make it."""

from __future__ import annotations

import socket
import threading
import time
from pathlib import Path

# How long after the hang's announcement the NMI comes: long enough that the
# CPU is really spinning with interrupts off (the line is printed just before).
NMI_DELAY_S = 3.0
CONNECT_DEADLINE_S = 10.0


def monitor_args(sock: Path) -> list[str]:
    return ["-monitor", f"unix:{sock},server=on,wait=off"]


class NmiButton:
    """Watches `serial_log` for `marker`; then sends `nmi` to the monitor at
    `sock`. `sent` says when it did (None: never), `error` why it could not."""

    def __init__(self, serial_log: Path, sock: Path, marker: bytes) -> None:
        self.serial_log, self.sock, self.marker = serial_log, sock, marker
        self.sent: float | None = None
        self.error: str | None = None
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._watch, daemon=True)

    def __enter__(self) -> "NmiButton":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join(timeout=5)

    def _watch(self) -> None:
        while not self.stop.wait(0.2):
            try:
                if self.marker in self.serial_log.read_bytes():
                    break
            except FileNotFoundError:
                continue
        else:
            return
        if self.stop.wait(NMI_DELAY_S):
            return
        deadline = time.monotonic() + CONNECT_DEADLINE_S
        while True:
            try:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
                    s.settimeout(5)
                    s.connect(str(self.sock))
                    s.sendall(b"nmi\n")
                    time.sleep(0.5)  # let the monitor read the command before the socket closes
                self.sent = time.monotonic()
                return
            except OSError as e:
                if time.monotonic() > deadline:
                    self.error = f"monitor {self.sock}: {e}"
                    return
                time.sleep(0.5)
