"""Turn command-line targets into loss candidates: resolve paths, pre-scan with `ast`, then materialise."""

from __future__ import annotations

import ast
import difflib
import functools
import inspect
import re
import sys
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from lossdiag import flavour, script
from lossdiag.flavour import Keras2Evidence

# Targets moved to lossdiag.targets; re-exported here (`X as X`: an explicit re-export) so that
# existing imports keep working.
from lossdiag.targets import Target as Target
from lossdiag.targets import TargetError as TargetError
from lossdiag.targets import display_path as display_path
from lossdiag.targets import resolve_targets as resolve_targets

# Names that make a two-argument function (or a module-level object) read as a loss. The ast
# pre-scan uses them so that a training script's `train(model, data)` never gets imported.
_LOSS_WORDS = re.compile(
    r"loss|dice|iou|jaccard|tversky|focal|entropy|mse|mae|mape|msle|rmse|error|diverg|kld?\b|"
    r"hinge|huber|logcosh|distance|contrastive|triplet|similar|score|coef|metric|likelihood|nll|"
    r"ssim|psnr|penalt|charbonnier|smooth|l1|l2|objective|criterion|cost|bce|cce|_ce\b|^ce_|xent|"
    r"elbo|recon|ctc|bpr|pinball",
    re.IGNORECASE,
)
_TARGET_WORDS = re.compile(r"true|target|label|gt|ground|actual|^y$|^yt|^z$|^yz$|^t$", re.IGNORECASE)
_PRED_WORDS = re.compile(r"pred|hat|logit|output|score|prob|^yp|^p$|^o$", re.IGNORECASE)


@dataclass(frozen=True)
class AstCandidate:
    """Something at module level that the pre-scan thinks may be a loss, or that the module uses as one."""

    name: str  # the top-level name; for kind "expr", the expression's source text
    kind: str  # function | class | factory | assign | use (a name handed to Keras) | expr (a call handed to Keras)
    line: int
    expr: str | None = None  # kind "expr": evaluated in the module's namespace to build the loss
    outputs: tuple[str, ...] = ()  # the model outputs compile(loss={...} or [...]) uses it for
    role: str = "loss"  # "metric": probed as Keras runs a metric (see `metric_role`)
    via: tuple[str, ...] = ()  # how use found it: compile, metrics, losses.get, custom_objects
    swapped: bool = False  # parameters read prediction first, and nothing hands it to Keras
    main_only: tuple[str, int] | None = None  # a global it reads that only `__main__` sets (name, line)
    main_set: tuple[str, int] | None = None  # a global it reads that is None until `__main__` sets it

    @property
    def roots(self) -> frozenset[str]:
        """The module-level names that must be defined to build it."""
        return script.expression_names(self.expr) if self.expr is not None else frozenset({self.name})


@dataclass(frozen=True)
class FileScan:
    path: Path
    module: str
    sys_path_root: Path
    candidates: tuple[AstCandidate, ...]
    syntax_error: tuple[str, int | None] | None = None
    keras2: Keras2Evidence | None = None  # why the module reads as Keras-2 code (None: Keras 3)


def module_identity(path: Path) -> tuple[str, Path]:
    """The dotted name a file is imported under, and the folder to put on sys.path for it."""
    path = path.resolve()
    parts = [] if path.name == "__init__.py" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts) or path.parent.name, folder


# --- reading a definition's parameters -------------------------------------------------------------

# Words in a parameter name that say which argument it is (split at `_` and camelCase; `zhat` ends in hat).
_TARGET_TOKENS = frozenset({
    "true", "target", "targets", "label", "labels", "gt", "ground", "truth", "groundtruth", "actual", "gold",
    "ref", "reference", "expected", "y", "yt", "ytrue", "z", "yz", "t", "mask", "masks",
})  # fmt: skip
_PRED_TOKENS = frozenset({
    "pred", "preds", "prediction", "predictions", "predicted", "hat", "yhat", "logit", "logits", "output",
    "outputs", "out", "prob", "probs", "probability", "probabilities", "score", "scores", "yp", "ypred", "p",
    "o", "estimate", "estimated", "est", "recon", "reconstruction", "reconstructed",
})  # fmt: skip
# How the module hands a thing to Keras: Keras then calls it as fn(y_true, y_pred), whatever its names.
_KERAS_FACING = frozenset({"compile", "metrics", "losses.get", "custom_objects"})


def _positional(args: ast.arguments) -> tuple[list[str], int]:
    """Positional parameter names and how many of them have no default."""
    names = [a.arg for a in args.posonlyargs + args.args]
    return names, len(names) - len(args.defaults)


def _required_kwonly(args: ast.arguments) -> int:
    return sum(1 for d in args.kw_defaults if d is None)


