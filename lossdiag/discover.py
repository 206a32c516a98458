"""Turn command-line targets into loss candidates: resolve paths, pre-scan with `ast`, then materialise."""

from __future__ import annotations

import ast
import functools
import inspect
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

# Targets moved to lossdiag.targets; re-exported here so that existing imports keep working.
from lossdiag.targets import Target, TargetError, display_path, resolve_targets  # noqa: F401

# Names that make a two-argument function (or a module-level object) read as a loss. The ast
# pre-scan uses them so that a training script's `train(model, data)` never gets imported.
_LOSS_WORDS = re.compile(
    r"loss|dice|iou|jaccard|tversky|focal|entropy|mse|mae|mape|msle|rmse|error|diverg|kld?\b|"
    r"hinge|huber|logcosh|distance|contrastive|triplet|similar|score|coef|metric|likelihood|nll|"
    r"ssim|psnr|penalt|charbonnier|smooth|l1|l2|objective|criterion|cost|bce|cce|_ce\b|^ce_|xent",
    re.IGNORECASE,
)
_TARGET_WORDS = re.compile(r"true|target|label|gt|ground|actual|^y$|^yt|^z$|^yz$|^t$", re.IGNORECASE)
_PRED_WORDS = re.compile(r"pred|hat|logit|output|score|prob|^yp|^p$|^o$", re.IGNORECASE)


@dataclass(frozen=True)
class AstCandidate:
    """Something at module level that the pre-scan thinks may be a loss."""

    name: str
    kind: str  # function | class | factory | assign
    line: int


@dataclass(frozen=True)
class FileScan:
    path: Path
    module: str
    sys_path_root: Path
    candidates: tuple[AstCandidate, ...]
    syntax_error: tuple[str, int | None] | None = None


def module_identity(path: Path) -> tuple[str, Path]:
    """The dotted name a file is imported under, and the folder to put on sys.path for it."""
    path = path.resolve()
    parts = [] if path.name == "__init__.py" else [path.stem]
    folder = path.parent
    while (folder / "__init__.py").is_file() and folder.parent != folder:
        parts.insert(0, folder.name)
        folder = folder.parent
    return ".".join(parts) or path.parent.name, folder


def _positional(args: ast.arguments) -> tuple[list[str], int]:
    """Positional parameter names and how many of them have no default."""
    names = [a.arg for a in args.posonlyargs + args.args]
    return names, len(names) - len(args.defaults)


def _required_kwonly(args: ast.arguments) -> int:
    return sum(1 for d in args.kw_defaults if d is None)


def looks_like_loss(name: str, params: list[str]) -> bool:
    """A two-argument callable reads as a loss by its own name or by its parameter names."""
    if _LOSS_WORDS.search(name):
        return True
    return len(params) >= 2 and bool(_TARGET_WORDS.search(params[0]) or _PRED_WORDS.search(params[1]))


def _is_two_arg_loss(node: ast.FunctionDef | ast.AsyncFunctionDef | ast.Lambda, name: str) -> bool:
    names, required = _positional(node.args)
    if isinstance(node, ast.AsyncFunctionDef):
        return False
    params = names[1:] if names[:1] == ["self"] else names
    required -= 1 if names[:1] == ["self"] else 0
    return required == 2 and _required_kwonly(node.args) == 0 and looks_like_loss(name, params)


def _returns_loss_closure(node: ast.FunctionDef) -> bool:
    """A factory: every parameter defaulted, and it returns a nested loss function or lambda."""
    names, required = _positional(node.args)
    if required or _required_kwonly(node.args) or node.args.vararg:
        return False
    inner = {
        n.name
        for n in ast.walk(node)
        if isinstance(n, ast.FunctionDef) and n is not node and _positional(n.args)[1] >= 2
    }
    for ret in (n for n in ast.walk(node) if isinstance(n, ast.Return) and n.value is not None):
        value = ret.value
        if isinstance(value, ast.Name) and value.id in inner:
            return True
        if isinstance(value, ast.Lambda) and len(_positional(value.args)[0]) >= 2:
            return True
        if isinstance(value, ast.Call) and _call_name(value) and "loss" in _call_name(value).lower():
            return True
    return False


def _call_name(call: ast.Call) -> str:
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


def scan_source(
    source: str, filename: str = "<string>", wanted: frozenset[str] | None = None
) -> tuple[AstCandidate, ...]:
    """The module-level things in `source` that may be losses (raises SyntaxError).

    Names in `wanted` (from FILE::NAME) are candidates whatever they are called: the user said so.
    """
    tree = ast.parse(source, filename=filename)
    found = list(_scan_tree(tree))
    if wanted:
        seen = {c.name for c in found}
        for name, kind, line in _top_level(tree):
            if name in wanted and name not in seen:
                found.append(AstCandidate(name, kind, line))
                seen.add(name)
    return tuple(sorted(found, key=lambda c: c.line))


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


