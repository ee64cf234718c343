"""Flatten hf_ddlm modules into self-contained files for the Hugging Face Hub.

transformers' remote code (``trust_remote_code=True``) can only load files that sit next to
``config.json`` and import each other with single-dot relative imports (``from .x import y``);
any other import must name an installed package. Our sources import across packages
(``from ...generation.mixin import ...``), so the exporter rewrites them:

1. the closure of hf_ddlm modules needed by the roots is found by following their relative
   imports (also the lazy ones inside functions), and ordered dependencies first;
2. the modules are partitioned into output files by layers (``configuration`` < ``generation`` <
   ``modeling``): a module goes to the first layer whose roots reach it, so a file only imports
   from earlier files;
3. each module's text is copied with its docstring, ``from __future__``, ``__all__`` and
   ``if __name__ == "__main__"`` removed, and each import of another hf_ddlm module replaced: by
   nothing when the name is defined in the same output file, by a single-dot import of the
   earlier file otherwise, plus ``alias = name`` for ``import ... as alias``;
4. two different top-level definitions of one name in one output file are an error (checked,
   not silently shadowed), and so is any import of hf_ddlm that could not be rewritten.

The result is plain Python that only needs torch and transformers.
"""

from __future__ import annotations

import ast
import importlib.util
from dataclasses import dataclass, field
from pathlib import Path

PACKAGE = "hf_ddlm"


class FlattenError(ValueError):
    """The sources cannot be flattened safely (a name clash, an unsupported import form)."""


@dataclass
class _Module:
    name: str
    path: Path
    source: str
    tree: ast.Module
    is_package: bool
    # names bound at top level -> identity (equal identities may be merged)
    bindings: dict[str, tuple] = field(default_factory=dict)
    # (node, resolved target module) for every import of another hf_ddlm module
    internal_imports: list[tuple[ast.stmt, str]] = field(default_factory=list)
    # targets imported when the module is imported (top level): they must come first in the file
    hard_deps: list[str] = field(default_factory=list)


def _module_path(name: str) -> tuple[Path, bool]:
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None:
        raise FlattenError(f"cannot find the source of module {name}")
    path = Path(spec.origin)
    return path, path.name == "__init__.py"


def _resolve_relative(module: str, is_package: bool, level: int, target: str | None) -> str:
    base = module.split(".") if is_package else module.split(".")[:-1]
    if level > 1:
        if level - 1 > len(base):
            raise FlattenError(f"{module}: a relative import goes above the top-level package")
        base = base[: len(base) - (level - 1)]
    return ".".join(base + ([target] if target else []))


def _is_internal(name: str, package: str = PACKAGE) -> bool:
    return name == package or name.startswith(package + ".")


def _is_module(name: str) -> bool:
    try:
        return importlib.util.find_spec(name) is not None
    except (ImportError, ValueError):
        return False


def _identity(module: str, node: ast.stmt, name: str) -> tuple:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return ("def", module, name)
    if isinstance(node, ast.Import):
        for alias in node.names:
            if (alias.asname or alias.name.split(".")[0]) == name:
                return ("import", alias.name if alias.asname else alias.name.split(".")[0])
    if isinstance(node, ast.ImportFrom):
        for alias in node.names:
            if (alias.asname or alias.name) == name:
                return ("from", "." * node.level + (node.module or ""), alias.name)
    # an assignment: identical right-hand sides (``logger = logging.get_logger(__name__)``) agree
    value = getattr(node, "value", None)
    return ("assign", ast.unparse(value) if value is not None else (module, name))


def _top_level_statements(body):
    """Statements executed at import time, descending into if/try/with blocks."""
    for node in body:
        yield node
        if isinstance(node, (ast.If, ast.Try, ast.With)):
            for block in ("body", "orelse", "finalbody"):
                yield from _top_level_statements(getattr(node, block, []) or [])
            for handler in getattr(node, "handlers", []) or []:
                yield from _top_level_statements(handler.body)


def _bound_names(node: ast.stmt) -> list[str]:
    if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
        return [node.name]
    if isinstance(node, ast.Import):
        return [a.asname or a.name.split(".")[0] for a in node.names]
    if isinstance(node, ast.ImportFrom):
        return [a.asname or a.name for a in node.names]
    targets = []
    if isinstance(node, ast.Assign):
        targets = node.targets
    elif isinstance(node, (ast.AnnAssign, ast.AugAssign)):
        targets = [node.target]
    names = []

    def collect(target):  # ``x = ...`` and ``x, y = ...`` bind; ``d[k] = ...`` and ``o.a = ...`` do not
        if isinstance(target, ast.Name):
            names.append(target.id)
        elif isinstance(target, (ast.Tuple, ast.List)):
            for element in target.elts:
                collect(element)
        elif isinstance(target, ast.Starred):
            collect(target.value)

    for target in targets:
        collect(target)
    return names


