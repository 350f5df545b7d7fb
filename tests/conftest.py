"""Suite-wide settings."""

from __future__ import annotations

import atexit
import os
import shutil
import tempfile

from hypothesis import settings

# `cairn up` leaves a pointer to its run file in a per-user folder; the suite's
# runs use their own, so a developer's `make run` and the tests never meet.
_RUNS = tempfile.mkdtemp(prefix="cairn-runs-")
os.environ["CAIRN_RUNS_DIR"] = _RUNS
atexit.register(shutil.rmtree, _RUNS, ignore_errors=True)

# CI replays the same examples every run (a red CI is then always
# reproducible); local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
