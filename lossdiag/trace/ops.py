"""What TensorFlow ops mean for the batch axis: the op families, and their constant arguments read statically."""

from __future__ import annotations

from typing import Any

# ops that only compute shapes or do bookkeeping: never an event
IGNORED = frozenset(
    {
        "Shape", "ShapeN", "Size", "Rank", "Const", "Identity", "IdentityN", "NoOp", "Placeholder",
        "Assert", "Print", "PrintV2", "StringFormat", "BroadcastGradientArgs", "BroadcastArgs",
        "VarHandleOp", "ReadVariableOp", "AssignVariableOp", "StopGradient", "PreventGradient",
        "CheckNumerics", "CheckNumericsV2", "EnsureShape", "DebugIdentity", "DebugIdentityV2",
    }
)  # fmt: skip

REDUCTIONS = {
    "Sum": "sum", "Mean": "mean", "Max": "max", "Min": "min", "Prod": "prod", "All": "all",
    "Any": "any", "EuclideanNorm": "norm", "ArgMax": "argmax", "ArgMin": "argmin",
}  # fmt: skip

BINARY = {
    "Sub": ("-", "subtracting"), "AddV2": ("+", "adding"), "Add": ("+", "adding"),
    "Mul": ("*", "multiplying"), "RealDiv": ("/", "dividing"), "DivNoNan": ("/", "dividing"),
    "SquaredDifference": ("squared difference", "taking the squared difference"),
    "Maximum": ("maximum", "taking the maximum"), "Minimum": ("minimum", "taking the minimum"),
    "Pow": ("**", "raising"), "Equal": ("==", "comparing"), "NotEqual": ("!=", "comparing"),
    "Less": ("<", "comparing"), "Greater": (">", "comparing"), "LessEqual": ("<=", "comparing"),
    "GreaterEqual": (">=", "comparing"), "SelectV2": ("where", "selecting"),
}  # fmt: skip

MATMULS = frozenset({"MatMul", "BatchMatMulV2", "BatchMatMulV3", "Einsum"})

# the names under which users call a reduction (keras.ops, tf, tf_keras.backend, numpy-style)
REDUCTION_APIS = frozenset(
    {"sum", "mean", "max", "min", "prod", "amax", "amin", "all", "any", "norm", "argmax", "argmin", "std",
     "var", "average", "logsumexp", "count_nonzero", "reduce_sum", "reduce_mean", "reduce_max", "reduce_min",
     "reduce_prod", "reduce_all", "reduce_any", "reduce_euclidean_norm", "reduce_logsumexp", "reduce_std",
     "reduce_variance", "nansum", "nanmean"}
)  # fmt: skip

# library frames that only wrap the API the user called
WRAPPER_FRAMES = frozenset(
    {"error_handler", "op_dispatch_handler", "wrapper", "_wrapper", "binary_op_wrapper",
     "r_binary_op_wrapper", "wrapped", "inner", "new_func"}
)  # fmt: skip

# ops that run a nested graph (a loss decorated with @tf.function, tf.cond or tf.while_loop)
CALLS = frozenset({"PartitionedCall", "StatefulPartitionedCall", "If", "StatelessIf", "While", "StatelessWhile"})

# ops that can drop a non-batch axis and leave a (B,) tensor: the "setup" of a later reduction
SETUPS = frozenset({"StridedSlice", "Squeeze", "Reshape", "GatherV2", "Gather", "Unpack", "Slice"})

Subscript = list[tuple[str, str]]  # a StridedSlice as [(kind, text)], kind: full|range|index|ellipsis|newaxis


def static(tf: Any, tensor: Any) -> Any:
    try:
        return tf.get_static_value(tensor)
    except Exception:
        return None


def _part(masks: dict[str, int], bit: int, begin: int, end: int, stride: int) -> tuple[str, str]:
    if masks["ellipsis_mask"] & bit:
        return "ellipsis", "..."
    if masks["new_axis_mask"] & bit:
        return "newaxis", "None"
    if masks["shrink_axis_mask"] & bit:
        return "index", str(begin)
    lo = "" if masks["begin_mask"] & bit else str(begin)
    hi = "" if masks["end_mask"] & bit else str(end)
    step = "" if stride == 1 else f":{stride}"
    return ("full" if not lo and not hi and not step else "range"), f"{lo}:{hi}{step}"


def subscript(tf: Any, op: Any) -> Subscript | None:
    """A StridedSlice as the subscript the user wrote."""
    begin, end, strides = (static(tf, op.inputs[i]) for i in (1, 2, 3))
    if begin is None or end is None or strides is None:
        return None
    names = ("begin_mask", "end_mask", "ellipsis_mask", "new_axis_mask", "shrink_axis_mask")
    masks = {k: op.get_attr(k) for k in names}
    return [_part(masks, 1 << i, int(begin[i]), int(end[i]), int(strides[i])) for i in range(len(begin))]


def subscript_text(parts: Subscript) -> str:
    return "[" + ", ".join(text for _, text in parts) + "]"


def keep_axis(parts: Subscript) -> str:
    """The same subscript with every integer index made a range: `[:, 1]` -> `[:, 1:2]`."""

    def keep(text: str) -> str:
        i = int(text)
        return f"{i}:" if i == -1 else f"{i}:{i + 1}"

    return "[" + ", ".join(keep(t) if k == "index" else t for k, t in parts) + "]"


def reduction_axes(tf: Any, op: Any, rank: int | None) -> list[int] | None:
    value = static(tf, op.inputs[1]) if len(op.inputs) > 1 else None
    if value is None:
        return None
    axes = [int(a) for a in (value.reshape(-1) if hasattr(value, "reshape") else [value])]
    if rank:
        axes = [a + rank if a < 0 else a for a in axes]
    return sorted(set(axes))


def axis_text(tf: Any, op: Any) -> str:
    value = static(tf, op.inputs[1]) if len(op.inputs) > 1 else None
    if value is None:
        return "?"
    flat = [int(a) for a in (value.reshape(-1) if hasattr(value, "reshape") else [value])]
    if getattr(value, "ndim", 0) == 0 and len(flat) == 1:
        return str(flat[0])
    return "[" + ", ".join(map(str, flat)) + "]"


def adds_axis(op: Any) -> bool:
    """An explicit expand_dims or `[:, None]`: a pairing the author meant."""
    if op.type == "ExpandDims":
        return True
    if op.type == "StridedSlice":
        try:
            return bool(op.get_attr("new_axis_mask"))
        except Exception:
            return False
    return False
