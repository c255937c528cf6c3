"""The progress callbacks that stages and services take (the CLI draws a bar, the app a st.progress)."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeAlias

Progress: TypeAlias = Callable[[int, int], None]
"""Called with (done, total)."""

StepProgress: TypeAlias = Callable[[str, int, int], None]
"""Called with (step, done, total), for a stage made of named sub-steps (dedup)."""
