"""The server's one private folder: every file it receives or writes lives here and nowhere else.

Gradio's uploads and cache (`GRADIO_TEMP_DIR`), its example cache, the downloads the app writes
and the decoders' temporary files (`tempfile`'s default folder) all go into one folder made for
this process: mode 0700 under a umask of 077, so other local users can neither list nor read it.
Because nothing else writes there, "inside this folder" is exactly "a file this server wrote or
received", which is the rule the front door (app/doors.py) and the event check
(app/event_guard.py) hold every path to. A file unused for `file_ttl_minutes` is removed, and
the folder goes with the process.
"""

from __future__ import annotations

import atexit
import logging
import os
import shutil
import tempfile
import threading
import time

from core.settings import Settings

log = logging.getLogger(__name__)
PRIVATE = 0o077  # umask: files 0600, folders 0700


class PrivateFolder:
    def __init__(self, path: str, ttl_s: float):
        self.path = os.path.realpath(path)
        self.ttl_s = ttl_s
        self._kept: set[str] = set()  # files that live as long as the process (the page's examples)

    @classmethod
    def open(cls, settings: Settings) -> "PrivateFolder":
        """Makes this process's folder and points Gradio and `tempfile` at it. Process-wide, and
        before the Blocks are built: Gradio reads its folder when a component is made."""
        os.umask(PRIVATE)
        folder = cls(tempfile.mkdtemp(prefix="phi4mm-serve-", dir=settings.tmp), settings.file_ttl_minutes * 60)
        os.environ["GRADIO_TEMP_DIR"] = folder.path
        os.environ["GRADIO_EXAMPLES_CACHE"] = os.path.join(folder.path, "examples")
        tempfile.tempdir = folder.path
        atexit.register(folder.remove)
        return folder

    def holds(self, path: str) -> bool:
        """Whether `path`, symlinks resolved, is a file inside the folder."""
        if not isinstance(path, str) or "\0" in path:
            return False
        real = os.path.realpath(path)
        return real.startswith(self.path + os.sep) and os.path.isfile(real)

    def keep_what_is_here(self) -> None:
        """What the folder holds now (Gradio's copies of the page's own examples, made while the
        page was built) stays for the process's life. Gradio copies them with their source's mode
        (0644); the folder's 0700 already hides them, and 0600 says so twice."""
        self._kept = set(self._files())
        for path in self._kept:
            os.chmod(path, 0o600)

    def discard(self, path: str) -> None:
        """Removes a file that has served its one use (a microphone chunk), never a kept one."""
        real = os.path.realpath(path)
        if real not in self._kept and self.holds(real):
            os.remove(real)

    def used(self, path: str) -> None:
        """A file handed back by a client is in use again: its age starts over."""
        try:
            os.utime(path)
        except OSError:
            pass

    def sweep(self) -> int:
        """Removes files unused for the TTL, then the folders they leave empty -> files removed."""
        cutoff, removed = time.time() - self.ttl_s, 0
        for path in self._files():
            try:
                if path not in self._kept and os.lstat(path).st_mtime < cutoff:
                    os.remove(path)
                    removed += 1
            except OSError:  # gone already, or removed by Gradio's own clean-up meanwhile
                continue
        for root, dirs, files in os.walk(self.path, topdown=False):
            if root != self.path and not dirs and not files:
                try:
                    os.rmdir(root)
                except OSError:
                    pass
        return removed

    def sweep_in_background(self) -> threading.Thread:
        """Sweeps a few times per TTL, from a daemon thread."""
        every = min(max(self.ttl_s / 4, 1.0), 300.0)

        def loop():
            while True:
                time.sleep(every)
                if (removed := self.sweep()) and log.isEnabledFor(logging.INFO):
                    log.info("removed %d file(s) unused for %.0f min", removed, self.ttl_s / 60)

        thread = threading.Thread(target=loop, name="sweep-private-folder", daemon=True)
        thread.start()
        return thread

    def remove(self) -> None:
        shutil.rmtree(self.path, ignore_errors=True)

    def _files(self):
        for root, _, files in os.walk(self.path):
            yield from (os.path.join(root, name) for name in files)