def _scan_tree(tree: ast.Module) -> list[AstCandidate]:
    found: list[AstCandidate] = []
    loss_classes: set[str] = set()
    factories: set[str] = set()
    functions: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            if _is_two_arg_loss(node, node.name):
                functions.add(node.name)
                found.append(AstCandidate(node.name, "function", node.lineno))
            elif _returns_loss_closure(node):
                factories.add(node.name)
                found.append(AstCandidate(node.name, "factory", node.lineno))
        elif isinstance(node, ast.ClassDef):
            bases = [_base_name(b) for b in node.bases]
            if any(b.endswith("Loss") or b in loss_classes for b in bases):
                loss_classes.add(node.name)
                found.append(AstCandidate(node.name, "class", node.lineno))
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            value = node.value
            if len(targets) != 1 or not isinstance(targets[0], ast.Name) or value is None:
                continue
            target = targets[0].id
            if isinstance(value, ast.Lambda):
                if len(_positional(value.args)[0]) == 2 and looks_like_loss(target, _positional(value.args)[0]):
                    found.append(AstCandidate(target, "assign", node.lineno))
            elif isinstance(value, ast.Call):
                callee = _call_name(value)
                first = _base_name(value.args[0]) if value.args else ""
                if callee in loss_classes or callee in factories or _LOSS_WORDS.search(callee) or (
                    callee == "partial" and (_LOSS_WORDS.search(target) or first in functions or _LOSS_WORDS.search(first))
                ):
                    found.append(AstCandidate(target, "assign", node.lineno))
    return found


def scan_file(path: Path, wanted: frozenset[str] | None = None) -> FileScan:
    """Pre-scan one file without importing it; names in `wanted` are candidates whatever they look like."""
    module, root = module_identity(path)
    try:
        source = path.read_bytes().decode("utf-8")
        candidates = scan_source(source, str(path), wanted)
        if wanted and (missing := sorted(wanted - top_level_names(source))):
            raise TargetError(f"{path.name} defines no top-level {', '.join(repr(n) for n in missing)}")
    except SyntaxError as exc:
        return FileScan(path, module, root, (), (f"SyntaxError: {exc.msg}", exc.lineno))
    except (UnicodeDecodeError, ValueError) as exc:
        return FileScan(path, module, root, (), (f"not a Python source file: {exc}", None))
    return FileScan(path, module, root, candidates)


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


def _source_line(obj: Any, default: int) -> int:
    try:
        return inspect.getsourcelines(obj)[1]
    except (OSError, TypeError):
        return default


def materialise(
    module: Any, scan: FileScan, names: frozenset[str] | None, wrap: Callable[[Any], Any], loss_bases: tuple[type, ...]
) -> list[Candidate]:
    """The module's losses as Keras `Loss` objects, in source order; `wrap` builds Keras' wrapper."""
    file = str(scan.path)
    out: list[Candidate] = []
    for ac in scan.candidates:
        if names is not None and ac.name not in names:
            continue
        obj = getattr(module, ac.name, None)
        cand = Candidate(ac.name, ac.kind, file, ac.line)
        try:
            if obj is None:
                continue
            if ac.kind == "class":
                if not (isinstance(obj, type) and issubclass(obj, loss_bases)):
                    continue
                try:
                    cand.loss = obj()
                except TypeError as exc:
                    cand.skipped = f"its constructor needs arguments ({exc}); create an instance at module level to check it"
            elif ac.kind == "factory":
                product = obj()
                cand.loss = _as_loss(product, wrap, loss_bases)
                if cand.loss is None:
                    continue
            elif ac.kind == "function":
                cand.loss = wrap(obj)
            else:  # module-level assignment: an instance, a closure, a partial, a lambda
                if isinstance(obj, type) or not callable(obj):
                    continue
                if inspect.isfunction(obj) and obj.__module__ != module.__name__:
                    continue  # imported from elsewhere
                cand.loss = _as_loss(obj, wrap, loss_bases)
                if cand.loss is None:
                    continue
        except Exception as exc:  # the user's factory or constructor raised
            cand.error = f"building it raised {type(exc).__name__}: {_last_line(exc)}"
        out.append(cand)
    if names is not None:
        missing = sorted(names - {c.name for c in out})
        for name in missing:
            out.append(Candidate(name, "missing", file, 1, error=f"no loss named {name!r} in this module"))
    return out


def _as_loss(obj: Any, wrap: Callable[[Any], Any], loss_bases: tuple[type, ...]) -> Any:
    if isinstance(obj, loss_bases):
        return obj
    target = obj.func if isinstance(obj, functools.partial) else obj
    if callable(target) and _two_required_positional(obj):
        return wrap(obj)
    return None


def _last_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__
