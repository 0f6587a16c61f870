"""sd_notify over the socket systemd hands us: READY, WATCHDOG pings from the event loop, STOPPING.

A few lines instead of a dependency; does nothing at all when ``NOTIFY_SOCKET`` is not set.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Mapping

import anyio

from collector.logs import get_logger


class Notifier:
    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        env = os.environ if env is None else env
        address = env.get("NOTIFY_SOCKET", "")
        # An abstract socket is written "@name"; on the wire its first byte is NUL.
        self._address = "\0" + address[1:] if address.startswith("@") else address
        self.watchdog_secs: float | None = None
        usec = env.get("WATCHDOG_USEC", "")
        pid = env.get("WATCHDOG_PID", "")
        if self._address and usec.isdigit() and int(usec) > 0 and (not pid or pid == str(os.getpid())):
            self.watchdog_secs = int(usec) / 1_000_000
        self._log = get_logger()

    @property
    def enabled(self) -> bool:
        return bool(self._address)

    def notify(self, *states: str) -> None:
        if not self._address:
            return
        message = "\n".join(states).encode()
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
                sock.sendto(message, self._address)
        except OSError as exc:  # systemd gone or socket wrong: not a reason to stop collecting
            self._log.warning("sd_notify_failed", error=exc.strerror or str(exc))

    async def watchdog(self) -> None:
        """Ping at half the watchdog interval for as long as the event loop runs (cancel to stop)."""
        if self.watchdog_secs is None:
            return
        while True:
            self.notify("WATCHDOG=1")
            await anyio.sleep(self.watchdog_secs / 2)
