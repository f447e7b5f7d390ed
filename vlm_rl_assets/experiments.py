"""The research CLI: `python -m vlm_rl_assets.experiments run all | report` (see research/runner.py)."""

import argparse
import sys
from pathlib import Path

import dagster as dg

from vlm_rl_assets.config import configured
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.research.experiments import EXPERIMENTS
from vlm_rl_assets.research.findings import write_findings
from vlm_rl_assets.research.runner import __doc__ as USAGE
from vlm_rl_assets.research.runner import run_experiment, stored_results


def main() -> None:
    parser = argparse.ArgumentParser(description=USAGE, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("run", help="run experiments (resumes unfinished ones)")
    run.add_argument("names", nargs="+", choices=[*EXPERIMENTS, "all"])
    run.add_argument("--variants", default="*", help="only the variants whose names match this glob, e.g. '*_seed0'")
    report = commands.add_parser("report", help="write docs/findings.md from the stored results")
    report.add_argument("--out", default="docs/findings.md")
    args = parser.parse_args()
    main_resource = PipelineResource(configured())
    if args.command == "run":
        names = list(EXPERIMENTS) if "all" in args.names else args.names
        instance = dg.DagsterInstance.get()
        for name in names:
            run_experiment(EXPERIMENTS[name], main_resource, instance, only=args.variants)
        return
    results, items = stored_results(main_resource)
    written = write_findings(results, Path(args.out), items)
    print(f"wrote {args.out} and {len(written)} plots", file=sys.stderr)


if __name__ == "__main__":
    main()
