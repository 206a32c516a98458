"""Import a training script's definitions only: what its losses need runs, the training never does.

A module is imported by running a slice of its top-level statements: every import, every `def` and
`class`, and the statements that the losses need (their free names followed transitively through
assignments, mutations such as `weights[0] = 2.0` or `weights.update(...)`, loops and `if` blocks that
fill them), plus `sys.path` / `os.environ` set-up. Data loading, model building, `compile`, `fit`,
plotting and anything under `if __name__ == "__main__":` are skipped. The slice is compiled with the
real filename and original line numbers, so tracebacks, `inspect.getsource` and tracing stay right.
"""

from __future__ import annotations
import __future__

import ast
import builtins
import importlib
import importlib.util
import re
import symtable
import sys
import tokenize
import traceback
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from importlib.machinery import ModuleSpec
from pathlib import Path
from types import CodeType, ModuleType

# Method calls that run or report the training rather than define anything a loss could read.
_RUNS = re.compile(
    r"^(fit\w*|train\w*|evaluate\w*|predict\w*|compile|save\w*|summary|plot\w*|show|savefig|imshow|print\w*|"
    r"log\w*|write\w*|dump\w*|to_csv|to_json|to_pickle|run\w*|start|join|wait|close|load_weights|display)$"
)
# Keras settings a loss reads (K.epsilon(), floatx): their setters are set-up, like sys.path.
_SETTINGS = frozenset({"set_epsilon", "set_floatx", "set_image_data_format", "set_image_dim_ordering"})
_MODULE_DUNDERS = {"__file__", "__name__", "__doc__", "__spec__", "__loader__", "__package__", "__builtins__",
                   "__path__", "__cached__", "__annotations__"}
BUILTIN_NAMES = _BUILTINS = frozenset(dir(builtins)) | _MODULE_DUNDERS  # names every module has
_COMPREHENSIONS = (ast.ListComp, ast.SetComp, ast.DictComp, ast.GeneratorExp)


# Set on a definitions-only module that is kept although a statement some losses need failed:
# {candidate: what failed}. `discover.materialise` turns each into an error on that candidate.
BROKEN = "__lossdiag_broken__"


def read_source(path: Path) -> str:
    """The text of a Python file, decoded the way Python decodes it (coding line, BOM)."""
    with tokenize.open(path) as fh:
        return fh.read()


@dataclass(frozen=True)
class SkippedRange:
    """Consecutive top-level statements that a definitions-only import did not run."""

    first: int
    last: int
    text: str  # the first source line, stripped

    def describe(self) -> str:
        where = f"line {self.first}" if self.first == self.last else f"lines {self.first}-{self.last}"
        return f"{where}: {self.text}"


@dataclass(frozen=True)
class Statement:
    """One top-level statement: what kind it is, which names it binds, mutates and reads."""

    node: ast.stmt
    category: str  # import | setup | definition | main | doc | other
    first: int  # first line, decorators included
    last: int
    binds: frozenset[str]
    mutates: frozenset[str]
    reads_now: frozenset[str]  # evaluated when the statement runs (decorators, defaults, bases, values)
    reads_later: frozenset[str]  # globals read by the bodies of the functions and classes it defines


@dataclass(frozen=True)
class Plan:
    """Which statements a definitions-only import runs, and what it leaves out."""

    kept: tuple[int, ...]  # indices into the module body, in source order
    essential: frozenset[int]  # the kept statements a loss needs; the rest (other imports, defs) may fail
    skipped: tuple[SkippedRange, ...]


@dataclass(frozen=True)
class SliceOutcome:
    """What running the slice gave: complete, or the reason the whole file must be imported instead."""

    skipped: tuple[SkippedRange, ...] = ()
    failed: tuple[str, ...] = ()  # statements no loss needs that raised, and what they raised
    problem: str = ""  # empty when every loss was defined
    broken: tuple[tuple[str, str], ...] = ()  # (candidate, the failure of a statement it needs)

    @property
    def complete(self) -> bool:
        return not self.problem

    def notes(self, display: str) -> list[str]:
        """Lines for `-v`: what was skipped, and why a full import follows (if it does)."""
        out = []
        if self.skipped or self.failed:
            out.append(f"lossdiag: {display}: imported its definitions only (--full-import runs the whole file)")
            out += [f"  skipped {r.describe()}" for r in self.skipped]
            out += [f"  {text}" for text in self.failed]
        if self.problem:
            out.append(f"lossdiag: {display}: {self.problem}; importing the whole file instead")
        return out


