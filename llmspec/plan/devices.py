"""The device graph: nodes, GPUs and the links between them, and where each rank sits.

Ranks are placed the way Megatron-LM and DeepSpeed's topology order them:
tensor-parallel rank fastest, then data-parallel, then pipeline stage
(``rank = tp + t·(dp + d·pp)``). With the tensor degree dividing the GPUs per
node, every tensor group is a run of consecutive ranks inside one node, which
is what keeps its per-layer all-reduces on NVLink (Narayanan et al. 2021,
takeaway #1: tensor parallelism up to the node size, pipeline across nodes).

Bandwidths are per GPU, per direction, in GB/s (1e9 bytes/s), taken from the
catalog (`Gpu.intra_node_gbps`, `Gpu.inter_node_gbps`) after any overrides in
the spec's `cluster.gpu` mapping.
"""

from __future__ import annotations

from dataclasses import dataclass

import networkx as nx

from llmspec.plan.types import Layout
from llmspec.spec.hardware import Gpu, get_gpu
from llmspec.units import GIB


@dataclass(frozen=True)
class Cluster:
    """The slice of the spec the cost model needs: how many GPUs, of what, linked how."""

    gpu: Gpu
    nodes: int
    gpus_per_node: int
    host_memory_bytes: int  # per node, available for offload

    @property
    def world_size(self) -> int:
        return self.nodes * self.gpus_per_node

    @property
    def intra_node_gbps(self) -> float:
        return self.gpu.intra_node_gbps

    @property
    def inter_node_gbps(self) -> float:
        return self.gpu.inter_node_gbps

    @classmethod
    def from_spec(cls, cluster_spec) -> Cluster:  # llmspec.spec.schema.ClusterSpec
        return cls(
            gpu=get_gpu(cluster_spec.gpu),
            nodes=cluster_spec.nodes,
            gpus_per_node=cluster_spec.gpus_per_node,
            host_memory_bytes=int(cluster_spec.host_memory_gib * GIB),
        )


# ----------------------------------------------------------------------------- placement
def rank_of(layout: Layout, *, tp: int, dp: int, pp: int) -> int:
    """Global rank of the process at (tensor, data, pipeline) coordinates."""
    return tp + layout.tensor * (dp + layout.data * pp)


def node_of(rank: int, gpus_per_node: int) -> int:
    return rank // gpus_per_node


def tensor_groups(layout: Layout) -> list[list[int]]:
    """Ranks of every tensor-parallel group."""
    return [
        [rank_of(layout, tp=t, dp=d, pp=p) for t in range(layout.tensor)]
        for p in range(layout.pipeline)
        for d in range(layout.data)
    ]


def data_groups(layout: Layout) -> list[list[int]]:
    """Ranks of every data-parallel group (same tensor rank and stage)."""
    return [
        [rank_of(layout, tp=t, dp=d, pp=p) for d in range(layout.data)]
        for p in range(layout.pipeline)
        for t in range(layout.tensor)
    ]


def stage_ranks(layout: Layout, stage: int) -> list[int]:
    """Every rank that runs pipeline stage `stage`."""
    return [
        rank_of(layout, tp=t, dp=d, pp=stage)
        for d in range(layout.data)
        for t in range(layout.tensor)
    ]


def group_spans_nodes(ranks: list[int], gpus_per_node: int) -> bool:
    return len({node_of(r, gpus_per_node) for r in ranks}) > 1


