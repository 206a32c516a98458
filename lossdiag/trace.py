"""Where in the user's source the batch axis was lost: a graph trace at two batch sizes.

The loss is traced (never run) with `tf.function(autograph=False)` at two batch sizes that share
no factor with the usual feature widths. An op's output dim that is `b` in both traces is the batch
axis `B`; `b*b` (or two `B` dims) pairs every sample with every other; `b*k` merged the batch
with `k` features. Each op's source line is the innermost frame of its traceback that lies in the
user's own files, so the event points at the line the user wrote, even inside a helper.
"""

from __future__ import annotations

import linecache
import math
import os
import re
import sys
import sysconfig
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lossdiag.measurement import Trace, TraceEvent

__all__ = ["TraceResult", "trace_loss"]


@dataclass(frozen=True)
class TraceResult:
    """The located events, and the (B,)-against-(B, 1) broadcast the graph shows, if any (a verdict fact)."""

    trace: Trace
    cross_op: str = ""

# ops that only compute shapes or do bookkeeping: never an event
_IGNORED_OPS = frozenset(
    {
        "Shape", "ShapeN", "Size", "Rank", "Const", "Identity", "IdentityN", "NoOp", "Placeholder",
        "Assert", "Print", "PrintV2", "StringFormat", "BroadcastGradientArgs", "BroadcastArgs",
        "VarHandleOp", "ReadVariableOp", "AssignVariableOp", "StopGradient", "PreventGradient",
        "CheckNumerics", "CheckNumericsV2", "EnsureShape", "DebugIdentity", "DebugIdentityV2",
    }
)  # fmt: skip

_REDUCTIONS = {
    "Sum": "sum", "Mean": "mean", "Max": "max", "Min": "min", "Prod": "prod", "All": "all",
    "Any": "any", "EuclideanNorm": "norm", "ArgMax": "argmax", "ArgMin": "argmin",
}  # fmt: skip

_BINARY_SYMBOLS = {
    "Sub": ("-", "subtracting"), "AddV2": ("+", "adding"), "Add": ("+", "adding"),
    "Mul": ("*", "multiplying"), "RealDiv": ("/", "dividing"), "DivNoNan": ("/", "dividing"),
    "SquaredDifference": ("squared difference", "taking the squared difference"),
    "Maximum": ("maximum", "taking the maximum"), "Minimum": ("minimum", "taking the minimum"),
    "Pow": ("**", "raising"), "Equal": ("==", "comparing"), "NotEqual": ("!=", "comparing"),
    "Less": ("<", "comparing"), "Greater": (">", "comparing"), "LessEqual": ("<=", "comparing"),
    "GreaterEqual": (">=", "comparing"), "SelectV2": ("where", "selecting"),
}  # fmt: skip

# the names under which users call a reduction (keras.ops, tf, tf_keras.backend, numpy-style)
_REDUCTION_APIS = frozenset(
    {"sum", "mean", "max", "min", "prod", "amax", "amin", "all", "any", "norm", "argmax", "argmin", "std",
     "var", "average", "logsumexp", "count_nonzero", "reduce_sum", "reduce_mean", "reduce_max", "reduce_min",
     "reduce_prod", "reduce_all", "reduce_any", "reduce_euclidean_norm", "reduce_logsumexp", "reduce_std",
     "reduce_variance", "nansum", "nanmean"}
)  # fmt: skip

# library frames that only wrap the API the user called
_WRAPPER_FRAMES = frozenset(
    {"error_handler", "op_dispatch_handler", "wrapper", "_wrapper", "binary_op_wrapper",
     "r_binary_op_wrapper", "wrapped", "inner", "new_func"}
)  # fmt: skip

# ops that run a nested graph (a loss decorated with @tf.function, tf.cond, tf.while_loop)
_CALL_OPS = frozenset({"PartitionedCall", "StatefulPartitionedCall", "If", "StatelessIf", "While", "StatelessWhile"})

# ops that can drop a non-batch axis and leave a (B,) tensor: the "setup" of a later reduction
_SETUP_OPS = frozenset({"StridedSlice", "Squeeze", "Reshape", "GatherV2", "Gather", "Unpack", "Slice"})


_THIS_FILE = os.path.realpath(os.path.abspath(__file__))


@dataclass
class _Site:
    file: str
    line: int
    api: str  # the library function the user's line called, e.g. "sum" ("" if unknown)


