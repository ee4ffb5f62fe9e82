"""The package's layering, read from the source: a lower layer never imports a higher one, no cycles.

Every `import` / `from ... import` of every module under sfdet/ is parsed with `ast`, including the
ones inside functions (a lazy import is still a dependency). A module belongs to a *unit*: its
sub-package (`sfdet.data.ava` -> `sfdet.data`) or, for a top-level module, itself (`sfdet.config`).
A unit may import:
  - its own unit;
  - any unit of a LOWER layer (LAYERS below, low to high);
  - the units of its own layer that SAME_LAYER lists for it;
  - the single modules MODULE_EXCEPTIONS names (each with its reason).
Every module must belong to a unit of LAYERS, so a new package has to be placed here on purpose.

Import cycles are looked for among the imports that run when a module is imported (module level,
class bodies included; not inside functions, not under `if TYPE_CHECKING:`), module by module.
"""

from __future__ import annotations

import ast
import functools
from dataclasses import dataclass
from pathlib import Path

import pytest

PACKAGE_DIR = Path(__file__).resolve().parents[1] / "sfdet"

# ---------------------------------------------------------------------------------------------------
# The table

LEAF = ["sfdet", "sfdet.errors", "sfdet.device_choices", "sfdet.typed_config", "sfdet.devices", "sfdet.fileio",
        "sfdet.boxes"]

LAYERS: list[tuple[str, list[str]]] = [  # low to high
    ("leaf", LEAF),  # no sfdet imports but each other: errors, config machinery, devices, file writes, boxes
    ("data and models", ["sfdet.data", "sfdet.models", "sfdet.toy", "sfdet.annotations"]),
    ("evaluation", ["sfdet.evaluation"]),
    ("root config", ["sfdet.config"]),  # composes the `data:`, `model:` and `train:` sections
    ("features", ["sfdet.engine", "sfdet.persons", "sfdet.detection", "sfdet.export"]),
    ("prediction", ["sfdet.predict"]),
    ("demo", ["sfdet.demo"]),
    ("command line", ["sfdet.commands", "sfdet.cli", "sfdet.__main__"]),
]

SAME_LAYER: dict[str, set[str]] = {  # unit -> units of its own layer it may import
    **{leaf: set(LEAF) for leaf in LEAF},  # leaf modules may use each other (cycles are checked below)
    "sfdet.models": {"sfdet.data"},  # the registry reads label maps; sfdet.data never imports models
    "sfdet.toy": {"sfdet.data"},  # the toy set is written with sfdet.data's AVA writers
    "sfdet.annotations": {"sfdet.data"},  # labelling-tool imports write sfdet.data's AVA files, read video times
    "sfdet.detection": {"sfdet.engine", "sfdet.persons"},  # the detector trainer: solver, TrainConfig, backends
    "sfdet.__main__": {"sfdet.cli"},
    "sfdet.cli": {"sfdet.commands"},
}

MODULE_EXCEPTIONS: dict[tuple[str, str], str] = {  # (importing module, imported module): why
    ("sfdet.config", "sfdet.engine.config"): "the root config composes the `train:` section (a torch-free "
                                             "dataclass module that imports only leaf modules, checked below)",
}

# The config sections: `sfdet.config` imports them, so they must import nothing but leaf modules.
CONFIG_SECTIONS = ["sfdet.data.config", "sfdet.models.config", "sfdet.engine.config"]

LAYER_OF = {unit: index for index, (_, units) in enumerate(LAYERS) for unit in units}
LAYER_NAME = {unit: name for name, units in LAYERS for unit in units}


# ---------------------------------------------------------------------------------------------------
# Reading the imports


@dataclass(frozen=True)
class Import:
    importer: str  # module name
    target: str  # the sfdet module (or package) it imports
    line: int
    at_import_time: bool  # runs when `importer` is imported (module level, not under TYPE_CHECKING)

    def where(self, root: Path) -> str:
        return f"{module_path(self.importer, root)}:{self.line}"


@functools.lru_cache(maxsize=None)
def module_names(root: Path = PACKAGE_DIR) -> dict[str, Path]:
    """{"sfdet.data.ava": path, "sfdet.data": .../__init__.py, ...} for every .py file under `root`."""
    out = {}
    for path in sorted(root.rglob("*.py")):
        parts = [root.name, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out[".".join(parts)] = path
    return out


def module_path(name: str, root: Path = PACKAGE_DIR) -> str:
    path = module_names(root)[name]
    return path.relative_to(root.parent).as_posix()


def unit_of(module: str) -> str:
    """`sfdet.data.ava` -> `sfdet.data` (its sub-package); `sfdet.config` -> itself; `sfdet` -> itself."""
    return ".".join(module.split(".")[:2])


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _walk(node: ast.AST, at_import_time: bool):
    """(import node, runs at import time) for every import below `node`."""
    for child in ast.iter_child_nodes(node):
        if isinstance(child, (ast.Import, ast.ImportFrom)):
            yield child, at_import_time
        elif isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda)):
            yield from _walk(child, False)
        elif isinstance(child, ast.If) and _is_type_checking(child.test):
            for stmt in child.body:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), False)
            for stmt in child.orelse:
                yield from _walk(ast.Module(body=[stmt], type_ignores=[]), at_import_time)
        else:
            yield from _walk(child, at_import_time)


