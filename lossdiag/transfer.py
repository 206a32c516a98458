"""Send one Python object to the worker process: by reference when it can be imported there, by its source otherwise.

`check_loss` runs every loss in the worker, like the CLI, so a hanging loss times out instead of hanging
the caller. An object that a module binds at top level is checked through that module (FILE::NAME); any
other object (a lambda or a function defined in a test, a `Loss` built there, a partial) is written,
pickled, into a private temporary module. The standard pickle sends functions and classes by reference;
what it cannot send is sent by what defines it: a function, lambda or class by its source (compiled again
in the worker under its own file name and line numbers, so traces and findings point at the user's
file), with the globals and closure values it reads; a Keras `Loss` by its class and attributes; a Keras
`Metric` by its class and `get_config()` (a `MeanMetricWrapper` by its function). Nothing is written
into the user's tree.
"""

from __future__ import annotations

import ast
import base64
import builtins
import functools
import importlib
import io
import keyword
import linecache
import os
import pickle
import sys
import types
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MODULE_PREFIX = "_lossdiag_check_loss_"


# The statement (or lambda) that defines a function, lambda or class.
Definition = ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef | ast.Lambda


class TransferError(ValueError):
    """The object cannot be sent to the worker; the message says what could not be, and what to do."""


@dataclass(frozen=True)
class Source:
    """What defines a function, lambda or class that cannot be imported: its statement and what it reads."""

    kind: str  # function | lambda | class
    name: str
    filename: str
    node: Definition  # the `def`/`class` statement or the lambda, with the file's own line numbers
    namespace: dict[str, Any]  # globals and closure values it reads (and its default values)


# --- where an object lives ----------------------------------------------------------------------


def _qualified(module: Any, qualname: str) -> Any:
    obj = module
    for part in qualname.split("."):
        obj = getattr(obj, part, None)
        if obj is None:
            return None
    return obj


def importable(obj: Any) -> bool:
    """A function or class that `import module; module.qualname` finds again (not in `__main__`)."""
    name = getattr(obj, "__module__", None)
    module = sys.modules.get(name or "")
    if module is None or name == "__main__" or "<" in getattr(obj, "__qualname__", "<"):
        return False
    return _qualified(module, obj.__qualname__) is obj


