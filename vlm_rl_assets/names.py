"""The asset names, each defined once: the graph's assets, and the store's tables and checkpoints, which are named
after the asset that writes them."""

BASE_MODEL = "base_model"
PROMPT_MIXTURE = "prompt_mixture"
ROLLOUTS = "rollouts"
FILTERED_ROLLOUTS = "filtered_rollouts"
JUDGED_PAIRS = "judged_pairs"
DPO_CHECKPOINT = "dpo_checkpoint"  # a category's model under training.algorithm: dpo
GRPO_CHECKPOINT = "grpo_checkpoint"  # the same step under training.algorithm: grpo
BENCHMARK_SCORES = "benchmark_scores"
POLICY_CHECKPOINT = "policy_checkpoint"  # the release candidate: every category at once, DPO or GRPO
RELEASE_REPORT = "release_report"
ROUND_GAIN = "round_gain"
PROMOTED_POLICY = "promoted_policy"
EXTERNAL_BENCHMARKS = "external_benchmarks"

# the checks
JUDGE_CALIBRATION = "judge_calibration"
PROMOTION_GATE = "promotion_gate"
GAMING_MONITOR = "gaming_monitor"
TRAINING_HEALTH = "training_health"

POLICY_KEY = "mixture"  # the store key of the release candidate's checkpoint: policy_checkpoint/mixture

CATEGORY_CHECKPOINT = {"dpo": DPO_CHECKPOINT, "grpo": GRPO_CHECKPOINT}  # a category's model, by training.algorithm