@dataclass
class ModuleAnalysis:
    """The top-level statements of one module, ready to be sliced for any set of needed names."""

    source: str
    filename: str
    tree: ast.Module = field(init=False)
    statements: list[Statement] = field(init=False)
    star_import: bool = field(init=False)
    modules: frozenset[str] = field(init=False)  # names bound by imports: calling np.load does not change np
    future_flags: int = field(init=False)
    lines: list[str] = field(init=False)

    def __post_init__(self) -> None:
        self.tree = ast.parse(self.source, filename=self.filename)
        self.lines = self.source.splitlines()
        table = symtable.symtable(self.source, self.filename, "exec")
        children = table.get_children()
        self.statements = [_describe(node, i, children) for i, node in enumerate(self.tree.body)]
        self.star_import = any(
            isinstance(n, ast.ImportFrom) and any(a.name == "*" for a in n.names) for n in self.tree.body
        )
        self.modules = frozenset(n for s in self.statements if s.category == "import" for n in s.binds)
        self.future_flags = 0
        for node in self.tree.body:
            if isinstance(node, ast.ImportFrom) and node.module == "__future__":
                for alias in node.names:
                    self.future_flags |= getattr(getattr(__future__, alias.name, None), "compiler_flag", 0)

    def closure(
        self, roots: Iterable[str], always: tuple[str, ...] = ("setup", "doc")
    ) -> tuple[set[str], list[bool]]:
        """The names the roots need (transitively) and which statements must run to bind them.

        Statements of the `always` categories run whatever the roots are, and what they read is needed.
        """
        needed = set(roots)
        kept = [s.category in always for s in self.statements]
        for s, keep in zip(self.statements, kept, strict=True):
            if keep:
                needed |= s.reads_now | s.reads_later
        changed = True
        while changed:
            changed = False
            for i, s in enumerate(self.statements):
                if kept[i] or s.category == "main" or not (s.binds & needed or (s.mutates - self.modules) & needed):
                    continue
                kept[i] = changed = True
                needed |= s.reads_now | s.reads_later
        return needed, kept

    def plan(self, roots: Iterable[str]) -> Plan:
        """What the roots need, plus every import and every definition that can run without the rest."""
        _, kept = self.closure(roots)
        essential = frozenset(i for i, k in enumerate(kept) if k)
        kept = [k or s.category == "import" for s, k in zip(self.statements, kept, strict=True)]
        runnable = self._runnable_definitions(kept)
        kept = [k or i in runnable for i, k in enumerate(kept)]
        return Plan(tuple(i for i, k in enumerate(kept) if k), essential, self._skipped(kept))

    def _runnable_definitions(self, kept: list[bool]) -> set[int]:
        """Definitions whose decorators, defaults and bases read nothing that only skipped code binds."""
        pairs = list(zip(self.statements, kept, strict=True))
        bound = {n for s, k in pairs if k or s.category == "definition" for n in s.binds}
        skipped_only = {n for s, k in pairs if not k for n in s.binds} - bound
        return {
            i for i, s in enumerate(self.statements)
            if s.category == "definition" and not kept[i] and not s.reads_now & skipped_only
        }

    def _skipped(self, kept: list[bool]) -> tuple[SkippedRange, ...]:
        ranges: list[SkippedRange] = []
        run: list[Statement] = []
        for s, keep in [*zip(self.statements, kept, strict=True), (None, True)]:
            if not keep and s is not None:
                run.append(s)
                continue
            if run:
                ranges.append(SkippedRange(run[0].first, run[-1].last, self.first_line(run[0])))
                run = []
        return tuple(ranges)

    def first_line(self, statement: Statement) -> str:
        return self.lines[statement.first - 1].strip() if statement.first <= len(self.lines) else ""

    def statement_code(self, index: int) -> CodeType:
        """One top-level statement compiled alone, with the file's name, lines and future flags."""
        module = ast.Module(body=[self.tree.body[index]], type_ignores=[])
        # typeshed types compile() as Any for flags that are not a literal 0 (ast.PyCF_ONLY_AST would make
        # it return an AST); these flags hold `from __future__` features only, so it returns code.
        code: CodeType = compile(module, self.filename, "exec", flags=self.future_flags, dont_inherit=True)
        return code

    def main_only(self, roots: Iterable[str]) -> tuple[str, int] | None:
        """A global the roots read that only `if __name__ == "__main__":` sets: (name, line it is set)."""
        return self.main_globals(roots)[0]

    def main_globals(self, roots: Iterable[str]) -> tuple[tuple[str, int] | None, tuple[str, int] | None]:
        """Globals the roots read that get their value only under `if __name__ == "__main__":`, each as
        (name, line it is set there): one nothing else binds, and one that is a `NAME = None` placeholder
        at module level."""
        needed, _ = self.closure(roots, always=())
        outside = [s for s in self.statements if s.category != "main"]
        only: list[tuple[int, str]] = []
        placeholder: list[tuple[int, str]] = []
        for s in self.statements:
            if s.category != "main":
                continue
            for name, line in _binding_lines(s.node):
                binders = [o for o in outside if name in o.binds] if name in needed else None
                if binders == [] and name not in _BUILTINS:
                    only.append((line, name))
                elif binders and all(_assigns_none(o.node, name) for o in binders):
                    placeholder.append((line, name))
        return _first_set(only), _first_set(placeholder)


