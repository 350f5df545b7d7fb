"""Suite-wide settings."""

from __future__ import annotations

import os

from hypothesis import settings

# CI replays the same examples every run (a red CI is then always
# reproducible); local runs keep exploring new ones.
settings.register_profile("ci", derandomize=True, print_blob=True)
if os.environ.get("CI"):
    settings.load_profile("ci")