def _param_role(name: str) -> str | None:
    tokens = [t.lower() for t in re.findall(r"[A-Z]?[a-z]+|[A-Z]+(?![a-z])|\d+", name)]
    if len(tokens) > 1:  # a lone letter says something only on its own (`y`, `p`), not in `p_flat`
        tokens = [t for t in tokens if len(t) > 1]
    if any(t in _PRED_TOKENS or (t.endswith("hat") and len(t) > 3) for t in tokens):
        return "prediction"
    if any(t in _TARGET_TOKENS for t in tokens):
        return "target"
    return None


def param_order(params: Sequence[str]) -> str | None:
    """"target_first", "prediction_first", or None when two parameter names do not read as a loss's."""
    if len(params) < 2:
        return None
    first, second = _param_role(params[0]), _param_role(params[1])
    if (first, second) == ("prediction", "target"):
        return "prediction_first"
    if (first == "target" and second != "target") or (second == "prediction" and first != "prediction"):
        return "target_first"
    return None


def looks_like_loss(name: str, params: list[str]) -> bool:
    """A two-argument callable reads as a loss by its own name or by its parameter names (either order).

    A private name (`_dice_terms`) is a helper, whatever its words: it is a candidate only when the
    file passes it to Keras (found by use) or the user names it with FILE::NAME.
    """
    if name.startswith("_"):
        return False
    if _LOSS_WORDS.search(name):
        return True
    if len(params) >= 2 and bool(_TARGET_WORDS.search(params[0]) or _PRED_WORDS.search(params[1])):
        return True
    return param_order(params) is not None


def _loss_params(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda) -> list[str] | None:
    """The two parameters Keras would fill, or None when it cannot be called as fn(y_true, y_pred)."""
    names, required = _positional(node.args)
    if isinstance(node, ast.AsyncFunctionDef):
        return None
    if names[:1] == ["self"]:
        names, required = names[1:], required - 1
    return names if required == 2 and _required_kwonly(node.args) == 0 else None


def _is_two_arg_loss(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, name: str) -> bool:
    params = _loss_params(node)
    return params is not None and looks_like_loss(name, params)


def _returns_loss_closure(node: ast.FunctionDef, loss_classes: set[str]) -> bool:
    """A factory: every parameter defaulted, and it returns a nested loss function, lambda or Loss."""
    _, required = _positional(node.args)
    if required or _required_kwonly(node.args) or node.args.vararg:
        return False
    inner = {
        n.name
        for n in ast.walk(node)
        if isinstance(n, ast.FunctionDef) and n is not node and _positional(n.args)[1] >= 2
    }
    returned = (n.value for n in ast.walk(node) if isinstance(n, ast.Return) and n.value is not None)
    return any(_is_returned_loss(value, inner, loss_classes) for value in returned)


def _is_returned_loss(value: ast.expr, inner: set[str], loss_classes: set[str]) -> bool:
    """A factory's return value that is a loss: a nested two-argument function, a lambda, or a Loss built."""
    if isinstance(value, ast.Name):
        return value.id in inner
    if isinstance(value, ast.Lambda):
        return len(_positional(value.args)[0]) >= 2
    callee = _call_name(value)  # "" for anything but a call
    return bool(callee) and ("loss" in callee.lower() or callee in loss_classes)


def _call_name(call: ast.expr) -> str:
    if not isinstance(call, ast.Call):
        return ""
    func = call.func
    while isinstance(func, ast.Call):
        func = func.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return ""


def _base_name(base: ast.expr) -> str:
    if isinstance(base, ast.Attribute):
        return base.attr
    if isinstance(base, ast.Name):
        return base.id
    return ""


def _root_name(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call, ast.Starred)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


# --- the pre-scan -----------------------------------------------------------------------------------


def _with_main_globals(candidate: AstCandidate, analysis: script.ModuleAnalysis) -> AstCandidate:
    main_only, main_set = analysis.main_globals(candidate.roots)
    return replace(candidate, main_only=main_only, main_set=main_set)


def scan_source(
    source: str,
    filename: str = "<string>",
    wanted: frozenset[str] | None = None,
    local_roots: Sequence[Path] = (),
) -> tuple[AstCandidate, ...]:
    """The module-level things in `source` that may be losses (raises SyntaxError).

    Found by name (a loss-like function, `Loss` subclass, factory or instance), by use (what the module
    hands to `compile`, `metrics`, `keras.losses.get`, `custom_objects`), and names in `wanted` (from
    FILE::NAME) whatever they are called: the user said so. `local_roots` are the folders where the
    module's own (non-library) imports live.
    """
    tree = ast.parse(source, filename=filename)
    found = _merge(_scan_tree(tree), _use_candidates(tree, local_roots))
    if wanted:
        seen = {c.name for c in found}
        for name, kind, line in _top_level(tree):
            if name in wanted and name not in seen:
                found.append(AstCandidate(name, kind, line))
                seen.add(name)
    found = _with_roles(found, tree)
    found = _mark_swapped(_drop_covered_classes(found, tree), tree)
    try:
        analysis: script.ModuleAnalysis | None = script.ModuleAnalysis(source, filename)
    except (SyntaxError, ValueError):  # symtable rejects a few things ast accepts (`nonlocal` at top level)
        analysis = None
    if analysis is not None:
        found = [_with_main_globals(c, analysis) for c in found]
    return tuple(sorted(found, key=lambda c: (c.line, c.name)))


