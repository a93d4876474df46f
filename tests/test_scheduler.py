"""The critical-path-first MultiProc: ranks, and the order it starts ready nodes in."""

from __future__ import annotations

import pytest

from qsmbids.workflows.scheduler import (
    EXPECTED_SECONDS,
    CriticalPathMultiProcPlugin,
    upward_ranks,
)


def test_upward_rank_is_the_longest_expected_path_to_the_end():
    #   a -> b -> d
    #   a -> c ------> d ;  c -> e
    successors = {"a": ["b", "c"], "b": ["d"], "c": ["d", "e"], "d": [], "e": []}
    cost = {"a": 1.0, "b": 10.0, "c": 2.0, "d": 3.0, "e": 20.0}.__getitem__
    ranks = upward_ranks(successors, ["a", "b", "c", "d", "e"], cost)
    assert ranks == {"e": 20.0, "d": 3.0, "c": 22.0, "b": 13.0, "a": 23.0}


def test_every_node_of_a_run_has_an_expected_time_and_register_leads(tmp_path):
    """A node missing from EXPECTED_SECONDS would be ranked as a 1 s node: the table
    must follow the workflow's node names. On a run's graph the registration outranks
    every other node that becomes ready with it."""
    from gre_dataset import new_dataset, write_run

    from qsmbids.bids.discovery import discover_runs
    from qsmbids.derivatives.naming import NameContext
    from qsmbids.sim.template import write_phantom_atlas
    from qsmbids.workflows.base import RunInputs, init_participant_wf
    from qsmbids.workflows.scheduler import expected_seconds
    from qsmbids.workflows.settings import Settings

    bids = new_dataset(tmp_path / "bids")
    write_run(bids, "sub-01/anat/sub-01", seed=1, voxel=2.0)
    atlas = write_phantom_atlas(tmp_path / "atlas", 4.0, contrast="magnitude")
    settings = Settings.from_preset("accurate", bids_dir=bids, output_dir=tmp_path / "o",
                                    work_dir=tmp_path / "w")
    run = discover_runs(bids).runs[0]
    wf = init_participant_wf(settings, [RunInputs(run, None, atlas.root, NameContext())])
    from nipype.pipeline.engine.utils import generate_expanded_graph

    graph = generate_expanded_graph(wf._create_flat_graph())  # what the plugin is given
    nodes = {n.name: n for n in graph.nodes()}
    assert set(nodes) <= set(EXPECTED_SECONDS), set(nodes) - set(EXPECTED_SECONDS)
    import networkx as nx

    ranks = upward_ranks({n: list(graph.successors(n)) for n in graph.nodes()},
                         list(nx.topological_sort(graph)), expected_seconds)
    by_name = {n.name: r for n, r in ranks.items()}
    assert by_name["register"] > by_name["field"] > by_name["relaxometry"]
    assert by_name["load"] == max(by_name.values())


def _identity(value):
    return value


@pytest.mark.parametrize("plugin", ["CriticalPathMultiProc", "MultiProc"])
def test_the_longest_branch_starts_first_when_one_slot_is_free(tmp_path, plugin):
    """After ``mask``, ``relaxometry`` (short) and ``register`` (long) are both ready and
    one slot is free: nipype's order starts relaxometry; ours starts register."""
    from nipype.interfaces.utility import Function
    from nipype.pipeline import engine as pe

    wf = pe.Workflow(name="order", base_dir=str(tmp_path))
    nodes = {}
    for name in ("mask", "relaxometry", "register", "sink"):
        nodes[name] = pe.Node(Function(input_names=["value"], output_names=["value"],
                                       function=_identity), name=name)
    nodes["mask"].inputs.value = 1
    wf.connect([(nodes["mask"], nodes["relaxometry"], [("value", "value")]),
                (nodes["mask"], nodes["register"], [("value", "value")]),
                (nodes["register"], nodes["sink"], [("value", "value")])])
    started: list[str] = []

    def callback(node, status):
        if status == "start":
            started.append(node.name)

    args = {"n_procs": 1, "status_callback": callback, "mp_context": "forkserver"}
    if plugin == "MultiProc":
        wf.run(plugin="MultiProc", plugin_args=args)
        assert started.index("relaxometry") < started.index("register")  # the problem
    else:
        wf.run(plugin=CriticalPathMultiProcPlugin(plugin_args=args))
        assert started.index("register") < started.index("relaxometry")
    # the order comes from the measured weights, not the default
    assert {"register", "relaxometry"} <= set(EXPECTED_SECONDS)
    assert EXPECTED_SECONDS["register"] > EXPECTED_SECONDS["relaxometry"]
