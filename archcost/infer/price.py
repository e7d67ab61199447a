"""Price prefill and decode steps on a GPU or a cluster, under tensor and pipeline parallelism.

A step is traced at batch 1 and 2 (``archcost.infer.capture``) and read into the same
:class:`~archcost.plan.workload.Workload` a training plan reads, so one op table prices every
batch: each op's FLOPs and activation bytes grow with the batch, its weight bytes do not
(``nbytes_fixed``), and the roofline (``cost.compute``: efficiency by FLOPs and GEMM shape,
memory efficiency by bytes, the GPU's sustained clock) runs at each size (``plan.table``).
A decode step is traced at two context lengths: its ops are the same at every context and
each op's FLOPs, bytes and attention geometry are affine in the context (the keys and values
read), so the tables interpolate exactly to any context before the roofline prices them. A
model whose cache has sliding-window layers (window W: a layer holds the last W - 1 tokens and
attends to them and the new one) is affine in the context on each side of the window's edge,
so it is traced at two contexts on each side (below the edge, and from it on) and each step
interpolates within its side; its KV bytes the same way in the cache's length.

Tensor parallelism splits as training's does (Megatron-LM's layout found from the dataflow):
matmuls, attention and the ops between a column- and a row-parallel projection divide by
``tp``; norms and residual adds are replicated; each row-parallel projection ends in an
all-reduce of the layer's output over the tensor-parallel group, costed on the cluster's links
(``cost.comm``), exposed (decode kernels are too short to hide it). Pipeline parallelism holds
``layers / pp`` layers per GPU; a step's batch splits into ``m = min(pp, batch)`` micro-batches
of whole sequences (the largest, ``ceil(batch / m)``, sets a stage's time) that follow each other
through the stages (TensorRT-LLM's pipeline-parallel generation). A decode step takes the
longer of a micro-batch's round trip (every stage once, the ``pp - 1`` hops between them) and
the slowest stage serving all ``m`` micro-batches; a prefill fills and drains the stages, so its
last micro-batch's first token comes after the round trip and ``m - 1`` more slowest stages.
One sequence thus takes the time of the whole model plus the hops, never less.

A grouped GEMM over stacked expert weights (``OpTable.groups``) reads the experts a step's
rows reach under the routing assumption (``trace.assume.groups_reached``): its weight bytes
grow with the batch until every expert is reached, then stay fixed.

Memory per GPU: the weights as held (quantized ones as packed), split ``tp`` ways (matrices;
vectors replicated, which the split ignores: under 0.1 % of a transformer) and ``pp`` ways; the
KV cache of ``batch`` sequences at ``max_len`` tokens, split over the KV heads (a GPU holds at
least one head: ``max(1/tp, 1/kv_heads)``) and the stages; the step's transient activations
(the liveness peak of the traced forward above the weights and the cache).
"""

from __future__ import annotations

import dataclasses
import functools
import math
from dataclasses import dataclass, field

import numpy as np

from archcost.cost.comm import Collective, collective_cost
from archcost.cost.compute import peak_flops_for, peak_keys, require_peak
from archcost.errors import ConfigError
from archcost.hardware.sparsity import sparse_speedup
from archcost.infer.capture import InferCapture, InferStep, capture_inference
from archcost.options import Recompute
from archcost.plan.table import C, build_table, sharded_work
from archcost.plan.workload import (
    PHASE_CODES,
    SECTION_BLOCK,
    SECTION_POST,
    SECTION_PRE,
    OpTable,
    Workload,
    transient_at,
    workload_from_traces,
)
from archcost.trace.assume import Routing, groups_reached

__all__ = ["InferenceCosts", "interpolate_ops", "dispatch_seconds"]

# decode steps are traced at two contexts and interpolated (any two distinct lengths: the
# quantities are affine in the context; with a sliding window, on each side of its edge)
_ANCHORS = (16, 32)