def _first_set(found: list[tuple[int, str]]) -> tuple[str, int] | None:
    if not found:
        return None
    line, name = min(found)
    return name, line


def _assigns_none(node: ast.stmt, name: str) -> bool:
    """`NAME = None` (or `NAME: T = None`)."""
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, ast.AnnAssign) and node.value is not None:
        targets = [node.target]
    else:
        return False
    names = [t.id for t in targets if isinstance(t, ast.Name)]
    value = node.value
    return names == [name] and isinstance(value, ast.Constant) and value.value is None


def expression_names(expr: str) -> frozenset[str]:
    """The global names a Python expression reads (its free names)."""
    try:
        tree = ast.parse(expr, mode="eval")
    except SyntaxError:
        return frozenset()
    stmt = ast.Expr(value=tree.body)
    children = symtable.symtable(f"({expr})", "<expr>", "exec").get_children()
    loads, _ = _scope_names(stmt)
    return frozenset(loads) | _child_globals(children)


def node_names(node: ast.expr) -> frozenset[str]:
    """The global names an expression node reads."""
    return expression_names(ast.unparse(node))


def bindings(tree: ast.Module) -> dict[str, tuple[int, str]]:
    """Every name the module's top-level statements bind → (first line, category of the statement)."""
    out: dict[str, tuple[int, str]] = {}
    for index, node in enumerate(tree.body):
        _, stores = _scope_names(node)
        category = _category(node, index)
        for name in sorted(stores):
            out.setdefault(name, (node.lineno, category))
    return out


