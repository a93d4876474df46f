"""MultiProc that submits the ready node on the longest remaining path first.

nipype's MultiProc submits the ready nodes in the graph's topological order. When two
cores free up after the brain mask, that order starts the R2* fit (1.7 s, needed only
by the writer at the end) before the atlas registration (28 s, the longest branch),
and the registration then waits for it. Here the ready nodes are taken by their
upward rank instead: the node's expected time plus the longest expected path from it
to the end of the graph (the list-scheduling priority of HEFT; Topcuoglu et al.,
IEEE TPDS 2002). Ties keep the topological order.

The expected times are relative weights measured per node name
(:data:`EXPECTED_SECONDS`); a node not listed weighs :data:`DEFAULT_SECONDS`.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Mapping

from nipype.pipeline.plugins.multiproc import MultiProcPlugin

#: seconds per node of a 1 mm, 4-echo run on 2 cores (``benchmarks/bench_pipeline.py``,
#: 2026-12-07, session 7; the veins node session 8, with its converged cubes); only
#: their relative sizes matter
EXPECTED_SECONDS: dict[str, float] = {
    "load": 3.6, "mask": 0.7, "relaxometry": 0.5, "field": 9.1, "bg_removal": 6.3,
    "inversion": 9.3, "reference": 0.1, "register": 25.0, "refine_on_chi": 6.8,
    "warp_to_template": 2.3, "regional_stats": 0.4, "venous_images": 3.0, "veins": 3.8,
    "sink": 2.4,
}
#: weight of a node without an entry in :data:`EXPECTED_SECONDS`, s
DEFAULT_SECONDS = 1.0


def upward_ranks(successors: Mapping[Hashable, list], order: list,
                 cost: Callable[[Hashable], float]) -> dict:
    """Each node's cost plus the largest rank among its successors.

    Parameters
    ----------
    successors
        Node -> the nodes that need it.
    order
        Every node, in a topological order (a node before its successors).
    cost
        Expected time of a node, s.

    Returns
    -------
    dict
        Node -> rank, s.
    """
    rank: dict = {}
    for node in reversed(order):
        rank[node] = cost(node) + max((rank[s] for s in successors[node]), default=0.0)
    return rank


def expected_seconds(node) -> float:
    """:data:`EXPECTED_SECONDS` of a nipype node, by its name."""
    return EXPECTED_SECONDS.get(getattr(node, "name", ""), DEFAULT_SECONDS)


class CriticalPathMultiProcPlugin(MultiProcPlugin):
    """nipype's MultiProc, ready nodes submitted by upward rank (longest path first).

    Takes MultiProc's ``plugin_args``. Pass an instance as ``workflow.run(plugin=...)``.
    """

    def _generate_dependency_list(self, graph):
        super()._generate_dependency_list(graph)
        ranks = upward_ranks({n: list(graph.successors(n)) for n in self.procs},
                             list(self.procs), expected_seconds)
        self._ranks = [ranks[node] for node in self.procs]

    def _sort_jobs(self, jobids, scheduler="tsort"):
        ranks = getattr(self, "_ranks", None)
        if ranks is None:
            return super()._sort_jobs(jobids, scheduler)
        return sorted(jobids, key=lambda job: -ranks[job])  # stable: ties keep tsort
