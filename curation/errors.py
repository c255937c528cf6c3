"""Errors a stage raises for the user (the CLI prints them as one line, the app as st.error)."""


class StageError(Exception):
    pass
