"""Propose the layouts a loss was written for, most likely first: from its source, its name, then a default ladder.

The source analysis follows `y_true` and `y_pred` through the loss's body (and the helpers it calls in
the same module) and collects what the code needs of them: integer and slice indices and the widths
they imply, `one_hot(..., depth)` and casts to integers (sparse labels), constant reshape targets
(detection grids), axis lists (`axis=[1, 2, 3]`: images), `split` sizes, image ops (SSIM needs 11x11
windows), categorical/binary cross-entropies, and variance columns (`exp(log_var)`). Each proposal is
only a candidate: the prober accepts the first one the loss actually runs on and depends on.
"""

from __future__ import annotations

import ast
import functools
import inspect
import re
import textwrap
from dataclasses import dataclass, field, replace
from typing import Any

from lossdiag.measurement import ProbeSpec

SPATIAL = 16  # image side: enough for an 11x11 SSIM window, and no batch size lossdiag uses
STEPS = 6  # sequence length, likewise
CLASSES = 4  # class count when the code does not say
WIDTH = 3  # feature width of a generic 2-D layout: more than 1, so an axis-0 reduction shows as (3,)


@dataclass(frozen=True)
class Proposal:
    """A layout to try, where it came from and why."""

    spec: ProbeSpec
    origin: str  # "source" | "name" | "ladder" (measurement.Origin)
    reason: str
    # False when the code says its predictions are not probabilities (a `var` or `sigma` column): then
    # no layout it falls back to is probed at exactly 0 and 1
    probabilities: bool = True


# The fallback, in the order a loss is tried: generic 2-D first, then images, heads, class ids, sequences.
LADDER: tuple[ProbeSpec, ...] = (
    ProbeSpec(("B", WIDTH), ("B", WIDTH), "binary"),
    ProbeSpec(("B", 2), ("B", 2), "binary"),
    ProbeSpec(("B", 1), ("B", 1), "binary"),
    ProbeSpec(("B", WIDTH), ("B", WIDTH), "probs"),  # soft targets: a KL term is NaN at exactly-0 targets
    ProbeSpec(("B", SPATIAL, SPATIAL, 1), ("B", SPATIAL, SPATIAL, 1), "binary"),
    ProbeSpec(("B", SPATIAL, SPATIAL, 3), ("B", SPATIAL, SPATIAL, 3), "onehot"),
    ProbeSpec(("B", 1), ("B", 2), "real"),
    ProbeSpec(("B",), ("B", CLASSES), "sparse"),
    ProbeSpec(("B", 1), ("B", CLASSES), "sparse"),
    ProbeSpec(("B", CLASSES), ("B", CLASSES), "onehot"),
    ProbeSpec(("B", 1), ("B", 1), "real"),
    ProbeSpec(("B", WIDTH), ("B", WIDTH), "real"),
    ProbeSpec(("B", STEPS), ("B", STEPS, CLASSES + 1), "sparse"),
    ProbeSpec(("B", STEPS, 1), ("B", STEPS, 1), "real"),
)

SEQUENCE_LAYOUTS: tuple[ProbeSpec, ...] = (
    ProbeSpec(("B", STEPS), ("B", STEPS, CLASSES + 1), "sparse"),
    ProbeSpec(("B", STEPS, CLASSES + 1), ("B", STEPS, CLASSES + 1), "onehot"),
    ProbeSpec(("B", STEPS, 1), ("B", STEPS, 1), "real"),
)

# Waveforms: long enough for a 1024-point STFT frame, and no multiple of a batch size the prober uses.
AUDIO_SAMPLES = 4000
AUDIO_LAYOUTS: tuple[ProbeSpec, ...] = (ProbeSpec(("B", AUDIO_SAMPLES), ("B", AUDIO_SAMPLES), "real"),)
POINTS = 64  # points per cloud
CLOUD_LAYOUTS: tuple[ProbeSpec, ...] = (ProbeSpec(("B", POINTS, 3), ("B", POINTS, 3), "real"),)

# CTC aligns a short label sequence with many frames: ids (B, L) against per-frame probabilities (B, T, V).
CTC_LAYOUTS: tuple[ProbeSpec, ...] = (ProbeSpec(("B", 4), ("B", 24, CLASSES + 1), "sparse"),)

# Loss names that say what the loss is for, with the layouts such a loss is written for.
_FAMILIES: tuple[tuple[str, re.Pattern[str], tuple[ProbeSpec, ...]], ...] = (
    ("a segmentation loss", re.compile(r"dice|iou|jaccard|tversky|lovasz|segment|mask|boundary|hausdorff|overlap", re.I), (
        ProbeSpec(("B", SPATIAL, SPATIAL, 1), ("B", SPATIAL, SPATIAL, 1), "binary"),
        ProbeSpec(("B", SPATIAL, SPATIAL, 3), ("B", SPATIAL, SPATIAL, 3), "onehot"),
    )),
    ("an image loss", re.compile(r"ssim|psnr|image|img|pixel|perceptual|sobel|edge|total_variation|tv_loss|style|content|reconstruct", re.I), (
        ProbeSpec(("B", SPATIAL, SPATIAL, 3), ("B", SPATIAL, SPATIAL, 3), "probs"),
        ProbeSpec(("B", SPATIAL, SPATIAL, 1), ("B", SPATIAL, SPATIAL, 1), "probs"),
    )),
    ("a sequence loss", re.compile(r"token|seq|sentence|word|language|translat|ctc|timestep|temporal|padd|lm_|_lm", re.I),
     SEQUENCE_LAYOUTS),
    ("a metric-learning loss", re.compile(r"triplet|contrastive|siamese|center_?loss|arcface|cosface|n_?pair|info_?nce|nt_?xent|supcon|embedding|margin|pairwise", re.I), (
        ProbeSpec(("B", 1), ("B", 1), "binary"),
        ProbeSpec(("B",), ("B", 8), "sparse"),
        ProbeSpec(("B", 8), ("B", 8), "real"),
    )),
    ("a detection loss", re.compile(r"yolo|ssd|retina|bbox|box|anchor|detect|centernet|heatmap|objectness", re.I), (
        ProbeSpec(("B", 6, 6, 9), ("B", 6, 6, 9), "binary"),
        ProbeSpec(("B", 12, 5), ("B", 12, 5), "binary"),
        ProbeSpec(("B", 6), ("B", 6), "binary"),
    )),
    ("a distribution head", re.compile(r"nll|gauss|likelihood|heterosc|laplace|uncertain|aleatoric|sigma|varian|mdn|mixture", re.I), (
        ProbeSpec(("B", 1), ("B", 2), "real"),
    )),
    ("an adversarial loss", re.compile(r"wasserstein|hinge|critic|gan\b|gan_|discrimin|generator|adversar|wgan|lsgan", re.I), (
        ProbeSpec(("B", 1), ("B", 1), "real"),
    )),
    ("an audio loss", re.compile(r"stft|spectr|mel_|_mel|mfcc|sdr|snr|waveform|audio|speech|vocoder|pesq", re.I),
     AUDIO_LAYOUTS),
    ("a point-cloud loss", re.compile(r"chamfer|point_?cloud|pointnet|earth_?mover|\bemd\b|_emd|emd_|sliced_w", re.I),
     CLOUD_LAYOUTS),
    ("a quantile loss", re.compile(r"quantile|pinball", re.I), (
        ProbeSpec(("B", 1), ("B", 3), "real"),
        ProbeSpec(("B", 1), ("B", 1), "real"),
    )),
    ("a distribution-matching loss", re.compile(r"kl_?div|kld|kullback|distill|teacher|soft_?target|divergence", re.I), (
        ProbeSpec(("B", WIDTH), ("B", WIDTH), "probs"),
    )),
    ("a sparse-label loss", re.compile(r"sparse", re.I), (
        ProbeSpec(("B",), ("B", CLASSES), "sparse"),
        ProbeSpec(("B", 1), ("B", CLASSES), "sparse"),
    )),
    ("a categorical loss", re.compile(r"categorical|softmax|\bcce\b|multiclass|multi_class", re.I), (
        ProbeSpec(("B", CLASSES), ("B", CLASSES), "onehot"),
    )),
)  # fmt: skip


# ----------------------------------------------------------------------------------------------
# finding the user's function


