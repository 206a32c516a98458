"""Turn measurements into findings: which codes a probe shows, and their messages and hints."""

from __future__ import annotations

from typing import Any

from lossdiag.rules.catalogue import RULES

# --- measurements into findings ---------------------------------------------------------------
# Nothing below imports TensorFlow or numpy: the parent process classifies what the worker measured.

_RANK = {"error": 2, "warning": 1}
PROBABILITY_LABELS = ("binary", "probs", "onehot", "sparse")
BATCH_AXIS_CODES = ("LD101", "LD102", "LD103", "LD104", "LD105")


def batch_axes(shapes: tuple[tuple[int, tuple[int, ...]], ...]) -> tuple[list[int], list[int], bool]:
    """Axes equal to the batch size at every size tried; axes that are a multiple (B*k or B*B)."""
    ranks = {len(s) for _, s in shapes}
    if len(ranks) != 1:
        return [], [], False
    rank = ranks.pop()
    batch = [i for i in range(rank) if all(s[i] == b for b, s in shapes)]
    merged = [
        i
        for i in range(rank)
        if i not in batch
        and (
            all(s[i] == b * b for b, s in shapes)
            or (len({s[i] / b for b, s in shapes}) == 1 and (k := shapes[0][1][i] / shapes[0][0]) > 1 and k.is_integer())
        )
    ]
    return batch, merged, True


def classify(probe: Any) -> list[tuple[str, dict[str, Any]]]:
    """The codes one accepted probe shows, each with its evidence; [] for a correct loss."""
    if probe.error is not None:
        return []
    found: list[tuple[str, dict[str, Any]]] = []
    shapes = probe.shapes
    sizes = dict(shapes)
    axes, merged, same_rank = batch_axes(shapes)
    evidence: dict[str, Any] = {"shapes": shapes}
    if probe.reported and probe.reported_doubled is not None:
        evidence["growth"] = probe.reported_doubled / probe.reported
    if not same_rank:
        found.append(("LD103", {**evidence, "why": "rank"}))
    elif len(axes) >= 2 or any(all(s[i] == b * b for b, s in shapes) for i in merged):
        found.append(("LD104", {**evidence, "axes": axes}))
    elif len(axes) == 1:
        if probe.coupled_from:
            found.append(("LD105", {**evidence, "from": probe.coupled_from, "delta": probe.coupled_delta}))
    elif merged:
        found.append(("LD103", {**evidence, "why": "merged", "axis": merged[0]}))
    else:
        any_shape = next(iter(sizes.values()))
        size = 1
        for d in any_shape:
            size *= d
        if size > 1:
            found.append(("LD103", {**evidence, "why": "kept"}))
        elif evidence.get("growth", 1.0) > 1.5:
            found.append(("LD101", evidence))
        else:
            found.append(("LD102", evidence))
    if probe.boundary:
        found.append(("LD201", {"boundary": probe.boundary}))
    if probe.gradient in ("none", "zero"):
        found.append(("LD202", {"gradient": probe.gradient}))
    return found


def _dense(probe: Any) -> bool:
    return tuple(probe.spec.y_true) == tuple(probe.spec.y_pred)


def _informative(probe: Any) -> bool:
    """A layout whose feature axes are not all of size 1: an axis-0 reduction shows as (d,) there."""
    dims = [d for d in probe.spec.y_pred if d != "B"]
    return any(int(d) > 1 for d in dims)


def accepted(probe: Any) -> bool:
    """A layout the loss ran on at two batch sizes or more, with usable output."""
    return probe.error is None and len(probe.shapes) >= 2


def relevant(probes: tuple[Any, ...], name: str = "") -> list[int]:
    """The accepted probes whose layout family fits the loss.

    A loss that runs on dense layouts (y_true shaped like y_pred) is judged on those only: that a
    regression loss broadcasts strangely against sparse class ids says nothing about it. A loss
    that only runs on sparse layouts, or says `sparse` in its name, is judged on the sparse ones.
    """
    ok = [i for i, p in enumerate(probes) if accepted(p)]
    dense = [i for i in ok if _dense(probes[i])]
    sparse = [i for i in ok if probes[i].spec.labels == "sparse"]
    if "sparse" in name.lower() and sparse:
        return sparse
    return dense or ok


def _telling(code: str) -> float:
    # Coupling ranks above the other warnings: it is often a (B, B) intermediate that the trace
    # then shows to be a cross-broadcast (LD104), and the trace runs on the chosen probe only.
    return 1.5 if code == "LD105" else _RANK[RULES[code].severity]


def choose_probe(probes: tuple[Any, ...], name: str = "") -> int | None:
    """The most telling relevant probe: the most severe finding, then a width above 1, then first."""
    best, best_key = None, (-1.0, False)
    for index in relevant(probes, name):
        probe = probes[index]
        rank = max((_telling(code) for code, _ in classify(probe)), default=0.0)
        key = (rank, _informative(probe))
        if key > best_key:
            best, best_key = index, key
    return best