def is_library(module: Any) -> bool:
    """Defined by Python or an installed package (Keras' own losses), not by the user."""
    file = getattr(module, "__file__", None)
    if not file:
        return True
    resolved = Path(file).resolve()
    prefixes = {Path(p).resolve() for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    return "site-packages" in resolved.parts or any(resolved.is_relative_to(p) for p in prefixes)


def defining_function(obj: Any) -> Any:
    """The user's callable behind a partial or a Keras wrapper (a loss or metric around a function)."""
    for _ in range(10):
        if isinstance(obj, functools.partial):
            obj = obj.func
        elif callable(getattr(obj, "_fn", None)) and _is_keras(type(obj)):
            obj = obj._fn
        elif callable(getattr(obj, "fn", None)) and hasattr(obj, "_fn_kwargs") and _is_keras(type(obj)):
            obj = obj.fn
        else:
            break
    return obj


def _is_keras(cls: type) -> bool:
    return (getattr(cls, "__module__", "") or "").startswith(("keras", "tf_keras"))


def _home_modules(obj: Any) -> list[Any]:
    """The user modules that may bind `obj` at top level: where it, its class or its function are defined."""
    holders = [obj, type(obj), defining_function(obj), type(defining_function(obj))]
    names = dict.fromkeys(getattr(h, "__module__", None) for h in holders)
    modules = [sys.modules.get(n or "") for n in names if n]
    return [m for m in modules if m is not None and not is_library(m) and str(getattr(m, "__file__", "")).endswith(".py")]


def module_binding(obj: Any) -> tuple[Path, str] | None:
    """(file, name) when a user module binds `obj` itself at top level: it is then checked as FILE::NAME."""
    for module in _home_modules(obj):
        bound = sorted(name for name, value in vars(module).items() if value is obj and not name.startswith("__"))
        if not bound:
            continue
        own = getattr(obj, "__name__", None)
        name = own if isinstance(own, str) and own in bound else bound[0]
        if Path(module.__file__).is_file():
            return Path(module.__file__).resolve(), name
    return None


# --- sources --------------------------------------------------------------------------------------


def _file_tree(filename: str) -> ast.Module:
    lines = linecache.getlines(filename)
    if not lines:
        raise TransferError(f"the source of {filename} cannot be read")
    return ast.parse("".join(lines), filename=filename)


def _statement(tree: ast.Module, obj: Any) -> Definition | None:
    """The `def`, `class` or lambda that defines `obj` in its file's tree."""
    if isinstance(obj, type):
        kinds: tuple[type[Definition], ...] = (ast.ClassDef,)
        line = _class_line(obj)
    else:
        kinds = (ast.Lambda,) if obj.__name__ == "<lambda>" else (ast.FunctionDef, ast.AsyncFunctionDef)
        line = obj.__code__.co_firstlineno
    found = [
        node for node in ast.walk(tree)
        if isinstance(node, kinds) and _first_line(node) == line
        and (isinstance(node, ast.Lambda) or node.name == obj.__name__)
    ]
    if len(found) > 1 and isinstance(obj, types.FunctionType):  # two lambdas on one line: match parameters
        params = obj.__code__.co_varnames[: obj.__code__.co_argcount]
        found = [n for n in found if _parameters(n) == params]
    return found[0] if len(found) == 1 else None


def _parameters(node: Definition) -> tuple[str, ...] | None:
    """The positional parameter names of a `def` or lambda (None for a class)."""
    return None if isinstance(node, ast.ClassDef) else tuple(a.arg for a in node.args.args)


def _class_line(cls: type) -> int:
    import inspect

    try:
        return inspect.getsourcelines(cls)[1]
    except (OSError, TypeError):
        return -1


def _first_line(node: Definition) -> int:
    decorators = [] if isinstance(node, ast.Lambda) else node.decorator_list
    return min([node.lineno, *(d.lineno for d in decorators)])


def _with_placeholders(node: Definition, obj: Any) -> tuple[Definition, dict[str, Any]]:
    """The statement with its default values replaced by names bound to the values themselves: defaults
    are evaluated where the function was defined, which the worker cannot see."""
    if not isinstance(obj, types.FunctionType) or isinstance(node, ast.ClassDef):  # a class: no defaults
        return node, {}
    args = node.args
    values: dict[str, Any] = {}
    for i, value in enumerate(obj.__defaults__ or ()):
        key = f"_lossdiag_default_{i}"
        args.defaults[i] = ast.copy_location(ast.Name(key, ast.Load()), args.defaults[i])
        values[key] = value
    for i, (arg, default) in enumerate(zip(args.kwonlyargs, args.kw_defaults, strict=True)):  # parallel in ast
        if default is not None:
            key = f"_lossdiag_kwdefault_{i}"
            args.kw_defaults[i] = ast.copy_location(ast.Name(key, ast.Load()), default)
            values[key] = (obj.__kwdefaults__ or {})[arg.arg]
    return node, values


def _read_names(node: ast.AST) -> list[str]:
    return sorted({n.id for n in ast.walk(node) if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load)})


def _scopes(obj: Any) -> tuple[dict[str, Any], dict[str, Any]]:
    """(closure values, globals) the object's code can read."""
    functions = [obj] if isinstance(obj, types.FunctionType) else [
        f for f in vars(obj).values() if isinstance(f, types.FunctionType)
    ]
    closure: dict[str, Any] = {}
    for fn in functions:
        for name, cell in zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True):  # a cell per free name
            if name != "__class__":
                try:
                    closure[name] = cell.cell_contents
                except ValueError:  # an empty cell: a name assigned after the function was defined
                    continue
    module = sys.modules.get(getattr(obj, "__module__", "") or "")
    globals_ = obj.__globals__ if isinstance(obj, types.FunctionType) else vars(module) if module else {}
    return closure, globals_


