"""An advisory lock on a folder that one process writes into (a training run, an LMDB being packed,
a ``translate --skip-existing`` output folder).

The lock is a file (``.lock`` by default) holding the owner's pid, host, start time and command,
and held with ``flock`` for as long as the owner lives: the kernel drops it when the process ends,
also on ``kill -9``, so a lock left by a dead process is recognised (the ``flock`` succeeds) and
taken over with a message, while a live owner makes a second writer stop with one line naming it.
A lock recorded by another host cannot be checked from here and is never taken over.
"""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from toonlab.errors import UserInputError

try:  # POSIX; elsewhere the lock degrades to "owner pid still running?"
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = ["FolderLocked", "FolderLock", "close_inherited_locks"]

_HELD: set[int] = set()  # lock fds of this process, closed in forked children (data loader workers)


def close_inherited_locks() -> None:
    """In a forked child: close the copies of the parent's lock descriptors.

    The lock then lives exactly as long as its owner — otherwise data loader workers that outlive a
    killed trainer for a few seconds would keep its folder locked.
    """
    for fd in list(_HELD):
        try:
            os.close(fd)
        except OSError:
            pass
    _HELD.clear()


class FolderLocked(UserInputError):
    """Another live process owns the folder (the message names it)."""


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


class FolderLock:
    """``with FolderLock(folder): ...`` or ``acquire()`` / ``release()``.

    ``what`` names the folder in messages ("run folder", "output folder"); ``subject`` is what the
    messages call locked (default: the folder; e.g. the LMDB being built beside its lock file);
    ``took_over`` is set to a one-line note when a stale lock of a dead process was replaced.
    """

    def __init__(self, folder: str | os.PathLike, what: str = "folder", name: str = ".lock",
                 subject: str | None = None) -> None:
        self.folder = Path(folder)
        self.path = self.folder / name
        self.what = what
        self.subject = subject if subject is not None else str(self.folder)
        self.took_over: str | None = None
        self._fd: int | None = None

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _owner(self) -> dict[str, Any]:
        try:
            return json.loads(self.path.read_text() or "{}")
        except (OSError, ValueError):
            return {}

    def _describe(self, owner: dict[str, Any]) -> str:
        if not owner:
            return "another process"
        since = owner.get("started")
        when = f", started {time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(since))}" if since else ""
        cmd = f": {owner['command']}" if owner.get("command") else ""
        return f"process {owner.get('pid', '?')} on {owner.get('host', '?')}{when}{cmd}"

    def acquire(self) -> FolderLock:
        """Take the lock or raise :class:`FolderLocked`; idempotent while held.

        A folder that cannot hold the lock file (read-only, full disk) raises ``OSError`` naming
        the subject, so commands say ``OUT: No space left on device``, not the lock file's name.
        """
        if self._fd is not None:
            return self
        try:
            return self._acquire()
        except OSError as e:
            if self._fd is not None:
                raise
            raise OSError(e.errno, e.strerror or str(e), self.subject) from e

    def _acquire(self) -> FolderLock:
        self.folder.mkdir(parents=True, exist_ok=True)
        host = socket.gethostname()
        for _ in range(20):  # retries only when another process removes the file under us
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                got = self._try_lock(fd)
            except BaseException:
                os.close(fd)
                raise
            if not got:
                os.close(fd)
                owner = self._owner()
                for _ in range(10):  # a brand-new owner may not have written its name yet
                    if owner:
                        break
                    time.sleep(0.05)
                    owner = self._owner()
                raise FolderLocked(f"{self.what} {self.subject} is in use by {self._describe(owner)}; wait for it to "
                                   f"finish or choose another folder (lock file {self.path})")
            try:
                same = os.fstat(fd).st_ino == os.stat(self.path).st_ino
            except FileNotFoundError:
                same = False
            if not same:  # the previous owner unlinked the file after we opened it: try the new one
                os.close(fd)
                continue
            previous = self._owner()
            if previous and previous.get("host") not in (None, host):
                os.close(fd)
                raise FolderLocked(f"{self.what} {self.subject} is locked by {self._describe(previous)} (another "
                                   f"host, which this machine cannot check); if that run is over, delete {self.path}")
            if previous and fcntl is None and _pid_alive(int(previous.get("pid", -1))):
                os.close(fd)
                raise FolderLocked(f"{self.what} {self.subject} is in use by {self._describe(previous)}")
            if previous:
                self.took_over = (f"took over the lock of {self.subject} left by {self._describe(previous)}, "
                                  "which is no longer running")
            me = {"pid": os.getpid(), "host": host, "started": time.time(), "command": " ".join(sys.argv)}
            try:
                os.ftruncate(fd, 0)
                os.pwrite(fd, json.dumps(me).encode(), 0)
            except OSError:  # a full disk: leave no empty lock file behind
                self.path.unlink(missing_ok=True)
                os.close(fd)
                raise
            self._fd = fd
            _HELD.add(fd)
            return self
        raise FolderLocked(f"cannot lock {self.path}: it keeps being replaced by another process")

    @staticmethod
    def _try_lock(fd: int) -> bool:
        if fcntl is None:
            return True
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return True
        except BlockingIOError:
            return False

    def release(self) -> None:
        """Remove the lock file and drop the lock (a no-op when not held)."""
        if self._fd is None:
            return
        try:
            self.path.unlink(missing_ok=True)  # unlink first: a waiting process then re-opens a fresh file
        finally:
            _HELD.discard(self._fd)
            os.close(self._fd)
            self._fd = None

    def __enter__(self) -> FolderLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()
