"""Cost model parts against numbers worked out by hand or from the papers' formulas."""

from __future__ import annotations

import math

import pytest

from llmspec.graph.dims import ModelDims
from llmspec.plan import cost


def gpt(h: int, layers: int, heads: int, vocab: int = 51200, seq: int = 2048) -> ModelDims:
    """A Megatron GPT of Narayanan et al. 2021 Table 1 (learned positions, tied head)."""
    return ModelDims(
        arch="gpt",
        vocab_size=vocab,
        d_model=h,
        n_layers=layers,
        n_heads=heads,
        n_kv_heads=heads,
        d_ff=4 * h,
        max_seq_len=seq,
        seq_len=seq,
        position="learned",
        norm="layernorm",
        activation="gelu",
        bias=True,
        tie_embeddings=True,
        type_vocab_size=0,
        dropout=0.0,
        attention_dropout=0.0,
        drop_path=0.0,
        objective="causal_lm",
    )


def test_ring_allreduce_known_time():
    # 1 GB over 8 ranks at 100 GB/s: each link carries 2·7/8 GB → 17.5 ms.
    assert cost.ring_allreduce_s(1e9, 8, 100.0) == pytest.approx(0.0175)
    assert cost.ring_allreduce_s(1e9, 1, 100.0) == 0.0


def test_collective_latency_from_nccls_cost_model():
    # NCCL tuning.cc, ring, Simple: base 8.4 µs + 3.4 µs per NVLink step, 14 µs per network step.
    # Ring all-reduce over 8 GPUs on NVLink: 8.4 µs + 2·7 steps × 3.4 µs = 56 µs.
    assert cost.ring_latency_s(14, True) == pytest.approx(56e-6)
    assert cost.ring_latency_s(14, False) == pytest.approx(8.4e-6 + 14 * 14.0e-6)
    assert cost.ring_latency_s(0, True) == 0.0
    # An all-gather over 4 nodes × 8 GPUs: 31 steps, 3 of them cross a node boundary.
    assert cost.nccl_ring_latency_s("all_gather", 32, 4) == pytest.approx(
        8.4e-6 + 28 * 3.4e-6 + 3 * 14.0e-6
    )
    assert cost.nccl_ring_latency_s("all_reduce", 32, 4) == pytest.approx(
        8.4e-6 + 56 * 3.4e-6 + 6 * 14.0e-6
    )
    # Ring latency grows with the rank count; the tree's with log2(nodes).
    assert cost.nccl_ring_latency_s("all_gather", 1024, 128) > 8 * cost.nccl_ring_latency_s(
        "all_gather", 128, 16
    )
    assert cost.nccl_tree_latency_s(1024, 128) < cost.nccl_ring_latency_s("all_reduce", 1024, 128)


def test_collective_bus_bandwidth_rises_with_message_size():
    # The α-β model behind the nccl-tests curves: algorithm bandwidth = bytes / time rises
    # towards the link's bandwidth as the message grows.
    def algbw(nbytes):
        return nbytes / cost.collective_s("all_gather", nbytes, 64, 8, 180.0) / 1e9

    small, mid, large = algbw(1e5), algbw(1e7), algbw(1e10)
    assert small < mid < large < 180.0 * 64 / 63
    assert large > 0.95 * 180.0
    # Many small calls cost more than one large one moving the same bytes.
    one = cost.collective_s("reduce_scatter", 1e9, 64, 8, 180.0, calls=1)
    many = cost.collective_s("reduce_scatter", 1e9, 64, 8, 180.0, calls=100)
    assert many - one == pytest.approx(99 * cost.nccl_ring_latency_s("reduce_scatter", 64, 8))


def test_reduce_scatter_plus_all_gather_is_an_all_reduce():
    nbytes, n, bw = 4e9, 16, 50.0
    split = cost.ring_reduce_scatter_s(nbytes, n, bw) + cost.ring_all_gather_s(nbytes, n, bw)
    assert split == pytest.approx(cost.ring_allreduce_s(nbytes, n, bw))


def test_gradient_reduction_follows_deepspeeds_schedule():
    # 1e9 parameters, 16-bit gradients, 8 ranks in one node at 50 GB/s.
    n, params = 8, 1e9
    z0 = cost.gradient_sync_s(0, params, 2, n, 1, 50.0)
    z1 = cost.gradient_sync_s(1, params, 2, n, 1, 50.0)
    z2 = cost.gradient_sync_s(2, params, 2, n, 1, 50.0)
    z3 = cost.gradient_sync_s(3, params, 2, n, 1, 50.0)
    allreduce = cost.collective_s("all_reduce", 2e9, n, 1, 50.0, calls=2)  # 5e8-element buckets
    gather = cost.collective_s("all_gather", 2e9, n, 1, 50.0, calls=2)
    # Stages 0 and 1: once per step, at the accumulation boundary; 1 adds the parameter gather.
    assert z0 == (0.0, pytest.approx(allreduce))
    assert z1 == (0.0, pytest.approx(allreduce + gather))
    # Stage 2: the all-reduce every micro-batch, the gather once per step.
    assert z2 == (pytest.approx(allreduce), pytest.approx(gather))
    # Stage 3: a reduce-scatter every micro-batch, half an all-reduce's bytes.
    rs = cost.collective_s("reduce_scatter", 2e9, n, 1, 50.0, calls=2)
    assert z3 == (pytest.approx(rs), 0.0)
    assert cost.gradient_sync_s(3, params, 2, 1, 1, 50.0) == (0.0, 0.0)


