"""The asset graph as lists: what the code location serves, what a category run selects, and what
`dg.materialize` takes (checks run with the assets they check)."""

from vlm_rl_assets.assets.base_model import base_model
from vlm_rl_assets.assets.benchmark_scores import benchmark_scores
from vlm_rl_assets.assets.dpo_checkpoint import dpo_checkpoint
from vlm_rl_assets.assets.external_benchmarks import external_benchmarks
from vlm_rl_assets.assets.filtered_rollouts import filtered_rollouts
from vlm_rl_assets.assets.gaming_monitor import category_gaming_monitor, release_gaming_monitor
from vlm_rl_assets.assets.judge_calibration import judge_calibration
from vlm_rl_assets.assets.judged_pairs import judged_pairs
from vlm_rl_assets.assets.policy_checkpoint import policy_checkpoint
from vlm_rl_assets.assets.promoted_policy import promoted_policy
from vlm_rl_assets.assets.promotion_gate import promotion_gate
from vlm_rl_assets.assets.prompt_mixture import prompt_mixture
from vlm_rl_assets.assets.release_report import release_report
from vlm_rl_assets.assets.rollouts import rollouts
from vlm_rl_assets.assets.round_gain import round_gain
from vlm_rl_assets.partitions import ROUNDS

CATEGORY_ASSETS = [prompt_mixture, rollouts, filtered_rollouts, judged_pairs, dpo_checkpoint, benchmark_scores]
ROUND_ASSETS = [round_gain] if ROUNDS > 1 else []  # with rounds: the stop rule's measure, what round r+1 waits for
RELEASE_ASSETS = [policy_checkpoint, release_report, *ROUND_ASSETS]  # the candidate, its report (experiments stop here)
PROMOTION_ASSETS = [promoted_policy]  # the release job's last step: promote only what passed the gate
# judge_calibration is blocking: a judge that fails calibration stops judged_pairs; promotion_gate reports the rule
# promoted_policy acts on (not blocking: an experiment's release_report stands whether or not it would be promoted);
# gaming_monitor warns when the trained model's responses game the judge more than the base model's
ASSET_CHECKS = [judge_calibration, promotion_gate, category_gaming_monitor, release_gaming_monitor]
ASSETS = [base_model, *CATEGORY_ASSETS, *RELEASE_ASSETS, *PROMOTION_ASSETS, external_benchmarks]
ALL_ASSETS = [*ASSETS, *ASSET_CHECKS]