@dataclass(frozen=True)
class LossCode:
    """The Python function that computes a loss, which of its parameters are y_true and y_pred, and its `self`."""

    fn: Any
    true_param: str
    pred_param: str
    owner: Any = None  # the Loss instance for a method, to read `self.x`
    bound: dict[str, Any] = field(default_factory=dict)  # arguments a partial or wrapper fixed


def _user_method(obj: Any) -> tuple[Any, Any] | None:
    """A Loss subclass's own `call` (or `__call__` when it overrides that instead); a Metric's `update_state`."""
    for name in ("call", "__call__", "update_state"):
        for klass in type(obj).__mro__:
            if name in vars(klass):
                module = getattr(klass, "__module__", "") or ""
                if module.startswith(("keras", "tf_keras", "tensorflow")):
                    break
                return vars(klass)[name], obj
    return None


def _callable_of(obj: Any) -> tuple[Any, Any]:
    """(the callable that computes the loss, the object whose method it is, if any)."""
    fn = getattr(obj, "fn", None) if hasattr(obj, "_fn_kwargs") else None
    if fn is not None:
        obj = fn  # Keras' wrapper around a function, a partial or a callable object
    if not inspect.isroutine(obj) and not isinstance(obj, functools.partial):
        method = _user_method(obj)
        if method is not None:
            return method
    return obj, None


def find_code(obj: Any) -> LossCode | None:
    """The function behind a Keras wrapper, partial, swapped wrapper, Loss instance or plain callable."""
    bound: dict[str, Any] = dict(getattr(obj, "_fn_kwargs", {}) or {})
    fn, owner = _callable_of(obj)
    swapped = bool(getattr(fn, "lossdiag_swapped", False))
    fn = inspect.unwrap(fn) if hasattr(fn, "__wrapped__") else fn
    if isinstance(fn, functools.partial):
        bound.update(fn.keywords or {})
        fn = fn.func
    if not inspect.isfunction(fn):
        return None
    params = [p for p in inspect.signature(fn).parameters if p not in bound]
    if owner is not None and params[:1] == ["self"]:
        params = params[1:]
    if len(params) < 2:
        return None
    true_param, pred_param = (params[1], params[0]) if swapped else (params[0], params[1])
    return LossCode(fn, true_param, pred_param, owner, bound)


def _function_node(fn: Any) -> ast.FunctionDef | ast.Lambda | None:
    try:
        source = textwrap.dedent(inspect.getsource(fn))
    except (OSError, TypeError):
        return None
    try:
        tree = ast.parse(source)
    except SyntaxError:  # a lambda in the middle of an expression: parse its line as an expression
        try:
            tree = ast.parse("(" + source.strip().rstrip(",") + ")")
        except SyntaxError:
            return None
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef) and node.name == fn.__name__:
            return node
        if isinstance(node, ast.Lambda) and fn.__name__ == "<lambda>":
            return node
    return None


# ----------------------------------------------------------------------------------------------
# what the code says


@dataclass(frozen=True)
class _Val:
    """An abstract tensor: which inputs it derives from, and which of them it still has the axes of."""

    roots: frozenset[str]  # subset of {"T", "P"}
    kept: frozenset[str] = frozenset()  # roots whose axes it has, derived elementwise (`y_true * y_pred`: both)
    width: int | None = None  # the last axis's size, when a constant slice of it set it (`y[..., :4]`: 4)
    ranked: frozenset[str] = frozenset()  # roots whose rank it has (`y[..., 0:2]` changes a width, not the rank)
    grown: str | None = None  # the one input it is, whole, with a new last axis (`expand_dims(y_true, -1)`)
    ids: bool = False  # class ids taken from the predictions (`argmax(y_pred, axis=-1)`)
    column: str | None = None  # the input whose last-axis entry it is, `y_true[..., 0]`: its other axes

    @property
    def exact(self) -> bool:
        """Elementwise from its inputs only: indices into it are indices into them."""
        return bool(self.kept) and self.kept == self.roots

    def sole(self) -> str | None:
        """The one input it has the axes of, if it derives from that input alone."""
        return next(iter(self.roots)) if self.exact and len(self.roots) == 1 else None


def _input(root: str) -> _Val:
    return _Val(frozenset({root}), frozenset({root}), None, frozenset({root}))


def _derived(value: Any, width: int | None = None, same_rank: bool = False) -> _Val | None:
    """A value derived from `value` that no longer has its inputs' axes (a slice, a reduction); a range
    slice (`same_rank`) still has their rank."""
    if not isinstance(value, _Val):
        return None
    return _Val(value.roots, frozenset(), width, value.ranked if same_rank else frozenset())


@dataclass
class _Facts:
    """What the code needs of one input's shape."""

    rank: int = 0
    sizes: dict[int, int] = field(default_factory=dict)  # axis (>=1 from the left, <0 from the right) -> size
    spans: dict[int, int] = field(default_factory=dict)  # axis -> widest closed slice (`[:, 0:128]`: 128)
    tails: dict[int, int] = field(default_factory=dict)  # axis -> start of an open slice (`[:, 128:]`: 128)
    last: int | None = None  # the last axis's exact size, from an operand it met elementwise
    reshape: tuple[int, ...] | None = None  # a constant reshape target, batch axis left out
    folds: bool = False  # reshaped to (-1, d): the input is most likely wider than d, folded into rows
    reduced: int = 0  # the rank its per-element values need to be reduced on the axes the code names

    def size(self, axis: int, rank: int) -> int:
        """The size the code needs of an axis of a tensor of this rank (0: no need)."""
        keys = (axis, axis - rank)
        size = max(self.sizes.get(k, 0) for k in keys)
        tail = max(self.tails.get(k, 0) for k in keys)
        if tail:  # `x[:, :128]` and `x[:, 128:]`: two halves of the same width
            size = max(size, tail + max(max(self.spans.get(k, 0) for k in keys), 1))
        if axis == rank - 1 and self.last:
            size = self.last
        return size

    @property
    def constrained(self) -> bool:
        return bool(self.sizes or self.tails or self.last)


@dataclass
class Evidence:
    """Everything the source analysis found, with the snippets that showed it."""

    true: _Facts = field(default_factory=_Facts)
    pred: _Facts = field(default_factory=_Facts)
    votes: dict[str, str] = field(default_factory=dict)  # sparse|onehot|binary|real|image|embedding -> snippet
    classes: int | None = None
    true_whole: bool = False  # y_true met the whole y_pred elementwise: same shapes
    true_vs_part: bool = False  # y_true met a slice or column of y_pred: y_true is one target column
    true_below: bool = False  # y_true, given a last axis, met y_pred: y_true is y_pred without its last axis
    pred_vs_part: bool = False  # y_pred met a slice or column of y_true: y_true packs more than the targets
    pred_below: bool = False  # y_pred met `y_true[..., k]`: y_pred is y_true without its last axis
    helpers: list[str] = field(default_factory=list)  # the user's functions it calls, whose names say more
    reasons: list[str] = field(default_factory=list)

    def facts(self, root: str) -> _Facts:
        return self.true if root == "T" else self.pred

    def note(self, reason: str) -> None:
        if reason not in self.reasons and len(self.reasons) < 6:
            self.reasons.append(reason)

    def vote(self, kind: str, node: ast.AST) -> None:
        if kind not in self.votes:
            self.votes[kind] = _snippet(node)
            self.note(f"`{_snippet(node)}`")


def _snippet(node: ast.AST) -> str:
    text = ast.unparse(node)
    return text if len(text) <= 60 else text[:57] + "..."


_ELEMENTWISE = frozenset(
    {"clip", "clip_by_value", "cast", "abs", "absolute", "log", "log1p", "exp", "square", "sqrt", "rsqrt", "pow",
     "power", "sigmoid", "softmax", "log_softmax", "tanh", "relu", "softplus", "maximum", "minimum", "where",
     "identity", "stop_gradient", "negative", "neg", "sign", "floor", "ceil", "round",
     "cos", "sin", "erf", "multiply", "add", "subtract", "divide", "truediv", "div_no_nan", "divide_no_nan",
     "squared_difference", "equal", "not_equal", "greater", "greater_equal", "less", "less_equal",
     "logical_and", "logical_or", "logical_not", "ones_like", "zeros_like", "exp_m1", "expm1", "reciprocal",
     "safe_divide", "epsilon_clip", "to_float", "as_float", "float32", "nan_to_num", "isnan", "is_nan"}
)  # fmt: skip
_REDUCTIONS = frozenset(
    {"sum", "mean", "max", "min", "prod", "reduce_sum", "reduce_mean", "reduce_max", "reduce_min", "reduce_prod",
     "reduce_logsumexp", "logsumexp", "std", "var", "reduce_std", "reduce_variance", "norm", "amax", "amin",
     "count_nonzero", "all", "any", "reduce_all", "reduce_any", "argmax", "argmin", "average", "nanmean", "nansum"}
)  # fmt: skip
_SPARSE_CE = frozenset({"sparse_categorical_crossentropy", "sparse_softmax_cross_entropy_with_logits",
                        "sparse_categorical_accuracy", "sparse_categorical_focal_crossentropy"})
