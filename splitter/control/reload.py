"""Watching the config file: a change is seen within a second and reloaded.

Polling, on purpose: every `interval` the path is resolved again and its target's identity
(device, inode, mtime, size) compared with the last one seen; when it differs, the bytes
are hashed and a reload is asked for only when the content changed. This sees the three
ways a file changes under a running process:

- an in-place write (same inode, new mtime and content);
- an atomic rename over the path (new inode);
- a Kubernetes ConfigMap update, where `..data` is a symlink swapped to a new directory
  (`os.stat` follows the links, so the target's identity changes).

A file that is briefly missing (between an unlink and a rename) is skipped, not an error.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import os
from collections.abc import Callable

log = logging.getLogger("splitter.reload")

Fingerprint = tuple[int, int, int, int]


def fingerprint(path: str) -> Fingerprint | None:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_dev, st.st_ino, st.st_mtime_ns, st.st_size)


def content_hash(path: str) -> bytes | None:
    try:
        with open(path, "rb") as f:
            return hashlib.sha256(f.read()).digest()
    except OSError:
        return None


class ConfigWatcher:
    def __init__(self, path: str, on_change: Callable[[], object], interval: float = 0.5) -> None:
        self.path = path
        self.on_change = on_change
        self.interval = interval
        self.seen = fingerprint(path)
        self.digest = content_hash(path)
        self.task: asyncio.Task[None] | None = None

    def start(self) -> None:
        self.task = asyncio.get_running_loop().create_task(self._run(), name="config watcher")

    def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            self.task = None

    def mark_current(self) -> None:
        """The file as it is now has been loaded (by a signal or the API)."""
        self.seen = fingerprint(self.path)
        self.digest = content_hash(self.path)

    async def _run(self) -> None:
        while True:
            await asyncio.sleep(self.interval)
            try:
                self.check()
            except Exception:  # a watcher that dies silently would be worse than a log line
                log.exception("error while watching %s", self.path)

    def check(self) -> bool:
        """Reload when the file changed; True when a reload was asked for."""
        current = fingerprint(self.path)
        if current is None or current == self.seen:
            return False
        self.seen = current
        digest = content_hash(self.path)
        if digest is None or digest == self.digest:
            return False
        self.digest = digest
        self.on_change()
        return True