# --------------------------------------------------------------------------------------------
# which files are the user's


def _library_roots() -> tuple[str, ...]:
    roots: set[str] = set()
    for prefix in (sys.base_prefix, sys.prefix, sys.exec_prefix):
        scheme_vars = {"base": prefix, "platbase": prefix}
        for key in ("stdlib", "platstdlib", "purelib", "platlib"):
            try:
                roots.add(os.path.realpath(sysconfig.get_path(key, vars=scheme_vars)))
            except (KeyError, ValueError):  # pragma: no cover - exotic interpreters
                pass
    roots.add(os.path.realpath(os.path.dirname(os.path.abspath(__file__))))  # lossdiag itself
    return tuple(sorted(r + os.sep for r in roots if r))


def _is_user_file(filename: str, roots: tuple[str, ...], extra: tuple[str, ...]) -> bool:
    if not filename or filename.startswith("<"):
        return False
    path = os.path.realpath(filename)
    if any(path == e or path.startswith(e + os.sep) for e in extra):
        return True
    parts = path.split(os.sep)
    if "site-packages" in parts or "dist-packages" in parts:
        return False
    return not any(path.startswith(root) for root in roots)


def _loss_source_dir(raw_call: Callable[..., Any]) -> tuple[str, ...]:
    """The folder of the loss's own code, trusted even when it is installed in site-packages."""
    target: Any = getattr(raw_call, "__self__", None)
    fn = getattr(target, "fn", None) or getattr(raw_call, "__func__", None) or raw_call
    code = getattr(getattr(fn, "func", fn), "__code__", None)
    if code is None:
        return ()
    path = os.path.realpath(code.co_filename)
    parts = set(path.split(os.sep))
    if parts & {"keras", "tf_keras", "tensorflow", "lossdiag"} or path.startswith("<"):
        return ()
    if not ({"site-packages", "dist-packages"} & parts):
        return ()  # already a user file by the ordinary rule
    return (os.path.dirname(path),)


def _site(op: Any, roots: tuple[str, ...], extra: tuple[str, ...]) -> _Site | None:
    """The innermost frame of `op`'s traceback in the user's files, below the traced entry."""
    try:
        frames = list(op.traceback)
    except Exception:  # noqa: BLE001 - ops without a traceback simply have no site
        return None
    start = 0
    for i, frame in enumerate(frames):  # frames are outermost first; cut at our own entry point
        if frame.name == "_lossdiag_trace_entry" and os.path.realpath(frame.filename) == _THIS_FILE:
            start = i + 1
    for i in range(len(frames) - 1, start - 1, -1):
        frame = frames[i]
        if _is_user_file(frame.filename, roots, extra):
            api = ""
            for inner in frames[i + 1 :]:
                if inner.name not in _WRAPPER_FRAMES and not inner.name.startswith("_"):
                    api = inner.name
                    break
            return _Site(os.path.abspath(frame.filename), int(frame.lineno), api)
    return None


# --------------------------------------------------------------------------------------------
# symbolic shapes from two traces


def _label(d1: int | None, d2: int | None, b1: int, b2: int) -> str:
    if d1 is None or d2 is None:
        return "?"
    if d1 == b1 and d2 == b2:
        return "B"
    if d1 == b1 * b1 and d2 == b2 * b2:
        return "B*B"
    if d1 % b1 == 0 and d2 % b2 == 0 and d1 // b1 == d2 // b2 and d1 // b1 > 1:
        return f"B*{d1 // b1}"
    if d1 == d2:
        return str(d1)
    return "~B"  # depends on the batch size some other way


def _labels(shape1: Any, shape2: Any, b1: int, b2: int) -> tuple[str, ...] | None:
    """Symbolic dims of one tensor, or None when its rank is unknown or differs between traces."""
    if shape2 is None or shape1.rank is None or shape2.rank is None or shape1.rank != shape2.rank:
        return None
    return tuple(_label(a, b, b1, b2) for a, b in zip(shape1.as_list(), shape2.as_list()))


def _batchy(labels: tuple[str, ...] | None) -> bool:
    return labels is None or any(d == "B" or d.startswith("B*") or d in ("~B", "?") for d in labels)


def _has_batch(labels: tuple[str, ...] | None) -> bool:
    return labels is not None and any(d == "B" or d.startswith("B*") or d == "~B" for d in labels)


def _crossed(labels: tuple[str, ...] | None) -> bool:
    return labels is not None and ("B*B" in labels or labels.count("B") >= 2)