def _top_level(tree: ast.Module) -> list[tuple[str, str, int]]:
    """Every name a module defines at top level, with the kind of candidate it would be."""
    out = []
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            kind = "factory" if _positional(node.args)[1] == 0 and _positional(node.args)[0] == [] else "function"
            out.append((node.name, kind, node.lineno))
        elif isinstance(node, ast.ClassDef):
            out.append((node.name, "class", node.lineno))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            out += [(t.id, "assign", node.lineno) for t in targets if isinstance(t, ast.Name)]
    return out


def top_level_names(source: str) -> set[str]:
    return {name for name, _, _ in _top_level(ast.parse(source))}


def _loss_classes(tree: ast.Module) -> set[str]:
    classes: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            bases = [_base_name(b) for b in node.bases]
            if any(b.endswith("Loss") or b in classes for b in bases):
                classes.add(node.name)
    return classes


# What a Keras metric class derives from: Keras' own base names (a class of the same file built on one counts too).
_METRIC_BASES = frozenset({"Metric", "Mean", "Sum", "MeanMetricWrapper", "Reduce", "MeanTensor"})
# Words in a name that say "metric" (split at `_` and camelCase, digits kept: f1, F1Score).
_METRIC_TOKENS = frozenset({
    "metric", "metrics", "accuracy", "acc", "score", "coef", "coeff", "coefficient", "precision", "recall",
    "f1", "fbeta", "auc",
})  # fmt: skip


def metric_classes(tree: ast.Module) -> set[str]:
    """The module's `keras.metrics.Metric` subclasses (by their bases' names)."""
    classes: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            bases = [_base_name(b) for b in node.bases]
            if any(b in _METRIC_BASES or b.endswith("Metric") or b in classes for b in bases):
                classes.add(node.name)
    return classes


def name_says_metric(name: str) -> bool:
    """`dice_coef`, `f1_m`, `jaccard_score`, `MeanIoUMetric`: a metric word and no `loss` in the name."""
    if "loss" in name.lower():
        return False
    tokens = {t.lower() for t in re.findall(r"[A-Z]?[a-z0-9]+|[A-Z]+(?![a-z])", name)}
    return bool(tokens & _METRIC_TOKENS)


def metric_role(c: AstCandidate, metric_class_names: set[str], callee: str = "") -> str:
    """How Keras will run a candidate: "loss" or "metric".

    What the file does with it decides first: handed to `compile(loss=...)` or `keras.losses.get`, a loss;
    otherwise in `metrics=[...]`, a metric. Then what it is: a `Metric` subclass, or an instance of one
    built at module level, is a metric. Otherwise its name decides: a metric word (metric, accuracy, acc,
    score, coef, precision, recall, f1, fbeta, auc) and no `loss` in it makes a metric; anything else is a
    loss. (At run time, an object that turns out to be a `keras.metrics.Metric` is a metric whatever this said.)
    """
    via = set(c.via)
    if via & {"compile", "losses.get"}:
        return "loss"
    if "metrics" in via:
        return "metric"
    if c.kind == "class" or callee in metric_class_names:
        return "metric" if (c.name if c.kind == "class" else callee) in metric_class_names else "loss"
    return "metric" if name_says_metric(c.name) else "loss"


def _with_roles(found: list[AstCandidate], tree: ast.Module) -> list[AstCandidate]:
    metrics = metric_classes(tree)
    callees = {
        _assigned_name(node): _call_name(node.value)
        for node in tree.body
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None
    }
    return [replace(c, role=metric_role(c, metrics, callees.get(c.name, "") if c.kind == "assign" else "")) for c in found]


def _scan_tree(tree: ast.Module) -> list[AstCandidate]:
    """Candidates by name: loss-like functions, Loss and Metric subclasses, factories, instances."""
    found: list[AstCandidate] = []
    loss_classes = _loss_classes(tree) | metric_classes(tree)
    factories: set[str] = set()
    functions: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            if _is_two_arg_loss(node, node.name):
                functions.add(node.name)
                found.append(AstCandidate(node.name, "function", node.lineno))
            elif _returns_loss_closure(node, loss_classes):
                factories.add(node.name)
                found.append(AstCandidate(node.name, "factory", node.lineno))
        elif isinstance(node, ast.ClassDef) and node.name in loss_classes:
            found.append(AstCandidate(node.name, "class", node.lineno))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)) and _is_loss_assignment(
            node, loss_classes, factories, functions
        ):
            found.append(AstCandidate(_assigned_name(node), "assign", node.lineno))
    return found