# ----------------------------------------------------------------------------- bandwidth
def group_gbps(group_size: int, stride: int, cluster: Cluster) -> float:
    """Per-GPU bandwidth a ring over `group_size` ranks `stride` apart gets.

    Inside one node: the NVLink-class link. Across nodes the network hop is
    the bottleneck, but NCCL runs one ring per NIC (channels), so a group with
    k members in each node drives k NICs at once: min(intra, k × per-GPU NIC).
    Each GPU has its own NIC, as on Selene (8 × HDR per 8-GPU node, Narayanan
    et al. 2021 §5) and the Llama 3 clusters.
    """
    if group_size <= 1:
        return float("inf")
    if group_in_node(group_size, stride, cluster):
        return cluster.intra_node_gbps
    per_node = max(1, min(group_size, cluster.gpus_per_node // stride)) if stride else 1
    return min(cluster.intra_node_gbps, cluster.inter_node_gbps * per_node)


def group_in_node(group_size: int, stride: int, cluster: Cluster) -> bool:
    return group_size * stride <= cluster.gpus_per_node


def tensor_gbps(layout: Layout, cluster: Cluster) -> float:
    return group_gbps(layout.tensor, 1, cluster)


def data_gbps(layout: Layout, cluster: Cluster) -> float:
    return group_gbps(layout.data, layout.tensor, cluster)


def pipeline_gbps(layout: Layout, cluster: Cluster) -> float:
    """Link between neighbouring stages: stage i+1 starts t·d ranks later."""
    if layout.pipeline <= 1:
        return float("inf")
    if layout.tensor * layout.data < cluster.gpus_per_node:
        return cluster.intra_node_gbps
    return cluster.inter_node_gbps


# ----------------------------------------------------------------------------- graph
def build_device_graph(cluster: Cluster) -> nx.Graph:
    """Nodes (hosts), GPUs, and links: NVLink-class inside a node, network between nodes.

    Node names: ``node{n}`` (kind=host) and ``gpu{r}`` (kind=gpu, global rank r).
    GPUs of one node are fully connected (NVSwitch-style), each GPU hangs off its
    host, and hosts connect to a ``network`` switch with the node's aggregate NIC
    bandwidth. Every edge carries ``gbps`` and ``kind``.
    """
    graph = nx.Graph(name=f"{cluster.nodes}x{cluster.gpus_per_node} {cluster.gpu.name}")
    g = cluster.gpus_per_node
    if cluster.nodes > 1:
        graph.add_node("network", kind="switch")
    for n in range(cluster.nodes):
        host = f"node{n}"
        graph.add_node(host, kind="host", host_memory_bytes=cluster.host_memory_bytes)
        if cluster.nodes > 1:
            graph.add_edge(host, "network", kind="network", gbps=cluster.inter_node_gbps * g)
        ranks = range(n * g, (n + 1) * g)
        for r in ranks:
            graph.add_node(
                f"gpu{r}",
                kind="gpu",
                node=n,
                local_rank=r - n * g,
                memory_bytes=cluster.gpu.memory_bytes,
            )
            graph.add_edge(f"gpu{r}", host, kind="pcie", gbps=PCIE_GBPS)
        for a in ranks:
            for b in ranks:
                if a < b:
                    graph.add_edge(
                        f"gpu{a}", f"gpu{b}", kind="nvlink", gbps=cluster.intra_node_gbps
                    )
    return graph


# PCI Express 4.0 ×16: 16 GT/s × 16 lanes, 128b/130b coding ≈ 31.5 GB/s per direction
# (PCI-SIG PCIe 4.0 base specification); the A100 datasheet lists "PCIe Gen4: 64 GB/s"
# (both directions). Used for offload transfers between a GPU and its host.
PCIE_GBPS = 31.5


def link_gbps(graph: nx.Graph, a: int, b: int) -> float:
    """Bandwidth between two ranks along the device graph (the narrowest edge on the path)."""
    if graph.has_edge(f"gpu{a}", f"gpu{b}"):
        return graph.edges[f"gpu{a}", f"gpu{b}"]["gbps"]
    path = nx.shortest_path(graph, f"gpu{a}", f"gpu{b}")
    hops = [graph.edges[u, v] for u, v in zip(path, path[1:], strict=False)]
    # Across nodes the NIC of each GPU is the limit, not the PCIe hop to the host.
    network = [h["gbps"] for h in hops if h["kind"] == "network"]
    per_gpu = graph.nodes[f"gpu{a}"]
    n_local = sum(1 for _, d in graph.nodes(data=True) if d.get("node") == per_gpu["node"])
    return min(network) / max(1, n_local) if network else min(h["gbps"] for h in hops)
