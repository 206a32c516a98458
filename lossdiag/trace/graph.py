"""Walk a loss's graph, traced at two batch sizes: where the batch axis was reduced, broadcast or merged."""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from lossdiag.trace import ops as tfops
from lossdiag.trace import shapes
from lossdiag.trace.shapes import Labels
from lossdiag.trace.sites import ENTRY, Site, site_of


@dataclass
class OpInfo:
    """An op of the user's code, with the symbolic shapes of its inputs and outputs."""

    op: Any
    site: Site
    ins: list[Labels | None]
    outs: list[Labels | None]
    order: int  # position in the graph
    subscript: tfops.Subscript | None = None  # a StridedSlice's subscript, parsed


@dataclass
class Walk:
    """What the walk found: the first op of each kind, the ops that set it up, and the output's shape."""

    found: dict[str, OpInfo] = field(default_factory=dict)  # "broadcast" | "merged" | "reduced" -> op
    setups: list[OpInfo] = field(default_factory=list)  # slices that left (B,) before a reduction
    broadcast_slices: list[OpInfo] = field(default_factory=list)  # slices behind a broadcast's lower-rank side
    out_labels: Labels | None = None
    cross_op: str = ""  # an accidental (B,) x (B, 1) broadcast, e.g. "(B, 1) - (B,) -> (B, B)"
    pooled_pairs: str = ""  # a (B, B) tensor of y_pred's pairs reduced straight to no batch axis
    nested: bool = False  # the loss runs a nested graph the walk does not follow


def build(tf: Any, raw_call: Callable[..., Any], make_inputs: Callable[[int], Any], b: int) -> Any:
    """The loss as a graph at batch size `b` (AutoGraph off, so op tracebacks name the user's lines)."""
    y_true, y_pred = make_inputs(b)

    def _lossdiag_trace_entry(t: Any, p: Any) -> Any:
        return raw_call(t, p)

    assert _lossdiag_trace_entry.__name__ == ENTRY
    fn = tf.function(_lossdiag_trace_entry, autograph=False, reduce_retracing=False)
    specs = [tf.TensorSpec(tuple(a.shape), tf.as_dtype(getattr(a, "dtype", "float32"))) for a in (y_true, y_pred)]
    return fn.get_concrete_function(*specs).graph


def build_partial(tf: Any, raw_call: Callable[..., Any], make_inputs: Callable[[int], Any], b: int) -> Any:
    """The ops the loss builds at batch size `b` before it raises (a loss that fails after a pairing
    has still built it): a plain graph with placeholders, the exception dropped."""
    y_true, y_pred = make_inputs(b)
    graph = tf.Graph()
    with graph.as_default():
        inputs = [tf.compat.v1.placeholder(tf.as_dtype(getattr(a, "dtype", "float32")), tuple(a.shape)) for a in (y_true, y_pred)]
        # the user's loss failing is why this graph is partial; its ops are what counts
        with contextlib.suppress(Exception):
            raw_call(*inputs)
    return graph


def _ancestors(ops: Sequence[Any]) -> set[str]:
    """The names of `ops` and of every op that feeds them."""
    found: set[str] = set()
    stack = list(ops)
    while stack:
        op = stack.pop()
        if op.name not in found:
            found.add(op.name)
            stack.extend(t.op for t in op.inputs)
    return found


def _live(graph: Any) -> set[str]:
    """Ops that feed the loss's value: asserts and prints do not count."""
    return _ancestors([t.op for t in graph.outputs])


def _infos(tf: Any, graph: Any, live: set[str], labels: Callable[[Any], Labels | None], extra: tuple[str, ...]) -> dict[str, OpInfo]:
    infos: dict[str, OpInfo] = {}
    for order, op in enumerate(graph.get_operations()):
        if op.type in tfops.IGNORED or op.name not in live or not op.outputs:
            continue
        site = site_of(op, extra)
        if site is not None:
            info = OpInfo(op, site, [labels(t) for t in op.inputs], [labels(t) for t in op.outputs], order)
            if op.type == "StridedSlice":
                info.subscript = tfops.subscript(tf, op)
            infos[op.name] = info
    return infos


