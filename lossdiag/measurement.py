"""What the worker measured on one loss, as plain data that crosses the process boundary as JSON."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any, Literal

Shape = tuple[int, ...]
Labels = Literal["binary", "probs", "onehot", "sparse", "real"]
LABEL_KINDS: tuple[str, ...] = ("binary", "probs", "onehot", "sparse", "real")
PROBABILITY_LABELS: tuple[str, ...] = ("binary", "probs", "onehot", "sparse")
Gradient = Literal["ok", "none", "zero"]
# where a layout came from: --probe, [tool.lossdiag.probes], the loss's source, its name, the default ladder
Origin = Literal["given", "config", "source", "name", "ladder"]


@dataclass(frozen=True)
class ProbeSpec:
    """One synthetic batch layout: `B` in a shape stands for the batch axis."""

    y_true: tuple[int | str, ...]
    y_pred: tuple[int | str, ...]
    labels: str  # one of LABEL_KINDS

    def at(self, batch_size: int) -> tuple[Shape, Shape]:
        def sub(shape: tuple[int | str, ...]) -> Shape:
            return tuple(batch_size if d == "B" else int(d) for d in shape)

        return sub(self.y_true), sub(self.y_pred)

    def text(self) -> str:
        """The layout in `--probe` syntax, ready to paste."""
        return f"y_true={','.join(map(str, self.y_true))};y_pred={','.join(map(str, self.y_pred))};labels={self.labels}"

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ProbeSpec:
        return cls(tuple(data["y_true"]), tuple(data["y_pred"]), data["labels"])


@dataclass(frozen=True)
class Trial:
    """One layout tried while looking for the one the loss was written for."""

    spec: ProbeSpec
    origin: str  # an Origin
    reason: str  # why it was proposed, e.g. "`y_pred[:, 0:128]` needs 128 columns"
    error: str | None = None  # why it was not accepted; None when it was

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trial:
        return cls(ProbeSpec.from_json(data["spec"]), data["origin"], data["reason"], data["error"])


@dataclass(frozen=True)
class Coupling:
    """Changing every other sample moved the values of the samples `kept` by up to `delta`."""

    kept: tuple[int, ...]
    delta: float
    via: str  # "targets" | "predictions" | "both": which input of the changed samples mattered


@dataclass(frozen=True)
class Layout:
    """The measurements on the intended layout, from which every verdict is drawn."""

    spec: ProbeSpec
    origin: str
    reason: str
    shapes: tuple[tuple[int, Shape], ...]  # raw output shape at each batch size tried
    reported: float | None = None  # what Keras reports for the batch
    growth: tuple[float, ...] = ()  # reported value for the half batch repeated 2 and 4 times, over it once
    coupling: Coupling | None = None  # a sample's value moved when another sample changed
    pairing_free: bool = False  # the value ignores which target goes with which prediction
    cross_op: str = ""  # a (B,) x (B, 1) broadcast the graph shows, e.g. "(B,) - (B, 1) -> (B, B)"
    pooled_pairs: str = ""  # y_pred's (B, B) pairs reduced at once to no batch axis, e.g. "sum over (B, B) -> ()"
    boundary: str | None = None  # how predictions exactly at 0/1 made the output nonfinite
    gradient: str | None = None  # a Gradient, or None when not measured
    expected: float | None = None  # mean over samples of the Keras-reported value of each sample alone
    alone_nonfinite: bool = False  # a sample alone gave NaN/inf: the loss needs a batch
    alone_constant: bool = False  # every sample alone gave the same value: a degenerate statistic of one sample
    reduction: str | None = None  # a Loss object's reduction when it is not Keras' default
    via_call: bool = True  # False: the Loss overrides __call__ (or a stateful metric): its output is what Keras reports
    # a stateful metric: its result after update_state on the same batch twice, over after once
    # (1: it averages over what it counted; 2: a running total); None for losses and function metrics
    update_growth: float | None = None

    @property
    def batch_shape(self) -> Shape:
        """The output shape at the largest batch size tried (the user's --batch-size)."""
        return max(self.shapes)[1] if self.shapes else ()

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Layout:
        values = dict(data)
        values["spec"] = ProbeSpec.from_json(data["spec"])
        values["shapes"] = tuple((int(b), tuple(int(d) for d in s)) for b, s in data["shapes"])
        values["growth"] = tuple(data["growth"])
        values["coupling"] = None if data["coupling"] is None else Coupling(
            tuple(data["coupling"]["kept"]), data["coupling"]["delta"], data["coupling"]["via"]
        )
        return cls(**values)


@dataclass(frozen=True)
class TraceEvent:
    """An operation in the traced graph that changed what happens to the batch axis."""

    kind: str  # "reduced" | "broadcast" | "merged" | "setup"
    op: str  # human description of the op, e.g. "sum over axis -1" or "slice [:, 1]"
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

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> Trace:
        return cls(tuple(TraceEvent(**e) for e in data["events"]), data["hint"], data["error"])


@dataclass(frozen=True)
class LossMeasurement:
    """Everything the worker measured on one loss candidate."""

    name: str
    kind: str  # function | class | instance | factory | partial | assign | expr
    file: str  # absolute path where the loss is defined
    line: int
    batch_size: int = 32
    trials: tuple[Trial, ...] = ()
    layout: Layout | None = None  # None: no layout was accepted (LD002), or not probed
    trace: Trace | None = None
    error: str | None = None  # the loss could not be built or run at all (LD002)
    internal_error: str | None = None  # lossdiag's own code failed (LD004); the traceback for -v
    skipped: str | None = None  # not probed on purpose, and why
    hint: str = ""  # e.g. the Keras-2 backend advice for an LD002
    role: str = "loss"  # "metric": probed through Keras' metric machinery (LossResult.kind); `kind` is how it was built

    @property
    def expected(self) -> float | None:
        return None if self.layout is None else self.layout.expected

    @property
    def actual(self) -> float | None:
        return None if self.layout is None else self.layout.reported

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> LossMeasurement:
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        values["trials"] = tuple(Trial.from_json(t) for t in data.get("trials", ()))
        values["layout"] = None if data.get("layout") is None else Layout.from_json(data["layout"])
        values["trace"] = None if data.get("trace") is None else Trace.from_json(data["trace"])
        return cls(**values)
