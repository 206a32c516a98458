"""The values that flow from the engine to every reporter: findings, per-loss results, the report."""

from __future__ import annotations

from dataclasses import dataclass, field

SEVERITIES = ("error", "warning")
STATUSES = ("pass", "warn", "fail", "error", "skipped")


@dataclass(frozen=True, order=True)
class Location:
    """A place in the user's source, with what happened there."""

    file: str
    line: int
    message: str = ""


@dataclass(frozen=True)
class Finding:
    """One rule violation on one loss; `file`/`line` point at the source line to fix."""

    code: str
    severity: str
    message: str
    file: str
    line: int
    hint: str = ""
    related: tuple[Location, ...] = ()
    suppressed: bool = False


@dataclass(frozen=True)
class Probe:
    """The synthetic batch a loss was measured on; shapes use the real batch size."""

    batch_size: int
    y_true: tuple[int, ...]
    y_pred: tuple[int, ...]
    labels: str
    source: str = "inferred"  # given (--probe) | config ([tool.lossdiag.probes]) | inferred

    def describe(self) -> str:
        def fmt(shape: tuple[int, ...]) -> str:
            return "(" + ", ".join(str(d) for d in shape) + ("," if len(shape) == 1 else "") + ")"

        if self.y_true == self.y_pred:
            return f"{fmt(self.y_pred)} {self.labels}"
        return f"{fmt(self.y_true)}→{fmt(self.y_pred)} {self.labels}"


@dataclass(frozen=True)
class LossResult:
    """Everything lossdiag knows about one loss: where it is, what was measured, what was found."""

    id: str
    name: str
    file: str
    line: int
    status: str
    probe: Probe | None = None
    output_shape: tuple[int, ...] | None = None
    expected: float | None = None
    actual: float | None = None
    ratio: float | None = None
    findings: tuple[Finding, ...] = ()
    # why `expected`/`ratio` are n/a though the loss ran, in a word or two (e.g. "batch statistic":
    # a sample alone has no value, so a per-sample mean means nothing)
    na_reason: str = ""
    note: str = ""  # why a loss was skipped, or what -v should say about it
    kind: str = "loss"  # loss | metric
    keras: str = ""  # which Keras ran it: "3.15.1" or "tf_keras 2.21.0"
    outputs: tuple[str, ...] = ()  # the model outputs a compile(loss={...}) call uses it for

    @property
    def active_findings(self) -> tuple[Finding, ...]:
        return tuple(f for f in self.findings if not f.suppressed)


@dataclass(frozen=True)
class LoadError:
    """A module that could not be imported (LD001): reported apart from the losses."""

    file: str
    code: str
    message: str
    line: int | None = None
    suppressed: bool = False


@dataclass(frozen=True)
class Report:
    """The outcome of one `lossdiag check` run, sorted and ready for any reporter."""

    results: tuple[LossResult, ...] = ()
    errors: tuple[LoadError, ...] = ()
    files_checked: int = 0
    files_without_losses: tuple[str, ...] = ()
    batch_size: int = 32
    seed: int = 0
    cached: int = 0  # losses whose results came from the cache
    notes: tuple[str, ...] = ()  # files a folder walk skipped, one line each: "x/pipe.py: skipped, a named pipe, ..."
    log: tuple[str, ...] = field(default=(), compare=False)  # -v details: captured output, trace failures

    def summary(self) -> dict[str, int]:
        counts = {"losses": len(self.results)}
        for status in STATUSES:
            counts[status] = sum(1 for r in self.results if r.status == status)
        return counts

    @property
    def suppressed_count(self) -> int:
        return sum(1 for r in self.results for f in r.findings if f.suppressed) + sum(
            1 for e in self.errors if e.suppressed
        )

    def active_findings(self) -> list[tuple[LossResult | None, Finding | LoadError]]:
        """Every unsuppressed finding with the loss it belongs to (None for module errors)."""
        out: list[tuple[LossResult | None, Finding | LoadError]] = [
            (None, e) for e in self.errors if not e.suppressed
        ]
        out += [(r, f) for r in self.results for f in r.active_findings]
        return out