def source_of(obj: Any) -> Source:
    """What defines a function, lambda or class that cannot be imported (raises TransferError)."""
    filename = obj.__code__.co_filename if isinstance(obj, types.FunctionType) else _class_file(obj)
    tree = _file_tree(filename)
    node = _statement(tree, obj)
    if node is None:
        raise TransferError(f"the definition of {obj.__qualname__} cannot be found in {filename}")
    node, namespace = _with_placeholders(node, obj)
    closure, globals_ = _scopes(obj)
    for name in _read_names(node):
        if name in closure:
            namespace[name] = closure[name]
        elif name in globals_ and not (name in vars(builtins) and globals_[name] is getattr(builtins, name)):
            namespace[name] = globals_[name]
    kind = "class" if isinstance(obj, type) else "lambda" if isinstance(node, ast.Lambda) else "function"
    return Source(kind, obj.__name__, filename, node, namespace)


def _class_file(cls: type) -> str:
    import inspect

    try:
        return inspect.getsourcefile(cls) or ""
    except TypeError:
        raise TransferError(f"{cls.__qualname__} has no Python source") from None


def rebuild(source: Source, module_name: str) -> Any:
    """In the worker: the function, lambda or class compiled again from its statement, under its own file
    name and line numbers, in a namespace of the values it reads."""
    namespace: dict[str, Any] = {"__name__": module_name, "__builtins__": builtins, **source.namespace}
    node = source.node
    statement: ast.stmt
    if isinstance(node, ast.Lambda):
        target = ast.Name("_lossdiag_object", ast.Store())
        statement = ast.copy_location(ast.Assign(targets=[ast.copy_location(target, node)], value=node), node)
    else:
        statement = node
    tree = ast.fix_missing_locations(ast.Module(body=[statement], type_ignores=[]))
    exec(compile(tree, source.filename, "exec"), namespace)
    return namespace["_lossdiag_object" if source.kind == "lambda" else source.name]


# --- Keras objects --------------------------------------------------------------------------------


def _keras_bases(kind: str) -> tuple[Any, ...]:
    """Keras' `Loss` or `Metric` base classes, of the Kerases this process has imported (none imported: ())."""
    bases = []
    for package in ("keras", "tf_keras"):
        module = sys.modules.get(package)
        holder = getattr(module, "losses" if kind == "loss" else "metrics", None) if module else None
        base = getattr(holder, "Loss" if kind == "loss" else "Metric", None)
        if isinstance(base, type):
            bases.append(base)
    return tuple(bases)


def from_state(cls: Any, state: dict[str, Any]) -> Any:
    """A `Loss` with its attributes, without calling its constructor again (its arguments are unknown)."""
    obj = cls.__new__(cls)
    obj.__dict__.update(state)
    return obj


def from_config(cls: Any, config: dict[str, Any]) -> Any:
    return cls.from_config(config)


def mean_metric(cls: Any, fn: Any, name: str, kwargs: dict[str, Any]) -> Any:
    return cls(fn, name=name, **kwargs)


def _keras_reduction(obj: Any) -> tuple[Any, tuple[Any, ...]] | None:
    """How to rebuild a Keras `Metric` or `Loss` (Keras' own pickling needs them registered and loses
    attributes that `get_config` does not list)."""
    metrics, losses = _keras_bases("metric"), _keras_bases("loss")
    kind: Any = type(obj)
    if metrics and isinstance(obj, metrics):
        if kind.__name__ == "MeanMetricWrapper" and _is_keras(kind):
            return mean_metric, (kind, obj._fn, obj.name, dict(obj._fn_kwargs))
        config = obj.get_config()
        try:
            kind.from_config(config)
        except Exception as exc:
            raise TransferError(
                f"{type(obj).__name__}.from_config(get_config()) fails ({type(exc).__name__}: {exc}): implement "
                "get_config() with its constructor arguments, or bind the metric at module level"
            ) from None
        return from_config, (type(obj), config)
    if losses and isinstance(obj, losses):
        return from_state, (type(obj), dict(vars(obj)))
    return None