def run_definitions(module: ModuleType, path: Path, roots: Mapping[str, frozenset[str]]) -> SliceOutcome:
    """Run the slice of `path` that defines the candidates in `roots` (candidate → names it needs).

    Statements run one at a time in source order. One that no loss needs (an unrelated import, a
    definition) may fail: that is noted and the rest runs. When one that a loss needs fails, or a loss's
    name is still undefined at the end, the outcome says why and the caller imports the whole file.
    """
    try:
        analysis = ModuleAnalysis(read_source(path), str(path))
    except (SyntaxError, ValueError, UnicodeDecodeError, OSError) as exc:
        return SliceOutcome(problem=f"could not slice it ({type(exc).__name__})")
    plan = analysis.plan(frozenset().union(*roots.values()) if roots else ())
    failed: list[str] = []
    errors: dict[int, str] = {}  # statements a loss needs that raised
    for index in plan.kept:
        statement = analysis.statements[index]
        try:
            exec(analysis.statement_code(index), module.__dict__)
        except KeyboardInterrupt:
            raise
        except BaseException as exc:  # SystemExit too: a statement failed, the caller decides what follows
            line = _user_line(exc, str(path)) or statement.first
            what = f"line {line} (`{analysis.first_line(statement)}`) raised {_describe_exception(exc)}"
            if index in plan.essential:
                errors[index] = what
            else:
                failed.append(f"{what}; no loss needs it")
    if errors:
        problem = f"{errors[min(errors)]} in the definitions-only import"
        return SliceOutcome(plan.skipped, tuple(failed), problem, _broken(analysis, roots, errors))
    return SliceOutcome(plan.skipped, tuple(failed), _undefined(analysis, module, roots))


def _broken(
    analysis: ModuleAnalysis, roots: Mapping[str, frozenset[str]], errors: dict[int, str]
) -> tuple[tuple[str, str], ...]:
    """The candidates that need a statement that failed, each with the first such failure."""
    out = []
    for candidate, names in sorted(roots.items()):
        _, kept = analysis.closure(names)
        failures = sorted(i for i in errors if kept[i])
        if failures:
            out.append((candidate, errors[failures[0]]))
    return tuple(out)


def _undefined(analysis: ModuleAnalysis, module: ModuleType, roots: Mapping[str, frozenset[str]]) -> str:
    """Why a candidate is still not defined after the slice ran ("" when every one is)."""
    if analysis.star_import:  # `from x import *` may define anything: let materialise find out
        return ""
    for candidate, names in sorted(roots.items()):
        missing = sorted(n for n in names if n not in module.__dict__ and n not in _BUILTINS)
        if missing and analysis.main_only(names) is None:  # a main-only global gets its own message
            return f"`{missing[0]}` (needed by {candidate}) was not defined by the definitions-only import"
    return ""


def import_definitions(
    spec: ModuleSpec, module: ModuleType, definitions: Mapping[str, frozenset[str]], notes: list[str] | None = None
) -> ModuleType:
    """Run `module`'s definitions only; if they cannot define every candidate, a fresh full import.

    What was skipped, what failed and why a full import followed go to `notes` (for `-v`), else stderr.
    """

    def note(text: str) -> None:
        if notes is not None:
            notes.append(text)
        else:
            print(text, file=sys.stderr)

    path = Path(spec.origin or "")
    if spec.parent:
        importlib.import_module(spec.parent)  # the package first, as an import would: relative imports need it
    outcome = run_definitions(module, path, definitions)
    for line in outcome.notes(path.name):
        note(line)
    if outcome.complete:
        return module
    whole = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = whole
    assert spec.loader is not None
    try:
        spec.loader.exec_module(whole)
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # the whole file fails too: keep what the definitions could define
        broken = dict(outcome.broken)
        if not broken or set(broken) >= set(definitions):
            raise  # nothing to keep: the module is LD001, as it always was
        note(
            f"lossdiag: {path.name}: the whole file failed too ({_describe_exception(exc)}); "
            "checking the losses its definitions define"
        )
        sys.modules[spec.name] = module
        vars(module)[BROKEN] = broken
        return module
    return whole


def _describe_exception(exc: BaseException) -> str:
    if isinstance(exc, SystemExit):
        return f"SystemExit({exc.code!r})"
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


def _user_line(exc: BaseException, filename: str) -> int | None:
    for frame in reversed(traceback.extract_tb(exc.__traceback__)):
        if frame.filename == filename:
            return frame.lineno
    return None


# --- reading one statement ----------------------------------------------------------------------


