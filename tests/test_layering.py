"""The one-way layering ``sw`` → ``hw`` → ``verif``: no layer imports one above it.

``sw/`` (host software and the contract) imports neither the hardware generator nor the
simulators; ``hw/`` (Amaranth) may import ``sw`` but never ``verif``; ``verif/`` may import both.
Two checks: every ``sw`` module, imported on its own in a fresh interpreter, leaves none of the
upper layers in ``sys.modules`` (this sees what its imports import in turn); and no ``import``
statement in ``sw/`` or ``hw/`` names a layer above it (this sees imports inside functions too).
"""

from __future__ import annotations

import ast
import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

import sw

ROOT = Path(__file__).resolve().parents[1]

#: Top-level packages the bottom layer must never load.
ABOVE_SW = ("hw", "verif", "amaranth", "cocotb", "cocotbext", "cocotb_tools")
#: Top-level packages the hardware layer must never import.
ABOVE_HW = ("verif", "cocotb", "cocotbext", "cocotb_tools")

SW_MODULES = ["sw"] + [info.name for info in pkgutil.walk_packages(sw.__path__, prefix="sw.")]

#: Imports the module named by argv[1] and prints the top-level packages then loaded.
PROBE = ("import importlib, sys; importlib.import_module(sys.argv[1]); "
         "print(' '.join(sorted({name.partition('.')[0] for name in sys.modules})))")


@pytest.fixture(scope="module")
def loaded() -> dict[str, set[str]]:
    """Per ``sw`` module, the top-level packages in ``sys.modules`` after importing it alone.

    The interpreters run at once, one per module, so the whole check takes about as long as
    the slowest import.
    """
    procs = {name: subprocess.Popen([sys.executable, "-c", PROBE, name], cwd=ROOT,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
             for name in SW_MODULES}
    result = {}
    for name, proc in procs.items():
        out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, f"import {name} failed:\n{err}"
        result[name] = set(out.split())
    return result


def test_sw_has_modules():
    assert {"sw.driver", "sw.regmap", "sw.config", "sw.formats"} <= set(SW_MODULES)


@pytest.mark.parametrize("name", SW_MODULES)
def test_importing_sw_module_loads_no_upper_layer(loaded, name):
    above = sorted(loaded[name] & set(ABOVE_SW))
    assert not above, f"import {name} loads {', '.join(above)}"


def imported_packages(path: Path) -> set[str]:
    """Top-level packages named by the absolute imports of ``path``, anywhere in the file."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name.partition(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0:
            names.add(node.module.partition(".")[0])
    return names


@pytest.mark.parametrize("package, forbidden", [("sw", ABOVE_SW), ("hw", ABOVE_HW)])
def test_no_import_statement_reaches_up(package, forbidden):
    files = sorted((ROOT / package).rglob("*.py"))
    assert files
    bad = {str(path.relative_to(ROOT)): sorted(imported_packages(path) & set(forbidden))
           for path in files}
    assert not {path: names for path, names in bad.items() if names}
