"""Static layout metrics of a checkout: modules, training loops, config builders, duplication, sizes, import cycles.

Pure static analysis (``ast`` and the ``duplicates`` command; nothing is imported or run), for the packages
``neural3d/`` and ``viewer/`` separately:

* top-level modules (``PKG/*.py`` without ``__init__.py``) and subpackages (folders with ``__init__.py``);
* training loops: the distinct functions/methods that call ``.backward(`` (``file:qualified name``);
* config builders: the functions that call ``OmegaConf.structured`` or ``OmegaConf.merge``;
* ``duplicates`` pairs (``duplicates --repo DIR --most 200 --seconds 60``) for the package and the whole root;
* file length (lines) and function length (``end_lineno - lineno + 1``, docstrings and nested functions
  included, every function and method) median and p90 (linear interpolation, as ``numpy.percentile``);
* lines over 120 characters;
* import cycles: strongly connected components (size > 1) of the graph of package-internal imports, once with
  module-level imports only (what runs at import time, class bodies included) and once with all imports
  (function-level ones too). ``if TYPE_CHECKING:`` imports are left out of both. An import edge goes to the
  module named (``from a.b import c`` goes to ``a.b.c`` when that is a module, else to ``a.b``); the implicit
  import of parent packages is not an edge.

Run::

    python benchmarks/layout_metrics.py                                   # this checkout
    python benchmarks/layout_metrics.py --root /work/wt-baseline --json layout.json
"""

from __future__ import annotations

import argparse
import ast
import json
import re
import statistics
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

MAX_LINE = 120
PACKAGES = ("neural3d", "viewer")


# ---------------------------------------------------------------------------------------------- files
@dataclass
class Module:
    name: str  # dotted, e.g. neural3d.training.trainer
    path: Path
    rel: str  # path relative to the root
    tree: ast.Module
    lines: list[str] = field(default_factory=list)

    @property
    def is_package(self) -> bool:
        return self.path.name == "__init__.py"


def package_dirs(root: Path) -> dict[str, Path]:
    """``neural3d/`` and ``viewer/`` (top level, or nested as ``neural3d/viewer/``)."""
    viewer = root / "viewer"
    return {"neural3d": root / "neural3d", "viewer": viewer if viewer.is_dir() else root / "neural3d" / "viewer"}


def excluded(root: Path, package: str) -> Path | None:
    """A package nested in another one is measured on its own only: ``neural3d/viewer/`` is left out of neural3d."""
    dirs = package_dirs(root)
    nested = [d for name, d in dirs.items() if name != package and dirs[package] in d.parents]
    return nested[0] if nested else None


def python_files(pkg_dir: Path, exclude: Path | None = None) -> list[Path]:
    return sorted(
        p
        for p in pkg_dir.rglob("*.py")
        if "__pycache__" not in p.parts
        and not any(part.startswith(".") for part in p.relative_to(pkg_dir).parts)
        and not (exclude is not None and exclude in p.parents)
    )


def load_modules(root: Path, package: str) -> list[Module]:
    modules = []
    for path in python_files(package_dirs(root)[package], excluded(root, package)):
        parts = list(path.relative_to(root).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        text = path.read_text(encoding="utf-8")
        modules.append(
            Module(".".join(parts), path, str(path.relative_to(root)), ast.parse(text, str(path)), text.splitlines())
        )
    return modules


# ---------------------------------------------------------------------------------------------- functions
def functions(tree: ast.AST, prefix: str = ""):
    """Yield (qualified name, node) for every function and method, nested ones included."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            name = f"{prefix}{node.name}"
            yield name, node
            yield from functions(node, f"{name}.")
        elif isinstance(node, ast.ClassDef):
            yield from functions(node, f"{prefix}{node.name}.")
        else:
            yield from functions(node, prefix)


def own_calls(func: ast.AST):
    """Calls in a function's body, not counting those inside nested functions or classes."""
    stack = list(ast.iter_child_nodes(func))
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef, ast.Lambda)):
            continue
        if isinstance(node, ast.Call):
            yield node
        stack.extend(ast.iter_child_nodes(node))


def calls_backward(call: ast.Call) -> bool:
    return isinstance(call.func, ast.Attribute) and call.func.attr == "backward"


def calls_config_builder(call: ast.Call) -> bool:
    f = call.func
    return (
        isinstance(f, ast.Attribute)
        and f.attr in ("structured", "merge")
        and isinstance(f.value, ast.Name)
        and f.value.id == "OmegaConf"
    )