def _describe(node: ast.stmt, index: int, children: list[symtable.SymbolTable]) -> Statement:
    first = min([node.lineno, *(d.lineno for d in getattr(node, "decorator_list", []))])
    last = node.end_lineno or node.lineno
    loads, stores = _scope_names(node)
    inner = [c for c in children if first <= c.get_lineno() <= last]
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        stores = {node.name}
    return Statement(
        node=node,
        category=_category(node, index),
        first=first,
        last=last,
        binds=frozenset(stores),
        mutates=frozenset(_mutated(node)),
        reads_now=frozenset(loads - _loop_targets(node)),
        reads_later=frozenset(_child_globals(inner)),
    )


def _category(node: ast.stmt, index: int) -> str:
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return "import"
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return "definition"
    if isinstance(node, ast.If) and _is_main_test(node.test):
        return "main"
    if index == 0 and isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return "doc"
    if isinstance(node, ast.Try) and _is_import_block(node):
        return "import"
    if _is_setup(node):
        return "setup"
    return "other"


def _is_main_test(test: ast.expr) -> bool:
    if not (isinstance(test, ast.Compare) and len(test.ops) == 1 and isinstance(test.ops[0], ast.Eq)):
        return False
    sides = [test.left, test.comparators[0]]
    has_name = any(isinstance(s, ast.Name) and s.id == "__name__" for s in sides)
    has_main = any(isinstance(s, ast.Constant) and s.value == "__main__" for s in sides)
    return has_name and has_main


def _is_import_block(node: ast.Try) -> bool:
    """`try: import x / except ImportError: ...` with nothing but imports, flags and messages inside."""
    body = [*node.body, *node.orelse, *node.finalbody, *(s for h in node.handlers for s in h.body)]
    if not any(isinstance(s, (ast.Import, ast.ImportFrom)) for s in node.body):
        return False
    for s in body:
        if isinstance(s, (ast.Import, ast.ImportFrom, ast.Pass)):
            continue
        if isinstance(s, (ast.Assign, ast.AnnAssign)) and isinstance(s.value, (ast.Constant, ast.Name, ast.Attribute)):
            continue
        if isinstance(s, ast.Expr) and (isinstance(s.value, ast.Constant) or _call_name(s.value) in ("print", "warn")):
            continue
        return False
    return True


def _dotted(node: ast.expr) -> str:
    parts: list[str] = []
    while isinstance(node, (ast.Attribute, ast.Subscript)):
        if isinstance(node, ast.Attribute):
            parts.insert(0, node.attr)
        node = node.value
    if isinstance(node, ast.Name):
        parts.insert(0, node.id)
    return ".".join(parts)


def _call_name(node: ast.expr) -> str:
    if not isinstance(node, ast.Call):
        return ""
    func = node.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _is_setup(node: ast.stmt) -> bool:
    """`sys.path` and `os.environ` changes and Keras settings: what later imports and losses depend on."""
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Call) and isinstance(node.value.func, ast.Attribute):
        target = _dotted(node.value.func)
        return target.startswith(("sys.path.", "os.environ.", "os.putenv")) or node.value.func.attr in _SETTINGS
    if isinstance(node, (ast.Assign, ast.AugAssign)):
        targets = node.targets if isinstance(node, ast.Assign) else [node.target]
        return any(_dotted(t) in ("sys.path", "os.environ") for t in targets)
    return False


def _walk_scope(node: ast.AST) -> Iterator[ast.AST]:
    """The nodes of `node` that run in the module's scope (not inside functions, lambdas, classes)."""
    todo = [node]
    while todo:
        current = todo.pop()
        yield current
        if isinstance(current, (ast.FunctionDef, ast.AsyncFunctionDef)):
            args = current.args
            todo += [*current.decorator_list, *args.defaults, *(d for d in args.kw_defaults if d is not None)]
            todo += [a.annotation for a in [*args.posonlyargs, *args.args, *args.kwonlyargs] if a.annotation]
            todo += [current.returns] if current.returns else []
        elif isinstance(current, ast.ClassDef):
            todo += [*current.decorator_list, *current.bases, *(k.value for k in current.keywords)]
        elif isinstance(current, ast.Lambda):
            todo += [*current.args.defaults, *(d for d in current.args.kw_defaults if d is not None)]
        else:
            todo += list(ast.iter_child_nodes(current))