def _merged(labels: tuple[str, ...] | None) -> bool:
    return labels is not None and any(d.startswith("B*") and d != "B*B" for d in labels)


def _fmt(labels: tuple[str, ...] | None) -> str:
    if labels is None:
        return "(?)"
    if len(labels) == 1:
        return f"({labels[0]},)"
    return "(" + ", ".join(labels) + ")"


# --------------------------------------------------------------------------------------------
# describing ops


def _static(tf: Any, tensor: Any) -> Any:
    try:
        return tf.get_static_value(tensor)
    except Exception:  # noqa: BLE001
        return None


def _slice_parts(tf: Any, op: Any) -> list[tuple[str, str]] | None:
    """A StridedSlice as [(kind, text)], kind in full|range|index|ellipsis|newaxis."""
    begin, end, strides = (_static(tf, op.inputs[i]) for i in (1, 2, 3))
    if begin is None or end is None or strides is None:
        return None
    names = ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")
    masks = {k: op.get_attr(k) for k in names}
    parts: list[tuple[str, str]] = []
    for i in range(len(begin)):
        bit = 1 << i
        if masks["ellipsis_mask"] & bit:
            parts.append(("ellipsis", "..."))
        elif masks["new_axis_mask"] & bit:
            parts.append(("newaxis", "None"))
        elif masks["shrink_axis_mask"] & bit:
            parts.append(("index", str(int(begin[i]))))
        else:
            lo = "" if masks["begin_mask"] & bit else str(int(begin[i]))
            hi = "" if masks["end_mask"] & bit else str(int(end[i]))
            step = "" if int(strides[i]) == 1 else f":{int(strides[i])}"
            kind = "full" if not lo and not hi and not step else "range"
            parts.append((kind, f"{lo}:{hi}{step}"))
    return parts


def _slice_text(parts: Sequence[tuple[str, str]]) -> str:
    return "[" + ", ".join(text for _, text in parts) + "]"


def _keep_axis(parts: Sequence[tuple[str, str]]) -> str:
    def keep(text: str) -> str:
        i = int(text)
        return f"{i}:" if i == -1 else f"{i}:{i + 1}"

    return "[" + ", ".join(keep(t) if k == "index" else t for k, t in parts) + "]"


def _reduction_axes(tf: Any, op: Any, rank: int | None) -> list[int] | None:
    value = _static(tf, op.inputs[1]) if len(op.inputs) > 1 else None
    if value is None:
        return None
    axes = [int(a) for a in (value.reshape(-1) if hasattr(value, "reshape") else [value])]
    if rank:
        axes = [a + rank if a < 0 else a for a in axes]
    return sorted(set(axes))


def _axis_text(tf: Any, op: Any) -> str:
    value = _static(tf, op.inputs[1]) if len(op.inputs) > 1 else None
    if value is None:
        return "?"
    flat = [int(a) for a in (value.reshape(-1) if hasattr(value, "reshape") else [value])]
    if getattr(value, "ndim", 0) == 0 and len(flat) == 1:
        return str(flat[0])
    return "[" + ", ".join(map(str, flat)) + "]"


@dataclass
class _Info:
    op: Any
    site: _Site
    ins: list[tuple[str, ...] | None]
    outs: list[tuple[str, ...] | None]
    order: int  # position in the graph
    slice: list[tuple[str, str]] | None = None  # a StridedSlice's subscript, parsed


def _describe(tf: Any, info: _Info) -> tuple[str, str]:
    """(op text for the event, the call as the user would write it)."""
    op, api = info.op, info.site.api
    kind = op.type
    if kind in _REDUCTIONS:
        name = _REDUCTIONS[kind]
        rank = len(info.ins[0]) if info.ins and info.ins[0] is not None else None
        axes = _reduction_axes(tf, op, rank)
        text = _axis_text(tf, op)
        everything = axes is not None and rank is not None and axes == list(range(rank))
        everything = everything and (rank > 1 or text.startswith("["))
        what = f"{name} over all axes" if everything else f"{name} over axis {text}"
        if api and name not in api and api not in _REDUCTION_APIS:
            return what, f"`{api}` (a {what} inside it)"
        call_name = api if api and not api.startswith("__") else name
        return what, f"`{call_name}()`" if everything else f"`{call_name}(axis={text})`"
    if kind == "StridedSlice":
        text = _slice_text(info.slice) if info.slice else "[...]"
        return f"slice {text}", f"the slice `{text}`"
    if kind in _BINARY_SYMBOLS:
        symbol, _ = _BINARY_SYMBOLS[kind]
        return f"{symbol}", f"`{symbol}`"
    if kind == "Reshape":
        name = api or "reshape"
        return f"{name} (reshape to {_fmt(info.outs[0])})", f"`{name}`"
    if kind == "Squeeze":
        return "squeeze", f"`{api or 'squeeze'}`"
    if kind in ("MatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum"):
        return "matmul", f"`{api or 'matmul'}`"
    name = api or kind
    return f"{name} ({kind})", f"`{name}`"