def decode_anchors(context: int, windows: tuple[int, ...]) -> tuple[int, int]:
    """The two decode contexts (tokens cached before the step) whose traces interpolate a step
    at ``context`` exactly, and its cache bytes at ``context + 1`` tokens: ``_ANCHORS`` without
    a sliding window; with window W, below its edge (a cache of at most W - 1 tokens, the step
    attending to at most W) two contexts up to W - 2, and from the edge on (context >= W - 1,
    the window full) W - 1 and W + 15."""
    if not windows:
        return _ANCHORS
    if len(windows) > 1:
        raise ConfigError(f"sliding windows of {', '.join(map(str, windows))} tokens in one "
                          "model: archcost infer prices one window; give the layers one "
                          "sliding_window")
    (w,) = windows
    if context >= w - 1:
        return w - 1, w + 15
    hi = min(_ANCHORS[1], w - 2)
    return min(_ANCHORS[0], hi // 2), hi


def interpolate_ops(a: OpTable, b: OpTable, x: float) -> OpTable:
    """``a + x (b - a)`` for every quantity that grows with the context (FLOPs, bytes, matmul
    dims, attention geometry); ``a`` and ``b`` run the same ops."""
    if a.op != b.op:
        raise ValueError("the two decode traces run different ops: they cannot interpolate")

    def lerp(u, v):
        return u + x * (v - u)

    return dataclasses.replace(a, flops=lerp(a.flops, b.flops), nbytes=lerp(a.nbytes, b.nbytes),
                               nbytes_fixed=lerp(a.nbytes_fixed, b.nbytes_fixed),
                               mnk=lerp(a.mnk, b.mnk), attn=lerp(a.attn, b.attn),
                               slices=lerp(a.slices, b.slices))


@dataclass
class InferenceCosts:
    """Step costs of one model replica on ``tp * pp`` GPUs (the ``StepCosts`` protocol of
    ``archcost.infer.costs``). ``build_len``: the longest sequence the generation reaches
    (input + output), the length the model is built for."""

    spec: object  # ModelSpec
    cluster: object  # ClusterProfile (one GPU: a one-GPU cluster)
    policy: object  # PrecisionPolicy
    runtime: object  # RuntimeProfile
    build_len: int
    tp: int = 1
    pp: int = 1
    kv_dtype: str | None = None
    quantize: object = None
    usable_memory: float = 0.9
    options: object = None
    progress: object = None
    # the engine's largest CUDA graph batch (its max batch size, within its token budget): a
    # runtime's captured sizes past it are dropped and padding goes to it; None: the
    # runtime's sizes as they are (``RuntimeProfile.graph_batch``)
    graph_max_batch: int | None = None
    # traces and workloads by step, shareable between replicas of one model, precision and
    # build length (a serving search prices many tp/pp on the same traces)
    memo: dict = field(default_factory=dict, repr=False)
    # priced steps of this replica by (batch, step): a simulation asks for the same ones again
    # (not an init field: a ``dataclasses.replace`` of another precision starts empty)
    _steps: dict = field(default_factory=dict, init=False, repr=False, compare=False)
    _row_memo: dict = field(default_factory=dict, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if self.tp < 1 or self.pp < 1:
            raise ConfigError(f"--tp {self.tp} --pp {self.pp}: both must be >= 1")
        if self.gpus > self.cluster.gpus:
            raise ConfigError(f"tp x pp = {self.gpus} GPUs, but the hardware has "
                              f"{self.cluster.gpus}; give a --cluster with more GPUs or "
                              "lower --tp/--pp")

    # --- the protocol -----------------------------------------------------------------------
    @property
    def gpus(self) -> int:
        return self.tp * self.pp

    @functools.cached_property
    def gpu(self):
        return self.cluster.gpu.for_inference()  # forward ops at the inference-mode overhead

    @functools.cached_property
    def _warm_gpu(self):
        return self.gpu.warm_weights()

    def weights_cached(self, batch: int, step: InferStep, w: Workload | None = None) -> bool:
        """Whether a decode step of ``batch`` sequences finds its weights in the last-level
        cache: the profile measured warm rows, and the bytes one GPU's step reads and writes
        (its weights, the KV cache, every activation and copy: what passes through the cache
        between two reads of a weight) fit in ``l2_bytes``. The weights and cache alone would
        not do: a grouped-query model's decode copies its cache per query head (a small Llama,
        hidden 256, at batch 8 on a CPU: 24 MiB held, 45 MiB moved, and its matmuls ran at the
        cold rows' rate). ``w``: the step's workload where the caller has it."""
        gpu = self.gpu
        if step.kind != "decode" or not gpu.matmul_shape_efficiency_warm:
            return False
        return self.work(batch, step, w)["bytes_per_gpu"] <= gpu.l2_bytes

    @property
    def weight_quant(self):
        """The layers' linears' conversion (``trace.quant.WeightQuant``; None: none), as the
        ``quantize`` partial (``cli.infer.quantizer``) carries it."""
        return getattr(self.quantize, "keywords", {}).get("quant")

    @property
    def routing(self) -> Routing:
        """Where the routers pick experts (``--routing``; balanced by default)."""
        return self.options.routing if self.options is not None else Routing()

    @property
    def capacity_bytes(self) -> float:
        return self.usable_memory * self.gpu.mem_bytes

    def prefill_s(self, batch: int, input_len: int) -> float:
        return self.step(batch, InferStep.prefill(1, input_len))["seconds"]

    def decode_s(self, batch: int, context_len: int) -> float:
        """One decode step whose new token attends to ``context_len`` tokens (itself
        included): the cache holds ``context_len - 1`` before it."""
        return self.step(batch, InferStep.decode(1, max(context_len - 1, 0)))["seconds"]

    def memory_bytes(self, batch: int, max_len: int, input_len: int | None = None,
                     prefill_batch: int | None = None) -> dict:
        """The cache of ``batch`` sequences at ``max_len`` tokens; transient activations the
        larger of the prefill's (``prefill_batch`` sequences, None: all, at ``input_len``
        tokens; None: ``max_len``, an upper bound) and the last decode step's."""
        weights = self.weight_bytes_per_gpu()
        kv = self.kv_bytes_per_gpu(batch, max_len)
        prefill = min(input_len or max_len, max_len, self.build_len)
        acts = max(self.activation_bytes(min(prefill_batch or batch, batch),
                                         InferStep.prefill(1, prefill)),
                   self.activation_bytes(batch, InferStep.decode(1, max_len - 1)))
        return {"weights": weights, "kv_cache": kv, "activations": acts,
                "peak_per_gpu": weights + kv + acts}

    def check_shapes(self) -> None:
        """One line when tp cannot split the model: heads (and KV heads, unless each GPU
        holds whole copies of them) must divide by it, and layers must fill the stages; or
        when the GPU has no peak for the precision (fp8 on an A100)."""
        quant = self.weight_quant
        if quant is not None and quant.scheme == "fp8":
            require_peak(self.gpu, "fp8", "--dtype fp8", fallback="bf16")
        w = self.workload(InferStep.decode(1, _ANCHORS[0]))
        heads, kv = w.shape.heads, self.kv_heads()
        name = self.spec.path.name
        if heads % self.tp:
            raise ConfigError(f"--tp {self.tp} does not divide {name}'s {heads} attention "
                              f"heads; use a divisor of {heads}")
        if kv % self.tp and self.tp % kv:
            raise ConfigError(f"--tp {self.tp} cannot split {name}'s {kv} KV heads (neither "
                              f"divides the other); use a divisor or a multiple of {kv}")
        layers = self.layer_count()
        if self.pp > layers:
            raise ConfigError(f"--pp {self.pp} is more stages than {name}'s {layers} layers; "
                              f"use at most {layers}")

    def notes(self) -> list[str]:
        w = self.workload(InferStep.decode(1, _ANCHORS[0]))
        out = list(w.notes)
        cap = self._trace(InferStep.decode(1, _ANCHORS[0]))
        out += [n for n in cap.notes if n not in out and not n.startswith("repeated ")]
        quant = self.weight_quant
        if quant is not None and quant.sparsity:
            key = peak_keys([w.gemm_dtype or w.compute_dtype])[0]
            note = sparse_speedup(self.gpu, key)[1]
            if note:
                out.append(note)
        if self.pp > 1:
            out.append(f"pipeline: a step's batch runs as up to {self.pp} micro-batches "
                       f"through {self.pp} stages of {math.ceil(self.layer_count() / self.pp)}"
                       " layers; "
                       "a prefill fills and drains the stages")
        if self.gpu.matmul_shape_efficiency_warm:
            out.append(f"decode steps whose bytes moved fit in the last-level cache "
                       f"({self.gpu.l2_bytes / 2**20:.0f} MiB) read the profile's warm matmul "
                       "rows (weights in that cache from one step to the next)")
        if self.tp > 1 and self.kv_heads() < self.tp:
            out.append(f"{self.kv_heads()} KV heads over tp {self.tp}: each GPU holds a copy "
                       "of one head")
        return out

    # --- traces -------------------------------------------------------------------------------
    def _key(self, *what) -> tuple:
        """Memo key: the model, precision and lengths (a trace's), the runtime too (a
        workload's: it fuses as the runtime does)."""
        spec = self.spec
        stack = (self.runtime.name,) if what[0] == "workload" else ()
        return (str(spec.path), spec.builder_name, repr(sorted(spec.config.items())),
                self.policy, self.kv_dtype, self.build_len, repr(getattr(self.quantize, "keywords", self.quantize)), *stack, *what)

    def _trace(self, step: InferStep) -> InferCapture:
        key = self._key("trace", step)
        if key not in self.memo:
            if self.progress:
                self.progress(f"tracing {step.kind} (batch {step.batch}, "
                              f"{step.new_tokens} new tokens, context {step.context})")
            self.memo[key] = capture_inference(
                self.spec, step, self.policy, kv_dtype=self.kv_dtype, quantize=self.quantize,
                options=self.options, build_len=self.build_len)
        return self.memo[key]

    def _anchored(self, step: InferStep) -> Workload:
        key = self._key("workload", step.kind, step.new_tokens, step.context)
        if key not in self.memo:
            one = self._trace(dataclasses.replace(step, batch=1))
            two = self._trace(dataclasses.replace(step, batch=2))
            self.memo[key] = workload_from_traces(
                {Recompute.NONE: one}, self.policy, name=self.spec.name,
                at_batch_2={Recompute.NONE: two}, runtime=self.runtime,
                transient_by_batch=True)
        return self.memo[key]

    def workload(self, step: InferStep) -> Workload:
        """The step's workload at batch 1 (decode: interpolated to its context)."""
        if step.kind == "prefill":
            return self._anchored(step)
        a, b = decode_anchors(step.context, self.kv_windows())
        lo, hi = (self._anchored(InferStep.decode(1, c)) for c in (a, b))
        x = (step.context - a) / (b - a)
        ops = interpolate_ops(lo.ops[Recompute.NONE], hi.ops[Recompute.NONE], x)
        transient = {Recompute.NONE: lo.transient[Recompute.NONE] + x * (
            hi.transient[Recompute.NONE] - lo.transient[Recompute.NONE])}
        return dataclasses.replace(lo, ops={Recompute.NONE: ops}, transient=transient,
                                   transient_body=transient, transient_lines={})

    # --- pricing ------------------------------------------------------------------------------
    def _ops(self, w: Workload, batch: float, step: InferStep) -> OpTable:
        """The step's ops at ``batch`` sequences, as the tp split then divides them: a decode
        step's attention on more GPUs than KV heads reads a whole KV head a GPU (each holds a
        copy, ``kv_bytes_per_gpu``), so its bytes divide by the KV heads, not by tp. The heads
        it reads as the runtime runs it (``Workload.attention_kv_heads``): a grouped cache's,
        or every query head's where a latent cache is expanded per head by a column-parallel
        projection (which tp splits); the cache's where the step runs no attention kernel."""
        ops = _scale(w.ops[Recompute.NONE], batch, self.routing)
        kv = w.attention_kv_heads or self.kv_heads()
        if step.kind == "decode" and self.tp > kv > 0:
            ops = dataclasses.replace(ops, nbytes=np.where(
                ops.attention & (ops.phase == PHASE_CODES["forward"]),
                ops.nbytes * self.tp / kv, ops.nbytes))
        return ops

    def _rows(self, w: Workload, batch: float, gpu, step: InferStep) -> np.ndarray:
        combo = np.array([[Recompute.NONE.code, 1, self.tp, 0, 1, 1]], dtype=np.int64)
        # one sequence per row, scaled by the batch: the table's micro-batch is an integer
        scaled = dataclasses.replace(w, ops={Recompute.NONE: self._ops(w, batch, step)})
        return build_table(scaled, gpu, combo).rows[0]

    def step(self, batch: int, step: InferStep) -> dict:
        """Seconds of one step of ``batch`` sequences (``step`` at batch 1 gives the kind and
        the lengths) and where they go."""
        if batch < 1:
            raise ConfigError(f"batch {batch}: must be >= 1")
        key = (batch, step)
        if key not in self._steps:
            self._steps[key] = self._step(batch, step)
        return dict(self._steps[key])

    def _step(self, batch: int, step: InferStep) -> dict:
        m, micro = self.micro_batches(batch)
        pad = (self.runtime.graph_batch(micro, self.graph_max_batch) if step.kind == "decode"
               else None)
        if pad is not None and pad != micro:  # a graph of dummy sequences beside the batch
            return self.mixed(batch, step.context + 1, ())
        w = self.workload(step)
        rows = self._rows_at(micro, step, batch, w, pad is not None)
        return {**self._timed(w, rows, m, micro * step.new_tokens, step.kind == "prefill"),
                "tokens": batch * step.new_tokens}

    def _timed(self, w: Workload, rows: np.ndarray, m: int, tokens: float, fill: bool) -> dict:
        """Seconds of a step whose micro-batch of ``tokens`` tokens runs the table row
        ``rows``, ``m`` micro-batches of it: a prefill's (``fill``) last micro-batch leaves
        ``m - 1`` slowest stages late; otherwise (decode) the longer of a micro-batch's round
        trip and the slowest stage serving every micro-batch once."""
        layers = w.layers
        stage_layers = layers if self.pp == 1 else math.ceil(layers / self.pp)
        d_pre, d_block, d_post = dispatch_seconds(w, self.gpu, self.runtime)
        pre, post = rows[C["pre_f"]] + d_pre, rows[C["post_f"]] + d_post
        block, attn = rows[C["block_f"]] + d_block, rows[C["attn_f"]]
        ar = collective_cost(Collective.ALL_REDUCE, tokens * w.hidden * w.act_bytes, self.tp,
                             self.cluster).seconds if self.tp > 1 else 0.0
        hop = collective_cost(Collective.SEND_RECV, tokens * w.hidden * w.act_bytes, 2,
                              self.cluster, stride=self.tp).seconds if self.pp > 1 else 0.0
        hops = (self.pp - 1) * hop
        # (compute, tp comm, attention) of one micro-batch through every stage, and of the
        # slowest stage (its layers and the heavier end)
        # the layers outside the main stack (DeepSeek-V3's dense ones) run with pre: their
        # all-reduces on the first stage
        outside = w.tp_points_outside * ar
        path = (layers * block + pre + post, layers * w.tp_points * ar + outside, layers * attn)
        stage = (stage_layers * block + (pre + post if self.pp == 1 else max(pre, post)),
                 stage_layers * w.tp_points * ar + outside, stage_layers * attn)
        if fill:  # the last micro-batch leaves m - 1 slowest stages late
            parts = [p + (m - 1) * q for p, q in zip(path, stage)]
        elif sum(path[:2]) + hops >= m * sum(stage[:2]):  # decode: a token's round trip
            parts = list(path)
        else:  # decode: the slowest stage serving every micro-batch once
            parts, hops = [m * q for q in stage], 0.0
        compute, tp_comm, attention = parts
        return {"seconds": float(compute + tp_comm + hops), "compute_s": float(compute),
                "attention_s": float(attention), "tp_comm_s": float(tp_comm),
                "pp_comm_s": float(hops)}

    def _rows_at(self, batch: float, step: InferStep, whole: float,
                 w: Workload | None = None, graph: bool = False) -> np.ndarray:
        """The table row of one micro-batch of ``batch`` sequences of ``step``, in a step of
        ``whole`` sequences (whose bytes decide whether the weights are read from the cache,
        ``weights_cached``), replayed in a CUDA graph where ``graph`` (``in_cuda_graph``);
        memoized: a simulation asks for the same ones again. ``w``: the step's workload where
        the caller has it."""
        # the step's size decides only where the profile has warm rows (weights_cached)
        key = (batch, step, whole if self.gpu.matmul_shape_efficiency_warm else None, graph)
        if key not in self._row_memo:
            w = w if w is not None else self.workload(step)
            gpu = self._warm_gpu if self.weights_cached(whole, step, w) else self.gpu
            self._row_memo[key] = self._rows(w, batch, gpu.in_cuda_graph() if graph else gpu,
                                             step)
        return self._row_memo[key]

    def mixed_s(self, decode_batch: int, context_len: float,
                chunks: tuple[tuple[int, int, int], ...]) -> float:
        return self.mixed(decode_batch, context_len, chunks)["seconds"]

    def mixed(self, decode_batch: int, context_len: float,
              chunks: tuple[tuple[int, int, int], ...]) -> dict:
        """One forward of in-flight batching: each of ``decode_batch`` running sequences gets a
        token (attending to ``context_len`` tokens, the batch's mean) and each chunk
        ``(start, stop, prompt_len)`` prefills positions ``start .. stop - 1`` of a prompt of
        ``prompt_len`` tokens, the weights read once for all of them. Priced from the traced
        steps, per layer: what grows with the tokens alone (the GEMMs, norms, pointwise ops,
        the all-reduces) as a decode step's at context 0 over every token of the forward; the
        decode sequences' attention, and what else grows with their context, as their decode
        step's; a chunk's attention as the share of its prompt's prefill attention that its
        rows of the causal triangle hold (its FLOPs' share); the head over the decoding
        sequences and the prompts this forward completes (a prompt's other positions need no
        logits). With no chunks it is the decode step exactly (a runtime's CUDA graph
        included: a forward with prompt tokens runs without one): where the runtime pads a
        graph's batch (``RuntimeProfile.graph_batch``), what grows with the tokens and the
        head run over the padded batch, the dummy sequences attending to nothing (one token
        each). NB: a chunk's attention reading the cache of the chunks before it is priced by
        FLOPs, as the whole prompt's kernel runs."""
        n = int(decode_batch)
        if n < 0 or (n == 0 and not chunks):
            raise ConfigError(f"a forward of {n} decoding sequences and {len(chunks)} prompt "
                              "chunks: give at least one of them")
        for start, stop, length in chunks:
            if not 0 <= start < stop <= length:
                raise ConfigError(f"prompt chunk {start}..{stop} of a {length}-token prompt: "
                                  "give 0 <= start < stop <= length")
        prompt = sum(stop - start for start, stop, _ in chunks)
        done = sum(stop == length for _, stop, length in chunks)
        m = max(1, min(self.pp, n + len(chunks)))
        base = InferStep.decode(1, 0)
        a, b, post = C["block_f"], C["attn_f"], C["post_f"]
        k = -(-n // m)  # decodes in the fullest micro-batch (whole sequences)
        whole = n + prompt  # the forward's tokens: its rows read the weights as a step of them
        # a decode-only forward replays its graph, at the padded batch ``kp``
        kp = None if chunks else self.runtime.graph_batch(k, self.graph_max_batch)
        graph, kp = kp is not None, kp or k
        tokens = self._rows_at(kp + prompt / m, base, whole, graph=graph)
        attention = sum(
            self._rows_at(1, InferStep.prefill(1, length), 1)[b]
            * (stop * (stop + 1) - start * (start + 1)) / (length * (length + 1))
            for start, stop, length in chunks) / m
        head = self._rows_at(kp + done / m, base, whole, graph=graph)[post] if n + done else 0.0
        rows = tokens.copy()
        rows[a] += attention - tokens[b]
        rows[b] = attention
        rows[post] = head
        if n:  # what grows with the decodes' context, in every section, and their attention
            ctx = self._rows_at(k, InferStep.decode(1, max(round(context_len), 1) - 1), whole,
                                graph=graph)
            zero = self._rows_at(k, base, whole, graph=graph)
            rows += ctx - zero
            rows[a] += zero[b]
            rows[b] += zero[b]
        timed = self._timed(self.workload(base), rows, m, kp + prompt / m, fill=False)
        return {**timed, "tokens": n + done}

    def micro_batches(self, batch: int) -> tuple[int, int]:
        """(micro-batches, sequences in the largest) of a step of ``batch`` sequences: ``pp``
        of them, fewer when there are fewer sequences (a sequence is not split)."""
        m = min(self.pp, batch)
        return m, math.ceil(batch / m)

    def work(self, batch: int, step: InferStep, w: Workload | None = None) -> dict:
        """FLOPs and bytes one GPU runs and moves in a step of ``batch`` sequences (its
        stage's layers, each op's share under tp), with the roofline's verdict: the step is
        memory-bound when its arithmetic intensity is below the GPU's ridge point (at the peak
        the layers' GEMMs run at: fp8's, a 2:4-sparse one's). ``w``: the step's workload
        (``workload(step)``) where the caller has it."""
        w = w if w is not None else self.workload(step)
        ops = self._ops(w, batch, step)
        combo = np.array([[1, self.tp, 0, 1, 1]], dtype=np.int64)
        flops, nbytes, _, _ = sharded_work(ops, combo)
        block = ops.section == SECTION_BLOCK
        per_op = np.where(block, math.ceil(w.layers / self.pp), 0.0) * ops.count
        if self.pp == 1:
            per_op = per_op + np.where(block, 0.0, ops.count)
        else:  # the fuller stage: its layers and the end (embedding or head) that moves more
            ends = [np.where(ops.section == sec, ops.count, 0.0)
                    for sec in (SECTION_PRE, SECTION_POST)]
            per_op = per_op + max(ends, key=lambda e: float(nbytes @ e))
        f, b = float(flops @ per_op), float(nbytes @ per_op)
        quant = self.weight_quant
        gemm = "float8_e4m3fn" if quant is not None and quant.scheme == "fp8" else (
            w.gemm_dtype or w.compute_dtype)
        peak = peak_flops_for(self.gpu, gemm, True)
        if quant is not None and quant.sparsity:
            peak *= sparse_speedup(self.gpu, peak_keys([gemm])[0])[0]
        ridge = peak * self.gpu.sustained_clock / self.gpu.mem_bw_bytes_per_s
        intensity = f / b if b else 0.0
        return {"flops_per_gpu": f, "bytes_per_gpu": b, "arithmetic_intensity": intensity,
                "ridge_point_flop_per_byte": ridge,
                "bound": "memory" if intensity < ridge else "compute"}

    # --- memory -------------------------------------------------------------------------------
    def weight_bytes_per_gpu(self) -> float:
        """Weights one GPU holds: its stage's layers (and the embedding or the head), split
        over tp; converted linears (all inside the layers) as packed."""
        w = self.workload(InferStep.decode(1, _ANCHORS[0]))
        cap = self._trace(InferStep.decode(1, _ANCHORS[0]))
        plain = (cap.weight_bytes - cap.packed_bytes) / max(w.params, 1.0)  # bytes/parameter
        stage = math.ceil(w.layers / self.pp)
        ends = w.params_pre + w.params_post if self.pp == 1 else max(w.params_pre,
                                                                     w.params_post)
        # the layers' weight matmuls that run whole on every rank (a router, a latent
        # down-projection) hold their weights whole: what the tp split took off, back
        kept = w.whole_weight_bytes * stage + w.whole_weight_bytes_outside
        return ((ends + stage * w.params_block) * plain
                + cap.packed_bytes * stage / w.layers) / self.tp + kept * (1 - 1 / self.tp)

    def kv_windows(self) -> tuple[int, ...]:
        """The sliding windows of the model's cache layers (none: all attend in full)."""
        return self._trace(InferStep.decode(1, _ANCHORS[0])).kv_windows

    def kv_bytes_per_token(self) -> float:
        """KV-cache bytes per sequence per token, all layers (measured on the traced cache; with
        a sliding window, while the cache is shorter than it)."""
        cap = self._trace(InferStep.decode(1, decode_anchors(0, self.kv_windows())[0]))
        return cap.kv_cache_bytes / cap.step.max_len

    def kv_bytes_per_sequence(self, max_len: int) -> float:
        """KV-cache bytes of one sequence of ``max_len`` tokens, all layers: linear in the
        length between the traced caches on its side of a sliding window's edge (through zero
        without one: the cache is the tokens times a per-token size)."""
        a, b = (self._trace(InferStep.decode(1, c))
                for c in decode_anchors(max_len - 1, self.kv_windows()))
        la, lb = a.step.max_len, b.step.max_len
        return a.kv_cache_bytes + (max_len - la) * (b.kv_cache_bytes - a.kv_cache_bytes) / (lb - la)

    def kv_heads(self) -> int:
        """KV heads as the cache holds them (a latent cache: one, every GPU a copy); the
        attention's where the cache shows none."""
        cached = self._trace(InferStep.decode(1, _ANCHORS[0])).kv_cache_heads
        return cached or self.workload(InferStep.decode(1, _ANCHORS[0])).shape.kv_heads

    def layer_count(self) -> int:
        """Decoder layers: the layers the cache holds where it says (those outside the main
        stack too: DeepSeek-V3's dense ones), else the main stack's."""
        w = self.workload(InferStep.decode(1, _ANCHORS[0]))
        return max(w.layers, self._trace(InferStep.decode(1, _ANCHORS[0])).kv_layers)

    def kv_bytes_per_gpu(self, batch: int, max_len: int) -> float:
        """One GPU's KV cache: its heads' share of its stage's layers (the fullest stage's,
        every decoder layer holding a cache)."""
        share = max(1.0 / self.tp, 1.0 / max(self.kv_heads(), 1))
        layers = self.layer_count()
        stage = math.ceil(layers / self.pp) / layers
        return self.kv_bytes_per_sequence(max_len) * batch * share * stage

    def activation_bytes(self, batch: int, step: InferStep) -> float:
        """The step's transient activations per GPU: one micro-batch's, split over tp; what
        does not grow with the batch (a dequantized weight) held once (a decode step's
        interpolated between its two traced contexts)."""
        micro = self.micro_batches(batch)[1]
        if step.kind == "prefill":
            return transient_at(self._anchored(step), micro) / self.tp
        a, b = decode_anchors(step.context, self.kv_windows())
        lo, hi = (transient_at(self._anchored(InferStep.decode(1, c)), micro) for c in (a, b))
        return float(lo + (step.context - a) / (b - a) * (hi - lo)) / self.tp


def dispatch_seconds(w: Workload, gpu, runtime) -> tuple[float, float, float]:
    """Seconds eager Python pays per step beyond the charged ops, (pre, one layer, post): the
    step's view and metadata ops (``OpTable.dispatch_only``) times the profile's per-view
    figure, its nn.Module calls (``Workload.module_calls``) times the per-call figure. Only
    for a runtime that runs the model as Python (``python_dispatch``) on a profile that
    measured them (``dispatch_overhead``: a calibration); zeros otherwise. Neither grows with
    the batch: a view or a call costs the same on any tensor. NB: views a composite op
    dispatches inside C++ (``F.linear``'s transpose, ``matmul``'s reshapes) cost less than the
    Python-level view calibration times, and are charged the same. NB: training pricing does not
    charge them (its validation record predates them; its op_overhead phases are measured
    without views and module calls too)."""
    figures = gpu.dispatch_overhead_s
    if not runtime.python_dispatch or not figures:
        return 0.0, 0.0, 0.0
    ops = w.ops[Recompute.NONE]
    views = np.zeros(len(ops.flops), dtype=bool) if ops.dispatch_only is None \
        else ops.dispatch_only & (ops.phase == PHASE_CODES["forward"])
    view_s, call_s = figures.get("view", 0.0), figures.get("module_call", 0.0)
    return tuple(float(view_s * ops.count[views & (ops.section == sec)].sum()
                       + call_s * calls)
                 for sec, calls in zip((SECTION_PRE, SECTION_BLOCK, SECTION_POST),
                                       w.module_calls))


def _scale(ops: OpTable, batch: float, routing: Routing | None = None) -> OpTable:
    """The op table of ``batch`` sequences from one sequence's: what grows with the batch
    times ``batch``, weights read once (``plan.table.sharded_work``'s rule at micro-batch 1);
    a grouped GEMM over experts reads the experts its ``batch`` sequences' rows reach under
    ``routing`` (default: balanced), each once."""
    fixed = ops.nbytes_fixed
    if ops.groups is not None and ops.groups[:, 0].any():
        routing = routing or Routing()
        idle = np.zeros(len(fixed))
        for i in np.flatnonzero(ops.groups[:, 0] > 0):  # the grouped GEMMs alone
            groups, rows, weights = ops.groups[i]
            idle[i] = weights * (1.0 - groups_reached(routing, rows * batch, int(groups))
                                 / groups)
        ops = dataclasses.replace(ops, nbytes=ops.nbytes - idle, nbytes_fixed=fixed - idle)
        fixed = ops.nbytes_fixed
    weight_only = (ops.nbytes > 0) & (fixed >= ops.nbytes)
    mnk = np.where(ops.mnk_batch, ops.mnk * batch, ops.mnk)
    return dataclasses.replace(
        ops, flops=np.where(weight_only, ops.flops, ops.flops * batch),
        nbytes=(ops.nbytes - fixed) * batch + fixed, mnk=mnk, slices=ops.slices * batch,
        attn=ops.attn)