def _scope_names(node: ast.AST) -> tuple[set[str], set[str]]:
    """Names read and bound in the module scope by `node` (comprehension variables excluded)."""
    loads: set[str] = set()
    stores: set[str] = set()
    local: set[str] = set()
    for n in _walk_scope(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Load):
            loads.add(n.id)
        elif isinstance(n, _COMPREHENSIONS):
            local |= {t.id for g in n.generators for t in ast.walk(g.target) if isinstance(t, ast.Name)}
        else:
            stores |= _bound_by(n)
    return loads - local, stores - local


def _bound_by(n: ast.AST) -> set[str]:
    """The names one node binds in its own scope: a stored name, an import, `except ... as`, a definition."""
    if isinstance(n, ast.Name):  # a Store or Del context: `del x` counts as binding, as Python's scoping does
        return {n.id}
    if isinstance(n, ast.Import):
        return {a.asname or a.name.split(".")[0] for a in n.names}
    if isinstance(n, ast.ImportFrom):
        return {a.asname or a.name for a in n.names if a.name != "*"}
    if isinstance(n, ast.ExceptHandler):
        return {n.name} if n.name else set()
    if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return {n.name}
    return set()


def _loop_targets(node: ast.stmt) -> set[str]:
    """Names a `for` or `with` binds before its body reads them (not needs from elsewhere)."""
    out: set[str] = set()
    for n in _walk_scope(node):
        targets: list[ast.expr] = []
        if isinstance(n, (ast.For, ast.AsyncFor)):
            targets = [n.target]
        elif isinstance(n, (ast.With, ast.AsyncWith)):
            targets = [i.optional_vars for i in n.items if i.optional_vars is not None]
        out |= {t.id for target in targets for t in ast.walk(target) if isinstance(t, ast.Name)}
    return out


def _root(node: ast.expr) -> str | None:
    while isinstance(node, (ast.Attribute, ast.Subscript, ast.Call)):
        node = node.func if isinstance(node, ast.Call) else node.value
    return node.id if isinstance(node, ast.Name) else None


def _mutated(node: ast.stmt) -> set[str]:
    """Names whose object a statement changes in place: `w[0] = 2`, `cfg.a = 1`, `w.update(...)`.

    Only statements count, not calls nested in expressions: `model.fit(x, w.tolist())` must not make
    the `fit` a statement that `w` needs.
    """
    out: set[str] = set()
    for n in _walk_scope(node):
        targets: list[ast.expr] = []
        if isinstance(n, ast.Assign):
            targets = n.targets
        elif isinstance(n, (ast.AugAssign, ast.AnnAssign)):
            targets = [n.target]
        elif isinstance(n, ast.Delete):
            targets = n.targets
        elif (
            isinstance(n, ast.Expr)
            and isinstance(n.value, ast.Call)
            and isinstance(n.value.func, ast.Attribute)
            and not _RUNS.match(n.value.func.attr)
            and (root := _root(n.value.func.value))
        ):
            out.add(root)
        out |= {root for t in targets if isinstance(t, (ast.Subscript, ast.Attribute)) and (root := _root(t))}
    return out


def _child_globals(tables: Iterable[symtable.SymbolTable]) -> set[str]:
    """Global names that the functions and classes in `tables` (and everything nested) read."""
    out: set[str] = set()
    todo = list(tables)
    while todo:
        table = todo.pop()
        # `global n` too: `n += 1` in a function reads the module's `n` (symtable calls it assigned only)
        out |= {
            s.get_name() for s in table.get_symbols() if s.is_global() and (s.is_referenced() or s.is_declared_global())
        }
        todo += table.get_children()
    return out


def _binding_lines(node: ast.stmt) -> list[tuple[str, int]]:
    out = []
    for n in _walk_scope(node):
        if isinstance(n, ast.Name) and isinstance(n.ctx, ast.Store):
            out.append((n.id, n.lineno))
        elif isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            out.append((n.name, n.lineno))
        elif isinstance(n, (ast.Import, ast.ImportFrom)):
            out += [(a.asname or a.name.split(".")[0], n.lineno) for a in n.names if a.name != "*"]
    return out
