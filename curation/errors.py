"""The errors meant for the user: their message says what is wrong, naming file, line, field or id.

Every such error derives from `SiftError`, and each front end translates it in one place: the CLI
(`workbench.cli.main`) prints it as one line on stderr and exits 1; the app (`app_pages.common.run`
and `attempt`) shows it with `st.error`. Anything else is a bug and keeps its traceback.
"""


class SiftError(Exception):
    """Base of the errors whose message is meant for the user."""


class StageError(SiftError):
    """A stage cannot run as configured (bad config, unknown model, failed endpoint…)."""
