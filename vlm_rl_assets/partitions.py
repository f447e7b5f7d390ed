"""One partition per task category, read from the pipeline config, so any category reruns alone."""

import dagster as dg

from vlm_rl_assets.config import load_config

category_partitions = dg.StaticPartitionsDefinition(list(load_config().categories))
