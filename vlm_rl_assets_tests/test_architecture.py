"""The import-linter contracts in pyproject.toml hold, and they do catch a stage package reaching up into the
assets (checked on a copy of the package with one such import added)."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import vlm_rl_assets

ROOT = Path(vlm_rl_assets.__file__).parent.parent
LINT = Path(sys.executable).with_name("lint-imports")


def lint(package_parent: Path) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(LINT), "--config", str(ROOT / "pyproject.toml"), "--no-cache"],
        cwd=package_parent,
        env={"PYTHONPATH": str(package_parent), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_contracts_are_kept() -> None:
    result = lint(ROOT)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "5 kept, 0 broken" in result.stdout


def test_a_store_module_importing_an_asset_module_breaks_the_contracts(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "vlm_rl_assets", tmp_path / "vlm_rl_assets", ignore=shutil.ignore_patterns("__pycache__"))
    with (tmp_path / "vlm_rl_assets" / "store" / "schemas.py").open("a") as module:
        module.write("\nimport vlm_rl_assets.assets.rollouts\n")
    result = lint(tmp_path)
    assert result.returncode == 1
    assert "vlm_rl_assets.store is not allowed to import vlm_rl_assets.assets" in result.stdout
    assert "No cycles are allowed in vlm_rl_assets" in result.stdout
