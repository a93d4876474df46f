"""Memory readings shared by the benchmarks (Linux ``/proc``; MiB)."""

from __future__ import annotations

import os
import resource


def peak_mib(*, children: bool = False) -> float:
    """Peak resident memory of this process, MiB (``VmHWM``).

    Unlike ``ru_maxrss``, ``VmHWM`` is not inherited from the parent through fork/exec,
    so a case run in its own process reports its own peak. ``children``: the larger of
    that and the peak of any waited-for child process (e.g. ANTs run in a child).
    """
    own = None
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmHWM:"):
                own = int(line.split()[1]) / 1024
                break
    if own is None:  # no VmHWM line: ru_maxrss (KiB on Linux)
        own = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    if children:
        return max(own, resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024)
    return own


def rss_mib() -> float:
    """Current resident memory of this process, MiB."""
    with open("/proc/self/statm") as handle:
        return int(handle.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20
