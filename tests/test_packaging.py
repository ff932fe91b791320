"""environment.yml and pyproject.toml must describe the same environment."""

import ast
import json
import re
import sys
from pathlib import Path

import yaml

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10
    import tomli as tomllib

ROOT = Path(__file__).resolve().parent.parent


def test_environment_yml_installs_the_project_with_its_test_extra():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    environment = yaml.safe_load((ROOT / "environment.yml").read_text())
    deps = environment["dependencies"]
    pip_section = next(d["pip"] for d in deps if isinstance(d, dict))
    extras = set(pyproject["project"]["optional-dependencies"])
    assert any(re.fullmatch(r"(--editable|-e) \.\[(\w+)\]", line) for line in pip_section)
    installed_extra = re.search(r"\[(\w+)\]", pip_section[0]).group(1)
    assert installed_extra in extras
    python = next(d for d in deps if isinstance(d, str) and d.startswith("python"))
    assert python.removeprefix("python") == pyproject["project"]["requires-python"]


def requirement_names(pyproject, extra=None):
    requirements = list(pyproject["project"]["dependencies"])
    if extra:
        requirements += pyproject["project"]["optional-dependencies"][extra]
    return {re.split(r"[<>=!~;\[ ]", r, maxsplit=1)[0].lower(): r for r in requirements}


def test_dependencies_have_ranges_not_exact_pins():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = requirement_names(pyproject, "test")
    assert not [r for r in requirements.values() if "==" in r]
    assert all(re.search(r">=\d", r) for r in requirements.values()), "give a lower bound"


# The name an import uses, where it differs from the package that provides it.
PACKAGE_OF = {"sklearn": "scikit-learn", "yaml": "pyyaml", "IPython": "ipykernel", "PIL": "pillow"}


def third_party_imports(source: str) -> set[str]:
    modules = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            modules |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            modules.add(node.module.split(".")[0])
    return {m for m in modules if m not in sys.stdlib_module_names and m != "helpers"}


def test_every_package_the_course_imports_is_declared():
    """helpers/ and the notebooks import nothing that a fresh install lacks."""
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    declared = requirement_names(pyproject)
    sources = [path.read_text() for path in (ROOT / "helpers").rglob("*.py")]
    for notebook in (ROOT / "notebooks").glob("*.ipynb"):
        cells = json.loads(notebook.read_text())["cells"]
        sources += ["".join(c["source"]) for c in cells if c["cell_type"] == "code"]
    imported = set().union(*(third_party_imports(source) for source in sources))
    assert {"keras", "tensorflow", "numpy"} <= imported
    missing = {m for m in imported if PACKAGE_OF.get(m, m).lower() not in declared}
    assert not missing, f"imported but not in pyproject.toml's dependencies: {missing}"
