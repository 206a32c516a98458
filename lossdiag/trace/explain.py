"""Turn what the graph walk found into words: each event's message, and the concrete fix for the source line."""

from __future__ import annotations

import linecache
import os
import re
from collections.abc import Sequence
from typing import Any

from lossdiag.measurement import TraceEvent
from lossdiag.trace import ops as tfops
from lossdiag.trace import shapes
from lossdiag.trace.graph import OpInfo, Walk
from lossdiag.trace.sites import Site


def _reduction(tf: Any, info: OpInfo) -> tuple[str, str]:
    name, api = tfops.REDUCTIONS[info.op.type], info.site.api
    rank = len(info.ins[0]) if info.ins and info.ins[0] is not None else None
    axes = tfops.reduction_axes(tf, info.op, rank)
    text = tfops.axis_text(tf, info.op)
    everything = axes is not None and rank is not None and axes == list(range(rank)) and (rank > 1 or text.startswith("["))
    what = f"{name} over all axes" if everything else f"{name} over axis {text}"
    if api and name not in api and api not in tfops.REDUCTION_APIS:
        return what, f"`{api}` (a {what} inside it)"
    call = api if api and not api.startswith("__") else name
    return what, f"`{call}()`" if everything else f"`{call}(axis={text})`"


def describe(tf: Any, info: OpInfo) -> tuple[str, str]:
    """(the op for the event, the call as the user would write it)."""
    kind, api = info.op.type, info.site.api
    if kind in tfops.REDUCTIONS:
        return _reduction(tf, info)
    if kind == "StridedSlice":
        text = tfops.subscript_text(info.subscript) if info.subscript else "[...]"
        return f"slice {text}", f"the slice `{text}`"
    if kind in tfops.BINARY:
        symbol = tfops.BINARY[kind][0]
        return symbol, f"`{symbol}`"
    if kind == "Reshape":
        return f"{api or 'reshape'} (reshape to {shapes.fmt(info.outs[0])})", f"`{api or 'reshape'}`"
    if kind == "Squeeze":
        return "squeeze", f"`{api or 'squeeze'}`"
    if kind in tfops.MATMULS:
        return "matmul", f"`{api or 'matmul'}`"
    return f"{api or kind} ({kind})", f"`{api or kind}`"


def io_shapes(info: OpInfo) -> str:
    ins = [lab for lab in info.ins if shapes.has_batch(lab)] or [lab for lab in info.ins if lab is not None]
    out = info.outs[0] if info.outs else None
    return f"{' and '.join(shapes.fmt(lab) for lab in ins[:2])} -> {shapes.fmt(out)}"


def _where(info: OpInfo, relative_to: Site) -> str:
    if info.site.file == relative_to.file:
        return f"line {info.site.line}"
    return f"line {info.site.line} of {os.path.basename(info.site.file)}"


# ----------------------------------------------------------------------------------------------
# the fix


def _source(file: str, line: int) -> str:
    return linecache.getline(file, line).strip()


_SUBSCRIPT = re.compile(r"([A-Za-z_][\w.]*)\s*\[([^\[\]]*)\]")


def _slice_fixes(slices: Sequence[OpInfo]) -> str:
    """`yz[:, 1:2]` instead of `yz[:, 1]` (line 12), one clause per source line."""
    by_line: dict[tuple[str, int], tuple[list[str], list[str]]] = {}
    for info in slices:
        if not info.subscript:
            continue
        old, new = tfops.subscript_text(info.subscript), tfops.keep_axis(info.subscript)
        olds, news = by_line.setdefault((info.site.file, info.site.line), ([], []))
        written = _SUBSCRIPT.finditer(_source(info.site.file, info.site.line))
        names = [m.group(1) for m in written if "[" + m.group(2).replace(" ", "") + "]" == old.replace(" ", "")]
        for name in names or ["x"]:
            if f"`{name}{old}`" not in olds:
                olds.append(f"`{name}{old}`")
                news.append(f"`{name}{new}`")
    return "; ".join(f"{' and '.join(n)} instead of {' and '.join(o)} (line {line})" for (_, line), (o, n) in by_line.items())


def _per_sample_axes(rank: int) -> str:
    return "axis=-1" if rank <= 2 else "axis=[" + ", ".join(str(i) for i in range(1, rank)) + "]"


def _broadcast_hint(primary: OpInfo, walk: Walk) -> str:
    line = primary.site.line
    if primary.op.type in tfops.MATMULS:
        return (
            f"the matmul on line {line} pairs every sample with every other one; for one value per sample "
            "multiply elementwise and reduce the feature axis: `ops.sum(a * b, axis=-1)`"
        )
    verb = tfops.BINARY.get(primary.op.type, ("", "combining them"))[1]
    fixes = _slice_fixes([s for s in walk.broadcast_slices if s.op.type == "StridedSlice"])
    if fixes:
        return f"keep the axis so both operands have the same rank before {verb} on line {line}: {fixes}"
    both = " and ".join(shapes.fmt(lab) for lab in primary.ins if shapes.has_batch(lab))
    return (
        f"give both operands the same rank before {verb} on line {line} (they are {both}): both (B, 1) "
        "or both (B,), e.g. slice with a range such as `y[:, 0:1]`, or reshape one of them"
    )


