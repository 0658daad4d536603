"""TensorFlow without its start-up chatter, for the command line.

Importing TensorFlow writes to the process's stderr from C++ (absl's "All log messages before
absl::InitializeLog()", the CUDA stub's "Could not find cuda drivers", oneDNN notices), below
Python and regardless of TF_CPP_MIN_LOG_LEVEL. A user who ran `egide plugins --json 2>&1`
asked for JSON: the import runs with file descriptor 2 pointed at a temporary file, which is
shown only if the import fails.
"""

from __future__ import annotations

import os
import sys
import tempfile


def import_tensorflow_quietly() -> None:
    """Import tensorflow and keras once, keeping what they print at start-up off stderr."""
    if "tensorflow" in sys.modules:
        return
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as sink:
        os.dup2(sink.fileno(), 2)
        try:
            import keras  # noqa: F401
            import tensorflow  # noqa: F401
        except BaseException:
            os.dup2(saved, 2)
            sink.seek(0)
            sys.stderr.write(sink.read().decode("utf-8", errors="replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