def _fmt_shape(shape: tuple[int, ...]) -> str:
    return "(" + ", ".join(map(str, shape)) + ("," if len(shape) == 1 else "") + ")"


def _fmt_num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.4g}"


def _layout(probe: Any) -> str:
    return f"{probe.spec.labels} y_true={_fmt_shape(probe.spec.y_true)} y_pred={_fmt_shape(probe.spec.y_pred)}".replace(
        "'B'", "B"
    )


def _magnitude(m: Any) -> str:
    if m.expected is None or m.actual is None or not m.expected:
        return ""
    return f" Keras reports {_fmt_num(m.actual)} where the per-sample mean is {_fmt_num(m.expected)} ({m.actual / m.expected:#.3g}×)."


def describe(code: str, ev: dict[str, Any], m: Any, probe: Any) -> tuple[str, str]:
    """The message (with evidence) and the default hint for one code on one loss."""
    b = m.batch_size
    shapes = dict(ev.get("shapes", ()))
    shape = shapes.get(b, next(iter(shapes.values()), ()))
    at = f"returns shape {_fmt_shape(shape)} at batch size {b} ({_layout(probe)})"
    others = ", ".join(f"{_fmt_shape(s)} at {bb}" for bb, s in sorted(shapes.items()) if bb != b)
    chosen = m.chosen is not None and m.probes[m.chosen] is probe
    magnitude = _magnitude(m) if chosen else ""
    growth = ev.get("growth")
    if code == "LD101":
        return (
            f"{at}: the batch axis was summed away (repeating the batch multiplies the value by "
            f"{growth:.3g}).{magnitude}",
            "keep one value per sample: reduce over the feature axes only (axis=-1), and slice with "
            "`y[:, 1:]` rather than `y[:, 1]`",
        )
    if code == "LD102":
        return (
            f"{at}: the batch axis was averaged away, so sample_weight and class_weight cannot weigh "
            f"single samples.{magnitude}",
            "reduce over the feature axes only (axis=-1) and let Keras average over the batch",
        )
    if code == "LD103":
        if ev.get("why") == "rank":
            detail = f"the output's rank changes with the batch size ({others})"
        elif ev.get("why") == "merged":
            detail = f"axis {ev['axis']} holds the batch flattened together with other axes ({others})"
        else:
            detail = f"no axis follows the batch size ({others}): the batch was reduced and another axis kept"
        return (
            f"{at}: {detail}.{magnitude}",
            "reduce over the feature axes (axis=-1, or axis=[1, 2, 3] for images), not over axis 0",
        )
    if code == "LD104":
        if "from" in ev:  # the trace saw a (B, B) intermediate behind a (B,) output
            what = "the output keeps one value per sample, but each mixes every sample of the batch"
        else:
            what = f"axes {', '.join(map(str, ev.get('axes', [])))} both follow the batch size"
        return (
            f"{at}: {what}: broadcasting paired every sample with every other.{magnitude}",
            "give both operands the same shape before combining them: (B, 1) with (B, 1), or (B,) with (B,)",
        )
    if code == "LD105" and "ratio" in ev:
        return (
            f"{at}, one value per sample, but a sample's value depends on the batch: alone, samples "
            f"report {_fmt_num(m.expected)} on average; in a batch of {b}, Keras reports "
            f"{_fmt_num(m.actual)} ({ev['ratio']:#.3g}×).",
            "do not divide by the batch size (or any batch statistic) inside the loss: Keras already "
            "averages the per-sample values over the batch",
        )
    if code == "LD105":
        src = " and ".join(f"sample {j}" for j in ev.get("from", ()))
        return (
            f"{at}: changing {src} moved other samples' values by up to {_fmt_num(ev.get('delta'))}; "
            "each sample's loss depends on the rest of the batch.",
            "compute each sample's loss from that sample alone; if the coupling is intended (triplet, "
            "contrastive), suppress it with `# lossdiag: ignore[LD105]`",
        )
    if code == "LD201":
        return (
            f"{ev['boundary']} ({_layout(probe)}).",
            "clip predictions before log or division: ops.clip(y_pred, 1e-7, 1 - 1e-7)",
        )
    if code == "LD202":
        what = "None" if ev.get("gradient") == "none" else "zero everywhere"
        return (
            f"the gradient of the reported loss with respect to y_pred is {what} ({_layout(probe)}).",
            "remove round/argmax/cast/stop_gradient from the path from y_pred to the loss value",
        )
    raise AssertionError(f"unreachable: no message for {code}")


def _locate(code: str, m: Any, default: tuple[str, int]) -> tuple[str, int, str, tuple[tuple[str, int, str], ...], str]:
    """Where a batch-axis finding points, from the trace: (file, line, extra message, related, hint)."""
    trace = m.trace
    if trace is None or code not in BATCH_AXIS_CODES:
        return default[0], default[1], "", (), ""
    kinds = {"LD104": ("broadcast",), "LD103": ("merged", "reduced"), "LD105": ("broadcast", "reduced")}
    event = None
    for kind in kinds.get(code, ("reduced", "merged")):
        event = trace.first(kind)
        if event is not None:
            break
    if event is None:
        return default[0], default[1], "", (), ""
    related = tuple(
        (e.file, e.line, e.message or f"{e.op} {e.shapes}".strip())
        for e in trace.events
        if e.kind == "setup" and (e.file, e.line) != (event.file, event.line)
    )
    return event.file, event.line, event.message or f"{event.op} {event.shapes}".strip(), related, trace.hint