def _io_shapes(info: _Info) -> str:
    ins = [lab for lab in info.ins if _has_batch(lab)] or [lab for lab in info.ins if lab is not None]
    out = info.outs[0] if info.outs else None
    return f"{' and '.join(_fmt(lab) for lab in ins[:2])} -> {_fmt(out)}"


def _where(info: _Info, relative_to: _Site) -> str:
    if info.site.file == relative_to.file:
        return f"line {info.site.line}"
    return f"line {info.site.line} of {os.path.basename(info.site.file)}"


# --------------------------------------------------------------------------------------------
# hints


def _source(file: str, line: int) -> str:
    return linecache.getline(file, line).strip()


_SUBSCRIPT = re.compile(r"([A-Za-z_][\w.]*)\s*\[([^\[\]]*)\]")


def _slice_fixes(slices: Sequence[_Info]) -> str:
    """`yz[:, 1:2]` instead of `yz[:, 1]` (line 12), one clause per source line."""
    by_line: dict[tuple[str, int], tuple[list[str], list[str]]] = {}
    for info in slices:
        parts = info.slice
        if not parts:
            continue
        old, new = _slice_text(parts), _keep_axis(parts)
        olds, news = by_line.setdefault((info.site.file, info.site.line), ([], []))
        names = [
            m.group(1)
            for m in _SUBSCRIPT.finditer(_source(info.site.file, info.site.line))
            if "[" + m.group(2).replace(" ", "") + "]" == old.replace(" ", "")
        ]
        for name in names or ["x"]:
            if f"`{name}{old}`" not in olds:
                olds.append(f"`{name}{old}`")
                news.append(f"`{name}{new}`")
    return "; ".join(f"{' and '.join(n)} instead of {' and '.join(o)} (line {line})" for (_, line), (o, n) in by_line.items())


def _per_sample_axes(rank: int) -> str:
    return "axis=-1" if rank <= 2 else "axis=[" + ", ".join(str(i) for i in range(1, rank)) + "]"


def _hint(tf: Any, found: dict[str, _Info], setups: Sequence[_Info], broadcast_slices: Sequence[_Info]) -> str:
    primary = min(
        (found[k] for k in ("broadcast", "merged", "reduced") if k in found),
        key=lambda i: i.order,
        default=None,
    )
    if primary is None:
        return ""
    line = primary.site.line
    if primary is found.get("broadcast"):
        if primary.op.type in ("MatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum"):
            return (
                f"the matmul on line {line} pairs every sample with every other one; for one value per sample "
                "multiply elementwise and reduce the feature axis: `ops.sum(a * b, axis=-1)`"
            )
        verb = _BINARY_SYMBOLS.get(primary.op.type, ("", "combining them"))[1]
        fixes = _slice_fixes([s for s in broadcast_slices if s.op.type == "StridedSlice"])
        if fixes:
            return f"keep the axis so both operands have the same rank before {verb} on line {line}: {fixes}"
        shapes = " and ".join(_fmt(lab) for lab in primary.ins if _has_batch(lab))
        return (
            f"give both operands the same rank before {verb} on line {line} (they are {shapes}): both (B, 1) "
            "or both (B,), e.g. slice with a range such as `y[:, 0:1]`, or reshape one of them"
        )
    if primary is found.get("merged"):
        src = _source(primary.site.file, line)
        flat = "K.batch_flatten(x)" if re.search(r"\bK\.|backend", src) else "ops.reshape(x, (ops.shape(x)[0], -1))"
        tail = ", then reduce with `axis=-1`" if "reduced" in found else ""
        return f"flatten per sample, not the whole batch (line {line}): `{flat}`{tail}"
    if setups:
        fixes = _slice_fixes([s for s in setups if s.op.type == "StridedSlice"])
        if fixes:
            return f"keep the axis: {fixes}"
        setup = setups[-1]
        if setup.op.type == "Squeeze":
            return f"keep the feature axis: drop the squeeze on line {setup.site.line} so the tensor stays (B, 1)"
        return f"keep the feature axis on line {setup.site.line} so the tensor stays (B, 1) before the reduction"
    rank = len(primary.ins[0]) if primary.ins and primary.ins[0] is not None else None
    axes = _reduction_axes(tf, primary.op, rank) if primary.op.type in _REDUCTIONS else None
    name = _REDUCTIONS.get(primary.op.type, "reduce")
    if rank is not None and rank > 1 and axes is not None:
        if axes == list(range(rank)):
            return f"reduce over the per-sample axes only (line {line}): `{name}(..., {_per_sample_axes(rank)})`"
        if 0 in axes:
            return f"reduce over the feature axes, not the batch (line {line}): `{name}(..., {_per_sample_axes(rank)})`"
    if rank == 1:
        return f"the tensor is already (B,) on line {line}: drop this {name} or keep a feature axis before it"
    return f"keep the batch axis (axis 0) out of the reduction on line {line}"


