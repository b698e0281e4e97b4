"""Errors a user can cause and fix. The CLI prints them as one line, without a traceback."""


class AedetectError(Exception):
    """Base class for problems with the user's input, files or settings."""


class DataError(AedetectError, ValueError):
    """A data file or frame does not match what was expected (names file, column, row, value)."""


class ArtifactError(AedetectError):
    """A model folder is missing, incomplete, altered or of an unknown format."""


class OutputError(DataError, ArtifactError):
    """An output that must not or cannot be written there: it would destroy an input or a folder
    aedetect did not write, or the system refused the write (names the path and the reason).
    Both a DataError and an ArtifactError: what output paths and folder writers raised before."""
