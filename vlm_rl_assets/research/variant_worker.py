"""One experiment variant in its own process, so its config's `rounds.count` becomes the partitions (read from the
config when the assets are imported): what the experiment runner starts for a variant whose round count is not its.

    VLM_RL_CONFIG=<variant config> python -m vlm_rl_assets.research.variant_worker <variant config>.job.json

The job file (`variant_run.VariantJob`, written beside the variant's config) names the experiment, the variant and
the runner's Dagster instance, where this process records the variant's runs as the runner would.
"""

import sys
from pathlib import Path

from vlm_rl_assets.research.variant_run import VariantJob, run_variant
from vlm_rl_assets.resources import PipelineResource


def main(job_file: str) -> None:
    job = VariantJob.read(Path(job_file))
    with job.open_instance() as instance:
        run_variant(job.experiment, job.variant, PipelineResource(config_path=job.config_path), instance, print)


if __name__ == "__main__":
    main(sys.argv[1])