# --- pickling ---------------------------------------------------------------------------------------


class _Pickler(pickle.Pickler):
    """The standard pickler, plus modules by name, unimportable code by its source, Keras objects rebuilt."""

    def __init__(self, file: io.BytesIO, module_name: str) -> None:
        super().__init__(file, protocol=pickle.HIGHEST_PROTOCOL)
        self.module_name = module_name

    def reducer_override(self, obj: Any) -> Any:
        if isinstance(obj, types.ModuleType):
            return importlib.import_module, (obj.__name__,)
        if isinstance(obj, (types.FunctionType, type)) and not importable(obj):
            return rebuild, (source_of(obj), self.module_name)
        if not isinstance(obj, type):
            special = _keras_reduction(obj)
            if special is not None:
                return special
        return NotImplemented


def dumps(obj: Any, module_name: str) -> str:
    """`obj` as base64 text that `loads` turns back into it in the worker (raises TransferError)."""
    buffer = io.BytesIO()
    try:
        _Pickler(buffer, module_name).dump(obj)
    except TransferError:
        raise
    except (pickle.PicklingError, TypeError, AttributeError, RecursionError) as exc:
        raise TransferError(f"it reads a value that cannot be sent to the worker process ({exc})") from None
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def loads(data: str, paths: list[str], instantiate: bool = False) -> Any:
    """In the worker: the object back, with the caller's import paths added after the worker's own."""
    for entry in paths:
        if entry not in sys.path:
            sys.path.append(entry)
    obj = pickle.loads(base64.b64decode(data))  # written by this process's parent a moment ago
    return obj() if instantiate else obj


# --- the private module -----------------------------------------------------------------------------


def display_name(obj: Any) -> str:
    """What the report calls the object: its function's or class's name (`<lambda>` for a lambda)."""
    target = defining_function(obj)
    return getattr(target, "__name__", None) or type(target).__name__


def _identifier(text: str) -> str:
    """A name to bind the copy to (`<lambda>` becomes `lambda_`)."""
    cleaned = "".join(c if c.isalnum() or c == "_" else "_" for c in text).strip("_") or "loss"
    cleaned = cleaned if not cleaned[0].isdigit() else f"_{cleaned}"
    return f"{cleaned}_" if keyword.iskeyword(cleaned) else cleaned


def write_module(obj: Any, folder: Path) -> tuple[Path, str]:
    """A module in `folder` (a private temporary folder) that binds a copy of `obj`; (its path, the name)."""
    name = _identifier(display_name(obj))
    stem = MODULE_PREFIX + name
    if isinstance(obj, types.FunctionType) and importable(obj):
        # a function of another module (Keras' own) would read as an import, not a loss of this module
        obj = functools.partial(obj)
    data = dumps(obj, stem)
    paths = [p for p in sys.path if p and os.path.isdir(p)]
    instantiate = isinstance(obj, type)
    path = folder / f"{stem}.py"
    path.write_text(
        '"""Written by lossdiag.check_loss: a private copy of one object, checked and then deleted."""\n\n'
        "import lossdiag.transfer\n\n"
        f"{name} = lossdiag.transfer.loads({data!r}, {paths!r}, instantiate={instantiate!r})\n",
        encoding="utf-8",
    )
    return path, name


def definition(obj: Any) -> tuple[str, int] | None:
    """Where the user's source defines the object (its function's, or its class's, first line)."""
    import inspect

    target = defining_function(obj)
    if not isinstance(target, (types.FunctionType, type)):
        target = type(target)
    try:
        file = inspect.getsourcefile(target)
        line = inspect.getsourcelines(target)[1]
    except (OSError, TypeError):
        return None
    return (file, line) if file else None
