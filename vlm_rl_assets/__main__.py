"""The project's command line:

  python -m vlm_rl_assets plan [--config PATH]   every stage's peak memory per GPU, whether it fits, what would make it

The config is `--config`, else `$VLM_RL_CONFIG`, else the bundled default. A config whose plan does not fit is
printed here with the changes that make it fit (loading it anywhere else refuses it with the same numbers); the exit
status is then 1.
"""

from __future__ import annotations

import argparse

from vlm_rl_assets.config import configured
from vlm_rl_assets.planning.report import plan_text


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m vlm_rl_assets", description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    plan = commands.add_parser("plan", help="the memory plan of the config's model, settings and resources")
    plan.add_argument("--config", help="pipeline YAML (default: $VLM_RL_CONFIG, else the bundled default)")
    args = parser.parse_args(argv)
    config = configured(args.config, check_memory=False)
    memory = config.plan_or_why()
    if isinstance(memory, str):
        print(f"No memory plan: {memory}")
        return 1
    print(plan_text(memory))
    return 0 if memory.fits else 1


if __name__ == "__main__":
    raise SystemExit(main())