def _assigned_name(node: ast.Assign | ast.AnnAssign) -> str:
    target = node.targets[0] if isinstance(node, ast.Assign) else node.target
    return target.id if isinstance(target, ast.Name) else ""


def _is_loss_assignment(
    node: ast.Assign | ast.AnnAssign, loss_classes: set[str], factories: set[str], functions: set[str]
) -> bool:
    targets = node.targets if isinstance(node, ast.Assign) else [node.target]
    value = node.value
    if len(targets) != 1 or not isinstance(targets[0], ast.Name) or value is None:
        return False
    target = targets[0].id
    if isinstance(value, ast.Lambda):
        params = _positional(value.args)[0]
        return len(params) == 2 and looks_like_loss(target, params)
    if not isinstance(value, ast.Call):
        return False
    callee = _call_name(value)
    first = _base_name(value.args[0]) if value.args else ""
    if callee in loss_classes or callee in factories or _LOSS_WORDS.search(callee):
        return True
    return callee == "partial" and bool(_LOSS_WORDS.search(target) or first in functions or _LOSS_WORDS.search(first))


# --- discovery from use: what the module hands to Keras ---------------------------------------------


@dataclass(frozen=True)
class _Use:
    node: ast.expr
    via: str  # compile | metrics | losses.get | custom_objects
    output: str | None = None


def _per_output(value: ast.expr) -> Iterator[tuple[ast.expr, str | None]]:
    """compile(loss=...) values with the output each is for: a dict by name, a list by position."""
    if isinstance(value, ast.Dict):
        for key, item in zip(value.keys, value.values, strict=True):  # parallel lists in every ast.Dict
            if key is None:
                continue
            name = key.value if isinstance(key, ast.Constant) and isinstance(key.value, str) else ast.unparse(key)
            yield item, name
    elif isinstance(value, (ast.List, ast.Tuple)):
        for i, item in enumerate(value.elts):
            yield item, f"output {i}"
    else:
        yield value, None


def _flatten(value: ast.expr) -> Iterator[ast.expr]:
    """metrics=[...] in any nesting: a list, a list per output, a dict of output name → metric(s)."""
    if isinstance(value, (ast.List, ast.Tuple)):
        for item in value.elts:
            yield from _flatten(item)
    elif isinstance(value, ast.Dict):
        for item in value.values:
            yield from _flatten(item)
    else:
        yield value


def _dict_values(value: ast.expr, module_dicts: dict[str, ast.Dict]) -> list[ast.expr]:
    if isinstance(value, ast.Name) and value.id in module_dicts:
        value = module_dicts[value.id]
    if not isinstance(value, ast.Dict):
        return []
    out: list[ast.expr] = []
    for key, item in zip(value.keys, value.values, strict=True):  # parallel lists in every ast.Dict
        out += _dict_values(item, module_dicts) if key is None else [item]
    return out


def _call_uses(call: ast.Call, module_dicts: dict[str, ast.Dict]) -> list[_Use]:
    keywords = {kw.arg: kw.value for kw in call.keywords if kw.arg}
    out = _compile_uses(call, keywords)
    func = call.func
    if _is_losses_get(call):
        out.append(_Use(call.args[0], "losses.get"))
    registry = None
    if "custom_objects" in keywords:  # load_model(..., custom_objects={...})
        registry = keywords["custom_objects"]
    elif call.args and (
        (isinstance(func, ast.Attribute) and func.attr == "update" and _call_name(func.value) == "get_custom_objects")
        or _call_name(call) in ("custom_object_scope", "CustomObjectScope")
    ):
        registry = call.args[0]
    if registry is not None:
        out += [_Use(node, "custom_objects") for node in _dict_values(registry, module_dicts)]
    return out


def _is_losses_get(call: ast.Call) -> bool:
    """`keras.losses.get(fn)`, `tf.keras.losses.get(fn)`, `losses.get(fn)`."""
    func = call.func
    return (
        isinstance(func, ast.Attribute)
        and func.attr == "get"
        and bool(call.args)
        and _dotted_text(func.value).rsplit(".", 1)[-1] == "losses"
    )


def _compile_uses(call: ast.Call, keywords: dict[str, ast.expr]) -> list[_Use]:
    """`*.compile(optimizer, loss, ..., metrics=...)`: the losses per output, and the metrics."""
    if not (isinstance(call.func, ast.Attribute) and call.func.attr == "compile"):
        return []
    loss = keywords.get("loss", call.args[1] if len(call.args) > 1 else None)
    out = [_Use(node, "compile", output) for node, output in _per_output(loss)] if loss is not None else []
    for key in ("metrics", "weighted_metrics"):
        if key in keywords:
            out += [_Use(node, "metrics") for node in _flatten(keywords[key])]
    return out


