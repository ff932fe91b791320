"""environment.yml and pyproject.toml must describe the same environment."""

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


def test_dependencies_have_ranges_not_exact_pins():
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text())
    requirements = list(pyproject["project"]["dependencies"])
    for extra in pyproject["project"]["optional-dependencies"].values():
        requirements += extra
    assert not [r for r in requirements if "==" in r]
    assert any(r.startswith("tensorflow>=2.16") for r in requirements)
