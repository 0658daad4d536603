"""Training checkpoints: groups of arrays plus a JSON header, written atomically.

A checkpoint is an .npz archive (read back with allow_pickle=False: nothing in it can run
code) holding each group of arrays as `<group>_<i>` and the header as one JSON string. It is
written to a temporary file beside the target, synced, then renamed over it with os.replace,
so a run killed at any moment leaves either the previous checkpoint or the new one, never half
of one.
"""

from __future__ import annotations

import json
import os
import zipfile
from pathlib import Path

import numpy as np

from egide.core.errors import InputError

HEADER = "header_json"


def write_checkpoint(path, groups: dict[str, list[np.ndarray]], header: dict) -> Path:
    """Write `groups` (name -> list of arrays) and the JSON-able `header` to `path` atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    arrays = {f"{name}_{i}": np.asarray(a) for name, items in groups.items() for i, a in enumerate(items)}
    arrays[HEADER] = np.array(json.dumps({**header, "groups": {k: len(v) for k, v in groups.items()}}))
    tmp = path.with_name(f".{path.name}.{os.getpid()}.partial")
    try:
        with open(tmp, "wb") as handle:  # a file handle: np.savez would append ".npz" to a name
            np.savez(handle, **arrays)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()
    return path


def read_checkpoint(path) -> tuple[dict[str, list[np.ndarray]], dict]:
    """Read back what write_checkpoint wrote: (groups, header)."""
    path = Path(path)
    try:
        with np.load(path, allow_pickle=False) as archive:
            header = json.loads(str(archive[HEADER]))
            groups = {
                name: [archive[f"{name}_{i}"] for i in range(count)]
                for name, count in header.pop("groups").items()
            }
    except (OSError, ValueError, KeyError, zipfile.BadZipFile) as exc:
        raise InputError(
            f"{path}: not a readable training checkpoint ({exc}); delete it to start the "
            "training over"
        ) from None
    return groups, header