def _dotted_text(node: ast.expr) -> str:
    parts: list[str] = []
    while isinstance(node, ast.Attribute):
        parts.insert(0, node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.insert(0, node.id)
    return ".".join(parts)


def _uses(tree: ast.Module) -> list[_Use]:
    """Everything the module hands to Keras as a loss or metric, anywhere in the file."""
    module_dicts = {
        t.id: node.value
        for node in tree.body
        if isinstance(node, ast.Assign) and isinstance(node.value, ast.Dict)
        for t in node.targets
        if isinstance(t, ast.Name)
    }
    out: list[_Use] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            out += _call_uses(node, module_dicts)
        elif isinstance(node, ast.Assign) and len(node.targets) == 1:
            target = node.targets[0]  # get_custom_objects()["name"] = fn
            if isinstance(target, ast.Subscript) and _call_name(target.value) == "get_custom_objects":
                out.append(_Use(node.value, "custom_objects"))
    return out


def _import_origins(tree: ast.Module) -> dict[str, tuple[str, int]]:
    """Local name → (module it comes from, relative-import level), for top-level imports."""
    out: dict[str, tuple[str, int]] = {}
    for node in tree.body:
        for inner in ast.walk(node) if isinstance(node, (ast.Try, ast.If)) else [node]:
            if isinstance(inner, ast.Import):
                for alias in inner.names:
                    out[alias.asname or alias.name.split(".")[0]] = (alias.name, 0)
            elif isinstance(inner, ast.ImportFrom):
                for alias in inner.names:
                    out[alias.asname or alias.name] = (inner.module or "", inner.level)
    return out


def _is_local_module(module: str, level: int, local_roots: Sequence[Path]) -> bool:
    """A relative import, or a module that lives in the checked file's folder (not a library)."""
    if level:
        return True
    top = module.split(".")[0]
    return bool(top) and any((root / f"{top}.py").is_file() or (root / top).is_dir() for root in local_roots)


@dataclass(frozen=True)
class _ModuleNames:
    """What a module's top level binds, for deciding which used objects it defines itself."""

    bound: dict[str, tuple[int, str]]  # name → (line, category), without what only `__main__` binds
    imports: dict[str, tuple[str, int]]  # name → (module it comes from, relative-import level)
    definitions: set[str]  # the bound names that are the module's own definitions
    local_roots: Sequence[Path]  # folders whose modules count as the user's, not a library's


def _use_candidates(tree: ast.Module, local_roots: Sequence[Path]) -> list[AstCandidate]:
    # What `__main__` binds is the run's configuration, not a loss the module defines: not buildable.
    bound = {name: where for name, where in script.bindings(tree).items() if where[1] != "main"}
    definitions = {name for name, (_, category) in bound.items() if category == "definition"}
    names = _ModuleNames(bound, _import_origins(tree), definitions, local_roots)
    return [c for c in (_use_candidate(use, names) for use in _uses(tree)) if c is not None]


def _use_candidate(use: _Use, names: _ModuleNames) -> AstCandidate | None:
    """The candidate one use names: a module-level name, or an expression buildable from the module alone."""
    node = use.node
    outputs = (use.output,) if use.output is not None else ()
    if isinstance(node, ast.Name):
        where = names.bound.get(node.id)
        if where is None or where[1] == "import":
            return None
        return AstCandidate(node.id, "use", where[0], outputs=outputs, via=(use.via,))
    if isinstance(node, (ast.Constant, ast.Starred)):
        return None
    free = script.node_names(node)
    if _is_imported_object(node, free, names):
        return None  # Keras' own (keras.losses.Huber()) or another module's object: not defined here
    if free - set(names.bound) - script.BUILTIN_NAMES:
        return None  # reads a function's local variables: it cannot be built from the module alone
    text = ast.unparse(node)
    return AstCandidate(text, "expr", node.lineno, expr=text, outputs=outputs, via=(use.via,))


def _is_imported_object(node: ast.expr, free: frozenset[str], names: _ModuleNames) -> bool:
    """An expression rooted at an imported name, built from none of the module's definitions, and not a
    call into a module of the user's own folder."""
    root = _root_name(node)
    if root not in names.imports or free & names.definitions:
        return False
    module, level = names.imports[root]
    return not (isinstance(node, ast.Call) and _is_local_module(module, level, names.local_roots))


def _union(a: tuple[str, ...], b: tuple[str, ...]) -> tuple[str, ...]:
    return tuple(dict.fromkeys([*a, *b]))


def _merge(by_name: list[AstCandidate], by_use: list[AstCandidate]) -> list[AstCandidate]:
    """One candidate per name: what use says (outputs, how it is used) added to what the name says."""
    merged = {c.name: c for c in by_name}
    for c in by_use:
        old = merged.get(c.name)
        if old is not None:
            c = replace(old, outputs=_union(old.outputs, c.outputs), via=_union(old.via, c.via))
        merged[c.name] = c
    return list(merged.values())


def _mark_swapped(found: list[AstCandidate], tree: ast.Module) -> list[AstCandidate]:
    """Functions that take the prediction first, when nothing hands them to Keras (which would not swap)."""
    defs = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    out = []
    for c in found:
        params = _loss_params(defs[c.name]) if c.kind == "function" and c.name in defs else None
        if params and param_order(params) == "prediction_first" and not set(c.via) & _KERAS_FACING:
            c = replace(c, swapped=True)
        out.append(c)
    return out


def _constructor_needs(node: ast.ClassDef, classes: dict[str, ast.ClassDef], depth: int = 0) -> list[str]:
    """Required constructor arguments of a class, from its own `__init__` or a base class in this file."""
    for item in node.body:
        if isinstance(item, ast.FunctionDef) and item.name == "__init__":
            names, required = _positional(item.args)
            needed = names[1:required]
            needed += [a.arg for a, d in zip(item.args.kwonlyargs, item.args.kw_defaults, strict=True) if d is None]
            return needed
    for base in node.bases:
        name = _base_name(base)
        if name in classes and depth < 20:
            return _constructor_needs(classes[name], classes, depth + 1)
    return []


def _built_classes(found: list[AstCandidate], tree: ast.Module) -> set[str]:
    """Names of the classes that the module's instances, compile() calls and factories construct."""
    values = {
        _assigned_name(node): node.value
        for node in tree.body
        if isinstance(node, (ast.Assign, ast.AnnAssign)) and node.value is not None
    }
    factories = {n.name: n for n in tree.body if isinstance(n, ast.FunctionDef)}
    built: set[str] = set()
    for c in found:
        built |= _built_by(c, values, factories)
    return built


def _built_by(c: AstCandidate, values: dict[str, ast.expr], factories: dict[str, ast.FunctionDef]) -> set[str]:
    """The names one candidate calls to build its loss: its assigned value, its expression, its factory's returns."""
    if c.kind == "assign" and c.name in values:
        return {_call_name(values[c.name])}
    if c.kind == "expr" and c.expr is not None:
        return {_call_name(ast.parse(c.expr, mode="eval").body)}
    if c.kind == "factory" and c.name in factories:
        returns = [r.value for r in ast.walk(factories[c.name]) if isinstance(r, ast.Return) and r.value]
        return {_call_name(value) for value in returns}
    return set()


def _drop_covered_classes(found: list[AstCandidate], tree: ast.Module) -> list[AstCandidate]:
    """A Loss class that needs constructor arguments is checked through what builds it, if anything does."""
    classes = {n.name: n for n in tree.body if isinstance(n, ast.ClassDef)}
    built = _built_classes(found, tree)

    def covered(c: AstCandidate) -> bool:
        return c.kind == "class" and c.name in built and c.name in classes and bool(
            _constructor_needs(classes[c.name], classes)
        )

    return [c for c in found if not covered(c)]


def scan_file(path: Path, wanted: frozenset[str] | None = None) -> FileScan:
    """Pre-scan one file without importing it; names in `wanted` are candidates whatever they look like."""
    module, root = module_identity(path)
    try:
        source = script.read_source(path)
    except SyntaxError as exc:  # the coding line or the bytes: Python would not read it either
        reason = re.sub(r" for '.*'$", "", str(exc.msg))
        return FileScan(path, module, root, (), (f"not a Python source file: {reason}", None))
    except (UnicodeDecodeError, LookupError) as exc:
        return FileScan(path, module, root, (), (f"not a Python source file: {exc}", None))
    try:
        local_roots = tuple(dict.fromkeys([path.resolve().parent, root]))
        candidates = scan_source(source, str(path), wanted, local_roots)
        if wanted and (missing := sorted(wanted - top_level_names(source) - {c.name for c in candidates})):
            raise TargetError(f"{path.name} defines no top-level {', '.join(repr(n) for n in missing)}")
    except SyntaxError as exc:
        return FileScan(path, module, root, (), (f"SyntaxError: {exc.msg}", exc.lineno))
    except (UnicodeDecodeError, ValueError, LookupError) as exc:
        return FileScan(path, module, root, (), (f"not a Python source file: {exc}", None))
    return FileScan(path, module, root, candidates, keras2=flavour.detect(source))


def import_roots(scan: FileScan, names: frozenset[str] | None) -> dict[str, frozenset[str]]:
    """For a definitions-only import: each candidate `materialise` will build → the names it needs."""
    return {c.name: c.roots for c in scan.candidates if _is_built(c, names)}


def _is_built(c: AstCandidate, names: frozenset[str] | None) -> bool:
    return c.name in names if names is not None else True


def check_probe_keys(keys: Iterable[str], scans: Sequence[FileScan], cwd: Path) -> None:
    """Raise TargetError for a `--probe` key (a loss name or FILE::NAME) that names no loss."""
    by_path = {scan.path.resolve(): scan for scan in scans}
    everywhere = sorted({c.name for s in scans for c in s.candidates})
    unreadable = any(scan.syntax_error for scan in scans)
    for key in keys:
        file, sep, name = key.rpartition("::")
        if not sep:
            if name not in everywhere and not unreadable:  # an unreadable file gets its own LD001
                raise TargetError(_no_such_loss(key, name, everywhere, "in the checked files"))
            continue
        path = (cwd / file).resolve()
        if not path.is_file():
            raise TargetError(f"--probe {key}: {file}: no such file")
        scan = by_path.get(path) or scan_file(path)
        names = sorted({c.name for c in scan.candidates})
        if name not in names and not scan.syntax_error:
            raise TargetError(_no_such_loss(key, name, names, f"in {file}"))


def _no_such_loss(key: str, name: str, names: list[str], where: str) -> str:
    close = difflib.get_close_matches(name, names, n=3)
    hint = f"; did you mean {', '.join(repr(n) for n in close)}?" if close else ""
    return f"--probe {key}: no loss named {name!r} {where}{hint}"


# --- runtime: in the worker, after the module is imported -------------------------------------


@dataclass
class Candidate:
    """A loss materialised from an imported module, ready to be probed."""

    name: str
    kind: str
    file: str
    line: int
    loss: Any = None  # a keras Loss instance (Keras' own object or the wrapper around a function)
    error: str | None = None  # could not be built
    skipped: str | None = None
    outputs: tuple[str, ...] = ()  # the model outputs the module compiles it for
    role: str = "loss"
    main_set: tuple[str, int] | None = None  # a global it reads that is None until `__main__` sets it


def main_only_message(name: str, line: int) -> str:
    return (
        f'`{name}` is only set under `if __name__ == "__main__":` (line {line}), which lossdiag does not run: '
        "define it at module level"
    )


def main_set_hint(name: str, line: int) -> str:
    return (
        f'`{name}` is None at module level and only set under `if __name__ == "__main__":` (line {line}), '
        "which lossdiag does not run: give it its value at module level (or handle None in the loss)"
    )


def _two_required_positional(fn: Callable[..., Any]) -> bool:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):
        return False
    required = [
        p for p in sig.parameters.values()
        if p.default is p.empty and p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)
    ]
    kwonly = [p for p in sig.parameters.values() if p.kind == p.KEYWORD_ONLY and p.default is p.empty]
    return len(required) == 2 and not kwonly


