"""What the probes measured on one loss, as plain data that crosses the worker boundary as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

Shape = tuple[int, ...]


@dataclass(frozen=True)
class ProbeSpec:
    """One synthetic batch layout: `B` in a shape stands for the batch axis."""

    y_true: tuple[int | str, ...]
    y_pred: tuple[int | str, ...]
    labels: str  # binary | probs | onehot | sparse | real

    def at(self, batch_size: int) -> tuple[Shape, Shape]:
        def sub(shape: tuple[int | str, ...]) -> Shape:
            return tuple(batch_size if d == "B" else int(d) for d in shape)

        return sub(self.y_true), sub(self.y_pred)

    def text(self) -> str:
        return f"y_true={','.join(map(str, self.y_true))};y_pred={','.join(map(str, self.y_pred))};labels={self.labels}"


@dataclass(frozen=True)
class ProbeMeasurement:
    """The loss on one probe layout. `error` is set when the layout was not accepted."""

    spec: ProbeSpec
    error: str | None = None
    # raw (unreduced) output shape at each batch size tried, as (batch_size, shape) pairs
    shapes: tuple[tuple[int, Shape], ...] = ()
    reported: float | None = None  # Keras-reported value for the batch
    reported_doubled: float | None = None  # ... for the same batch repeated twice
    coupled_from: tuple[int, ...] = ()  # perturbed samples that moved other samples' outputs
    coupled_delta: float | None = None  # largest change seen in another sample's output
    boundary: str | None = None  # how a prediction at exactly 0/1 made the output nonfinite
    gradient: str | None = None  # "ok" | "none" | "zero" | None when not measured


@dataclass(frozen=True)
class TraceEvent:
    """An operation in the traced graph that changed what happens to the batch axis."""

    kind: str  # "reduced" | "broadcast" | "merged" | "setup"
    op: str  # human description of the op, e.g. "Sum(axis=-1)" or "StridedSlice [:, 1]"
    file: str  # absolute path of the user's file, as recorded in the op's traceback
    line: int
    shapes: str = ""  # e.g. "(B, 2) -> (B,)"
    message: str = ""


@dataclass(frozen=True)
class Trace:
    """Where in the user's source the batch axis was lost, broadcast or merged."""

    events: tuple[TraceEvent, ...] = ()
    hint: str = ""
    error: str | None = None  # why tracing failed; the numeric verdict stands without it

    def first(self, kind: str) -> TraceEvent | None:
        return next((e for e in self.events if e.kind == kind), None)


@dataclass(frozen=True)
class LossMeasurement:
    """Everything the worker measured on one loss candidate."""

    name: str
    kind: str  # function | class | instance | factory | partial
    file: str  # absolute path where the loss is defined
    line: int
    probes: tuple[ProbeMeasurement, ...] = ()
    chosen: int | None = None  # index into probes of the most telling accepted probe
    batch_size: int = 32
    expected: float | None = None
    actual: float | None = None
    output_shape: Shape | None = None
    trace: Trace | None = None
    error: str | None = None  # the loss could not be built or run at all (LD002)
    skipped: str | None = None  # not probed on purpose, and why
    hint: str = ""  # e.g. the Keras-2 backend advice for an LD002

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LossMeasurement:
        def shape(s: Any) -> Shape:
            return tuple(int(d) for d in s)

        probes = tuple(
            ProbeMeasurement(
                spec=ProbeSpec(tuple(p["spec"]["y_true"]), tuple(p["spec"]["y_pred"]), p["spec"]["labels"]),
                error=p["error"],
                shapes=tuple((int(b), shape(s)) for b, s in p["shapes"]),
                reported=p["reported"],
                reported_doubled=p["reported_doubled"],
                coupled_from=tuple(p["coupled_from"]),
                coupled_delta=p["coupled_delta"],
                boundary=p["boundary"],
                gradient=p["gradient"],
            )
            for p in data["probes"]
        )
        trace = data.get("trace")
        if trace is not None:
            trace = Trace(
                events=tuple(TraceEvent(**e) for e in trace["events"]),
                hint=trace["hint"],
                error=trace["error"],
            )
        fields = {k: v for k, v in data.items() if k not in ("probes", "trace", "output_shape")}
        out = data.get("output_shape")
        return cls(probes=probes, trace=trace, output_shape=None if out is None else shape(out), **fields)