def _first_events(infos: dict[str, OpInfo]) -> dict[str, OpInfo]:
    """In graph order, the first op that paired samples, merged the batch, and reduced it away."""
    found: dict[str, OpInfo] = {}
    for info in infos.values():
        if "broadcast" not in found and any(map(shapes.crossed, info.outs)) and not any(map(shapes.crossed, info.ins)):
            found["broadcast"] = info
        if "merged" not in found and any(map(shapes.merged, info.outs)) and not any(map(shapes.merged, info.ins)) and _valued(info) and _own_reshape(info):
            found["merged"] = info
        if "reduced" not in found and any(map(shapes.has_batch, info.ins)) and not any(map(shapes.batchy, info.outs)) and _valued(info):
            found["reduced"] = info
    return found


# Calls whose reshapes are the user's own flattening; inside anything else (Keras' sparse cross-entropy
# flattens (B, T, V) into rows and back) merging the batch with other axes is the library's business.
_FLATTENING_APIS = frozenset(
    {"", "reshape", "flatten", "batch_flatten", "ravel", "squeeze", "concatenate", "concat", "stack", "boolean_mask"}
)


def _own_reshape(info: OpInfo) -> bool:
    return info.site.api.lower() in _FLATTENING_APIS


def _valued(info: OpInfo) -> bool:
    """Its output is a real number, a loss value: an integer one is bookkeeping (label lengths and
    indices inside `K.ctc_batch_cost`), never the batch being reduced or merged away."""
    dtype = info.op.outputs[0].dtype if info.op.outputs else None
    return dtype is None or bool(dtype.is_floating)


def _drops_axis(info: OpInfo) -> bool:
    """The op kept the batch axis but its output has fewer axes than its batch-carrying input."""
    source = next((i for i in info.ins if shapes.has_batch(i)), None)
    out = info.outs[0] if info.outs else None
    return source is not None and out is not None and shapes.has_batch(out) and len(out) < len(source)


def producers(
    start: Sequence[Any],
    infos: dict[str, OpInfo],
    labels: Callable[[Any], Labels | None],
    follow: Callable[[Labels | None], bool],
) -> list[OpInfo]:
    """The user's slices/squeezes/reshapes that dropped a non-batch axis on the way to `start`.

    Walks back through tensors whose labels satisfy `follow`, stopping at each such op (one per source
    line, at most four, in graph order) and at reductions.
    """
    found: dict[tuple[str, int], OpInfo] = {}
    seen: set[str] = set()
    stack = list(start)
    while stack:
        op = stack.pop().op
        if op.name in seen:
            continue
        seen.add(op.name)
        info = infos.get(op.name)
        if info is not None and op.type in tfops.SETUPS and _drops_axis(info):
            key = (info.site.file, info.site.line)
            if key not in found or found[key].order < info.order:
                found[key] = info
            continue
        if op.type not in tfops.REDUCTIONS:  # a per-sample reduction made this tensor on purpose
            stack.extend(t for t in op.inputs if follow(labels(t)))
    return sorted(found.values(), key=lambda i: i.order)[-4:]


def cross_op(graph_ops: Sequence[Any], labels: Callable[[Any], Labels | None]) -> str:
    """The first elementwise op that broadcast a (B,) tensor against a (B, 1) one into (B, B) by accident:
    operands of different ranks, neither given its extra axis on purpose (expand_dims, `[:, None]`)."""
    for op in graph_ops:
        operands = _accidental_operands(op, labels) if op.type in tfops.BINARY and op.outputs else None
        if operands:
            symbol = tfops.BINARY[op.type][0]
            return f"{f' {symbol} '.join(shapes.fmt(lab) for lab in operands)} -> {shapes.fmt(labels(op.outputs[0]))}"
    return ""