def _merged_hint(primary: OpInfo, walk: Walk) -> str:
    src = _source(primary.site.file, primary.site.line)
    flat = "K.batch_flatten(x)" if re.search(r"\bK\.|backend", src) else "ops.reshape(x, (ops.shape(x)[0], -1))"
    tail = ", then reduce with `axis=-1`" if "reduced" in walk.found else ""
    return f"flatten per sample, not the whole batch (line {primary.site.line}): `{flat}`{tail}"


def _setup_hint(walk: Walk) -> str:
    fixes = _slice_fixes([s for s in walk.setups if s.op.type == "StridedSlice"])
    if fixes:
        return f"keep the axis: {fixes}"
    setup = walk.setups[-1]
    if setup.op.type == "Squeeze":
        return f"keep the feature axis: drop the squeeze on line {setup.site.line} so the tensor stays (B, 1)"
    return f"keep the feature axis on line {setup.site.line} so the tensor stays (B, 1) before the reduction"


def _reduction_hint(tf: Any, primary: OpInfo) -> str:
    line = primary.site.line
    rank = len(primary.ins[0]) if primary.ins and primary.ins[0] is not None else None
    axes = tfops.reduction_axes(tf, primary.op, rank) if primary.op.type in tfops.REDUCTIONS else None
    name = tfops.REDUCTIONS.get(primary.op.type, "reduce")
    if rank is not None and rank > 1 and axes is not None and axes == list(range(rank)):
        return f"reduce over the per-sample axes only (line {line}): `{name}(..., {_per_sample_axes(rank)})`"
    if rank is not None and rank > 1 and axes is not None and 0 in axes:
        return f"reduce over the feature axes, not the batch (line {line}): `{name}(..., {_per_sample_axes(rank)})`"
    if rank == 1:
        return f"the tensor is already (B,) on line {line}: drop this {name} or keep a feature axis before it"
    return f"keep the batch axis (axis 0) out of the reduction on line {line}"


def hint(tf: Any, walk: Walk) -> str:
    """The fix for the first thing that went wrong, in graph order."""
    found = walk.found
    primary = min((found[k] for k in ("broadcast", "merged", "reduced") if k in found), key=lambda i: i.order, default=None)
    if primary is None:
        return ""
    if primary is found.get("broadcast"):
        return _broadcast_hint(primary, walk)
    if primary is found.get("merged"):
        return _merged_hint(primary, walk)
    return _setup_hint(walk) if walk.setups else _reduction_hint(tf, primary)


# ----------------------------------------------------------------------------------------------
# the events


def _setup_event(info: OpInfo) -> TraceEvent:
    what = "slice" if info.op.type == "StridedSlice" else (info.site.api or info.op.type.lower())
    op_text = "squeeze" if info.op.type == "Squeeze" else (f"slice {tfops.subscript_text(info.subscript)}" if info.subscript else what)
    return TraceEvent(
        kind="setup", op=op_text, file=info.site.file, line=info.site.line, shapes=io_shapes(info),
        message=f"this {what} dropped the feature axis and left a (B,) tensor: {io_shapes(info)}",
    )


def _after_setups(call: str, info: OpInfo, setups: Sequence[OpInfo]) -> str:
    last = setups[-1]
    what = "slice" if last.op.type == "StridedSlice" else (last.site.api or last.op.type.lower())
    where = _where(last, info.site)
    if len(setups) > 1 and all(s.site.file == last.site.file for s in setups):
        lines = [str(s.site.line) for s in setups]
        where = where.replace(f"line {last.site.line}", "lines " + ", ".join(lines[:-1]) + f" and {lines[-1]}")
        what += "s"
    return f"{call} ran over the batch axis: the {what} on {where} left (B,) where (B, 1) was meant"


def _reduced_message(call: str, info: OpInfo, walk: Walk) -> str:
    io, merged = io_shapes(info), walk.found.get("merged")
    out = info.outs[0] if info.outs else None
    if walk.setups:
        return _after_setups(call, info, walk.setups)
    if merged is not None and merged.order < info.order:
        return f"{call} reduced the batch axis away: {io}; the flatten on {_where(merged, info.site)} had merged the batch with the features"
    if shapes.has_batch(walk.out_labels):
        return f"{call} reduced over the batch axis: {io}; the result is mixed into every sample's loss"
    if out is not None and len(out) > 0:
        return f"{call} reduced over the batch axis and kept another one: {io}"
    return f"{call} reduced the batch axis away: {io}"


def _event(tf: Any, kind: str, info: OpInfo, walk: Walk) -> TraceEvent:
    op_text, call = describe(tf, info)
    if kind == "broadcast":
        ins = " and ".join(shapes.fmt(lab) for lab in info.ins if shapes.has_batch(lab))
        message = f"{call} broadcast {ins} into {shapes.fmt(info.outs[0])}: every sample was paired with every other one"
    elif kind == "merged":
        message = f"{call} flattened the batch axis together with the features: {io_shapes(info)}"
    else:
        message = _reduced_message(call, info, walk)
    return TraceEvent(kind=kind, op=op_text, file=info.site.file, line=info.site.line, shapes=io_shapes(info), message=message)


def events(tf: Any, walk: Walk) -> tuple[TraceEvent, ...]:
    """Every event, in graph order."""
    ordered = [(info.order, _event(tf, kind, info, walk)) for kind, info in walk.found.items()]
    ordered += [(s.order, _setup_event(s)) for s in walk.setups]
    return tuple(e for _, e in sorted(ordered, key=lambda pair: pair[0]))
