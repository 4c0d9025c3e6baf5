"""The torch line: the dashboard, the store, the steering core, the advisor, the CLI and
``tiller.run`` load without torch; only the engine, the models and the data need it.

Each check runs in a fresh interpreter, since this test process may have loaded torch already.
"""

import json
import subprocess
import sys

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
TORCH_FREE = ["tiller.dashboard", "tiller.store", "tiller.trainer.steering", "tiller.trainer.advisor",
              "tiller.trainer.cli", "tiller.trainer.integrations"]
TORCH_SIDE = ["tiller.trainer.engine", "tiller.trainer.models", "tiller.trainer.data"]
NOT_MODULES = {"tiller.dashboard.app"}  # the Streamlit script: it draws the page when run, not a module to import

IMPORT_ALL = """
import importlib, json, pkgutil, sys
imported = []
walk = sys.argv[1] == "walk"
for name in sys.argv[2:]:
    package = importlib.import_module(name)
    imported.append(name)
    for info in pkgutil.walk_packages(package.__path__, name + ".") if walk else []:
        if info.name in {not_modules!r} or info.name.startswith("tiller.dashboard.app_pages."):
            continue
        importlib.import_module(info.name)
        imported.append(info.name)
print(json.dumps({{"imported": imported, "torch": sorted(m for m in ("torch", "timm") if m in sys.modules),
                  "bare": sorted(m for m in ("trainer", "store", "dashboard") if m in sys.modules)}}))
"""


def import_in_fresh_process(packages: list[str], walk: bool = True) -> dict:
    """Import ``packages`` (and every module in them, with ``walk``) in a new interpreter, from the
    checkout's root (where bare ``trainer/``, ``store/`` and ``dashboard/`` folders would be
    importable by mistake)."""
    script = IMPORT_ALL.format(not_modules=NOT_MODULES)
    done = subprocess.run([sys.executable, "-c", script, "walk" if walk else "only", *packages], cwd=ROOT, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_dashboard_store_steering_advisor_and_cli_never_import_torch():
    result = import_in_fresh_process(TORCH_FREE)
    assert "tiller.trainer.steering.review" in result["imported"]  # the walk found the modules
    assert "tiller.dashboard.steering" in result["imported"]
    assert "tiller.trainer.advisor.service" in result["imported"]
    assert result["torch"] == [], f"imported torch-side modules: {result['torch']}"


def test_import_tiller_loads_no_torch():
    result = import_in_fresh_process(["tiller", "tiller.__main__"], walk=False)  # tiller.run and the CLI's entry
    assert result["torch"] == []


@pytest.mark.parametrize("package", TORCH_SIDE)
def test_the_torch_side_imports(package):
    """The other side of the line: every module of the engine, the models and the data loads."""
    result = import_in_fresh_process([package])
    assert result["torch"], f"{package} loaded without torch: is it on the right side of the line?"
    assert result["bare"] == []


def test_every_module_is_reached_through_tiller_only():
    """No module imports a bare ``trainer``, ``store`` or ``dashboard`` package (which only the
    checkout has: from a wheel it would be a user's own file, or nothing)."""
    result = import_in_fresh_process(["tiller", *TORCH_FREE, *TORCH_SIDE])
    assert result["bare"] == []
