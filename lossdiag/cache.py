"""A content-addressed cache of each checked file's raw results: an unchanged file is neither imported nor probed."""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import json
import os
import platform
import sys
import sysconfig
import tempfile
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lossdiag import __version__
from lossdiag.models import Finding, LoadError, Location, LossResult, Probe

if TYPE_CHECKING:  # engine imports this module: only the type, never a cycle at run time
    from lossdiag.engine import Options
    from lossdiag.isolation import ModuleJob

ENTRY_SCHEMA = "lossdiag-cache/1"  # the layout of an entry file; a change makes every old entry a miss
FOLDER_NAME = ".lossdiag_cache"
CACHE_DIR_ENV = "LOSSDIAG_CACHE_DIR"
# https://bford.info/cachedir/: backup tools skip a folder whose CACHEDIR.TAG starts with this line.
CACHEDIR_TAG = (
    "Signature: 8a477f597d28d172789f06886806bc55\n"
    "# This file is a cache directory tag created by lossdiag.\n"
    "# For information about cache directory tags, see:\n"
    "#\thttps://bford.info/cachedir/\n"
)
GITIGNORE = "# Automatically created by lossdiag.\n*\n"

# Options that change a verdict, a number or a location: part of every key. Everything else in
# `Options` (selection, suppression, exclusion, --jobs, the cache itself) is applied after the cache or
# changes no output; probe specs enter the key per file, only those that apply to the file.
VERDICT_OPTIONS = ("batch_size", "seed", "legacy_keras", "full_import", "timeout", "max_memory_mb", "trace")
AFTER_CACHE_OPTIONS = (
    "select", "ignore", "exclude", "per_file_ignores", "force_exclude", "jobs", "cache", "cache_dir",
    "probes", "probe_sources",
)

# The distributions whose versions can change a verdict, each under the names it is published as.
DISTRIBUTIONS: dict[str, tuple[str, ...]] = {
    "tensorflow": ("tensorflow", "tensorflow-cpu", "tensorflow-macos", "tensorflow-intel", "tf-nightly"),
    "keras": ("keras", "keras-nightly"),
    "tf_keras": ("tf_keras", "tf-keras", "tf-keras-nightly"),
    "numpy": ("numpy",),
}
# Environment that the worker reads before any user code runs: it can change which Keras runs.
KERAS_ENVIRONMENT = ("TF_USE_LEGACY_KERAS", "KERAS_BACKEND", "KERAS_HOME")


@dataclass(frozen=True)
class FileResults:
    """What checking one file gave before selection and suppression: the unit the cache stores.

    `cacheable` is False when the outcome depended on this run's machine rather than on the inputs
    (a timeout, a crashed worker, an internal error): such a file is run again next time.
    """

    results: tuple[LossResult, ...] = ()
    load_error: LoadError | None = None
    log: tuple[str, ...] = ()  # what -v shows about this file
    cacheable: bool = field(default=True, compare=False)


# --- versions ---------------------------------------------------------------------------------------


def distribution_version(names: tuple[str, ...]) -> str | None:
    """The installed version of the first of `names` that is installed, read from its metadata
    (importing TensorFlow to ask it would cost seconds: the very thing the cache saves)."""
    for name in names:
        try:
            return metadata.version(name)
        except metadata.PackageNotFoundError:
            continue
    return None


def _own_source_digest() -> str:
    """lossdiag's own code: a changed probe or rule must not be answered from an old run's cache,
    even when the version number was not bumped (a checkout, an editable install)."""
    digest = hashlib.sha256()
    package = Path(__file__).resolve().parent
    for path in sorted(package.rglob("*")):
        if path.suffix in (".py", ".json") and "__pycache__" not in path.parts:
            digest.update(path.relative_to(package).as_posix().encode() + b"\0")
            digest.update(path.read_bytes() + b"\0")
    return digest.hexdigest()