def _load(name: str, package: str = PACKAGE) -> _Module:
    path, is_package = _module_path(name)
    source = path.read_text(encoding="utf-8")
    tree = ast.parse(source, filename=str(path))
    module = _Module(name, path, source, tree, is_package)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                target = _resolve_relative(name, is_package, node.level, node.module)
            else:
                target = node.module or ""
            if not _is_internal(target, package):
                continue
            for alias in node.names:
                if alias.name == "*":
                    raise FlattenError(f"{name}: 'from {target} import *' cannot be flattened")
                if _is_module(f"{target}.{alias.name}") and not _defines(target, alias.name):
                    raise FlattenError(
                        f"{name}: 'from {'.' * node.level}{node.module or ''} import {alias.name}' imports a module; "
                        "import the names it defines instead"
                    )
            module.internal_imports.append((node, target))
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if _is_internal(alias.name, package):
                    raise FlattenError(f"{name}: 'import {alias.name}' cannot be flattened; use 'from ... import name'")
    top_level = {id(node) for node in _top_level_statements(tree.body)}
    for node, target in module.internal_imports:
        if id(node) in top_level and target not in module.hard_deps:
            module.hard_deps.append(target)
    for node in _top_level_statements(tree.body):
        if _is_internal_import(node, module):
            continue
        for bound in _bound_names(node):
            if bound == "__all__":
                continue
            module.bindings.setdefault(bound, _identity(name, node, bound))
    return module


def _defines(module: str, name: str) -> bool:
    try:
        path, _ = _module_path(module)
    except FlattenError:
        return False
    tree = ast.parse(path.read_text(encoding="utf-8"))
    return any(name in _bound_names(node) for node in _top_level_statements(tree.body))


def _is_internal_import(node: ast.stmt, module: _Module) -> bool:
    return any(node is imp for imp, _ in module.internal_imports)


class _Closure:
    def __init__(self, package: str = PACKAGE):
        self.package = package
        self.modules: dict[str, _Module] = {}

    def members(self, root: str) -> list[str]:
        """Every hf_ddlm module ``root`` needs, lazily imported ones included."""
        found, todo = [], [root]
        while todo:
            name = todo.pop(0)
            if name in found:
                continue
            if name not in self.modules:
                self.modules[name] = _load(name, self.package)
            found.append(name)
            todo.extend(t for _, t in self.modules[name].internal_imports if t not in found)
        return found

    def order(self, names: list[str]) -> list[str]:
        """``names`` ordered so that a module's import-time dependencies come before it."""
        ordered: list[str] = []
        state: dict[str, str] = {}

        def visit(name, chain):
            if state.get(name) == "done":
                return
            if state.get(name) == "active":
                raise FlattenError("import cycle at module level: " + " -> ".join(chain + [name]))
            state[name] = "active"
            for dep in self.modules[name].hard_deps:
                visit(dep, chain + [name])
            state[name] = "done"
            ordered.append(name)

        for name in names:
            visit(name, [])
        return [n for n in ordered if n in names]

    def resolve(self, module: str, name: str, seen=None) -> tuple[str, str]:
        """The (module, name) that defines ``name`` as seen from ``module``, through re-exports."""
        seen = seen or set()
        if (module, name) in seen:
            raise FlattenError(f"circular re-export of {name} through {module}")
        seen.add((module, name))
        mod = self.modules[module]
        if name in mod.bindings:
            return module, name
        top_level = {id(node) for node in _top_level_statements(mod.tree.body)}
        for node, target in mod.internal_imports:
            if id(node) in top_level:
                for alias in node.names:
                    if (alias.asname or alias.name) == name:
                        return self.resolve(target, alias.name, seen)
        raise FlattenError(f"{module} does not define {name!r}")


