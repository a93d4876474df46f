"""Process exit codes (BSD ``sysexits.h`` values where one fits)."""

from enum import IntEnum


class ExitCode(IntEnum):
    """Exit status of the ``qsmbids`` command."""

    OK = 0
    #: some runs failed; the others completed (see the summary printed at the end)
    RUNS_FAILED = 1
    #: the command line itself is wrong (unknown flag, bad value)
    USAGE = 64
    #: an input path is missing or is not what it must be
    NO_INPUT = 66
    #: a capability that is not available in this build
    UNAVAILABLE = 69
    #: an unexpected internal error (a bug: please report it)
    SOFTWARE = 70
    #: the output location cannot be created or written
    CANT_CREATE = 73
    #: stopped by Ctrl-C (SIGINT), as shells report it (128 + 2)
    INTERRUPTED = 130
    #: stopped by SIGTERM (a scheduler cancelling the job or its time running out,
    #: ``docker stop``), as shells report it (128 + 15)
    TERMINATED = 143
