"""Write a file so that readers see the old one or the new one, never half of it (checkpoints, logs).

Plain Python, no torch: the twin's node writes its state logs with it at 100 Hz control rates.
"""
from __future__ import annotations

import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO


def atomic_replace(path: str | Path, write: Callable[[IO[bytes]], object], mode: int | None = None) -> Path:
    """Call ``write(f)`` on a temporary file beside ``path``, flush it to disk and rename it over
    ``path``; on any error the temporary file goes and ``path`` is untouched. ``mode``: the file's
    permissions (mkstemp's are 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f'.{path.name}.', suffix='.tmp', dir=path.parent)
    try:
        if mode is not None:
            os.fchmod(fd, mode)
        with os.fdopen(fd, 'wb') as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path