def _accepts_two_positional(fn: Callable[..., Any]) -> bool:
    try:
        inspect.signature(fn).bind(None, None)
    except (TypeError, ValueError):
        return False
    return True


def _required_parameters(cls: type) -> list[str]:
    try:
        sig = inspect.signature(cls)
    except (TypeError, ValueError):
        return []
    return [
        p.name for p in sig.parameters.values()
        if p.default is p.empty and p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    ]


def _needs_message(cls: str, needs: list[str]) -> str:
    names = ", ".join(f"`{n}`" for n in needs)
    example = ", ".join(f"{n}=..." for n in needs)
    return (
        f"its constructor needs {names}; create an instance at module level (`loss = {cls}({example})`) "
        "or pass one to compile() in this file"
    )


def prediction_first(fn: Callable[..., Any]) -> Callable[..., Any]:
    """`fn(prediction, target)` as Keras calls a loss, `(y_true, y_pred)`; keeps fn's name and source."""

    @functools.wraps(fn)
    def called_prediction_first(y_true: Any, y_pred: Any) -> Any:
        return fn(y_pred, y_true)

    return called_prediction_first


def _is_library_object(obj: Any) -> bool:
    """Defined by an installed package or the standard library (Keras' own losses), not by the user."""
    target = obj.func if isinstance(obj, functools.partial) else obj
    holder = target if inspect.isfunction(target) or isinstance(target, type) else type(target)
    module = sys.modules.get(getattr(holder, "__module__", "") or "")
    file = getattr(module, "__file__", None)
    if not file:
        return module is not None
    resolved = Path(file).resolve()
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return "site-packages" in resolved.parts or any(resolved.is_relative_to(p) for p in prefixes)


