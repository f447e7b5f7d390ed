"""How torch's OpenMP threads wait: sleeping at once where processes may share cores (the package's default), spinning
a few milliseconds in the demo, which runs one step at a time in its own process. Both are environment variables
libgomp reads when torch loads, so they must be set before that."""

import json
import os
import subprocess
import sys

CHECK = (
    "import json, os, sys; import {module}; "
    "print(json.dumps({{'torch_loaded': 'torch' in sys.modules, 'policy': os.environ.get('OMP_WAIT_POLICY'), "
    "'spin': os.environ.get('GOMP_SPINCOUNT')}}))"
)


def environment_after_import(module: str, **env: str) -> dict:
    clean = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run(
        [sys.executable, "-c", CHECK.format(module=module)], env=clean | env, capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_the_package_makes_openmp_threads_sleep_and_the_demo_lets_them_spin_before_torch_loads():
    assert environment_after_import("vlm_rl_assets.definitions") == {
        "torch_loaded": False,
        "policy": "PASSIVE",
        "spin": None,
    }
    assert environment_after_import("vlm_rl_assets.demo") == {
        "torch_loaded": False,
        "policy": "PASSIVE",
        "spin": "300000",
    }


def test_an_explicit_value_in_the_environment_wins():
    assert environment_after_import("vlm_rl_assets.demo", GOMP_SPINCOUNT="0", OMP_WAIT_POLICY="ACTIVE") == {
        "torch_loaded": False,
        "policy": "ACTIVE",
        "spin": "0",
    }