def read_imports(root: Path = PACKAGE_DIR) -> tuple[list[Import], list[str]]:
    """Every import of a module of the package, resolved to the module it loads; and the unresolvable ones."""
    modules = module_names(root)
    imports, unknown = [], []
    for name, path in modules.items():
        is_package = path.name == "__init__.py"
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node, at_import_time in _walk(tree, True):
            if isinstance(node, ast.Import):
                candidates = [[alias.name] for alias in node.names]
            else:
                if node.level:
                    base = name.split(".") if is_package else name.split(".")[:-1]
                    base = base[: len(base) - (node.level - 1)]
                    module = ".".join(base + ([node.module] if node.module else []))
                else:
                    module = node.module or ""
                # `from pkg import sub` loads the module pkg.sub when there is one, else pkg.
                candidates = [[f"{module}.{alias.name}", module] for alias in node.names]
            for options in candidates:
                if options[0].split(".")[0] != root.name:
                    continue
                found = next((m for m in options if m in modules), None)
                if found is None:
                    unknown.append(f"{module_path(name, root)}:{node.lineno} imports {options[-1]}, "
                                   "which is not a module of the package")
                    continue
                imports.append(Import(name, found, node.lineno, at_import_time))
    return list(dict.fromkeys(imports)), unknown  # `from m import a, b`: one import of m


# ---------------------------------------------------------------------------------------------------
# The rules


def layer_violations(imports: list[Import], root: Path = PACKAGE_DIR) -> list[str]:
    out = []
    for imp in imports:
        source, target = unit_of(imp.importer), unit_of(imp.target)
        if source == target or (imp.importer, imp.target) in MODULE_EXCEPTIONS:
            continue
        if source not in LAYER_OF or target not in LAYER_OF:
            continue  # reported by test_every_module_has_a_layer
        if LAYER_OF[target] < LAYER_OF[source] or target in SAME_LAYER.get(source, set()):
            continue
        relation = "the same layer" if LAYER_OF[target] == LAYER_OF[source] else "a higher layer"
        out.append(f"{imp.where(root)}: {source} ({LAYER_NAME[source]}) imports {imp.target}, "
                   f"{relation} ({LAYER_NAME[target]})")
    return out


def import_cycles(imports: list[Import], root: Path = PACKAGE_DIR) -> list[list[str]]:
    """One cycle (a list of modules, first = last) per strongly connected group of the import-time graph.

    Importing `a.b.c` from outside `a.b` also runs the package `a.b` (its `__init__`): that is an edge too.
    """
    modules = module_names(root)
    graph: dict[str, set[str]] = {m: set() for m in modules}
    for imp in imports:
        if not imp.at_import_time or imp.target == imp.importer:
            continue
        graph[imp.importer].add(imp.target)
        parts = imp.target.split(".")
        for n in range(2, len(parts)):
            parent = ".".join(parts[:n])
            if parent in modules and not (imp.importer + ".").startswith(parent + "."):
                graph[imp.importer].add(parent)

    # Tarjan's strongly connected components, iteratively.
    index, low, on_stack, stack, groups, counter = {}, {}, set(), [], [], [0]
    for start in sorted(graph):
        if start in index:
            continue
        work = [(start, iter(sorted(graph[start])))]
        index[start] = low[start] = counter[0]
        counter[0] += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in index:
                    index[child] = low[child] = counter[0]
                    counter[0] += 1
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
                group = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    group.append(member)
                    if member == node:
                        break
                if len(group) > 1:
                    groups.append(sorted(group))

    cycles = []
    for group in groups:  # a shortest path back to the first member, inside the group
        members, first = set(group), group[0]
        paths, seen, queue = {first: [first]}, {first}, [first]
        cycle = None
        while queue and cycle is None:
            node = queue.pop(0)
            for child in sorted(graph[node] & members):
                if child == first:
                    cycle = paths[node] + [first]
                    break
                if child not in seen:
                    seen.add(child)
                    paths[child] = paths[node] + [child]
                    queue.append(child)
        cycles.append(cycle)
    return cycles