# --------------------------------------------------------------------------------------------
# the walk


def _graph(tf: Any, raw_call: Callable[..., Any], make_inputs: Callable[[int], Any], b: int) -> Any:
    y_true, y_pred = make_inputs(b)

    def _lossdiag_trace_entry(t: Any, p: Any) -> Any:
        return raw_call(t, p)

    fn = tf.function(_lossdiag_trace_entry, autograph=False, reduce_retracing=False)
    specs = [tf.TensorSpec(tuple(a.shape), tf.as_dtype(getattr(a, "dtype", "float32"))) for a in (y_true, y_pred)]
    return fn.get_concrete_function(*specs).graph


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if len(first) > 160 and ". " in first:
        first = first[: first.index(". ") + 1]
    return f"{type(exc).__name__}: {first[:240]}" if first else type(exc).__name__


def trace_loss(
    raw_call: Callable[..., Any],
    make_inputs: Callable[[int], Any],
    *,
    batch_sizes: Sequence[int] = (7, 11),
    on_call: Callable[[], None] | None = None,
) -> TraceResult:
    """Trace `raw_call` at two batch sizes and report where the batch axis was lost, broadcast or merged.

    Never raises: a loss that cannot be traced gives `Trace(error=...)`. `on_call` runs before each trace
    (each runs the user's code once).
    """
    try:
        return _trace(raw_call, make_inputs, tuple(batch_sizes), on_call)
    except Exception as exc:  # noqa: BLE001 - a failed trace is a fact, never a crash
        return TraceResult(Trace(error=_one_line(exc)))


_EXPANDING = frozenset({"ExpandDims"})


def _adds_axis(tf: Any, op: Any) -> bool:
    """An explicit expand_dims or `[:, None]`: a pairing the author meant."""
    if op.type in _EXPANDING:
        return True
    if op.type == "StridedSlice":
        try:
            return bool(op.get_attr("new_axis_mask"))
        except Exception:  # noqa: BLE001
            return False
    return False


def _cross_op(tf: Any, ops: Sequence[Any], labels: Callable[[Any], tuple[str, ...] | None]) -> str:
    """The first elementwise op that broadcast a (B,) tensor against a (B, 1) one into (B, B) by accident:
    operands of different ranks, neither given its extra axis on purpose."""
    for op in ops:
        if op.type not in _BINARY_SYMBOLS or not op.outputs:
            continue
        ins = [labels(t) for t in op.inputs]
        if not _crossed(labels(op.outputs[0])) or any(map(_crossed, ins)):
            continue
        batchy = [(t, lab) for t, lab in zip(op.inputs, ins) if _has_batch(lab)]
        if len(batchy) < 2 or len({len(lab) for _, lab in batchy}) < 2:
            continue
        if any(_adds_axis(tf, t.op) for t, _ in batchy):
            continue
        symbol = _BINARY_SYMBOLS[op.type][0]
        return f"{f' {symbol} '.join(_fmt(lab) for _, lab in batchy)} -> {_fmt(labels(op.outputs[0]))}"
    return ""


