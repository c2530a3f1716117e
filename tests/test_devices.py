"""Device graph and rank placement: tensor groups never leave a node."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from llmspec.plan import devices
from llmspec.plan.types import Layout
from llmspec.rules import layout as rules
from llmspec.spec.hardware import CATALOG
from llmspec.spec.schema import ClusterSpec


def cluster(nodes: int, gpus_per_node: int, gpu: str = "a100-80gb") -> devices.Cluster:
    return devices.Cluster(CATALOG[gpu], nodes, gpus_per_node, 1024**4)


@settings(max_examples=80, deadline=None)
@given(
    nodes=st.integers(1, 6),
    per_node=st.sampled_from([1, 2, 4, 8, 16]),
    data=st.data(),
)
def test_tensor_groups_never_span_nodes(nodes, per_node, data):
    world = nodes * per_node
    tensor = data.draw(st.sampled_from([t for t in range(1, per_node + 1) if per_node % t == 0]))
    rest = world // tensor
    pipeline = data.draw(st.sampled_from([p for p in range(1, rest + 1) if rest % p == 0]))
    layout = Layout(data=rest // pipeline, tensor=tensor, pipeline=pipeline)
    assert layout.world_size == world
    ranks = sorted(r for g in devices.tensor_groups(layout) for r in g)
    assert ranks == list(range(world))  # every rank in exactly one tensor group
    for group in devices.tensor_groups(layout):
        assert not devices.group_spans_nodes(group, per_node)
    assert sorted(r for g in devices.data_groups(layout) for r in g) == list(range(world))


def test_tensor_fits_in_node():
    assert rules.tensor_fits_node(8, 8) is None
    assert rules.tensor_fits_node(4, 8) is None
    assert "must not straddle nodes" in rules.tensor_fits_node(3, 8)
    assert "exceeds cluster.gpus_per_node" in rules.tensor_fits_node(16, 8)


def test_group_bandwidths_follow_placement():
    c = cluster(4, 8)
    # t=2, d=4: one data group spans 8 consecutive ranks = one node → NVLink.
    inside = Layout(data=4, tensor=2, pipeline=4)
    assert devices.data_gbps(inside, c) == c.intra_node_gbps
    assert devices.pipeline_gbps(inside, c) == c.inter_node_gbps  # next stage on the next node
    # t=8, d=4: data groups stride across nodes → network.
    across = Layout(data=4, tensor=8, pipeline=1)
    assert devices.tensor_gbps(across, c) == c.intra_node_gbps
    assert devices.data_gbps(across, c) == c.inter_node_gbps
    small = Layout(data=2, tensor=1, pipeline=4)
    assert devices.pipeline_gbps(small, c) == c.intra_node_gbps


def test_device_graph_links():
    c = cluster(2, 4)
    graph = devices.build_device_graph(c)
    gpus = [n for n, d in graph.nodes(data=True) if d["kind"] == "gpu"]
    assert len(gpus) == 8
    assert devices.link_gbps(graph, 0, 3) == c.intra_node_gbps
    # Across nodes each GPU gets its own share of the node's network bandwidth.
    assert devices.link_gbps(graph, 0, 5) == c.inter_node_gbps
    assert graph.edges["node0", "network"]["gbps"] == c.inter_node_gbps * 4


def test_cluster_overrides_come_from_the_spec():
    spec = ClusterSpec.model_validate(
        {"gpu": {"name": "h100-sxm", "intra_node_gbps": 100, "inter_node_gbps": 12.5}, "nodes": 2}
    )
    c = devices.Cluster.from_spec(spec)
    assert (c.intra_node_gbps, c.inter_node_gbps, c.world_size) == (100.0, 12.5, 16)
    assert c.gpu.peak_tflops == CATALOG["h100-sxm"].peak_tflops


def test_stage_ranks_are_contiguous_per_stage():
    layout = Layout(data=3, tensor=2, pipeline=4)
    assert devices.stage_ranks(layout, 2) == list(range(12, 18))