# ---------------------------------------------------------------------------------------------------
# The tests


@pytest.fixture(scope="module")
def imports() -> list[Import]:
    found, unknown = read_imports()
    assert not unknown, "\n".join(unknown)
    return found


def test_the_table_is_consistent():
    assert len(LAYER_OF) == sum(len(units) for _, units in LAYERS), "a unit is in two layers"
    for unit, allowed in SAME_LAYER.items():
        for other in allowed:
            assert LAYER_OF[other] == LAYER_OF[unit], f"SAME_LAYER[{unit}] lists {other}, not of its layer"


def test_every_module_has_a_layer():
    missing = sorted({unit_of(m) for m in module_names()} - set(LAYER_OF))
    assert not missing, f"place these in LAYERS (tests/test_layers.py): {missing}"


def test_no_module_imports_a_higher_layer(imports):
    violations = layer_violations(imports)
    assert not violations, "lower layers import higher ones:\n" + "\n".join(violations)


def test_data_and_models_never_import_the_layers_that_use_them(imports):
    # Implied by the layers; spelled out because it is the rule the rest depends on.
    forbidden = {"sfdet.engine", "sfdet.predict", "sfdet.persons", "sfdet.detection", "sfdet.commands",
                 "sfdet.demo", "sfdet.config", "sfdet.export", "sfdet.evaluation"}
    bad = [f"{imp.where(PACKAGE_DIR)}: imports {imp.target}" for imp in imports
           if unit_of(imp.importer) in ("sfdet.data", "sfdet.models") and unit_of(imp.target) in forbidden]
    assert not bad, "\n".join(bad)


def test_no_library_module_imports_a_command(imports):
    bad = [f"{imp.where(PACKAGE_DIR)}: imports {imp.target}" for imp in imports
           if unit_of(imp.target) == "sfdet.commands"
           and unit_of(imp.importer) not in ("sfdet.commands", "sfdet.cli")]
    assert not bad, "\n".join(bad)


def test_commands_do_not_import_each_other(imports):
    # A helper two commands share belongs in the library, not in one of them.
    bad = [f"{imp.where(PACKAGE_DIR)}: imports {imp.target}" for imp in imports
           if imp.importer.startswith("sfdet.commands.") and imp.target.startswith("sfdet.commands.")]
    assert not bad, "\n".join(bad)


def test_config_sections_import_only_leaf_modules(imports):
    bad = [f"{imp.where(PACKAGE_DIR)}: imports {imp.target}" for imp in imports
           if imp.importer in CONFIG_SECTIONS and unit_of(imp.target) not in LEAF]
    assert not bad, "`sfdet.config` must stay torch-free:\n" + "\n".join(bad)


def test_no_import_cycles(imports):
    cycles = import_cycles(imports)
    assert not cycles, "import cycles:\n" + "\n".join(" -> ".join(cycle) for cycle in cycles)


# The checker itself, on a made-up package.


def _package(tmp_path: Path, files: dict[str, str]) -> Path:
    root = tmp_path / "sfdet"
    for name, text in {"__init__.py": "", **files}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)
    return root


def test_the_checker_finds_upward_imports_lazy_ones_too_and_cycles(tmp_path):
    root = _package(tmp_path, {
        "errors.py": "",
        "data/__init__.py": "",
        "data/ava.py": "from sfdet.errors import X\n\ndef f():\n    from sfdet.engine import trainer\n",
        "engine/__init__.py": "",
        "engine/trainer.py": "from . import solver\nfrom sfdet.data import ava\n",
        "engine/solver.py": "import sfdet.engine.trainer\n",
        "commands/__init__.py": "",
        "commands/train.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from sfdet.commands import x\n",
        "commands/x.py": "from sfdet.commands.train import y\n",
    })
    found, unknown = read_imports(root)
    assert unknown == []
    assert layer_violations(found, root) == [
        "sfdet/data/ava.py:4: sfdet.data (data and models) imports sfdet.engine.trainer, a higher layer (features)"]
    assert import_cycles(found, root) == [["sfdet.engine.solver", "sfdet.engine.trainer", "sfdet.engine.solver"]]
    lazy = [imp for imp in found if imp.importer == "sfdet.commands.train"]
    assert [(imp.target, imp.at_import_time) for imp in lazy] == [("sfdet.commands.x", False)]


def test_the_checker_reports_imports_of_modules_that_do_not_exist(tmp_path):
    root = _package(tmp_path, {"cli.py": "from sfdet.gone import thing\n"})
    assert read_imports(root)[1] == ["sfdet/cli.py:1 imports sfdet.gone, which is not a module of the package"]