def materialise(
    module: Any, scan: FileScan, names: frozenset[str] | None, wrap: Callable[[Any], Any], loss_bases: tuple[type, ...],
    metric_wrap: Callable[[Any], Any] | None = None, metric_bases: tuple[type, ...] = (),
) -> list[Candidate]:
    """The module's losses as Keras `Loss` objects, in source order; `wrap` builds Keras' wrapper.

    Each candidate is built on its own: whatever building one raises (`sys.exit` in a constructor,
    KeyboardInterrupt from a factory, a module `__getattr__` that raises) is an error on that candidate
    only. With `metric_wrap` (Keras' `MeanMetricWrapper`) and `metric_bases`, metrics are built as Keras
    builds them for `compile(metrics=[...])` (see `_build_for_role`); without, every candidate is a loss.
    """
    file = str(scan.path)
    out: list[Candidate] = []
    broken = vars(module).get(script.BROKEN, {})
    for ac in scan.candidates:
        if not _is_built(ac, names):
            continue
        cand = Candidate(ac.name, ac.kind, file, ac.line, outputs=ac.outputs, role=ac.role, main_set=ac.main_set)
        if ac.main_only is not None:
            cand.error = main_only_message(*ac.main_only)
        elif ac.name in broken:
            cand.error = f"module-level code it needs failed: {broken[ac.name]}"
        if cand.error:
            out.append(cand)
            continue
        try:
            keep = _build_for_role(cand, ac, module, (wrap, loss_bases), (metric_wrap, metric_bases))
        except BaseException as exc:
            cand.loss, cand.error, keep = None, _building_error(exc), True
        if keep:
            out.append(cand)
    if names is not None:
        missing = sorted(names - {c.name for c in out})
        for name in missing:
            out.append(Candidate(name, "missing", file, 1, error=f"no loss named {name!r} in this module"))
    return out