_ONEHOT_CE = frozenset({"categorical_crossentropy", "softmax_cross_entropy_with_logits",
                        "softmax_cross_entropy_with_logits_v2", "categorical_focal_crossentropy",
                        "categorical_hinge", "kl_divergence", "kullback_leibler_divergence"})
_BINARY_CE = frozenset({"binary_crossentropy", "sigmoid_cross_entropy_with_logits", "binary_focal_crossentropy",
                        "weighted_cross_entropy_with_logits"})


@dataclass(frozen=True)
class _LossObject:
    """A Keras loss object the code built (`tf.keras.losses.CategoricalCrossentropy()`): what calling it does."""

    function: str  # the loss function it applies, e.g. "categorical_crossentropy"


def _loss_class_function(name: str) -> str | None:
    """`CategoricalCrossentropy` -> "categorical_crossentropy", for the crossentropy classes the votes know."""
    snake = re.sub(r"(?<!^)(?=[A-Z])", "_", name).lower() if name[:1].isupper() else ""
    return snake if snake in _SPARSE_CE | _ONEHOT_CE | _BINARY_CE else None


_IMAGE_OPS = frozenset({"ssim", "ssim_multiscale", "psnr", "sobel_edges", "image_gradients", "conv2d",
                        "max_pool2d", "avg_pool2d", "pool2d", "depthwise_conv2d", "extract_patches", "resize",
                        "total_variation", "max_pool", "avg_pool", "conv"})
_GATHERS = frozenset({"gather", "gather_nd", "take_along_axis", "batch_gather", "take"})
_PADDING = re.compile(r"pad", re.I)
_VARIANCE_NAMES = re.compile(r"sigma|var|std|scale|log_?var|logvar|precision|noise", re.I)
_INT_DTYPE = re.compile(r"int(8|16|32|64)?\b|\bbool\b|uint")


def _call_name(node: ast.Call) -> str:
    func = node.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