def _trace(
    raw_call: Callable[..., Any],
    make_inputs: Callable[[int], Any],
    batch_sizes: tuple[int, ...],
    on_call: Callable[[], None] | None,
) -> TraceResult:
    from lossdiag import _tf

    tf, _ = _tf.load()
    b1, b2 = batch_sizes[0], batch_sizes[1]
    if on_call is not None:
        on_call()
    g1 = _graph(tf, raw_call, make_inputs, b1)
    if on_call is not None:
        on_call()
    g2 = _graph(tf, raw_call, make_inputs, b2)
    other = {t.name: t.shape for op in g2.get_operations() for t in op.outputs}

    def labels(t: Any) -> tuple[str, ...] | None:
        return _labels(t.shape, other.get(t.name), b1, b2)

    # only ops that feed the loss's value count: asserts and prints do not
    live: set[str] = set()
    stack = [t.op for t in g1.outputs]
    while stack:
        op = stack.pop()
        if op.name not in live:
            live.add(op.name)
            stack.extend(t.op for t in op.inputs)

    roots, extra = _library_roots(), _loss_source_dir(raw_call)
    infos: dict[str, _Info] = {}
    for order, op in enumerate(g1.get_operations()):
        if op.type in _IGNORED_OPS or op.name not in live or not op.outputs:
            continue
        site = _site(op, roots, extra)
        if site is not None:
            info = _Info(op, site, [labels(t) for t in op.inputs], [labels(t) for t in op.outputs], order)
            if op.type == "StridedSlice":
                info.slice = _slice_parts(tf, op)
            infos[op.name] = info

    found: dict[str, _Info] = {}
    for info in infos.values():  # in graph order
        if "broadcast" not in found and any(map(_crossed, info.outs)) and not any(map(_crossed, info.ins)):
            found["broadcast"] = info
        if "merged" not in found and any(map(_merged, info.outs)) and not any(map(_merged, info.ins)):
            found["merged"] = info
        if "reduced" not in found and any(map(_has_batch, info.ins)) and not any(map(_batchy, info.outs)):
            found["reduced"] = info

    setups: list[_Info] = []
    if "reduced" in found:
        reduced = found["reduced"]
        start = [t for t, lab in zip(reduced.op.inputs, reduced.ins) if lab == ("B",)]
        setups = _producers(start, infos, labels, lambda lab: lab == ("B",))
    broadcast_slices: list[_Info] = []
    if "broadcast" in found:
        bc = found["broadcast"]
        ranks = [len(lab) for lab in bc.ins if _has_batch(lab)]
        start = [t for t, lab in zip(bc.op.inputs, bc.ins) if _has_batch(lab) and len(lab) < max(ranks)]
        broadcast_slices = _producers(start, infos, labels, _has_batch)

    cross = _cross_op(tf, [op for op in g1.get_operations() if op.name in live], labels)
    if not found and any(op.type in _CALL_OPS for op in g1.get_operations() if op.name in live):
        error = "the loss runs a nested graph (@tf.function, tf.cond or tf.while_loop) that is not followed"
        return TraceResult(Trace(error=error), cross)
    out_labels = labels(g1.outputs[0]) if g1.outputs else None
    events = [(info.order, _event(tf, kind, info, found, setups, out_labels)) for kind, info in found.items()]
    events += [(s.order, _setup_event(s)) for s in setups]
    events.sort(key=lambda pair: pair[0])
    trace = Trace(events=tuple(e for _, e in events), hint=_hint(tf, found, setups, broadcast_slices))
    return TraceResult(trace, cross)


def _producers(
    start: Sequence[Any],
    infos: dict[str, _Info],
    labels: Callable[[Any], tuple[str, ...] | None],
    follow: Callable[[tuple[str, ...] | None], bool],
) -> list[_Info]:
    """The user's slices/squeezes/reshapes that dropped a non-batch axis on the way to `start`.

    Walks back from `start` through tensors whose labels satisfy `follow`, stopping at each such op
    (one per source line, at most four, in graph order) and at reductions.
    """
    found: dict[tuple[str, int], _Info] = {}
    seen: set[str] = set()
    stack = list(start)
    while stack:
        op = stack.pop().op
        if op.name in seen:
            continue
        seen.add(op.name)
        info = infos.get(op.name)
        if info is not None and op.type in _SETUP_OPS and _drops_axis(info):
            key = (info.site.file, info.site.line)
            if key not in found or found[key].order < info.order:
                found[key] = info
            continue
        if op.type in _REDUCTIONS:
            continue  # a per-sample reduction made this tensor on purpose
        stack.extend(t for t in op.inputs if follow(labels(t)))
    return sorted(found.values(), key=lambda i: i.order)[-4:]


