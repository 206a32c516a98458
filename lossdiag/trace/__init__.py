"""Where in the user's source the batch axis was lost: a graph trace at two batch sizes.

The loss is traced (never run) with `tf.function(autograph=False)` at two batch sizes that share no
factor with the layout's fixed axes. An op's output dim that is `b` in both traces is the batch axis
`B`; `b*b` (or two `B` dims) pairs every sample with every other; `b*k` merged the batch with `k`
features. Each op's source line is the innermost frame of its traceback in the user's own files, so
an event points at the line the user wrote, even inside a helper. `graph` walks; `explain` words it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

from lossdiag.measurement import Trace

__all__ = ["TraceResult", "estimate_peak_bytes", "trace_loss"]


@dataclass(frozen=True)
class TraceResult:
    """The located events, and two verdict facts the graph shows: a (B,)-against-(B, 1) broadcast, and
    pairs of samples pooled straight into one value."""

    trace: Trace
    cross_op: str = ""
    pooled_pairs: str = ""


def _one_line(exc: BaseException) -> str:
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    first = lines[0] if lines else ""
    if len(first) > 160 and ". " in first:
        first = first[: first.index(". ") + 1]
    return f"{type(exc).__name__}: {first[:240]}" if first else type(exc).__name__


def _graphs(raw_call: Callable[..., Any], make_inputs: Callable[[int], Any], sizes: tuple[int, int],
            on_call: Callable[[], None] | None) -> tuple[Any, Any, Any]:
    from lossdiag import _tf
    from lossdiag.trace.graph import build

    tf, _ = _tf.load()
    graphs = []
    for b in sizes:
        if on_call is not None:
            on_call()
        graphs.append(build(tf, raw_call, make_inputs, b))
    return tf, graphs[0], graphs[1]


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
    from lossdiag.trace import explain, graph, sites

    sizes = (batch_sizes[0], batch_sizes[1])
    try:
        tf, g1, g2 = _graphs(raw_call, make_inputs, sizes, on_call)
        walk = graph.walk(tf, g1, g2, sizes, sites.loss_source_dir(raw_call))
    except Exception as exc:
        return TraceResult(Trace(error=_one_line(exc)))
    if walk.nested:
        error = "the loss runs a nested graph (@tf.function, tf.cond or tf.while_loop) that is not followed"
        return TraceResult(Trace(error=error), walk.cross_op, walk.pooled_pairs)
    trace = Trace(events=explain.events(tf, walk), hint=explain.hint(tf, walk))
    return TraceResult(trace, walk.cross_op, walk.pooled_pairs)


def estimate_peak_bytes(
    raw_call: Callable[..., Any], make_inputs: Callable[[int], Any], batch_sizes: Sequence[int], at: int
) -> int | None:
    """The largest tensor the loss builds at batch size `at`, from graph traces at two small batch sizes.

    Each tensor's element count is fitted as c * B**k (k = 0..3): a (B, B, H, W) pairing is k = 2. None
    when the loss cannot be traced (a numpy loss): the worker's memory watchdog still applies then.
    """
    from lossdiag import _tf
    from lossdiag.trace.graph import build_partial, peak_bytes

    sizes = (batch_sizes[0], batch_sizes[1])
    try:
        _, g1, g2 = _graphs(raw_call, make_inputs, sizes, None)
    except Exception:
        # it raised while tracing: what it built before that may already be the (B, B, ...) blow-up
        try:
            tf, _ = _tf.load()
            g1, g2 = (build_partial(tf, raw_call, make_inputs, b) for b in sizes)
        except Exception:
            return None
    return peak_bytes(g1, g2, sizes, at)