def test_zero3_gathers_one_call_per_module_or_per_prefetch_bucket():
    bucket = 50_000_000
    # 96 blocks × 6 linears of ~300M parameters each: one call per module.
    assert cost.zero3_gather_calls(96 * 6, 96 * 1.8e9, bucket) == 96 * 6
    # 24 blocks of 1M-parameter linears: prefetch coalesces them into bucket-sized calls.
    assert cost.zero3_gather_calls(24 * 6, 24 * 6e6, bucket) == 3
    assert cost.zero3_gather_calls(0, 0, bucket) == 0


def test_a_list_of_small_collectives_costs_more_than_one_large_at_equal_bytes():
    # Each call pays NCCL's latency (α), its bytes the ring's bus bandwidth (β): 100 gathers
    # of 10 MB over 64 ranks on 8 nodes cost 99 α more than one gather of 1 GB.
    many = cost.collectives_s("all_gather", [(1e7, 100)], 64, 8, 180.0)
    one = cost.collectives_s("all_gather", [(1e9, 1)], 64, 8, 180.0)
    alpha = cost.nccl_ring_latency_s("all_gather", 64, 8)
    assert many - one == pytest.approx(99 * alpha)
    assert one == pytest.approx(cost.collective_s("all_gather", 1e9, 64, 8, 180.0))
    # An all-reduce picks ring or tree per message (NCCL's tuner does, per call): a list of
    # mixed sizes costs the sum of each size's best, never more than all-ring.
    mixed = [(1e4, 10), (1e9, 2)]
    per_message = cost.collectives_s("all_reduce", mixed, 1024, 128, 180.0)
    assert per_message == pytest.approx(
        10 * cost.collective_s("all_reduce", 1e4, 1024, 128, 180.0)
        + 2 * cost.collective_s("all_reduce", 1e9, 1024, 128, 180.0)
    )
    ring_only = sum(
        n * (2 * 1023 / 1024 * b / 180e9 + cost.nccl_ring_latency_s("all_reduce", 1024, 128))
        for b, n in mixed
    )
    assert per_message < ring_only