def findings_for(m: Any) -> list[tuple[str, str, str, int, str, tuple[tuple[str, int, str], ...]]]:
    """(code, message, file, line, hint, related) for every code any accepted probe of `m` shows.

    Each code is described on the most telling probe that shows it (the chosen one first, then
    the ladder order); files are the absolute paths the worker saw.
    """
    order = ([m.chosen] if m.chosen is not None else []) + [i for i in relevant(m.probes, m.name) if i != m.chosen]
    seen: dict[str, tuple[dict[str, Any], Any]] = {}
    batch_code_seen = False
    for i in order:
        probe = m.probes[i]
        for code, ev in classify(probe):
            if code in BATCH_AXIS_CODES:
                # One batch-axis verdict per loss: the chosen probe's, which is the most severe.
                if batch_code_seen and code not in seen:
                    continue
                batch_code_seen = True
            seen.setdefault(code, (ev, probe))
    # A per-sample output whose batch mean differs from the mean of the samples alone depends on
    # the batch: typically a manual division by the batch size, which Keras then divides again.
    if m.chosen is not None and not seen.keys() & set(BATCH_AXIS_CODES):
        probe = m.probes[m.chosen]
        axes, _, same_rank = batch_axes(probe.shapes)
        if same_rank and len(axes) == 1 and m.expected and m.actual is not None:
            ratio = m.actual / m.expected
            if abs(ratio - 1.0) > 1e-3:
                seen["LD105"] = ({"shapes": probe.shapes, "ratio": ratio}, probe)
    # NaN at the boundary and a missing gradient are properties of the loss, not of one layout:
    # they must show on every relevant layout that measured them. A categorical loss is constant
    # over one class, and all-zero multi-label rows are not a softmax's output.
    for code, measured in (("LD201", lambda p: p.spec.labels in PROBABILITY_LABELS), ("LD202", lambda p: True)):
        if code in seen:
            layouts = [m.probes[i] for i in relevant(m.probes, m.name) if measured(m.probes[i])]
            if not all(code in {c for c, _ in classify(p)} for p in layouts):
                del seen[code]
    # A (B, B) intermediate found by the trace is a cross-broadcast even when the output is (B,).
    if "LD105" in seen and m.trace is not None and m.trace.first("broadcast") is not None:
        seen["LD104"] = seen.pop("LD105")
    out = []
    for code in sorted(seen):
        ev, probe = seen[code]
        message, hint = describe(code, ev, m, probe)
        file, line, extra, related, trace_hint = _locate(code, m, (m.file, m.line))
        if extra:
            message = f"{message} {extra[0].upper() + extra[1:]}" + ("" if extra.endswith(".") else ".")
        out.append((code, message, file, line, trace_hint or hint, related))
    return out


def not_probed_message(m: Any) -> str:
    """LD002's message: why, each distinct error with the layouts that raised it."""
    if m.error:
        return m.error

    def layout(p: Any) -> str:
        text = (
            f"{_fmt_shape(p.spec.y_true)}→{_fmt_shape(p.spec.y_pred)}"
            if tuple(p.spec.y_true) != tuple(p.spec.y_pred)
            else _fmt_shape(p.spec.y_pred)
        )
        return f"{text} {p.spec.labels}".replace("'B'", "B")

    groups: dict[str, list[str]] = {}
    for p in m.probes:
        groups.setdefault(p.error or "no usable output", []).append(layout(p))
    if m.hint.startswith("K."):
        return f"{m.hint.split(':')[0]} ({next(iter(groups))})"
    parts = [f"{error} [{', '.join(layouts)}]" for error, layouts in list(groups.items())[:3]]
    more = f"; and {len(groups) - 3} other errors" if len(groups) > 3 else ""
    return f"every probe layout failed ({len(m.probes)} tried): " + "; ".join(parts) + more


def not_probed_hint(m: Any) -> str:
    """What to do about an LD002, by its cause."""
    error = m.error or ""
    if m.hint:
        return m.hint
    if error.startswith("timed out"):
        return "if the loss is only slow, give it more time with --timeout (or timeout = ... in [tool.lossdiag])"
    if error.startswith("used more than"):
        return "if it really needs that much memory, raise --max-memory; otherwise look for a (B, B, ...) tensor"
    if error.startswith(("the process crashed", "the process exited", "the loss called")):
        return "the loss ended the process: call it on a small batch outside lossdiag to see why (-v shows what it printed)"
    if error.startswith("building it raised"):
        return "the factory or constructor needs other arguments: create the loss at module level and check that"
    return (
        f"give the shapes it takes: --probe '{m.name}=y_true=B,...;y_pred=B,...;labels=binary' "
        "or [tool.lossdiag.probes]"
    )