def pooled_pairs(graph_ops: Sequence[Any], labels: Callable[[Any], Labels | None], y_pred: Any) -> str:
    """The first reduction that pooled a (B, B) tensor built from y_pred straight into a value with no
    batch axis (every pair of samples summed or averaged at once: a pairwise ranking or AUC surrogate),
    not row by row first (a per-anchor mining, an InfoNCE row), e.g. "sum over (B, B) -> ()"."""
    for op in graph_ops:
        if op.type not in tfops.REDUCTIONS or not op.inputs or not op.outputs:
            continue
        source, out = labels(op.inputs[0]), labels(op.outputs[0])
        if shapes.paired(source) and out is not None and not shapes.has_batch(out) and y_pred.op.name in _ancestors([op]):
            return f"{tfops.REDUCTIONS[op.type]} over {shapes.fmt(source)} -> {shapes.fmt(out)}"
    return ""


def _accidental_operands(op: Any, labels: Callable[[Any], Labels | None]) -> list[Labels] | None:
    """The batch-carrying operands of an op that crossed them by rank mismatch alone, else None."""
    ins = [labels(t) for t in op.inputs]
    if not shapes.paired(labels(op.outputs[0])) or any(map(shapes.paired, ins)):
        return None
    batchy = [(t, lab) for t, lab in zip(op.inputs, ins, strict=True) if lab is not None and shapes.has_batch(lab)]
    if len(batchy) < 2 or len({len(lab) for _, lab in batchy}) < 2:
        return None
    return None if any(tfops.adds_axis(t.op) for t, _ in batchy) else [lab for _, lab in batchy]


def _setups(walk: Walk, infos: dict[str, OpInfo], labels: Callable[[Any], Labels | None]) -> None:
    if "reduced" in walk.found:
        reduced = walk.found["reduced"]
        start = [t for t, lab in zip(reduced.op.inputs, reduced.ins, strict=True) if lab == ("B",)]
        walk.setups = producers(start, infos, labels, lambda lab: lab == ("B",))
    if "broadcast" in walk.found:
        bc = walk.found["broadcast"]
        ranks = [len(lab) for lab in bc.ins if lab is not None and shapes.has_batch(lab)]
        start = [t for t, lab in zip(bc.op.inputs, bc.ins, strict=True) if lab is not None and shapes.has_batch(lab) and len(lab) < max(ranks)]
        walk.broadcast_slices = producers(start, infos, labels, shapes.has_batch)


def walk(tf: Any, g1: Any, g2: Any, batch_sizes: tuple[int, int], extra: tuple[str, ...]) -> Walk:
    """Compare the two traces op by op and find what happened to the batch axis."""
    b1, b2 = batch_sizes
    other = {t.name: t.shape for op in g2.get_operations() for t in op.outputs}

    def labels(t: Any) -> Labels | None:
        return shapes.labels(t.shape, other.get(t.name), b1, b2)

    live = _live(g1)
    live_ops = [op for op in g1.get_operations() if op.name in live]
    infos = _infos(tf, g1, live, labels, extra)
    y_pred = g1.inputs[1] if len(g1.inputs) > 1 else None
    result = Walk(found=_first_events(infos), cross_op=cross_op(live_ops, labels))
    result.pooled_pairs = pooled_pairs(live_ops, labels, y_pred) if y_pred is not None else ""
    _setups(result, infos, labels)
    result.out_labels = labels(g1.outputs[0]) if g1.outputs else None
    result.nested = not result.found and any(op.type in tfops.CALLS for op in live_ops)
    return result


def peak_bytes(g1: Any, g2: Any, batch_sizes: tuple[int, int], at: int) -> int:
    """The largest tensor at batch size `at`: each tensor's element count fitted as c * B**k (k = 0..3)."""
    b1, b2 = batch_sizes
    second = {t.name: t for op in g2.get_operations() for t in op.outputs}
    peak = 0
    for op in g1.get_operations():
        for t in op.outputs:
            other = second.get(t.name)
            if other is None or not t.shape.is_fully_defined() or not other.shape.is_fully_defined():
                continue
            n1, n2 = t.shape.num_elements(), other.shape.num_elements()
            if n1 and n2:
                power = min(3, max(0, round(math.log(n2 / n1) / math.log(b2 / b1))))
                peak = max(peak, int(n1 / b1**power * at**power * max(1, t.dtype.size)))
    return peak