class _Analyzer:
    """Walks one function body, keeping an abstract value per local name."""

    def __init__(self, code: LossCode, evidence: Evidence, env: dict[str, Any], depth: int = 0) -> None:
        self.code = code
        self.ev = evidence
        self.env = env
        self.depth = depth
        self.returned: list[Any] = []
        self.local_functions: dict[str, ast.FunctionDef] = {}
        try:
            closure = inspect.getclosurevars(code.fn)
            self.constants = {**closure.globals, **closure.nonlocals}
        except (TypeError, ValueError):
            self.constants = {}
        self.globals = getattr(code.fn, "__globals__", {})

    # --- statements ---
    def body(self, stmts: list[ast.stmt]) -> None:
        for stmt in stmts:
            self.stmt(stmt)

    def stmt(self, node: ast.stmt) -> None:
        if isinstance(node, ast.Assign):
            value = self.expr(node.value)
            for target in node.targets:
                self.bind(target, value)
        elif isinstance(node, (ast.AugAssign, ast.AnnAssign)) and node.value is not None:
            value = self.expr(node.value)
            if isinstance(node, ast.AugAssign):
                value = self.merge([self.expr(node.target), value])
            self.bind(node.target, value)
        elif isinstance(node, ast.Return) and node.value is not None:
            self.returned.append(self.expr(node.value))
        elif isinstance(node, ast.Expr):
            self.expr(node.value)
        elif isinstance(node, ast.FunctionDef):
            self.local_functions[node.name] = node
        else:
            self.compound(node)

    def compound(self, node: ast.stmt) -> None:
        if isinstance(node, ast.For):
            self.loop_target(node)
        for name in ("test", "iter"):
            if isinstance(getattr(node, name, None), ast.expr):
                self.expr(getattr(node, name))
        if isinstance(node, (ast.With, ast.AsyncWith)):
            for item in node.items:
                self.expr(item.context_expr)
        for name in ("body", "orelse", "finalbody"):
            self.body(getattr(node, name, []) or [])
        for handler in getattr(node, "handlers", []) or []:
            self.body(handler.body)

    def loop_target(self, node: ast.For) -> None:
        """`for i, q in enumerate(QUANTILES)` / `for i in range(N)`: `i` takes its last value."""
        it = node.iter
        if not isinstance(it, ast.Call) or _call_name(it) not in ("enumerate", "range") or not it.args:
            return
        value = self.expr(it.args[-1] if _call_name(it) == "range" else it.args[0])
        last = value - 1 if isinstance(value, int) else len(value) - 1 if isinstance(value, (list, tuple)) else None
        target = node.target.elts[0] if isinstance(node.target, ast.Tuple) and node.target.elts else node.target
        if isinstance(last, int) and last >= 0 and isinstance(target, ast.Name):
            self.env[target.id] = last

    def bind(self, target: ast.expr, value: Any) -> None:
        if isinstance(target, ast.Name):
            self.env[target.id] = value
            if isinstance(value, _Val) and "P" in value.roots and not value.exact and _VARIANCE_NAMES.fullmatch(target.id):
                self.ev.vote("real", target)
        elif isinstance(target, (ast.Tuple, ast.List)):
            parts = value if isinstance(value, (list, tuple)) and len(value) == len(target.elts) else None
            for i, elt in enumerate(target.elts):
                self.bind(elt, parts[i] if parts is not None else self.weaken(value))

    # --- expressions ---
    def expr(self, node: ast.expr) -> Any:
        handler = getattr(self, "_" + type(node).__name__, None)
        if handler is None:
            for child in ast.iter_child_nodes(node):
                if isinstance(child, ast.expr):
                    self.expr(child)
            return None
        return handler(node)

    def _Constant(self, node: ast.Constant) -> Any:
        return node.value

    def _Name(self, node: ast.Name) -> Any:
        if node.id in self.env:
            return self.env[node.id]
        if node.id in self.constants:
            return _constant(self.constants[node.id])
        # a module constant a default reads (`dim=EMBED_DIM`): not among the body's closure variables
        return _constant(self.globals.get(node.id))

    def _Attribute(self, node: ast.Attribute) -> Any:
        if isinstance(node.value, ast.Name) and node.value.id == "self" and self.code.owner is not None:
            return _constant(getattr(self.code.owner, node.attr, None))
        self.expr(node.value)
        return ast.unparse(node)  # dtypes such as tf.int32 are read by name

    def _Tuple(self, node: ast.Tuple | ast.List) -> Any:
        return [self.expr(e) for e in node.elts]

    _List = _Tuple

    def _UnaryOp(self, node: ast.UnaryOp) -> Any:
        value = self.expr(node.operand)
        if isinstance(value, (int, float)) and isinstance(node.op, ast.USub):
            return -value
        return value

    def _BinOp(self, node: ast.BinOp) -> Any:
        left, right = self.expr(node.left), self.expr(node.right)
        if isinstance(left, (int, float)) and isinstance(right, (int, float)):
            return _arith(node.op, left, right)
        if isinstance(node.op, ast.Mult) and isinstance(left, list) and isinstance(right, int) and 0 < right <= 64:
            return left * right  # `[num_mixtures] * 3`: split sizes
        self.pairing(left, right)
        self.grown_meets_whole(left, right, node)
        self.vector_width(left, right, node)
        self.slice_meets_whole(left, right)
        return self.merge([left, right], keep_exact=True)

    def _Compare(self, node: ast.Compare) -> Any:
        values = [self.expr(node.left), *(self.expr(c) for c in node.comparators)]
        self.padding(node, [node.left, *node.comparators], values)
        self.compared_ids(node, values)
        return self.merge(values, keep_exact=True)

    def _BoolOp(self, node: ast.BoolOp) -> Any:
        return self.merge([self.expr(v) for v in node.values], keep_exact=True)

    def _IfExp(self, node: ast.IfExp) -> Any:
        self.expr(node.test)
        return self.merge([self.expr(node.body), self.expr(node.orelse)], keep_exact=True)

    def _Subscript(self, node: ast.Subscript) -> Any:
        base = self.expr(node.value)
        if isinstance(base, _Val):
            if base.sole() is not None and _adds_last_axis(node):
                return _grown(base)
            if base.column is not None and _adds_last_axis(node):
                return base  # `correct[..., None]`: still that entry, next to `y_pred[..., None]`
            derived = _derived(base, self.sliced_width(node), _keeps_rank(node))
            if base.sole() is not None:
                self.index(base.sole(), node)  # type: ignore[arg-type]
                if _last_entry(node) and derived is not None:
                    return replace(derived, column=base.sole())
            return derived
        index = self.expr(node.slice) if not isinstance(node.slice, ast.Slice) else None
        if isinstance(base, (list, tuple)) and isinstance(index, int) and -len(base) <= index < len(base):
            return base[index]
        return None

    def _Call(self, node: ast.Call) -> Any:
        args = [self.expr(a) for a in node.args]
        kwargs = {k.arg: self.expr(k.value) for k in node.keywords if k.arg}
        name = _call_name(node)
        callee = self.user_function(node, name)
        if callee is not None:
            return self.follow(callee, node, args, kwargs)
        loss_object = self.loss_object(node.func)
        if loss_object is not None:  # `cce = CategoricalCrossentropy()` ... `cce(y_true, y_pred)`
            return self.library_call(node, loss_object, args, kwargs)
        built = _loss_class_function(name)
        if built is not None and not any(isinstance(a, _Val) for a in args):
            return _LossObject(built)
        return self.library_call(node, name.lower(), args, kwargs)

    def loss_object(self, func: ast.expr) -> str | None:
        """The function a Keras loss object stands for, when `func` is one: a local bound to
        `CategoricalCrossentropy()`, or that call itself (`BinaryCrossentropy()(y_true, y_pred)`)."""
        value = self.env.get(func.id) if isinstance(func, ast.Name) else None
        if isinstance(value, _LossObject):
            return value.function
        if isinstance(func, ast.Call):
            return _loss_class_function(_call_name(func))
        return None

    # --- helpers ---
    def weaken(self, value: Any) -> Any:
        return _derived(value)

    def merge(self, values: list[Any], keep_exact: bool = False) -> Any:
        """Combine operands: elementwise (`keep_exact`), the result keeps every axis any operand kept
        (`expand_dims(y_true, -1) - y_pred` still has y_pred's axes)."""
        vals = [v for v in values if isinstance(v, _Val)]
        if not vals:
            return None
        roots = frozenset().union(*(v.roots for v in vals))
        kept = frozenset().union(*(v.kept for v in vals)) if keep_exact else frozenset()
        ranked = frozenset().union(*(v.ranked for v in vals)) if keep_exact else frozenset()
        return _Val(roots, kept, None, ranked)

    def compared_ids(self, node: ast.expr, values: list[Any]) -> None:
        """`argmax(y_pred, -1) == y_true`: the targets are class ids, one per sample."""
        predicted = any(isinstance(v, _Val) and v.ids for v in values)
        if predicted and any(isinstance(v, _Val) and v.sole() == "T" for v in values):
            self.ev.vote("sparse", node)

    def padding(self, node: ast.expr, operands: list[ast.expr], values: list[Any]) -> None:
        """`y_true != PAD_ID`: targets compared with a padding id are padded sequences of ids."""
        targets = any(isinstance(v, _Val) and v.roots == {"T"} for v in values)
        if targets and any(_PADDING.search(ast.unparse(o)) for o in operands if not isinstance(o, ast.Constant)):
            self.ev.vote("padded", node)

    def pairing(self, left: Any, right: Any) -> None:
        """Note how y_true met y_pred: whole against whole, or against a slice of y_pred."""
        for a, b in ((left, right), (right, left)):
            if isinstance(a, _Val) and isinstance(b, _Val) and a.roots == {"T"} and b.roots == {"P"}:
                if a.exact and b.exact:
                    self.ev.true_whole = True
                elif a.exact:
                    self.ev.true_vs_part = True
                elif b.exact:
                    self.ev.pred_vs_part = True
                if a.column == "T" and (b.exact or b.grown == "P"):
                    self.ev.pred_below = True  # `y_true[..., 0] * log(y_pred)`: y_pred has y_true's other axes

    def sliced_width(self, node: ast.Subscript) -> int | None:
        """`y[..., 1:5]` or `y[:, :, :4]`: the width a constant slice of the last axis leaves."""
        elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        last = elts[-1] if elts else None
        if not isinstance(last, ast.Slice) or last.step is not None:
            return None
        lower = self.expr(last.lower) if last.lower is not None else 0
        upper = self.expr(last.upper) if last.upper is not None else None
        if isinstance(lower, int) and isinstance(upper, int) and 0 <= lower < upper:
            return upper - lower
        return None

    def grown_meets_whole(self, left: Any, right: Any, node: ast.BinOp) -> None:
        """`expand_dims(y_true, -1) - y_pred`: the author gave y_true the axis it lacks, so y_true is y_pred
        without its last axis (quantiles per target, a value per class); (B, 1) targets would pair samples."""
        for grown, whole in ((left, right), (right, left)):
            if isinstance(grown, _Val) and grown.grown == "T" and isinstance(whole, _Val) and whole.kept == {"P"}:
                self.ev.true_below = True
                self.ev.note(f"`{_snippet(node)}`")

    def array_shape(self, shape: tuple[int, ...], val: _Val, node: ast.BinOp) -> None:
        for root in val.kept:
            facts = self.ev.facts(root)
            facts.rank = max(facts.rank, len(shape))
            for axis, size in zip(range(-len(shape), 0), shape, strict=True):
                if size > 1 and axis != -len(shape):  # never the batch axis
                    facts.sizes[axis] = size
        self.ev.note(f"`{_snippet(node)}` ({'×'.join(map(str, shape))} constant)")

    def slice_meets_whole(self, left: Any, right: Any) -> None:
        """`y_true[..., :4] - y_pred`: y_pred's last axis is as wide as that slice."""
        for part, whole in ((left, right), (right, left)):
            if not (isinstance(part, _Val) and isinstance(whole, _Val) and part.width):
                continue
            for root in whole.kept - part.roots:
                self.ev.facts(root).last = part.width

    def vector_width(self, left: Any, right: Any, node: ast.BinOp) -> None:
        """A constant vector (class weights) times an input: the input's last axis has that many entries;
        a constant of higher rank (latitude weights shaped (1, 18, 1, 1)) gives the input's rank and sizes."""
        for array, val in ((left, right), (right, left)):
            shape = _array_shape(array)
            if shape is not None and len(shape) >= 2 and isinstance(val, _Val) and val.kept:
                self.array_shape(shape, val, node)
        for vec, val in ((left, right), (right, left)):
            numbers = isinstance(vec, (list, tuple)) and 1 < len(vec) <= 4096 and all(isinstance(v, (int, float)) for v in vec)
            if numbers and isinstance(val, _Val) and val.kept:
                for root in val.kept:
                    self.ev.facts(root).sizes[-1] = len(vec)
                self.ev.note(f"`{_snippet(node)}` ({len(vec)} weights)")

    def index(self, root: str, node: ast.Subscript) -> None:
        elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
        facts = self.ev.facts(root)
        consumed = [e for e in elts if not (isinstance(e, ast.Constant) and e.value in (None, Ellipsis))]
        facts.rank = max(facts.rank, len(consumed))
        for e, a in zip(elts, _axes_of(elts), strict=True):
            if a is None or a == 0:
                continue
            size = self.needed_size(e)
            if size:
                facts.sizes[a] = max(facts.sizes.get(a, 0), size)
                self.ev.note(f"`{_snippet(node)}`")
            if isinstance(e, ast.Slice) and e.step is None:
                self.slice_extent(facts, a, e)

    def slice_extent(self, facts: _Facts, axis: int, e: ast.Slice) -> None:
        lower = self.expr(e.lower) if e.lower is not None else 0
        upper = self.expr(e.upper) if e.upper is not None else None
        if isinstance(lower, int) and isinstance(upper, int) and 0 <= lower < upper:
            facts.spans[axis] = max(facts.spans.get(axis, 0), upper - lower)
        elif upper is None and isinstance(lower, int) and lower > 0:
            facts.tails[axis] = max(facts.tails.get(axis, 0), lower)

    def needed_size(self, e: ast.expr) -> int:
        """How large an axis must be for this index or slice to mean what it says."""
        if isinstance(e, ast.Slice):
            lower, upper = (self.expr(x) if x is not None else None for x in (e.lower, e.upper))
            if isinstance(upper, int) and not isinstance(upper, bool):
                return upper if upper > 0 else (-upper + 1 if not isinstance(lower, int) else 0)
            if isinstance(lower, int) and not isinstance(lower, bool):
                return lower + 1 if lower >= 0 else -lower
            return 0
        value = self.expr(e)
        if isinstance(value, int) and not isinstance(value, bool):
            return value + 1 if value >= 0 else -value
        return 0

    def user_function(self, node: ast.Call, name: str) -> LossCode | None:
        """A helper the loss calls that is defined in the user's own code (followed three deep): a
        module function, or a method of the loss object itself (`self.coord_loss(y_true, y_pred)`)."""
        if self.depth >= 3:
            return None
        if isinstance(node.func, ast.Attribute) and isinstance(node.func.value, ast.Name) and node.func.value.id == "self":
            return self.method(name)
        if not isinstance(node.func, ast.Name):
            return None
        if name in self.local_functions:
            return None  # nested helpers: analysed in place by the caller's walk below
        fn = self.globals.get(name)
        if not inspect.isfunction(fn) or fn.__module__ != getattr(self.code.fn, "__module__", None):
            return None
        params = list(inspect.signature(fn).parameters)
        return LossCode(fn, params[0] if params else "", params[1] if len(params) > 1 else "")

    def method(self, name: str) -> LossCode | None:
        owner = self.code.owner
        fn = getattr(type(owner), name, None) if owner is not None else None
        if not inspect.isfunction(fn):
            return None
        params = list(inspect.signature(fn).parameters)[1:]
        return LossCode(fn, params[0] if params else "", params[1] if len(params) > 1 else "", owner)

    def follow(self, callee: LossCode, node: ast.Call, args: list[Any], kwargs: dict[str, Any]) -> Any:
        tree = _function_node(callee.fn)
        if not isinstance(tree, ast.FunctionDef):
            return self.merge(args + list(kwargs.values()))
        params = [a.arg for a in tree.args.args]
        if callee.owner is not None and params[:1] == ["self"]:
            params = params[1:]
        env = dict(zip(params, args, strict=False))  # extra positional arguments are not followed
        env.update({k: v for k, v in kwargs.items() if k in params})
        if callee.fn.__name__ not in self.ev.helpers:
            self.ev.helpers.append(callee.fn.__name__)
        inner = _Analyzer(callee, self.ev, env, self.depth + 1)
        _defaults(inner, tree)  # `def split_views(y, dim=EMBED_DIM)` called without dim: dim is EMBED_DIM
        inner.body(tree.body)
        if len(inner.returned) == 1 and isinstance(inner.returned[0], list):
            return inner.returned[0]  # `return actions, advantage, old` unpacks at the call site
        return self.merge(inner.returned, keep_exact=True)

    def library_call(self, node: ast.Call, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        first = args[0] if args else None
        handler = _CALL_HANDLERS.get(name)
        if handler is not None:
            return handler(self, node, args, kwargs)
        if name in ("equal", "not_equal"):
            self.padding(node, list(node.args), args)
            self.compared_ids(node, args)
        if name in _ELEMENTWISE:
            if name in ("exp", "softplus") and isinstance(first, _Val) and first.roots == {"P"} and not first.exact:
                self.ev.vote("real", node)
            elementwise = isinstance(first, _Val) and bool(first.kept or first.ranked)
            return self.merge(args, keep_exact=True) if elementwise else self.merge(args)
        if name in _REDUCTIONS:
            return self.reduction(node, name, args, kwargs)
        if name in _IMAGE_OPS:
            self.ev.vote("image", node)
        return self.merge(args + list(kwargs.values()))

    def reduction(self, node: ast.Call, name: str, args: list[Any], kwargs: dict[str, Any]) -> Any:
        first = args[0] if args else None
        axis = args[1] if len(args) > 1 else kwargs.get("axis")
        keepdims = args[2] if len(args) > 2 else kwargs.get("keepdims")
        if name in ("sum", "reduce_sum") and keepdims is True and axis == -1 and isinstance(first, _Val) and first.sole() == "P":
            self.ev.vote("onehot", node)  # `y_pred / sum(y_pred, -1, keepdims=True)`: one distribution per sample
        self.axes(first, axis, node)
        return self.weaken(first) if isinstance(first, _Val) else None

    def axes(self, value: Any, axis: Any, node: ast.Call) -> None:
        if not isinstance(value, _Val) or not value.ranked:
            return
        axes = axis if isinstance(axis, list) else [axis] if isinstance(axis, int) and not isinstance(axis, bool) else []
        axes = [a for a in axes if isinstance(a, int)]
        if not axes:
            return
        # axis=1 needs rank 2; axis=-1 too: the batch axis comes before the axes a loss reduces
        rank = max(a + 1 if a >= 0 else 1 - a for a in axes)
        for root in value.ranked:
            facts = self.ev.facts(root)
            facts.reduced = max(facts.reduced, rank)
            if rank > facts.rank:
                facts.rank = rank
                self.ev.note(f"`{_snippet(node)}`")


def _constant(value: Any) -> Any:
    """A module constant, closure value or attribute the analysis can use: numbers, strings, short vectors."""
    if isinstance(value, (int, float, str, tuple, list)):
        return value
    if hasattr(value, "numpy") and callable(value.numpy) and getattr(value, "shape", None) is not None:
        try:
            value = value.numpy()  # an eager tensor in a closure: tf.constant(QUANTILES)
        except Exception:
            return None
    shape = getattr(value, "shape", None)
    size = getattr(value, "size", None)
    if isinstance(shape, tuple) and shape and isinstance(size, int) and 0 < size <= 4096 and hasattr(value, "tolist"):
        return value.tolist()  # a numpy vector of class weights, or a small table of anchors
    if shape == () and hasattr(value, "item"):
        return value.item()
    return None


def _as_constant(an: _Analyzer, node: ast.Call, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """`np.array([...])`, `K.variable(w)`, `tf.constant(w)`: the values pass through; a tensor stays a tensor."""
    first = args[0] if args else kwargs.get("value", kwargs.get("x"))
    if isinstance(first, (list, tuple)):
        return first
    return first if isinstance(first, _Val) else None


def _grown(value: _Val) -> _Val:
    """The whole input `value` with a new last axis: no longer its axes, but known to be it."""
    return _Val(value.roots, frozenset(), None, frozenset(), grown=value.sole())


def _is_new_axis(e: ast.expr) -> bool:
    return (isinstance(e, ast.Constant) and e.value is None) or (isinstance(e, ast.Attribute) and e.attr == "newaxis")


def _last_entry(node: ast.Subscript) -> bool:
    """`y[..., 0]`: one entry of the last axis, whatever the rank."""
    elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else []
    return (len(elts) == 2 and isinstance(elts[0], ast.Constant) and elts[0].value is Ellipsis
            and isinstance(elts[1], ast.Constant) and type(elts[1].value) is int)


def _adds_last_axis(node: ast.Subscript) -> bool:
    """`y[..., None]`, `y[..., tf.newaxis]` or `y[:, None]` (the idiom on (B,) targets)."""
    elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    if len(elts) != 2 or not _is_new_axis(elts[1]):
        return False
    first = elts[0]
    full = isinstance(first, ast.Slice) and first.lower is None and first.upper is None and first.step is None
    return full or (isinstance(first, ast.Constant) and first.value is Ellipsis)


def _expand_dims(an: _Analyzer, node: ast.Call, args: list[Any], kwargs: dict[str, Any]) -> Any:
    first = args[0] if args else None
    axis = args[1] if len(args) > 1 else kwargs.get("axis", -1)  # K.expand_dims defaults to the last axis
    if isinstance(first, _Val) and first.sole() is not None and axis == -1:
        return _grown(first)
    return an.merge(args + list(kwargs.values()))


def _keeps_rank(node: ast.Subscript) -> bool:
    """A subscript of ranges and an ellipsis only: every axis stays (`y[..., 0:2]`, `y[:, 1:]`)."""
    elts = node.slice.elts if isinstance(node.slice, ast.Tuple) else [node.slice]
    return all(isinstance(e, ast.Slice) or (isinstance(e, ast.Constant) and e.value is Ellipsis) for e in elts)


def _axes_of(elts: list[ast.expr]) -> list[int | None]:
    """The axis each subscript element indexes: from the left, or from the right after an ellipsis."""
    out: list[int | None] = []
    axis = 0
    for i, e in enumerate(elts):
        value = e.value if isinstance(e, ast.Constant) else 0
        marker = value is None or value is Ellipsis
        if value is Ellipsis:
            axis = -(len(elts) - i - 1)
        out.append(None if marker else axis)
        axis += 0 if marker else 1
    return out


def _arith(op: ast.operator, a: float, b: float) -> Any:
    try:
        result = {ast.Add: a + b, ast.Sub: a - b, ast.Mult: a * b}.get(type(op))
        if result is None and isinstance(op, (ast.FloorDiv, ast.Div)) and b:
            result = a // b if isinstance(op, ast.FloorDiv) else a / b
        return result
    except TypeError:
        return None


def _one_hot(an: _Analyzer, node: ast.Call, args: list[Any], kwargs: dict[str, Any]) -> Any:
    x = args[0] if args else kwargs.get("indices")
    depth = args[1] if len(args) > 1 else kwargs.get("depth", kwargs.get("num_classes"))
    if isinstance(x, _Val) and "T" in x.roots:
        an.ev.vote("sparse", node)
        if isinstance(depth, int) and not isinstance(depth, bool) and depth > 1:
            an.ev.classes = depth
    elif isinstance(x, _Val) and x.ids and isinstance(depth, int) and not isinstance(depth, bool) and depth > 1:
        # `one_hot(argmax(y_pred, -1), NUM_CLASSES)`: the predictions have NUM_CLASSES columns
        an.ev.pred.sizes[-1] = depth
        an.ev.note(f"`{_snippet(node)}`")
        return _Val(x.roots, frozenset(), depth, frozenset())
    return _derived(x)


def _cast(an: _Analyzer, node: ast.Call, args: list[Any], kwargs: dict[str, Any]) -> Any:
    x = args[0] if args else kwargs.get("x")
    dtype = args[1] if len(args) > 1 else kwargs.get("dtype")
    if isinstance(x, _Val) and x.roots == {"T"} and x.exact and isinstance(dtype, str) and _INT_DTYPE.search(dtype):
        an.ev.vote("sparse", node)
    return x if isinstance(x, _Val) else None


def _gather(an: _Analyzer, node: ast.Call, args: list[Any], kwargs: dict[str, Any]) -> Any:
    indices = args[1] if len(args) > 1 else kwargs.get("indices")
    axis = args[2] if len(args) > 2 else kwargs.get("axis")
    # `take(x, argsort(time), axis=0)` reorders the samples (a Cox risk set): no class ids there
    if isinstance(indices, _Val) and "T" in indices.roots and axis != 0:
        an.ev.vote("sparse", node)
    return an.merge(args + list(kwargs.values()))


def _reshape(an: _Analyzer, node: ast.Call, args: list[Any], kwargs: dict[str, Any]) -> Any:
    x = args[0] if args else kwargs.get("tensor", kwargs.get("x"))
    target = args[1] if len(args) > 1 else kwargs.get("shape", kwargs.get("newshape"))
    if isinstance(x, _Val) and x.sole() is not None and isinstance(target, (list, tuple)):
        dims = list(target)
        if dims and (dims[0] in (-1, None) or not isinstance(dims[0], int)) and all(
            isinstance(d, int) and d > 0 for d in dims[1:]
        ) and len(dims) > 1:
            facts = an.ev.facts(next(iter(x.roots)))
            facts.reshape = tuple(dims[1:])
            facts.folds = len(dims) == 2
            an.ev.note(f"`{_snippet(node)}`")
    return an.weaken(x)


def _split(an: _Analyzer, node: ast.Call, args: list[Any], kwargs: dict[str, Any]) -> Any:
    x = args[0] if args else kwargs.get("value", kwargs.get("x"))
    parts = args[1] if len(args) > 1 else kwargs.get("num_or_size_splits", kwargs.get("indices_or_sections"))
    axis = args[2] if len(args) > 2 else kwargs.get("axis", 0)
    if not isinstance(x, _Val):
        return None
    sizes = parts if isinstance(parts, list) else [1] * parts if isinstance(parts, int) else []
    if x.sole() is not None and isinstance(axis, int) and axis != 0 and sizes:
        facts = an.ev.facts(next(iter(x.roots)))
        facts.sizes[axis] = max(facts.sizes.get(axis, 0), sum(p for p in sizes if isinstance(p, int)))
        an.ev.note(f"`{_snippet(node)}`")
    return [_derived(x)] * len(sizes) if sizes else _derived(x)


def _unstack(an: _Analyzer, node: ast.Call, args: list[Any], kwargs: dict[str, Any]) -> Any:
    x = args[0] if args else None
    num = kwargs.get("num")
    if isinstance(x, _Val) and isinstance(num, int):
        axis = kwargs.get("axis", 0)
        if x.sole() is not None and isinstance(axis, int) and axis != 0:
            facts = an.ev.facts(next(iter(x.roots)))
            facts.sizes[axis] = max(facts.sizes.get(axis, 0), num)
        return [_derived(x)] * num
    return an.weaken(x)


def _squeeze(an: _Analyzer, node: ast.Call, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """`squeeze(y_pred, axis=-1)`: that axis of the input has size 1 (a one-column head)."""
    x = args[0] if args else kwargs.get("x", kwargs.get("input"))
    axis = args[1] if len(args) > 1 else kwargs.get("axis")
    if isinstance(x, _Val) and x.sole() is not None and isinstance(axis, int) and not isinstance(axis, bool) and axis != 0:
        facts = an.ev.facts(next(iter(x.roots)))
        facts.sizes.setdefault(axis, 1)
        an.ev.note(f"`{_snippet(node)}`")
    return an.weaken(x)


def _vote_call(kind: str) -> Any:
    def handler(an: _Analyzer, node: ast.Call, args: list[Any], kwargs: dict[str, Any]) -> Any:
        an.ev.vote(kind, node)
        if len(args) >= 2:
            an.pairing(args[0], args[1])  # a crossentropy meets its targets with its predictions
        return an.merge(args + list(kwargs.values()))

    return handler


def _number(an: _Analyzer, node: ast.Call, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """`int(total / 3)` of constants is a constant (a slice bound)."""
    value = args[0] if len(args) == 1 else None
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return int(value) if _call_name(node) == "int" else float(value)
    return an.merge(args)


def _len(an: _Analyzer, node: ast.Call, args: list[Any], kwargs: dict[str, Any]) -> Any:
    return len(args[0]) if args and isinstance(args[0], (list, tuple, str)) else None


def _argmax(an: _Analyzer, node: ast.Call, args: list[Any], kwargs: dict[str, Any]) -> Any:
    if args and isinstance(args[0], _Val) and args[0].roots == {"T"}:
        an.ev.vote("onehot", node)
    weakened = an.weaken(args[0]) if args else None
    if isinstance(weakened, _Val) and weakened.roots == {"P"}:
        return replace(weakened, ids=True)
    return weakened


def _array_shape(value: Any) -> tuple[int, ...] | None:
    """The shape of a rectangular nested list of numbers (a numpy constant the analysis read), else None;
    () for a number."""
    if isinstance(value, (int, float)):
        return ()
    if not isinstance(value, list) or not value:
        return None
    inner = {_array_shape(v) for v in value}
    shape = inner.pop() if len(inner) == 1 else None
    return None if shape is None else (len(value), *shape)


def _matrix_shape(value: Any) -> tuple[int, int] | None:
    """(rows, columns) of a constant matrix the analysis read (a numpy table of class centres)."""
    shape = _array_shape(value)
    return (shape[0], shape[1]) if shape is not None and len(shape) == 2 and shape[0] >= 2 else None


def _pairwise(an: _Analyzer, node: ast.Call, args: list[Any], kwargs: dict[str, Any]) -> Any:
    vals = [a for a in args if isinstance(a, _Val)]
    if len(vals) >= 2 and all(v.roots == {"P"} for v in vals):
        an.ev.vote("embedding", node)
    left, right = [*args, None, None][:2]
    matrix = _matrix_shape(right)
    root = left.sole() if isinstance(left, _Val) else None
    if isinstance(left, _Val) and root is not None and matrix is not None:
        # `K.dot(y_true, CENTERS)` with CENTERS (10, 64): y_true has 10 entries, the product 64
        an.ev.facts(root).sizes[-1] = matrix[0]
        an.ev.note(f"`{_snippet(node)}` ({matrix[0]}×{matrix[1]} matrix)")
        return _Val(left.roots, frozenset(), matrix[1], left.ranked)
    return an.merge(args)


def _einsum(an: _Analyzer, node: ast.Call, args: list[Any], kwargs: dict[str, Any]) -> Any:
    """`einsum("bnc,ck->bnk", y_true, DIRECTIONS)`: an input's rank from its subscripts, and the sizes a
    constant operand gives the letters they share."""
    equation, operands = (args[0], args[1:]) if args and isinstance(args[0], str) else (None, args)
    if equation is None or "..." in equation or "->" not in equation:
        return _pairwise(an, node, operands, kwargs)
    subscripts = equation.replace(" ", "").split("->")[0].split(",")
    sizes: dict[str, int] = {}
    for letters, value in zip(subscripts, operands, strict=False):
        matrix = _matrix_shape(value)
        if matrix is not None and len(letters) == 2:
            sizes.update(zip(letters, matrix, strict=True))
    for letters, value in zip(subscripts, operands, strict=False):
        root = value.sole() if isinstance(value, _Val) else None
        if root is None:
            continue
        facts = an.ev.facts(root)
        facts.rank = max(facts.rank, len(letters))
        for axis, letter in enumerate(letters[1:], start=1):
            if letter in sizes:
                facts.sizes[axis] = sizes[letter]
        an.ev.note(f"`{_snippet(node)}`")
    return _pairwise(an, node, operands, kwargs)


def _normalize(an: _Analyzer, node: ast.Call, args: list[Any], kwargs: dict[str, Any]) -> Any:
    if args and isinstance(args[0], _Val) and args[0].roots == {"P"}:
        an.ev.vote("embedding", node)
    return args[0] if args and isinstance(args[0], _Val) else None


_CALL_HANDLERS: dict[str, Any] = {
    "one_hot": _one_hot, "cast": _cast, "len": _len, "int": _number, "float": _number, "reshape": _reshape, "split": _split, "unstack": _unstack,
    "argmax": _argmax, "matmul": _pairwise, "dot": _pairwise, "tensordot": _pairwise,
    "l2_normalize": _normalize, "normalize": _normalize, "squeeze": _squeeze, "expand_dims": _expand_dims,
    **{name: _vote_call("ctc") for name in ("ctc_loss", "ctc_batch_cost", "ctc_loss_dense", "ctc_loss_v2")},
    **{name: _vote_call("audio") for name in ("stft", "inverse_stft", "mfccs_from_log_mel_spectrograms")},
    "einsum": _einsum,
    **{name: _as_constant for name in ("convert_to_tensor", "constant", "variable", "array", "asarray")},
    **{name: _gather for name in _GATHERS},
    **{name: _vote_call("sparse") for name in _SPARSE_CE},
    **{name: _vote_call("onehot") for name in _ONEHOT_CE},
    **{name: _vote_call("binary") for name in _BINARY_CE},
}  # fmt: skip


def analyse(obj: Any) -> Evidence | None:
    """What the loss's source says about its inputs (None when the source cannot be read)."""
    code = find_code(obj)
    if code is None:
        return None
    tree = _function_node(code.fn)
    if tree is None:
        return None
    evidence = Evidence()
    env: dict[str, Any] = {code.true_param: _input("T"), code.pred_param: _input("P")}
    env.update({k: v for k, v in code.bound.items() if isinstance(v, (int, float, str, tuple, list))})
    analyzer = _Analyzer(code, evidence, env)
    if isinstance(tree, ast.Lambda):
        analyzer.returned.append(analyzer.expr(tree.body))
    else:
        _defaults(analyzer, tree)
        analyzer.body(tree.body)
    return evidence


def _defaults(analyzer: _Analyzer, tree: ast.FunctionDef) -> None:
    """Constant defaults of the other parameters (`smooth=1.0`, `num_classes=20`) are values the body reads."""
    args = tree.args.args
    for arg, default in zip(args[len(args) - len(tree.args.defaults) :], tree.args.defaults, strict=True):
        if arg.arg not in analyzer.env:
            analyzer.env[arg.arg] = analyzer.expr(default)
    for kwarg, kw_default in zip(tree.args.kwonlyargs, tree.args.kw_defaults, strict=True):
        if kw_default is not None and kwarg.arg not in analyzer.env:
            analyzer.env[kwarg.arg] = analyzer.expr(kw_default)


# ----------------------------------------------------------------------------------------------
# evidence + a base layout -> a layout


def _labels(ev: Evidence, base: str) -> str:
    for kind in ("sparse", "onehot", "real", "binary"):
        if kind in ev.votes:
            return kind
    if "embedding" in ev.votes and base not in ("sparse", "onehot"):
        return "real"
    return base


def _rank(ev: Evidence, base_rank: int, labels: str) -> int:
    # class ids of rank r (`(B, T)` tokens) go with predictions of rank r + 1
    ids_rank = ev.true.reduced + 1 if ev.true.reduced > 1 else 0
    rank = max(base_rank, ev.pred.rank, ids_rank if labels == "sparse" else ev.true.rank)
    if "image" in ev.votes:
        rank = max(rank, 4)
    return rank


def _shape(facts: _Facts, base: tuple[int | str, ...], rank: int, classes: int | None) -> tuple[int | str, ...]:
    if facts.reshape is not None:
        # (-1, d) folds rows of a wider input (a grid of cells) into the batch axis; other targets are grids
        return ("B", STEPS * facts.reshape[0]) if facts.folds else ("B", *facts.reshape)
    dims = [int(d) for d in base[1:]]
    while len(dims) + 1 < rank:  # insert middle axes: spatial for images, time steps for sequences
        dims.insert(0, SPATIAL if rank >= 4 else STEPS)
    if classes is not None and dims:
        dims[-1] = classes
    out: list[int | str] = ["B"]
    for axis, default in enumerate(dims, start=1):
        out.append(facts.size(axis, rank) or default)
    return tuple(out)


def _indexed_rank(facts: _Facts) -> int:
    """The rank that indices counted from the left imply (`y[:, 1]`: 2), or 0 when they say nothing."""
    return facts.rank if any(a > 0 for a in (*facts.sizes, *facts.tails, *facts.spans)) else 0


def _classes(ev: Evidence, base: ProbeSpec, labels: str) -> int | None:
    """The class count a sparse or one-hot layout needs: the code's `depth`, else at least CLASSES."""
    classes = ev.classes if labels in ("sparse", "onehot") else None
    if labels == "sparse" and base.labels != "sparse" and classes is None:
        classes = max(int(base.y_pred[-1]), CLASSES) if len(base.y_pred) > 1 else CLASSES
    return classes


def _borrows(facts: _Facts, reshape: tuple[int, ...] | None, folds: bool) -> bool:
    """An input the code never reshapes, indexed like the other input after that one's reshape (a YOLO
    `y_true[..., 4]` against `reshape(y_pred, (-1, 7, 7, 30))`): it has the reshaped shape already."""
    if reshape is None or folds or facts.reshape is not None:
        return False
    rank = len(reshape) + 1
    if facts.rank not in (0, rank):
        return False
    return all(facts.size(axis, rank) <= dim for axis, dim in enumerate(reshape, start=1))


def _targets(ev: Evidence, base: ProbeSpec, y_pred: tuple[int | str, ...], rank: int, labels: str) -> list[tuple[int | str, ...]]:
    """y_true's shapes for a non-sparse layout: y_pred's, its own where the code says so, or one column."""
    true = ev.true
    if _borrows(true, ev.pred.reshape, ev.pred.folds):
        return [("B", *ev.pred.reshape)]  # type: ignore[misc]
    if ev.true_below and len(y_pred) > 1:
        return [y_pred[:-1]]
    same = _shape(true, base.y_pred, rank, None) if true.constrained or true.reshape is not None else y_pred
    if y_pred[-1] == 1 or true.constrained or true.reshape is not None or labels == "onehot":
        return [same]  # one-hot targets are as wide as the predictions, whatever met them
    head = (*y_pred[:-1], 1)
    # y_true met a column of y_pred, never all of it: it is one target column
    return [head, same] if ev.true_vs_part and not ev.true_whole else [same, head]


def refine(base: ProbeSpec, ev: Evidence) -> list[ProbeSpec]:
    """The base layout bent to what the source says; [] when the base contradicts it (another rank)."""
    labels = _labels(ev, base.labels)
    rank = _rank(ev, len(base.y_pred), labels)
    indexed = max(_indexed_rank(ev.pred), _indexed_rank(ev.true) if labels != "sparse" else 0)
    if indexed and rank != indexed and ev.pred.reshape is None and ev.true.reshape is None:
        return []
    pred_facts = ev.pred if ev.pred.constrained or ev.pred.reshape or not ev.true.constrained else ev.true
    y_pred = _shape(pred_facts, base.y_pred, rank, _classes(ev, base, labels))
    if _borrows(ev.pred, ev.true.reshape, ev.true.folds):
        y_pred = ("B", *ev.true.reshape)  # type: ignore[misc]
    if labels == "sparse":
        ids = y_pred[:-1]
        return [ProbeSpec(ids, y_pred, labels), ProbeSpec((*ids, 1), y_pred, labels)]
    specs = [ProbeSpec(y_true, y_pred, labels) for y_true in _targets(ev, base, y_pred, rank, labels)]
    specs = _packed_entries(ev, specs) + _one_column_heads(ev, specs) + specs
    return specs + _other_tail_widths(ev, specs)


def _packed_entries(ev: Evidence, specs: list[ProbeSpec]) -> list[ProbeSpec]:
    """`y_true[..., 0]` and `y_true[..., 1]` against a whole y_pred: y_true packs (value, mask) per step of
    y_pred's (B, T), and y_pred is y_true without its last axis."""
    if not ev.pred_below or ev.pred.constrained:
        return []
    out = []
    for spec in specs:
        steps = spec.y_true[:-1] if len(spec.y_true) >= 3 else ("B", STEPS)
        out.append(ProbeSpec((*steps, max(2, int(spec.y_true[-1]))), steps, spec.labels))
    return out


def _other_tail_widths(ev: Evidence, specs: list[ProbeSpec]) -> list[ProbeSpec]:
    """`y[:, :10]` and `y[:, 10:]` are read as two halves (20 wide); the rest may also be half as wide (15:
    ten coordinates and five visibility flags) or one column (11), tried after."""
    out: list[ProbeSpec] = []
    for spec in specs:
        true_tail, pred_tail = _last_tail(ev.true, len(spec.y_true)), _last_tail(ev.pred, len(spec.y_pred))
        for half in (True, False):  # half as wide, then one column
            y_true = _tail_resized(spec.y_true, true_tail, half)
            y_pred = _tail_resized(spec.y_pred, pred_tail, half)
            if (y_true, y_pred) != (spec.y_true, spec.y_pred):
                out.append(ProbeSpec(y_true, y_pred, spec.labels))
    return out


def _last_tail(facts: _Facts, rank: int) -> int:
    return max(facts.tails.get(rank - 1, 0), facts.tails.get(-1, 0))


def _tail_resized(shape: tuple[int | str, ...], tail: int, half: bool) -> tuple[int | str, ...]:
    """The last axis as `tail` plus half of it, or plus one column, when it was read as two halves."""
    if tail < 2 or shape[-1] != 2 * tail:
        return shape
    return (*shape[:-1], tail + (tail // 2 if half else 1))


def _one_column_heads(ev: Evidence, specs: list[ProbeSpec]) -> list[ProbeSpec]:
    """`y_pred + y_true[:, 1]`, y_true indexed and y_pred never: a one-column head against packed targets
    (a count and its exposure, a value and its weight), tried before the same widths."""
    if not ev.pred_vs_part or not ev.true.constrained or ev.true_whole or ev.pred.constrained:
        return []
    return [replace(spec, y_pred=(*spec.y_pred[:-1], 1)) for spec in specs if spec.y_pred[-1] != 1]


def _base_specs(names: tuple[str, ...], helpers: tuple[str, ...] = ()) -> list[tuple[ProbeSpec, str, str]]:
    """(layout, origin, reason) from the loss's names, then from the helpers it calls (`custom_loss` adding
    `dice_coef_loss`: a segmentation loss), then the ladder."""
    out: list[tuple[ProbeSpec, str, str]] = []
    matched: set[str] = set()
    for source, words in (("name", names), ("helper", helpers)):
        text = " ".join(n for n in words if n)
        for what, pattern, specs in _FAMILIES:
            match = pattern.search(text)
            if match and what not in matched:
                matched.add(what)
                reason = f"the {source} `{match.group(0)}` reads as {what}"
                out += [(spec, "name", reason) for spec in specs]
    out += [(spec, "ladder", "the default ladder") for spec in LADDER]
    return out


def _informative(ev: Evidence | None) -> bool:
    if ev is None:
        return False
    facts = (ev.true, ev.pred)
    return bool(ev.votes) or ev.true_below or any(f.rank > 2 or f.constrained or f.reshape for f in facts)


def propose(obj: Any, names: tuple[str, ...] = (), legacy: bool = False) -> list[Proposal]:
    """Layouts to try for a loss object, in order; the first the loss runs on and depends on is used.
    `legacy`: the layouts as tf_keras' `fit` hands them to a Keras-2 loss."""
    try:
        ev = analyse(obj)
    except Exception:
        ev = None
    code = find_code(obj) if ev is not None else None
    all_names = (*names, getattr(code.fn, "__name__", "") if code else "", type(obj).__name__)
    candidates = _from_source(ev, _bases(ev, all_names))
    real = ev is not None and "real" in ev.votes
    proposals: list[Proposal] = []
    seen: set[ProbeSpec] = set()
    for spec, origin, reason in candidates:
        if legacy:
            spec = _as_keras2_feeds_it(spec)
        if spec not in seen:
            seen.add(spec)
            proposals.append(Proposal(spec, origin, reason, probabilities=not real))
    return proposals


def _as_keras2_feeds_it(spec: ProbeSpec) -> ProbeSpec:
    """tf_keras' `fit` expands rank-1 targets to (B, 1) against (B, C) predictions before any loss sees
    them (`compile_utils.match_dtype_and_rank`): a Keras-2 loss never gets (B,) ids there."""
    if len(spec.y_true) == 1 and len(spec.y_pred) == 2:
        return ProbeSpec(("B", 1), spec.y_pred, spec.labels)
    return spec


def _bases(ev: Evidence | None, names: tuple[str, ...]) -> list[tuple[ProbeSpec, str, str]]:
    """The layouts the names suggest and the ladder, after padded sequences when the code compares
    the targets with a padding id, and waveforms when it takes an STFT."""
    bases = _base_specs(names, tuple(ev.helpers) if ev is not None else ())
    for vote, specs, what in (("audio", AUDIO_LAYOUTS, "waveforms"), ("padded", SEQUENCE_LAYOUTS, "padded sequences")):
        if ev is not None and vote in ev.votes:
            reason = f"the code: `{ev.votes[vote]}` ({what})"
            bases = [(spec, "name", reason) for spec in specs] + bases
    return bases


def _from_source(ev: Evidence | None, bases: list[tuple[ProbeSpec, str, str]]) -> list[tuple[ProbeSpec, str, str]]:
    """CTC layouts, then every base bent to what the source says, then the bases themselves."""
    out: list[tuple[ProbeSpec, str, str]] = []
    if ev is not None and "ctc" in ev.votes:
        why = f"the code: `{ev.votes['ctc']}` (CTC: label ids shorter than the frames)"
        out += [(spec, "source", why) for spec in CTC_LAYOUTS]
    if ev is not None and _informative(ev):
        why = "the code: " + ", ".join(ev.reasons) if ev.reasons else "the code"
        for base, origin, reason in bases:
            out += [(spec, "source", why if origin == "ladder" else f"{reason}; {why}") for spec in refine(base, ev)]
    return out + bases


def pinned(spec: ProbeSpec, origin: str) -> list[Proposal]:
    """The one layout the user gave (`--probe` or `[tool.lossdiag.probes]`)."""
    reason = "given with --probe" if origin == "given" else "set in [tool.lossdiag.probes]"
    return [Proposal(spec, origin, reason)]


def with_reason(proposal: Proposal, reason: str) -> Proposal:
    return replace(proposal, reason=reason)
