"""The rules of the house (docs/architecture.md), checked on the source: every import of an
aedetect module points down the layers, no private name crosses a module, and the top of the
package holds plumbing and the documented forwarding paths only."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

import aedetect

PACKAGE = Path(aedetect.__file__).parent

# Lowest first: a module may import from its own group and the groups before it.
LAYERS = ["plumbing", "data", "store", "model", "evaluation", "monitoring", "training", "review",
          "serving", "cli"]
PLUMBING = {"errors", "files", "_imports"}
# Top-level modules that forward a documented import path to its new home, and the two entry points.
FORWARDS = {"hybrid": "model", "mlflow": "serving", "scoring": "serving", "spark": "serving",
            "thresholds": "model"}
ENTRY = {"__init__", "_entry"}
MAX_TOP_LEVEL = 10


def group_of(module: str) -> str:
    """'aedetect.model.detector' -> 'model'; top-level plumbing -> 'plumbing'."""
    parts = module.split(".")
    if len(parts) == 1:
        return "entry"
    name = parts[1]
    if name in PLUMBING:
        return "plumbing"
    if name in FORWARDS or name in ENTRY:
        return "entry"
    return name


def modules() -> dict[str, Path]:
    out = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        out[".".join(rel.parts).removesuffix(".__init__")] = path
    return out


def imports(path: Path, module: str):
    """(imported module, imported names, line) for every import, at any depth of the file."""
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, [], node.lineno
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:  # relative: from the package, node.level - 1 folders up
                parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join(parts + ([base] if base else []))
            yield base, [a.name for a in node.names], node.lineno


def internal_imports():
    known = modules()
    for module, path in known.items():
        for target, names, line in imports(path, module):
            if not target.startswith("aedetect"):
                continue
            # `from aedetect.x import y` where y is a submodule imports aedetect.x.y
            subs = [f"{target}.{n}" for n in names if f"{target}.{n}" in known]
            for t in subs or [target]:
                yield module, t, [n for n in names if f"{target}.{n}" not in known], line


def test_top_level_holds_at_most_ten_modules():
    top = sorted(p.stem for p in PACKAGE.glob("*.py"))
    assert len(top) <= MAX_TOP_LEVEL, top
    assert set(top) <= PLUMBING | ENTRY | set(FORWARDS), set(top) - PLUMBING - ENTRY - set(FORWARDS)


def test_every_group_is_a_known_layer():
    groups = {group_of(m) for m in modules()} - {"entry"}
    assert groups <= set(LAYERS), groups - set(LAYERS)


def test_imports_point_down_the_layers():
    wrong = []
    for module, target, _, line in internal_imports():
        src, dst = group_of(module), group_of(target)
        if src == "entry" or target == "aedetect" or target.split(".")[1] in ENTRY:
            continue  # the package's own __init__ (its version) and the console script
        if dst == "entry":
            wrong.append(f"{module}:{line} imports the forwarding path {target}; use its home")
        elif LAYERS.index(dst) > LAYERS.index(src):
            wrong.append(f"{module}:{line} ({src}) imports {target} ({dst})")
    assert not wrong, "\n".join(wrong)


def test_no_private_name_is_imported_across_modules():
    wrong = [f"{module}:{line} imports {n} from {target}"
             for module, target, names, line in internal_imports()
             for n in names if n.startswith("_") and n != "__version__" and target != "aedetect._imports"]
    assert not wrong, "\n".join(wrong)


def test_no_private_method_is_called_across_modules():
    """`other._name(...)` where `_name` is defined in another aedetect module only: a private
    method used from outside its home (make it public, or move the caller)."""
    trees = {m: ast.parse(p.read_text()) for m, p in modules().items()}
    defined = {m: {n.name for n in ast.walk(t) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
                   and n.name.startswith("_") and not n.name.startswith("__")} for m, t in trees.items()}
    everywhere = set().union(*defined.values())
    wrong = []
    for module, tree in trees.items():
        for node in ast.walk(tree):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in everywhere and node.func.attr not in defined[module]
                    and not (isinstance(node.func.value, ast.Name) and node.func.value.id in ("self", "cls"))):
                wrong.append(f"{module}:{node.lineno} calls {node.func.attr}")
    assert not wrong, "\n".join(wrong)


def test_no_import_cycle_between_modules_at_import_time():
    """Module-level imports only: a cycle there breaks `import` depending on the order."""
    known = modules()
    graph: dict[str, set[str]] = {m: set() for m in known}
    for module, path in known.items():
        tree = ast.parse(path.read_text())
        for node in tree.body:
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("aedetect"):
                for n in node.names:
                    t = f"{node.module}.{n.name}"
                    graph[module].add(t if t in known else node.module)
            elif isinstance(node, ast.Import):
                graph[module].update(a.name for a in node.names if a.name in known)
    state: dict[str, int] = {}

    def visit(m, stack):
        state[m] = 1
        for t in graph.get(m, ()):
            if state.get(t) == 1:
                pytest.fail("import cycle: " + " -> ".join(stack[stack.index(t):] + [t]))
            if t not in state:
                visit(t, stack + [t])
        state[m] = 2

    for m in graph:
        if m not in state:
            visit(m, [m])


@pytest.mark.parametrize("old, new", [("aedetect.thresholds", "aedetect.model.thresholds"),
                                      ("aedetect.hybrid", "aedetect.model.hybrid"),
                                      ("aedetect.scoring", "aedetect.serving.batch"),
                                      ("aedetect.spark", "aedetect.serving.spark"),
                                      ("aedetect.mlflow", "aedetect.serving.mlflow")])
def test_documented_import_paths_forward_to_their_new_home(old, new):
    import importlib

    assert importlib.import_module(old) is importlib.import_module(new)


def test_docs_architecture_lists_the_modules_that_exist():
    """docs/architecture.md's table names every module of every group, and no other."""
    import re

    doc = (Path(__file__).resolve().parents[1] / "docs" / "architecture.md").read_text()
    seen = set()
    for line in doc.splitlines():
        m = re.match(r"\| (\w+) \| `(\w+)/` \|.*\| (.*) \|$", line)
        if not m or m.group(1) == "plumbing":
            continue
        listed = set(re.findall(r"`(\w+)`", m.group(3)))
        actual = {p.stem for p in (PACKAGE / m.group(2)).glob("*.py")} - {"__init__", "__main__"}
        assert listed == actual, (m.group(2), "undocumented:", actual - listed, "gone:", listed - actual)
        seen.add(m.group(1))
    assert seen == set(LAYERS) - {"plumbing"}