def functions_calling(modules: list[Module], predicate) -> list[str]:
    """``file:qualname`` of the functions whose own body has a call matching ``predicate`` (module level: <module>)."""
    found = []
    for m in modules:
        for name, node in functions(m.tree):
            if any(predicate(c) for c in own_calls(node)):
                found.append(f"{m.rel}:{name}")
        if any(predicate(c) for c in own_calls(m.tree)):
            found.append(f"{m.rel}:<module>")
    return sorted(found)


def function_lengths(modules: list[Module]) -> list[int]:
    return [node.end_lineno - node.lineno + 1 for m in modules for _, node in functions(m.tree)]


# ---------------------------------------------------------------------------------------------- imports
def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def imports(tree: ast.AST, in_function: bool = False):
    """Yield (import node, inside a function?) for every import outside ``if TYPE_CHECKING:`` blocks."""
    for node in ast.iter_child_nodes(tree):
        if isinstance(node, ast.If) and _is_type_checking(node.test):
            for sub in node.orelse:
                yield from imports(ast.Module(body=[sub], type_ignores=[]), in_function)
            continue
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node, in_function
        inner = in_function or isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
        yield from imports(node, inner)


def resolve_from(module: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.name.split(".")
    base = base if module.is_package else base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_targets(module: Module, node, known: set[str]) -> set[str]:
    """Modules of ``known`` that an import statement names."""
    if isinstance(node, ast.Import):
        names = [a.name for a in node.names]
    else:
        base = resolve_from(module, node)
        names = [f"{base}.{a.name}" if f"{base}.{a.name}" in known else base for a in node.names]
    out = set()
    for name in names:
        while name and name not in known:  # `import a.b.c` where only a.b is ours: the deepest known module
            name = name.rpartition(".")[0]
        if name:
            out.add(name)
    return out


def import_graph(modules: list[Module], module_level_only: bool) -> dict[str, set[str]]:
    known = {m.name for m in modules}
    graph: dict[str, set[str]] = {m.name: set() for m in modules}
    for m in modules:
        for node, in_function in imports(m.tree):
            if module_level_only and in_function:
                continue
            graph[m.name] |= import_targets(m, node, known) - {m.name}
    return graph


def strongly_connected(graph: dict[str, set[str]]) -> list[list[str]]:
    """Tarjan's algorithm (iterative); components of more than one module, largest first."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    on_stack: set[str] = set()
    stack: list[str] = []
    comps: list[list[str]] = []
    counter = 0
    for root in sorted(graph):
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter
        counter += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    comp.append(top)
                    if top == node:
                        break
                if len(comp) > 1:
                    comps.append(sorted(comp))
    return sorted(comps, key=lambda c: (-len(c), c))


def cycles(modules: list[Module]) -> dict:
    out = {}
    for label, only in (("module_level", True), ("all_imports", False)):
        graph = import_graph(modules, only)
        comps = strongly_connected(graph)
        out[label] = {
            "edges": sum(len(v) for v in graph.values()),
            "n_cycles": len(comps),
            "modules_in_cycles": sum(len(c) for c in comps),
            "components": comps,
        }
    return out


# ---------------------------------------------------------------------------------------------- duplicates
def duplicates(directory: Path) -> dict:
    """Run ``duplicates`` on a folder; count its pair rows (and what it says about the rest)."""
    cmd = ["duplicates", "--repo", str(directory), "--most", "200", "--seconds", "60"]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=180).stdout
    except (OSError, subprocess.TimeoutExpired) as e:
        return {"error": f"{type(e).__name__}: {e}"}
    rows = [line for line in out.splitlines() if re.match(r"D\d+ ", line)]
    header = out.splitlines()[0] if out.strip() else ""
    total = re.match(r"(\d+) pairs?", header)
    more = re.search(r"\(\+(\d+) more pairs\)", out)
    return {
        "rows": len(rows),
        "pairs": int(total.group(1)) if total else len(rows) + int(more.group(1) if more else 0),
        "shape_rows": sum(" shape" in r for r in rows),
        "boilerplate_rows": sum("boilerplate" in r for r in rows),
        "header": header,
        "incomplete": [line for line in out.splitlines() if line.startswith("incomplete:")],
    }


# ---------------------------------------------------------------------------------------------- report
def percentile(values: list[int], q: float) -> float:
    """Linear interpolation between closest ranks (numpy.percentile's default)."""
    if not values:
        return float("nan")
    s = sorted(values)
    pos = (len(s) - 1) * q / 100
    lo = int(pos)
    hi = min(lo + 1, len(s) - 1)
    return s[lo] + (s[hi] - s[lo]) * (pos - lo)


def package_metrics(root: Path, package: str) -> dict:
    pkg, skip = package_dirs(root)[package], excluded(root, package)
    if not pkg.is_dir():
        return {"missing": True}
    modules = load_modules(root, package)
    file_lines = [len(m.lines) for m in modules]
    func_lines = function_lengths(modules)
    subpackages = sorted(str(m.path.parent.relative_to(pkg)) for m in modules if m.is_package and m.path.parent != pkg)
    loops = functions_calling(modules, calls_backward)
    builders = functions_calling(modules, calls_config_builder)
    return {
        "path": str(pkg.relative_to(root)),
        "excluded": str(skip.relative_to(root)) if skip else None,
        "files": len(modules),
        "lines": sum(file_lines),
        "top_level_modules": len([p for p in pkg.glob("*.py") if p.name != "__init__.py"]),
        "subpackages": len(subpackages),
        "subpackages_direct": len([s for s in subpackages if "/" not in s]),
        "subpackage_names": subpackages,
        "training_loops": len(loops),
        "training_loop_functions": loops,
        "config_builders": len(builders),
        "config_builder_functions": builders,
        "file_lines_median": statistics.median(file_lines) if file_lines else None,
        "file_lines_p90": percentile(file_lines, 90),
        "functions": len(func_lines),
        "function_lines_median": statistics.median(func_lines) if func_lines else None,
        "function_lines_p90": percentile(func_lines, 90),
        "lines_over_120": sum(len(line) > MAX_LINE for m in modules for line in m.lines),
        "import_cycles": cycles(modules),
        "duplicates": duplicates(pkg),
    }


def combined_cycles(root: Path) -> dict:
    """Import cycles over both packages together (cycles that cross from one package to the other)."""
    modules = [m for p in PACKAGES if package_dirs(root)[p].is_dir() for m in load_modules(root, p)]
    return cycles(modules)


def print_report(report: dict) -> None:
    print(f"root: {report['root']} ({report.get('git_head', '')[:12]})")
    for package in PACKAGES:
        r = report["packages"][package]
        if r.get("missing"):
            print(f"\n{package}/: missing")
            continue
        cyc = r["import_cycles"]
        dup = r["duplicates"]
        left_out = f", without {r['excluded']}/" if r["excluded"] else ""
        print(f"\n{r['path']}/  ({r['files']} files, {r['lines']} lines, {r['functions']} functions{left_out})")
        rows = [
            ("top-level modules", r["top_level_modules"]),
            ("subpackages (direct)", f"{r['subpackages']} ({r['subpackages_direct']})"),
            ("training loops (.backward callers)", r["training_loops"]),
            ("config builders (OmegaConf.structured/merge)", r["config_builders"]),
            ("duplicates pairs (rows listed)", f"{dup.get('pairs')} ({dup.get('rows')})"),
            ("file lines median / p90", f"{r['file_lines_median']} / {r['file_lines_p90']:.1f}"),
            ("function lines median / p90", f"{r['function_lines_median']} / {r['function_lines_p90']:.1f}"),
            (f"lines over {MAX_LINE} chars", r["lines_over_120"]),
            (
                "import cycles: module-level / all imports",
                f"{cyc['module_level']['n_cycles']} / {cyc['all_imports']['n_cycles']}",
            ),
        ]
        for label, value in rows:
            print(f"  {label:<46} {value}")
        for title, items in (
            ("training loops", r["training_loop_functions"]),
            ("config builders", r["config_builder_functions"]),
        ):
            print(f"  {title}:")
            for item in items:
                print(f"    {item}")
        for label in ("module_level", "all_imports"):
            for comp in cyc[label]["components"]:
                print(f"  cycle ({label}, {len(comp)}): {' '.join(comp)}")
    dup = report["duplicates_root"]
    print(f"\nwhole root: duplicates pairs {dup.get('pairs')} (rows listed {dup.get('rows')})")
    both = report["import_cycles_both_packages"]
    print(
        f"import cycles across {' + '.join(PACKAGES)}: module-level {both['module_level']['n_cycles']}, "
        f"all imports {both['all_imports']['n_cycles']}"
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--root", default=str(Path(__file__).resolve().parents[1]), help="checkout (default: this repo)")
    p.add_argument("--json", help="write the metrics as JSON here")
    args = p.parse_args(argv)
    root = Path(args.root).resolve()
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True).stdout.strip()
    report = {
        "root": str(root),
        "git_head": head,
        "packages": {pkg: package_metrics(root, pkg) for pkg in PACKAGES},
        "import_cycles_both_packages": combined_cycles(root),
        "duplicates_root": duplicates(root),
    }
    print_report(report)
    if args.json:
        Path(args.json).parent.mkdir(parents=True, exist_ok=True)
        Path(args.json).write_text(json.dumps(report, indent=1) + "\n")
        print(f"\nwrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