def _drops_axis(info: _Info) -> bool:
    """The op kept the batch axis but its output has fewer axes than its batch-carrying input."""
    source = next((i for i in info.ins if _has_batch(i)), None)
    out = info.outs[0] if info.outs else None
    return source is not None and _has_batch(out) and len(out) < len(source)


def _setup_event(info: _Info) -> TraceEvent:
    op_text = "squeeze" if info.op.type == "Squeeze" else None
    what = "slice" if info.op.type == "StridedSlice" else (info.site.api or info.op.type.lower())
    return TraceEvent(
        kind="setup",
        op=op_text or (f"slice {_slice_text(info.slice)}" if info.slice else what),
        file=info.site.file,
        line=info.site.line,
        shapes=_io_shapes(info),
        message=f"this {what} dropped the feature axis and left a (B,) tensor: {_io_shapes(info)}",
    )


def _event(
    tf: Any,
    kind: str,
    info: _Info,
    found: dict[str, _Info],
    setups: Sequence[_Info],
    out_labels: tuple[str, ...] | None,
) -> TraceEvent:
    op_text, call = _describe(tf, info)
    shapes = _io_shapes(info)
    if kind == "broadcast":
        ins = " and ".join(_fmt(lab) for lab in info.ins if _has_batch(lab))
        message = f"{call} broadcast {ins} into {_fmt(info.outs[0])}: every sample was paired with every other one"
    elif kind == "merged":
        message = f"{call} flattened the batch axis together with the features: {shapes}"
    else:
        out = info.outs[0] if info.outs else None
        merged = found.get("merged")
        if setups:
            last = setups[-1]
            what = "slice" if last.op.type == "StridedSlice" else (last.site.api or last.op.type.lower())
            if len(setups) > 1 and all(s.site.file == last.site.file for s in setups):
                lines = [str(s.site.line) for s in setups]
                several = "lines " + ", ".join(lines[:-1]) + f" and {lines[-1]}"
                where = _where(last, info.site).replace(f"line {last.site.line}", several)
                what += "s"
            else:
                where = _where(last, info.site)
            message = f"{call} ran over the batch axis: the {what} on {where} left (B,) where (B, 1) was meant"
        elif merged is not None and merged.order < info.order:
            message = (
                f"{call} reduced the batch axis away: {shapes}; the flatten on {_where(merged, info.site)} "
                "had merged the batch with the features"
            )
        elif _has_batch(out_labels):
            message = f"{call} reduced over the batch axis: {shapes}; the result is mixed into every sample's loss"
        elif out is not None and len(out) > 0:
            message = f"{call} reduced over the batch axis and kept another one: {shapes}"
        else:
            message = f"{call} reduced the batch axis away: {shapes}"
    return TraceEvent(kind=kind, op=op_text, file=info.site.file, line=info.site.line, shapes=shapes, message=message)


def estimate_peak_bytes(
    raw_call: Callable[..., Any], make_inputs: Callable[[int], Any], batch_sizes: Sequence[int], at: int
) -> int | None:
    """The largest tensor the loss builds at batch size `at`, from graph traces at two small batch sizes.

    Each tensor's element count is fitted as c * B**k (k = 0..3): a (B, B, H, W) pairing is k = 2. None
    when the loss cannot be traced (a numpy loss): the worker's memory watchdog still applies then.
    """
    try:
        from lossdiag import _tf

        tf, _ = _tf.load()
        b1, b2 = batch_sizes[0], batch_sizes[1]
        g1, g2 = (_graph(tf, raw_call, make_inputs, b) for b in (b1, b2))
    except Exception:  # noqa: BLE001 - an untraceable loss has no estimate
        return None
    sizes2 = {t.name: t for op in g2.get_operations() for t in op.outputs}
    peak = 0
    for op in g1.get_operations():
        for t in op.outputs:
            other = sizes2.get(t.name)
            if other is None or not t.shape.is_fully_defined() or not other.shape.is_fully_defined():
                continue
            n1, n2 = t.shape.num_elements(), other.shape.num_elements()
            if not n1 or not n2:
                continue
            power = min(3, max(0, round(math.log(n2 / n1) / math.log(b2 / b1))))
            estimate = n1 / b1**power * at**power * max(1, t.dtype.size)
            peak = max(peak, int(estimate))
    return peak