Makers = tuple[Any, tuple[type, ...]]  # (the wrapper Keras builds around a function, the base classes)


def _build_for_role(cand: Candidate, ac: AstCandidate, module: Any, loss: Makers, metric: Makers) -> bool:
    """Build a candidate as Keras runs it: a metric in a `MeanMetricWrapper` (or as the `Metric` it is), a
    loss in a `LossFunctionWrapper`. An object that is a `keras.metrics.Metric` makes the candidate a metric;
    a `Loss` object used as a metric is wrapped, as `compile(metrics=[...])` wraps it."""
    (wrap, loss_bases), (metric_wrap, metric_bases) = loss, metric
    if metric_wrap is None:
        return _build(cand, ac, module, wrap, loss_bases)
    as_metric = cand.role == "metric"
    keep = _build(cand, ac, module, metric_wrap if as_metric else wrap, loss_bases + metric_bases)
    if isinstance(cand.loss, metric_bases):
        cand.role = "metric"
    elif as_metric and isinstance(cand.loss, loss_bases):
        cand.loss = metric_wrap(cand.loss)
    return keep


def _building_error(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"building it called sys.exit({exc.code!r})"
    return f"building it raised {type(exc).__name__}: {_last_line(exc)}"


def _evaluate(ac: AstCandidate, module: Any, file: str) -> Any:
    """The value of a compile() argument such as `focal_loss(gamma=2.0)`, in the module's namespace."""
    tree = ast.parse(ac.expr or "", mode="eval")
    ast.increment_lineno(tree, ac.line - 1)
    return eval(compile(tree, file, "eval"), vars(module))


def _build(cand: Candidate, ac: AstCandidate, module: Any, wrap: Callable[[Any], Any], bases: tuple[type, ...]) -> bool:
    """Set `cand.loss` (or `skipped`); False when the object turns out not to be a loss at all."""
    obj = _evaluate(ac, module, cand.file) if ac.kind == "expr" else getattr(module, ac.name, None)
    if obj is None:
        return False
    if ac.kind == "class" or (ac.kind in ("use", "expr") and isinstance(obj, type)):
        return _build_class(cand, obj, bases)
    if ac.kind == "factory":
        cand.loss = _as_loss(obj(), wrap, bases)
    elif ac.kind == "function":
        cand.loss = wrap(prediction_first(obj) if ac.swapped else obj)
    elif ac.kind == "assign":
        imported = inspect.isfunction(obj) and obj.__module__ != module.__name__  # defined elsewhere
        cand.loss = None if imported or isinstance(obj, type) else _as_loss(obj, wrap, bases)
    elif not _is_library_object(obj):  # use / expr: Keras calls whatever the module hands it
        lenient = bool({"compile", "losses.get"} & set(ac.via))
        cand.loss = _as_loss(obj, wrap, bases, lenient)
    return cand.loss is not None


def _build_class(cand: Candidate, obj: Any, bases: tuple[type, ...]) -> bool:
    if not (isinstance(obj, type) and issubclass(obj, bases)):
        return False
    needs = _required_parameters(obj)
    if needs:
        cand.skipped = _needs_message(obj.__name__, needs)
        return True
    cand.loss = obj()
    return True


def _as_loss(obj: Any, wrap: Callable[[Any], Any], loss_bases: tuple[type, ...], lenient: bool = False) -> Any:
    """A Loss instance as it is; a callable Keras can call as fn(y_true, y_pred) in Keras' wrapper."""
    if isinstance(obj, loss_bases):
        return obj
    if isinstance(obj, type) or not callable(obj):
        return None
    if _two_required_positional(obj) or (lenient and _accepts_two_positional(obj)):
        return wrap(obj)
    return None


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
