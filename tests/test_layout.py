"""The package's layout: notebooks import the library, never the course
tooling, and no helpers module imports one that imports it back."""

import ast
import json
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
HELPERS = ROOT / "helpers"


def module_name(path: Path) -> str:
    parts = path.relative_to(ROOT).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def helpers_imports(source: str) -> set[str]:
    """The helpers modules a source imports (``from helpers.x import y`` and
    ``from helpers import y`` both count ``y`` if it is a module)."""
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            if node.module.startswith("helpers"):
                found.add(node.module)
                found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("helpers")}
    return found


MODULES = {module_name(path): path for path in HELPERS.rglob("*.py")}


def import_graph() -> dict[str, set[str]]:
    return {
        name: {m for m in helpers_imports(path.read_text()) if m in MODULES and m != name}
        for name, path in MODULES.items()
    }


def test_no_import_cycle_between_helpers_modules():
    graph = import_graph()
    # `helpers` (the package) is imported by every submodule's parent import;
    # cycles are looked for among the modules themselves.
    graph = {name: edges - {"helpers"} for name, edges in graph.items() if name != "helpers"}

    def reaches(start, target, seen=()):
        return any(
            node == target or (node not in seen and reaches(node, target, (*seen, node)))
            for node in graph.get(start, ())
        )

    cycles = [name for name in graph if reaches(name, name)]
    assert not cycles, f"modules in an import cycle: {cycles}"


def test_the_library_never_imports_the_course_tooling():
    library = [name for name in MODULES if not name.startswith("helpers.course")]
    graph = import_graph()
    offenders = {
        name: sorted(m for m in graph[name] if m.startswith("helpers.course"))
        for name in library
        if name != "helpers.__main__"  # the command line's entry point
    }
    assert not {name: m for name, m in offenders.items() if m}


def test_no_notebook_imports_the_course_tooling():
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        imported = helpers_imports(source)
        assert imported, f"{notebook.name} imports nothing from helpers"
        assert not [m for m in imported if m.startswith("helpers.course")], notebook.name


#: One module per topic: plumbing that serves one topic and imports only the
#: library. What two topics share belongs in the library.
TOPIC_MODULES = {
    f"helpers.{name}"
    for name in ("clipping", "transfer", "optimizers", "schedules", "mysteries", "regularization")
}


def test_no_topic_module_imports_another():
    graph = import_graph()
    assert TOPIC_MODULES <= set(MODULES), "a topic module was renamed: update TOPIC_MODULES"
    offenders = {name: sorted(graph[name] & TOPIC_MODULES) for name in TOPIC_MODULES}
    assert not {name: m for name, m in offenders.items() if m}


def test_no_notebook_imports_a_topic_module_of_another_topic():
    """A notebook imports at most one topic module: its own."""
    for notebook in sorted((ROOT / "notebooks").glob("*.ipynb")):
        cells = json.loads(notebook.read_text())["cells"]
        source = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "code")
        topics = helpers_imports(source) & TOPIC_MODULES
        assert len(topics) <= 1, f"{notebook.name} imports {sorted(topics)}"


def test_tests_import_no_private_names():
    for path in sorted((ROOT / "tests").rglob("test_*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("helpers"):
                private = [a.name for a in node.names if a.name.startswith("_")]
                assert not private, f"{path.name} imports {private} from {node.module}"