def _render_module(
    closure: _Closure, module: _Module, file_of: dict[str, str], header_imports: dict[str, set[str]]
) -> str:
    """The module's text, rewritten for its output file; fills ``header_imports`` (file -> names)."""
    lines: list[str | None] = module.source.splitlines()
    edits: list[tuple[int, int, list[str]]] = []
    body = module.tree.body
    here = file_of[module.name]

    def indent(node):
        return " " * node.col_offset

    def dropped(node, first):
        docstring = (
            first
            and isinstance(node, ast.Expr)
            and isinstance(node.value, ast.Constant)
            and isinstance(node.value.value, str)
        )
        future = isinstance(node, ast.ImportFrom) and node.module == "__future__"
        dunder_all = isinstance(node, (ast.Assign, ast.AugAssign, ast.AnnAssign)) and "__all__" in _bound_names(node)
        main_block = (
            isinstance(node, ast.If)
            and isinstance(node.test, ast.Compare)
            and isinstance(node.test.left, ast.Name)
            and node.test.left.id == "__name__"
        )
        return docstring or future or dunder_all or main_block

    for k, node in enumerate(body):
        if dropped(node, k == 0):
            edits.append((node.lineno, node.end_lineno, []))
    top_level = set(map(id, body))
    for node, target in module.internal_imports:
        new = []
        for alias in node.names:
            local = alias.asname or alias.name
            def_module, def_name = closure.resolve(target, alias.name)
            def_file = file_of[def_module]
            if def_file != here:
                header_imports.setdefault(def_file, set()).add(def_name)
            if local != def_name:
                new.append(f"{indent(node)}{local} = {def_name}")
        if not new and id(node) not in top_level:
            new = [f"{indent(node)}pass"]
        edits.append((node.lineno, node.end_lineno, new))
    # a replaced statement must own its lines
    spans = [(n.lineno, n.end_lineno) for n in ast.walk(module.tree) if isinstance(n, ast.stmt)]
    for start, end, _ in edits:
        for s, e in spans:
            if (s, e) != (start, end) and (start <= s <= end or start <= e <= end) and not (start <= s and e <= end):
                raise FlattenError(f"{module.name}:{start}: a rewritten statement shares its lines with another one")
    for start, end, new in sorted(edits, key=lambda x: -x[0]):
        lines[start - 1 : end] = new
    text = "\n".join(line for line in lines if line is not None).strip("\n")
    return text


@dataclass
class FlatFile:
    name: str  # module name of the output file, e.g. "modeling_sedd"
    modules: list[str]
    source: str


def flatten(layers: list[tuple[str, list[str]]], header: str = "", package: str = PACKAGE) -> list[FlatFile]:
    """Flatten hf_ddlm modules into one file per layer.

    ``layers`` is an ordered list of (output module name, root hf_ddlm modules). Returns the
    files in layer order. Raises :class:`FlattenError` on a name clash or an unsupported import.
    ``package`` is the top-level package whose imports are inlined (hf_ddlm).
    """
    closure = _Closure(package)
    file_of: dict[str, str] = {}
    members: dict[str, list[str]] = {}
    for file_name, roots in layers:
        new = []
        for root in roots:
            for name in closure.members(root):
                if name not in file_of:
                    file_of[name] = file_name
                    new.append(name)
        members[file_name] = closure.order(new)
    files = []
    for file_name, _ in layers:
        header_imports: dict[str, set[str]] = {}
        bodies = []
        for name in members[file_name]:
            module = closure.modules[name]
            text = _render_module(closure, module, file_of, header_imports)
            rel = module.path.as_posix().split(f"/{package}/", 1)[-1]
            bodies.append(f"# {'-' * 20} {package}/{rel} {'-' * 20}\n{text}\n" if text else "")
        _check_clashes(closure, file_name, members, file_of, header_imports)
        imports = "".join(
            f"from .{source} import {', '.join(sorted(names))}\n"
            for source, names in sorted(header_imports.items(), key=lambda kv: [f for f, _ in layers].index(kv[0]))
        )
        text = f"{header}from __future__ import annotations\n\n{imports}\n" + "\n\n".join(b for b in bodies if b)
        compile(text, f"{file_name}.py", "exec")  # a syntax error here is a bug of the flattener
        files.append(FlatFile(file_name, members[file_name], text))
    for flat in files:
        for line in flat.source.splitlines():
            stripped = line.strip()
            if stripped.startswith((f"import {package}", f"from {package}")):
                raise FlattenError(f"{flat.name}: an hf_ddlm import survived flattening: {stripped}")
    return files


def _check_clashes(closure, file_name, members, file_of, header_imports):
    seen: dict[str, tuple[tuple, str]] = {}
    for name in members[file_name]:
        module = closure.modules[name]
        bindings = dict(module.bindings)
        top_level = {id(node) for node in _top_level_statements(module.tree.body)}
        for node, target in module.internal_imports:
            for alias in node.names:
                local = alias.asname or alias.name
                def_module, def_name = closure.resolve(target, alias.name)
                if id(node) in top_level and local != def_name:  # ``local = def_name`` is written
                    bindings.setdefault(local, closure.modules[def_module].bindings[def_name])
        for bound, identity in bindings.items():
            if bound in seen and seen[bound][0] != identity:
                raise FlattenError(
                    f"{file_name}: {bound!r} is defined both in {seen[bound][1]} and in {name}; rename one of them "
                    "(flattened modules share one namespace)"
                )
            seen.setdefault(bound, (identity, name))
    for source, names in header_imports.items():
        for bound in names:
            if bound in seen:
                def_module = next(m for m in members[source] if bound in closure.modules[m].bindings)
                identity = closure.modules[def_module].bindings[bound]
                if seen[bound][0] != identity:
                    raise FlattenError(
                        f"{file_name}: {bound!r} from {source} clashes with the definition in {seen[bound][1]}"
                    )


__all__ = ["FlatFile", "FlattenError", "flatten"]