def versions() -> dict[str, Any]:
    """Everything about the installation that can change a result."""
    found: dict[str, Any] = {name: distribution_version(names) for name, names in DISTRIBUTIONS.items()}
    found["lossdiag"] = __version__
    found["lossdiag_source"] = _own_source_digest()
    found["python"] = f"{platform.python_implementation()} {sys.version}"
    found["environment"] = {name: os.environ.get(name) for name in KERAS_ENVIRONMENT}
    keras_home = Path(os.environ.get("KERAS_HOME") or Path.home() / ".keras")
    found["keras.json"] = _digest_or_none(keras_home / "keras.json")  # floatx, epsilon
    return found


def _digest_or_none(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


# --- local imports ----------------------------------------------------------------------------------


def _library_folders() -> tuple[Path, ...]:
    """The standard library and site-packages: never the user's own modules."""
    folders = set()
    for scheme_vars in ({}, {"base": sys.base_prefix, "platbase": sys.base_exec_prefix}):
        paths = sysconfig.get_paths(vars=scheme_vars)
        keys = ("stdlib", "platstdlib", "purelib", "platlib")
        folders |= {Path(paths[key]).resolve() for key in keys if key in paths}
    return tuple(sorted(folders))


def _walk_parts(base: Path, parts: list[str]) -> list[Path]:
    """The files that importing `parts` from the folder `base` executes: each package's
    `__init__.py` on the way and the module itself (a folder without one is a namespace package)."""
    found: list[Path] = []
    folder = base
    for index, part in enumerate(parts):
        package, module = folder / part, folder / f"{part}.py"
        if (package / "__init__.py").is_file():
            found.append(package / "__init__.py")
            folder = package
        elif module.is_file():
            found.append(module)
            break
        elif package.is_dir() and index < len(parts) - 1:
            folder = package
        else:
            break
    return found


class ImportGraph:
    """The local modules a file imports, transitively, found with `ast` (nothing is imported).

    An absolute import is looked up in the folders the worker puts first on `sys.path` (the file's
    import root and the working directory); a relative one from the importing file's package. What
    resolves into the standard library or site-packages is a library, covered by the versions.
    Imports anywhere in a module count (inside functions and `try` blocks too): a loss may import
    its helpers lazily. Digests and edges are remembered for the run, so shared modules are read once.
    """

    def __init__(self) -> None:
        self._digests: dict[Path, str] = {}
        self._imports: dict[tuple[Path, tuple[Path, ...]], tuple[Path, ...]] = {}
        self._libraries = _library_folders()

    def digest(self, path: Path) -> str:
        if path not in self._digests:
            self._digests[path] = hashlib.sha256(path.read_bytes()).hexdigest()
        return self._digests[path]

    def closure(self, path: Path, roots: tuple[Path, ...]) -> list[Path]:
        """Every local file that importing `path` runs, `path` excluded, sorted."""
        seen = {path}
        todo = [path]
        while todo:
            current = todo.pop()
            for dependency in self._direct(current, roots):
                if dependency not in seen:
                    seen.add(dependency)
                    todo.append(dependency)
        seen.discard(path)
        return sorted(seen)

    def _direct(self, path: Path, roots: tuple[Path, ...]) -> tuple[Path, ...]:
        key = (path, roots)
        if key not in self._imports:
            found = {p.resolve() for p in self._imported_files(path, roots)}
            self._imports[key] = tuple(sorted(p for p in found if not self._is_library(p)))
        return self._imports[key]

    def _is_library(self, path: Path) -> bool:
        if "site-packages" in path.parts or "dist-packages" in path.parts:
            return True
        return any(path.is_relative_to(folder) for folder in self._libraries)

    def _imported_files(self, path: Path, roots: tuple[Path, ...]) -> list[Path]:
        try:
            tree = ast.parse(path.read_bytes(), filename=str(path))
        except (SyntaxError, ValueError, OSError):  # the digest covers it; it imports nothing we can see
            return []
        files: list[Path] = []
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                for alias in node.names:
                    files += self._absolute(alias.name.split("."), roots)
            elif isinstance(node, ast.ImportFrom):
                files += self._from_import(node, path, roots)
        return files

    def _from_import(self, node: ast.ImportFrom, path: Path, roots: tuple[Path, ...]) -> list[Path]:
        """`from X import a, b`: X, and a and b too when they are submodules rather than names."""
        parts = node.module.split(".") if node.module else []
        names = [alias.name for alias in node.names if alias.name != "*"]
        if node.level == 0:
            return [f for name in [*names, ""] for f in self._absolute([*parts, name] if name else parts, roots)]
        base = path.parent
        for _ in range(node.level - 1):
            base = base.parent
        found = [base / "__init__.py"] if (base / "__init__.py").is_file() else []
        for name in [*names, ""]:
            found += _walk_parts(base, [*parts, name] if name else parts)
        return found

    def _absolute(self, parts: list[str], roots: tuple[Path, ...]) -> list[Path]:
        """An absolute import, from the first root that has its top-level name (as Python finds it)."""
        if not parts or not parts[0]:
            return []
        for root in roots:
            if (root / parts[0]).is_dir() or (root / f"{parts[0]}.py").is_file():
                return _walk_parts(root, parts)
        return []


# --- keys -------------------------------------------------------------------------------------------


def _package_inits(path: Path, root: Path) -> list[Path]:
    """The `__init__.py` of every package between the import root and the file: importing it runs them."""
    inits = []
    folder = path.parent
    while folder != root and folder.is_relative_to(root) and (folder / "__init__.py").is_file():
        inits.append(folder / "__init__.py")
        folder = folder.parent
    return inits


def applicable_probes(job: ModuleJob) -> dict[str, Any]:
    """The `--probe` / config specs that reach this file's losses (a spec for a name the file does
    not define changes nothing here, so it must not make the file miss)."""
    names = set(job.lines) | set(job.names or ())
    return {name: job.probes[name] for name in sorted(job.probes) if name in names}


def entry_key(job: ModuleJob, options: Options, cwd: Path, graph: ImportGraph, installed: dict[str, Any]) -> str:
    """The key of one file's entry: its bytes and its local imports' bytes, the versions, the options
    that can change a verdict, and what of the file is checked (FILE::NAME). Raises OSError when the
    file cannot be read."""
    path = job.path.resolve()
    roots = tuple(dict.fromkeys([job.root.resolve(), cwd]))
    imported = sorted({*graph.closure(path, roots), *_package_inits(path, job.root.resolve())})
    material = {
        "schema": ENTRY_SCHEMA,
        "file": [str(path), graph.digest(path)],
        "imports": [[str(p), graph.digest(p)] for p in imported],
        "module": [job.module, str(job.root)],
        "cwd": str(cwd),  # results show paths relative to it
        "names": None if job.names is None else sorted(job.names),
        "probes": applicable_probes(job),
        "options": {name: getattr(options, name) for name in VERDICT_OPTIONS},
        "versions": installed,
    }
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()


# --- entries ----------------------------------------------------------------------------------------


def _tuples(value: Any) -> Any:
    """JSON lists back into the tuples the frozen dataclasses hold."""
    return tuple(_tuples(v) for v in value) if isinstance(value, list) else value


def _finding_from(data: dict[str, Any]) -> Finding:
    values = {k: _tuples(v) for k, v in data.items()}
    values["related"] = tuple(Location(**r) for r in data["related"])
    return Finding(**values)


def _result_from(data: dict[str, Any]) -> LossResult:
    values = {k: _tuples(v) for k, v in data.items()}
    values["probe"] = None if data["probe"] is None else Probe(**{k: _tuples(v) for k, v in data["probe"].items()})
    values["findings"] = tuple(_finding_from(f) for f in data["findings"])
    return LossResult(**values)


def to_json(entry: FileResults) -> dict[str, Any]:
    return {
        "results": [dataclasses.asdict(r) for r in entry.results],
        "load_error": None if entry.load_error is None else dataclasses.asdict(entry.load_error),
        "log": list(entry.log),
    }


def from_json(data: dict[str, Any]) -> FileResults:
    """An entry's payload back into results (raises KeyError, TypeError or ValueError when it is not one)."""
    load_error = data["load_error"]
    entry = FileResults(
        tuple(_result_from(r) for r in data["results"]),
        None if load_error is None else LoadError(**load_error),
        tuple(str(line) for line in data["log"]),
    )
    if not all(isinstance(r.line, int) and isinstance(r.findings, tuple) for r in entry.results):
        raise ValueError("not a cache entry")
    return entry


def _payload_text(payload: dict[str, Any]) -> str:
    return json.dumps(payload, sort_keys=True, ensure_ascii=False)


class Store:
    """The cache folder: entries are read when present and intact, written atomically, never required.

    Nothing here raises: an unreadable or corrupt entry is a miss (and is written again after the
    run), and a folder that cannot be created or written only costs the speed-up; `problem` says
    why, for -v.
    """

    def __init__(self, folder: Path, cwd: Path) -> None:
        self.folder = folder
        self.cwd = cwd
        self.graph = ImportGraph()
        self.installed = versions()
        self.problem: str | None = None
        self._prepared = False

    def forget_files(self) -> None:
        """Read the files again for the next keys (after the worker ran, to see whether one changed)."""
        self.graph = ImportGraph()

    def key(self, job: ModuleJob, options: Options) -> str | None:
        try:
            return entry_key(job, options, self.cwd, self.graph, self.installed)
        except (OSError, ValueError, RecursionError):
            return None  # a file vanished, is unreadable or too deep for ast: run it, do not store it

    def _entry_path(self, key: str) -> Path:
        return self.folder / "entries" / key[:2] / f"{key}.json"

    def load(self, key: str) -> FileResults | None:
        try:
            data = json.loads(self._entry_path(key).read_text(encoding="utf-8"))
            payload = data["payload"]
            intact = data["schema"] == ENTRY_SCHEMA and data["key"] == key
            if not intact or data["digest"] != hashlib.sha256(_payload_text(payload).encode()).hexdigest():
                return None
            return from_json(payload)
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            return None

    def save(self, key: str, entry: FileResults) -> None:
        if self.problem is not None or not entry.cacheable:
            return
        payload = to_json(entry)
        digest = hashlib.sha256(_payload_text(payload).encode()).hexdigest()
        text = json.dumps({"schema": ENTRY_SCHEMA, "key": key, "digest": digest, "payload": payload}, sort_keys=True)
        try:
            self._prepare()
            path = self._entry_path(key)
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomically(path, text)
        except OSError as exc:
            self.problem = f"cannot write the cache in {self.folder}: {exc.strerror or exc}; results are not cached"

    def _prepare(self) -> None:
        """The folder, with the CACHEDIR.TAG backup tools honour and a .gitignore that hides it from git."""
        if self._prepared:
            return
        self.folder.mkdir(parents=True, exist_ok=True)
        for name, text in (("CACHEDIR.TAG", CACHEDIR_TAG), (".gitignore", GITIGNORE)):
            if not (self.folder / name).is_file():
                write_atomically(self.folder / name, text)
        self._prepared = True


def write_atomically(path: Path, text: str) -> None:
    """A temporary file in the same folder renamed over `path`: a reader (another run at the same
    time) sees the old file or the whole new one, never half of one."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def folder_for(options: Options, cwd: Path) -> Path:
    """`cache_dir` as the CLI resolved it; for API callers that left it unset, $LOSSDIAG_CACHE_DIR or
    `.lossdiag_cache` in the working directory."""
    chosen = options.cache_dir or os.environ.get(CACHE_DIR_ENV) or FOLDER_NAME
    return (cwd / chosen).resolve()


def open_store(options: Options, cwd: Path) -> Store | None:
    """The run's cache, or None with --no-cache (then nothing is read or written)."""
    return Store(folder_for(options, cwd), cwd) if options.cache else None