def test_zero3_messages_follow_deepspeeds_fetch_prefetch_and_release():
    bucket, persist, reuse = 50_000_000, 100_000, 1_000_000_000
    # GPT-3 175B (Narayanan et al. 2021): every linear (≥ 1.5e8 elements) exceeds the
    # prefetch bucket, so each is its own call; norms and biases (≤ 49152) stay gathered.
    dims = gpt(12288, 96, 96)
    z = cost.zero3_messages(dims, 1, 96, True, True, bucket, persist, reuse)
    h, table, positions = 12288, 51200 * 12288, 2048 * 12288
    linears = [3 * h * h / 3] * 4 + [4 * h * h] * 2  # q, k, v, o; fc1, fc2
    assert sorted(linears) == sorted(n * k for n, k in cost._linear_shapes(dims, 1))
    # The token table alone (the first module's own fetch), positions with block 0's q, the
    # other 575 linears one call each, and the tied head's table again: the model is larger
    # than the reuse distance, so the table was released after the embedding.
    assert z.first == table
    assert cost.Zero3Messages.calls(z.forward) == 1 + 1 + 575 + 1
    assert cost.Zero3Messages.elements(z.forward) == pytest.approx(
        2 * table + positions + 96 * sum(linears)
    )
    # The backward gathers everything the forward released: all but the head's table (used
    # last, reused first), once each even under full recompute (kept for its own backward).
    assert cost.Zero3Messages.elements(z.backward) == pytest.approx(
        table + positions + 96 * sum(linears)
    )
    # Gradients: one per parameter tensor, in ≤ 5e8-element buckets; the fc linears (6e8)
    # exceed a bucket and go alone.
    grads = cost.Zero3Messages.elements(z.grad_buckets)
    block = sum(linears) + 4 * h + 3 * h + h + 4 * h + h  # + two LayerNorms and the biases
    assert grads == pytest.approx(table + positions + 96 * block + 2 * h)
    # The last gradient of the backward is the token table's (6.3e8 elements, a bucket alone),
    # reduced after the backward's last op.
    assert z.grad_tail == table
    assert all(e <= 5e8 or e in (table, 4 * h * h) for e, _ in z.grad_buckets)
    # GPT-2 small: the whole model is under the reuse distance — nothing is gathered twice
    # (the tied head finds the table still gathered; the backward finds every block) — and
    # small linears are coalesced into bucket-sized prefetches.
    small = gpt(768, 12, 12)
    z2 = cost.zero3_messages(small, 1, 12, True, True, bucket, persist, reuse)
    params = sum(x for x in cost.stage_param_numels(small, 1, 12, True, True)[0][:-1])
    fetched = sum(
        x for x in cost.stage_param_numels(small, 1, 12, True, True)[0][:-1] if x >= persist
    )
    assert z2.backward == ()
    assert cost.Zero3Messages.elements(z2.forward) == pytest.approx(fetched)
    assert cost.Zero3Messages.calls(z2.forward) == 1 + math.ceil((fetched - z2.first) / bucket)
    assert z2.grad_buckets == ((params, 1),) and z2.grad_tail == params
    # A smaller prefetch bucket means more, smaller calls.
    finer = cost.zero3_messages(small, 1, 12, True, True, bucket // 10, persist, reuse)
    assert cost.Zero3Messages.calls(finer.forward) > cost.Zero3Messages.calls(z2.forward)


def _zero3_stage(dims: ModelDims, flops: float) -> cost.StageWork:
    z = cost.zero3_messages(dims, 1, dims.n_layers, True, True)
    params = sum(cost.stage_param_numels(dims, 1, dims.n_layers, True, True)[0][:-1])
    return cost.StageWork(dims.n_layers, flops, flops, params, zero3=z)


def test_zero3_first_fetch_and_last_gradient_bucket_cannot_hide_behind_compute():
    # A stage whose compute is far longer than all its collectives: everything hides except
    # the forward's first fetch and the gradient bucket reduced after the backward's last op,
    # once per micro-batch.
    dims = gpt(768, 12, 12)
    stage = _zero3_stage(dims, 1e13)
    z = stage.zero3
    links = _links(data_gbps=22.5, data_nodes=1)
    head = cost.collective_s("all_gather", z.first * 2, 8, 1, 22.5)
    tail = cost.collective_s("reduce_scatter", z.grad_tail * 2, 8, 1, 22.5)
    for m in (1, 4):
        t = cost.step_time((stage,), zero_stage=3, **_dp_kw(links=links, micro_batches=m))
        assert t.zero3_gather == pytest.approx(m * head)
        assert t.data_parallel == pytest.approx(m * tail)
    # Without the messages (the old single-collective view) nothing would show.
    bare = cost.step_time(
        (cost.StageWork(12, 1e13, 1e13, stage.params_per_rank, modules=74),),
        zero_stage=3,
        **_dp_kw(links=links),
    )
    assert bare.zero3_gather == bare.data_parallel == 0.0


def test_zero3_reduce_scatters_scale_with_gradient_accumulation():
    # DeepSpeed's stage 3 reduce-scatters every backward (`stage3.py` gradient hooks, epilogue
    # per micro-step): on a slow network, nothing hidden, m micro-batches pay m times.
    dims = gpt(2048, 24, 16)
    stage = _zero3_stage(dims, 1e9)
    slow = _links(data_gbps=0.5)
    one = cost.step_time((stage,), zero_stage=3, **_dp_kw(links=slow, micro_batches=1))
    eight = cost.step_time((stage,), zero_stage=3, **_dp_kw(links=slow, micro_batches=8))
    rs = cost.collectives_s(
        "reduce_scatter", [(e * 2, n) for e, n in stage.zero3.grad_buckets], 8, 1, 0.5
    )
    assert one.data_parallel == pytest.approx(rs)
    assert eight.data_parallel == pytest.approx(8 * rs)
    assert eight.zero3_gather == pytest.approx(8 * one.zero3_gather)
    # ZeRO 1 reduces once per step whatever the accumulation.
    z1 = [
        cost.step_time((stage,), zero_stage=1, **_dp_kw(links=slow, micro_batches=m))
        for m in (1, 8)
    ]
    assert z1[0].data_parallel == pytest.approx(z1[1].data_parallel)


def test_pipeline_bubble_fraction_known():
    assert cost.pipeline_bubble_fraction(8, 64) == pytest.approx(7 / 64)
    ideal, bubble = cost.one_f_one_b_s(0.1, 4, 8)
    assert ideal == pytest.approx(0.8)
    assert bubble == pytest.approx(0.3)  # 3 fill/drain slots of 0.1 s
    assert cost.pipeline_bubble_fraction(1, 5) == 0.0


def test_tensor_parallel_collectives_per_block():
    # b=1, s=2048, h=12288, bf16: 50.3 MB per all-reduce; 4 per block (2 fwd + 2 bwd), 6 with
    # full recompute; t=8 on 300 GB/s.
    one = cost.ring_allreduce_s(1 * 2048 * 12288 * 2, 8, 300.0)
    assert cost.tensor_parallel_s_per_block(1, 2048, 12288, 2, 8, 300.0, False) == pytest.approx(
        4 * one
    )
    assert cost.tensor_parallel_s_per_block(1, 2048, 12288, 2, 8, 300.0, True) == pytest.approx(
        6 * one
    )
    assert cost.tensor_parallel_s_per_block(1, 2048, 12288, 2, 1, 300.0, True) == 0.0


def test_compute_time_from_flops():
    assert cost.compute_s(312e12, 312.0, 0.5) == pytest.approx(2.0)


@pytest.mark.parametrize(
    ("h", "layers", "heads"),
    [(2304, 24, 24), (12288, 96, 96), (25600, 128, 160)],
)
def test_flops_match_the_papers_formulas(h, layers, heads):
    """Per-token FLOPs times B·s equal Narayanan Eq. 3 (full recompute) and Korthikanti Eq. 7."""
    dims = gpt(h, layers, heads)
    s, v, batch = 2048, 51200, 512
    tokens = batch * s
    eq3 = 96 * batch * s * layers * h**2 * (1 + s / (6 * h) + v / (16 * layers * h))
    eq7 = 72 * batch * layers * s * h**2 * (1 + s / (6 * h) + v / (12 * h * layers))
    full = layers * cost.block_flops(dims, "full")[1] + cost.head_flops(dims)
    model = cost.model_flops_per_token(dims)
    assert math.isclose(full * tokens, eq3, rel_tol=1e-12)
    assert math.isclose(model * tokens, eq7, rel_tol=1e-12)


def test_selective_recompute_replays_the_attention_core_only():
    dims = gpt(4096, 32, 32)
    model, hardware = cost.block_flops(dims, "selective")
    assert hardware - model == pytest.approx(4 * dims.seq_len * dims.d_model)  # QKᵀ + scores·V


def _links(**kw) -> cost.Links:
    base = dict(
        tensor_gbps=195.0,
        data_gbps=22.5,
        pipeline_gbps=22.5,
        hbm_gbps=2039.0,
        host_gbps=31.5,
        gpus_per_node=8,
    )
    return cost.Links(**{**base, **kw})


def _stage(blocks: int, flops_per_block: float, params: float) -> cost.StageWork:
    return cost.StageWork(blocks, blocks * flops_per_block, blocks * flops_per_block, params)


def test_step_time_single_gpu_is_compute_plus_optimizer():
    stages = (_stage(10, 1e9, 1e8),)
    t = cost.step_time(
        stages,
        micro_batch=4,
        micro_batches=2,
        seq_len=1000,
        d_model=1024,
        tensor=1,
        data=1,
        zero_stage=0,
        recompute="none",
        sequence_parallel=False,
        offload_optimizer="none",
        offload_params="none",
        act_bytes=2,
        grad_bytes=2,
        peak_tflops=100.0,
        links=_links(),
        efficiency=0.5,
    )
    # 10 blocks × 1 GFLOP/token × 4000 tokens × 2 micro-batches at 50 TFLOP/s.
    assert t.compute == pytest.approx(10 * 1e9 * 4000 * 2 / 50e12)
    assert t.optimizer == pytest.approx(1e8 * cost.ADAM_BYTES_PER_PARAM / 2039e9)
    assert t.bubble == t.tensor_parallel == t.data_parallel == t.pipeline_p2p == 0.0
    assert t.total == pytest.approx(t.compute + t.optimizer)


def test_step_time_pipeline_is_paced_by_the_slowest_stage():
    stages = (_stage(3, 1e9, 1e8), _stage(5, 1e9, 1e8))
    kw = dict(
        micro_batch=1,
        micro_batches=8,
        seq_len=1000,
        d_model=1024,
        tensor=1,
        data=1,
        zero_stage=0,
        recompute="none",
        sequence_parallel=False,
        offload_optimizer="none",
        offload_params="none",
        act_bytes=2,
        grad_bytes=2,
        peak_tflops=100.0,
        efficiency=0.5,
    )
    t = cost.step_time(stages, links=_links(pipeline_gbps=float("inf")), **kw)
    compute = 5 * 1e9 * 1000 / 50e12  # the 5-block stage, per micro-batch
    send = cost.ring_latency_s(1, True)  # latency only: the link is infinitely fast
    assert t.compute == pytest.approx(8 * compute)
    assert t.pipeline_p2p == pytest.approx(8 * 2 * send)
    # (p−1)/m of the ideal = 1 slot of compute; the sends are all in pipeline_p2p (2 stages:
    # DeepSpeed's schedule puts 2m transfers on the critical path, `pipeline_transfers`)
    assert t.bubble == pytest.approx(compute)
    assert t.stage_imbalance == pytest.approx(5 / 4 - 1)
    slow_link = cost.step_time(stages, links=_links(pipeline_gbps=1.0), **kw)
    assert slow_link.pipeline_p2p == pytest.approx(8 * 2 * (1000 * 1024 * 2 / 1e9 + send))


def _dp_kw(**over):
    kw = dict(
        micro_batch=1,
        micro_batches=1,
        seq_len=1000,
        d_model=1024,
        tensor=1,
        data=8,
        recompute="none",
        sequence_parallel=False,
        offload_optimizer="none",
        offload_params="none",
        act_bytes=2,
        grad_bytes=2,
        peak_tflops=100.0,
        links=_links(),
        efficiency=0.5,
    )
    kw.update(over)
    return kw


def test_gradient_sync_overlaps_only_where_deepspeed_overlaps_it():
    stages = (_stage(10, 1e9, 1e9),)
    z0 = cost.step_time(stages, zero_stage=0, **_dp_kw())
    z2 = cost.step_time(stages, zero_stage=2, **_dp_kw())
    z3 = cost.step_time(stages, zero_stage=3, **_dp_kw())
    sync0 = sum(cost.gradient_sync_s(0, 1e9, 2, 8, 1, 22.5))
    sync2 = sum(cost.gradient_sync_s(2, 1e9, 2, 8, 1, 22.5))
    # ZeRO 0 and 2 (overlap_comm off in the generated ds_config): fully exposed.
    assert z0.data_parallel == pytest.approx(sync0)
    assert z2.data_parallel == pytest.approx(sync2) and sync2 > sync0
    # ZeRO 3 (overlap_comm on): the reduce-scatter shares the backward with the gathers.
    rs, _ = cost.gradient_sync_s(3, 1e9, 2, 8, 1, 22.5)
    assert z3.data_parallel < rs


def test_reductions_per_step_equal_micro_batches_at_stages_2_and_3():
    stages = (_stage(10, 1e9, 1e9),)
    for zero, every in ((0, False), (1, False), (2, True)):
        one = cost.step_time(stages, zero_stage=zero, **_dp_kw(micro_batches=1))
        four = cost.step_time(stages, zero_stage=zero, **_dp_kw(micro_batches=4))
        per_mb, per_step = cost.gradient_sync_s(zero, 1e9, 2, 8, 1, 22.5)
        assert four.data_parallel == pytest.approx(4 * per_mb + per_step)
        assert (four.data_parallel > 2 * one.data_parallel) == every
    # Stage 3 on a slow network, nothing hidden: 4 micro-batches pay 4 reduce-scatters.
    slow = _links(data_gbps=0.5)
    one = cost.step_time(stages, zero_stage=3, **_dp_kw(links=slow, micro_batches=1))
    four = cost.step_time(stages, zero_stage=3, **_dp_kw(links=slow, micro_batches=4))
    assert four.data_parallel == pytest.approx(4 * one.data_parallel)
    assert four.zero3_gather == pytest.approx(4 * one.zero3_gather)


def test_zero3_step_time_grows_with_data_parallel_degree_at_fixed_per_gpu_batch():
    # Narayanan et al. 2021 Table 2: ZeRO-3 175B on 384 → 1536 A100s; same work per GPU,
    # per-GPU gather volume fixed, but every all-gather ring has more ranks (more α).
    from llmspec.plan import devices, search
    from llmspec.plan.types import Layout
    from llmspec.spec.hardware import CATALOG

    def step(nodes):
        problem = search.SearchProblem(
            dims=gpt(12288, 96, 96),
            cluster=devices.Cluster(CATALOG["a100-80gb"], nodes, 8, 1 << 40),
            precision="bf16",
            global_batch=nodes * 8,
        )
        layout = Layout(
            data=nodes * 8,
            zero_stage=3,
            micro_batch_size=1,
            grad_accum_steps=1,
            activation_checkpointing="full",
        )
        return search.evaluate(problem, layout).time

    t48, t96, t192 = step(48), step(96), step(192)
    assert t48.compute == pytest.approx(t192.compute)
    assert t48.total < t96.total < t192.total
    assert t48.zero3_gather + t48.data_parallel < t192.zero3_gather + t192.data_parallel


def test_offload_adds_host_step_and_transfers():
    stages = (_stage(10, 1e9, 1e9),)
    kw = dict(
        micro_batch=1,
        micro_batches=1,
        seq_len=1000,
        d_model=1024,
        tensor=1,
        data=1,
        zero_stage=1,
        recompute="none",
        sequence_parallel=False,
        offload_params="none",
        act_bytes=2,
        grad_bytes=2,
        peak_tflops=100.0,
        links=_links(),
        efficiency=0.5,
    )
    on_gpu = cost.step_time(stages, offload_optimizer="none", **kw)
    on_cpu = cost.step_time(stages, offload_optimizer="cpu", **kw)
    assert on_cpu.optimizer == pytest.approx(cost.cpu_optimizer_s(1e9, 8))
    assert on_cpu.optimizer > on_gpu.optimizer
    assert on_cpu.offload >= 2e9 / 31.5e9  # the 16-bit parameters come back over PCIe


def test_elementwise_traffic_worked_example():
    # h=1024, d_ff=4096, 16 heads, s=2048, no tensor parallel, 16-bit, flash attention:
    # forward = norms 8h + residual adds 14h + GELU 4·d_ff + attention core 2·(2h + 2h)
    #         = 22528 + 16384 + 8192 = 47104 bytes per token; training = 3× forward.
    dims = gpt(1024, 4, 16)
    kw = dict(tensor=1, sequence_parallel=False, act_bytes=2)
    flash = cost.elementwise_bytes_per_token(dims, attention_kernel="flash", recompute="none", **kw)
    assert flash == 3 * 47104
    full = cost.elementwise_bytes_per_token(dims, attention_kernel="flash", recompute="full", **kw)
    assert full == 4 * 47104
    # Unfused attention writes the s×s scores and reads/writes them in the softmax: 6·a·s bytes
    # per forward instead of the flash kernel's q, k, v, o (no attention dropout here).
    unfused = cost.elementwise_bytes_per_token(
        dims, attention_kernel="unfused", recompute="none", **kw
    )
    assert unfused == 3 * (47104 - 8192 + 6 * 16 * 2048)
    # Sequence parallel shards the norms and residual adds over the tensor group too.
    tp = cost.elementwise_bytes_per_token(
        dims,
        attention_kernel="flash",
        recompute="none",
        tensor=4,
        sequence_parallel=False,
        act_bytes=2,
    )
    sp = cost.elementwise_bytes_per_token(
        dims,
        attention_kernel="flash",
        recompute="none",
        tensor=4,
        sequence_parallel=True,
        act_bytes=2,
    )
    assert tp - sp == pytest.approx(3 * 22 * 1024 * (1 - 1 / 4))


def llama8b() -> ModelDims:
    """Llama 3.1 8B's shape (GQA 32/8 heads, SwiGLU 14336, RMSNorm, RoPE)."""
    return ModelDims(
        **{
            **gpt(4096, 32, 32, vocab=128256, seq=8192).__dict__,
            "n_kv_heads": 8,
            "d_ff": 14336,
            "position": "rope",
            "norm": "rmsnorm",
            "activation": "swiglu",
            "bias": False,
            "tie_embeddings": False,
        }
    )


def test_byte_counter_counts_what_a_kernel_reads_and_writes():
    torch = pytest.importorskip("torch")
    from llmspec.verify.kernel_bytes import count_bytes

    x, y = torch.randn(64, 32).bfloat16(), torch.randn(64, 32).bfloat16()
    fwd, bwd = count_bytes(lambda a, b: a * b, x, y)
    assert fwd == 3 * 2 * 64 * 32  # reads two, writes one
    assert bwd == 2 * 3 * 2 * 64 * 32  # each input's gradient: grad × the other, written
    w = torch.randn(32).bfloat16()
    fwd, _ = count_bytes(lambda a, b: a * b, x, w)  # a broadcast row is read once
    assert fwd == 2 * (2 * 64 * 32 + 32)
    fwd, _ = count_bytes(lambda a: a.t().reshape(-1), x)  # a copy made by reshape is counted
    assert fwd == 2 * 2 * 64 * 32


def test_eager_bytes_are_the_counted_ones():
    """cost.EAGER_BYTES (the planner is torch-free) equals what the dispatch counter measures
    on the eager op sequences today: a change of either shows here."""
    pytest.importorskip("torch")
    from llmspec.verify.kernel_bytes import eager_part_bytes

    counted = eager_part_bytes()
    assert set(counted) == set(cost.EAGER_BYTES)
    for part, (fwd, bwd) in counted.items():
        assert cost.EAGER_BYTES[part] == pytest.approx((fwd, bwd), abs=0.006), part


def test_generated_bytes_are_counted_on_the_rendered_model():
    """cost.GENERATED_BYTES equals what the counter measures on the generated model.py's own
    apply_rope and activation (rendered for a Llama): a template change shows here."""
    pytest.importorskip("torch")
    from llmspec.verify.kernel_bytes import generated_part_bytes

    counted = generated_part_bytes()
    assert set(counted) == set(cost.GENERATED_BYTES) - {"heads_contiguous"}
    for part, (fwd, bwd) in counted.items():
        assert cost.GENERATED_BYTES[part] == pytest.approx((fwd, bwd), abs=0.006), part


def test_generated_elementwise_is_what_llmspec_plans_count():
    dims = llama8b()
    kw = dict(attention_kernel="flash", tensor=1, sequence_parallel=False, act_bytes=2)
    g = cost.GENERATED_BYTES
    fused = cost.elementwise_bytes_per_token(dims, recompute="none", **kw)
    generated = cost.elementwise_bytes_per_token(dims, recompute="none", impl="generated", **kw)
    h, kv, ff = 4096, 1024, 14336
    extra = (
        (h + kv) * sum(g["rope_rotate_half"])
        + h * sum(g["heads_contiguous"])
        + ff * (g["swiglu"][0] - 6 + g["swiglu"][1] - 12)
    )
    assert generated - fused == pytest.approx(extra)
    assert 0.35e6 < extra < 0.45e6  # ~0.4 MB a token and block, a fifth of torchtitan's eager
    # GPT: LayerNorm and GELU are single kernels; only the attention output's copy is extra
    plain = gpt(1024, 4, 16)
    d = cost.elementwise_bytes_per_token(plain, recompute="none", impl="generated", **kw)
    assert d - cost.elementwise_bytes_per_token(plain, recompute="none", **kw) == pytest.approx(
        1024 * sum(g["heads_contiguous"])
    )
    # the search costs llmspec's own plans with it
    from llmspec.plan.search import SearchProblem

    assert SearchProblem.__dataclass_fields__["elementwise"].default == "generated"


def test_eager_elementwise_adds_its_parts_beyond_the_fused_count():
    dims = llama8b()
    kw = dict(attention_kernel="flash", tensor=1, sequence_parallel=False, act_bytes=2)
    h, kv, ff = 4096, 1024, 14336
    fused = cost.elementwise_bytes_per_token(dims, recompute="none", **kw)
    eager = cost.elementwise_bytes_per_token(dims, recompute="none", impl="eager", **kw)
    e = cost.EAGER_BYTES
    fwd = (
        2 * h * (e["rms_norm_fp32"][0] - 4)
        + (h + kv) * e["rope_complex"][0]
        + 2 * h * e["repeat_heads"][0]
        + h * e["heads_contiguous"][0]
        + ff * (e["swiglu"][0] - 6)
    )
    bwd = (
        2 * h * (e["rms_norm_fp32"][1] - 8)
        + (h + kv) * e["rope_complex"][1]
        + 2 * h * e["repeat_heads"][1]
        + h * e["heads_contiguous"][1]
        + ff * (e["swiglu"][1] - 12)
    )
    assert eager - fused == pytest.approx(fwd + bwd)
    # per-op recompute replays the forward's element-wise ops, eager ones included
    ops_f = cost.elementwise_bytes_per_token(dims, recompute="ops", **kw)
    ops_e = cost.elementwise_bytes_per_token(dims, recompute="ops", impl="eager", **kw)
    assert ops_e - ops_f == pytest.approx(2 * fwd + bwd)
    # ~1.85 MB a token and block: at 2.4 TB/s, 32 blocks, ~25 µs of each token's ~140 µs
    assert 1.7e6 < ops_e - ops_f < 2.0e6
    with pytest.raises(ValueError):
        cost.elementwise_bytes_per_token(
            dims, recompute="none", impl="eager", **{**kw, "act_bytes": 4}
        )


@pytest.mark.parametrize("recompute", ["none", "selective", "full"])
def test_cost_model_counts_the_same_flops_as_the_flops_module(recompute):
    from llmspec.plan import flops

    dims = gpt(2048, 24, 16)
    per_token = dims.n_layers * cost.block_flops(dims, recompute)[1] + cost.head_flops(dims)
    assert per_token == pytest.approx(flops.hardware_flops_per_token(dims, recompute))
    assert cost.model_flops_per_token(dims) == pytest.approx(flops.model_flops_per_token(dims))


def test_gemm_efficiency_falls_for_small_matrices_and_more_on_hopper():
    from llmspec.spec.hardware import CATALOG

    a100, h100 = CATALOG["a100-80gb"], CATALOG["h100-sxm"]
    for gpu in (a100, h100):
        big = cost.gemm_efficiency(16384, 8192, 8192, gpu)
        small = cost.gemm_efficiency(256, 8192, 8192, gpu)
        assert small < big <= cost.max_efficiency(gpu)
    # The H100's FLOP:byte ratio is higher, so the same skinny (HBM-bound) GEMM is further
    # below its roof.
    rel = {
        g.name: cost.gemm_efficiency(16, 8192, 8192, g) / cost.gemm_efficiency(16384, 8192, 8192, g)
        for g in (a100, h100)
    }
    assert rel["h100-sxm"] < rel["a100-80gb"]
    # Wave quantization: 109 tiles on 108 SMs take two waves.
    assert cost.gemm_efficiency(128 * 109, 128, 1 << 16, a100) < 0.6 * cost.max_efficiency(a100)


def test_fp8_speeds_up_only_the_linears_and_pays_for_its_casts():
    from llmspec.spec.hardware import CATALOG

    h100 = CATALOG["h100-sxm"]
    dims = gpt(4096, 32, 32, seq=4096)
    kw = dict(recompute="none", tensor=1, micro_batch=2, gpu=h100, attention_kernel="flash")
    bf16 = cost.block_compute_s_per_token(dims, peak_tflops=989.5, fp8=False, **kw)
    fp8 = cost.block_compute_s_per_token(dims, peak_tflops=989.5, fp8=True, **kw)
    m = 2 * 4096
    linears = sum(
        3 * 2 * n * k / (989.5e12 * cost.gemm_efficiency(m, n, k, h100))
        for n, k in cost._linear_shapes(dims, 1)
    )
    attention = bf16 - linears
    assert attention > 0
    # FP8 halves at most the linears' time; the attention core does not change; casts cost.
    assert fp8 > attention + linears / 2
    assert 1.0 < bf16 / fp8 < 2.0


def test_fp8_casts_are_counted_as_the_generated_code_runs_them():
    """The generated fp8_linear's HBM traffic, counted by hand for one 4096 × 4096 block
    (GPT, 4 linears of 4096 wide + 2 of 4096 × 16384): per linear and token, the forward casts
    input and weight (5 bytes an element: amax pass + fused cast), the backward the output
    gradient, the weight and the input again, and copies those three into cuBLAS's layout
    (2 bytes). Transformer Engine's fused cast-transpose (4 bytes, the gradient only in
    backward) and its once-a-step weight cast cost less, and only the casts change."""
    from llmspec.spec.hardware import CATALOG

    h100 = CATALOG["h100-sxm"]
    dims = gpt(4096, 32, 32, seq=4096)
    kw = dict(recompute="none", tensor=1, micro_batch=2, gpu=h100, attention_kernel="flash")
    m = 2 * 4096
    shapes = cost._linear_shapes(dims, 1)
    hbm = h100.hbm_gbps * 1e9

    def seconds(**extra):
        return cost.block_compute_s_per_token(dims, peak_tflops=989.5, fp8=True, **kw, **extra)

    ours = sum((5 * (k + n * k / m) + 7 * (n + k + n * k / m)) / hbm for n, k in shapes)
    te = sum(4 * (k + n * k / m + n) / hbm for n, k in shapes)
    te_cached = sum(4 * (k + n * k / m / 8 + n) / hbm for n, k in shapes)
    base = seconds() - ours
    assert seconds(fp8_casts=("fused_cast_transpose",)) == pytest.approx(base + te, rel=1e-9)
    cached = seconds(fp8_casts=cost.FP8_CASTS, micro_batches=8)
    assert cached == pytest.approx(base + te_cached, rel=1e-9)
    assert cached < seconds(fp8_casts=("fused_cast_transpose",)) < seconds()
    with pytest.raises(ValueError, match="unknown fp8_casts"):
        seconds(fp8_casts=("delayed",))


def test_interleaving_divides_the_bubble_and_multiplies_the_sends():
    stages = (_stage(4, 1e9, 1e8),) * 4
    kw = _dp_kw(data=1, micro_batches=8, links=_links(pipeline_gbps=10.0))
    plain = cost.step_time(stages, zero_stage=0, pipeline_schedule="megatron", **kw)
    chunks = cost.step_time(
        stages, zero_stage=0, virtual_stages=3, pipeline_schedule="megatron", **kw
    )
    one = 1000 * 1024 * 2 / 10e9 + cost.ring_latency_s(1, True)  # one boundary send
    assert plain.pipeline_p2p == pytest.approx(one * 2 * (8 + 4 - 1))  # 2 per 1F1B slot
    assert chunks.pipeline_p2p == pytest.approx(one * 2 * (3 * 8 + 4 - 1))  # v per slot
    slot = (chunks.compute + chunks.elementwise) / 8
    assert chunks.bubble == pytest.approx(8 * slot * (3 / 8) / 3)  # ideal × (p−1)/m / v
    assert chunks.compute == pytest.approx(plain.compute)


def test_published_comm_overlap_hides_only_what_compute_covers():
    """`comm_overlap` (published runs only): tensor-parallel collectives are exposed only
    beyond the stage's compute, and with overlapped sends only the pipeline's fill and drain
    (2(p−1) transfers) stay on the critical path; the generated code's default hides neither."""
    stages = (_stage(4, 1e9, 1e8),) * 4
    kw = dict(
        micro_batch=1, micro_batches=16, seq_len=1000, d_model=4096, tensor=4, data=1,
        zero_stage=0, recompute="none", sequence_parallel=True, offload_optimizer="none",
        offload_params="none", act_bytes=2, grad_bytes=2, peak_tflops=100.0, efficiency=0.5,
        pipeline_schedule="megatron", virtual_stages=2,
    )  # fmt: skip
    plain = cost.step_time(stages, links=_links(), **kw)
    assert plain.tensor_parallel > 0 and plain.pipeline_p2p > 0
    both = ("tensor_parallel", "pipeline_p2p")
    hidden = cost.step_time(stages, links=_links(), comm_overlap=both, **kw)
    comp_mb = plain.compute / 16
    tp_mb = plain.tensor_parallel / 16
    assert hidden.tensor_parallel == pytest.approx(16 * max(0.0, tp_mb - comp_mb))
    transfers = cost.pipeline_transfers("megatron", 4, 16, 2)
    one = plain.pipeline_p2p / transfers
    assert hidden.pipeline_p2p == pytest.approx(one * 2 * (4 - 1))  # the rest hides
    # a tensor link so slow that its collectives outlast the compute: the excess shows
    slow = cost.step_time(stages, links=_links(tensor_gbps=0.5), comm_overlap=both, **kw)
    slow_plain = cost.step_time(stages, links=_links(tensor_gbps=0.5), **kw)
    assert slow.tensor_parallel == pytest.approx(slow_plain.tensor_parallel - slow_plain.compute)
    with pytest.raises(ValueError, match="unknown comm_overlap"):
        cost.step_time(stages, links=_links(), comm_overlap=("data_parallel",), **kw)
