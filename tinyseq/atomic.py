"""Files written whole or not at all, and what killed writers leave behind cleaned up.

    with atomic_write("runs/x/last.npz") as f:   # f: a binary file
        f.write(data)

The data goes to a temporary file ``.<name>.<host>.<pid>.<random>.tmp`` in the target's
directory, is flushed and fsynced, and the temporary is renamed over the target (and the
rename made durable), so a crash, a full disk or an exception leaves the previous file
intact. A process killed mid-write (``kill -9``) leaves its temporary behind; the next
write of the same target removes such leftovers: files of exactly that pattern whose
writing process, on this host, no longer exists, or that have not been written to for
:data:`STALE_TEMP_SECONDS` (a pid may be reused; a writer elsewhere cannot be asked). A
live writer's temporary, and every other file, is left alone. Checkpoints and weights
files are written this way.
"""

from __future__ import annotations

import contextlib
import os
import re
import socket
import tempfile
import time
from collections.abc import Iterator
from typing import IO

__all__ = ["atomic_write", "STALE_TEMP_SECONDS"]

# a leftover temporary whose writer may still be alive is removed only after this long
STALE_TEMP_SECONDS = 3600.0


@contextlib.contextmanager
def atomic_write(path: str | os.PathLike[str]) -> Iterator[IO[bytes]]:
    """A binary file whose contents replace ``path`` only when the block ends without error.

    An OSError creating the temporary names the directory.
    """
    name = os.fspath(path)
    directory = os.path.dirname(os.path.abspath(name))
    try:
        # the pid in the name tells a later write whether this writer is still alive
        fd, tmp = tempfile.mkstemp(prefix=_temp_prefix(name), suffix=".tmp", dir=directory)
    except OSError as err:
        raise OSError(err.errno, f"cannot create a file in {directory} ({err.strerror or err})") from err
    try:
        # mkstemp makes the file private (0600); give it the mode a plain open() would
        umask = os.umask(0)
        os.umask(umask)
        os.fchmod(fd, 0o666 & ~umask)
        with os.fdopen(fd, "wb") as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, name)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    # make the rename itself durable (POSIX; not possible on Windows)
    with contextlib.suppress(OSError, AttributeError):
        dir_fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(dir_fd)
        finally:
            os.close(dir_fd)
    _remove_stale_temporaries(name)


def _host() -> str:
    """This machine's name as it goes into temporary names: letters, digits, "-"."""
    return re.sub(r"[^A-Za-z0-9-]", "-", socket.gethostname())[:40] or "host"


def _temp_prefix(name: str) -> str:
    return f".{os.path.basename(name)}.{_host()}.{os.getpid()}."


def _writer_is_gone(host: str, pid: int) -> bool:
    """Whether the process that made a temporary surely no longer runs."""
    if host != _host() or pid == os.getpid() or os.name != "posix":
        return False  # another machine's process, or ours; Windows' os.kill would terminate
    try:
        os.kill(pid, 0)  # signal 0 only asks whether the process exists
    except ProcessLookupError:
        return True
    except (OSError, OverflowError):  # e.g. another user's process: it exists
        return False
    return False


def _remove_stale_temporaries(name: str) -> None:
    """Delete temporaries of earlier, killed saves of ``name`` (see the module docstring)."""
    directory = os.path.dirname(os.path.abspath(name))
    # .<name>.<host>.<pid>.<mkstemp's random letters, digits, "_">.tmp; without host and
    # pid as tinyseq wrote them before (those go by age only)
    ours = re.compile(re.escape(f".{os.path.basename(name)}.")
                      + r"(?:([A-Za-z0-9-]+)\.(\d+)\.)?[a-z0-9_]+\.tmp")
    now = time.time()
    with contextlib.suppress(OSError), os.scandir(directory) as entries:
        for entry in entries:
            match = ours.fullmatch(entry.name)
            if match is None:
                continue
            with contextlib.suppress(OSError):  # gone already, or not ours to remove
                if not entry.is_file(follow_symlinks=False):
                    continue
                old = now - entry.stat(follow_symlinks=False).st_mtime > STALE_TEMP_SECONDS
                host, pid = match.group(1, 2)
                if old or (pid is not None and _writer_is_gone(host, int(pid))):
                    os.unlink(entry.path)
