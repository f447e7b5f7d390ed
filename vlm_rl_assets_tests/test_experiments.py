"""Experiments: config variants through the real assets into their own stores, resumable, and the findings page."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from vlm_rl_assets.research.experiments import EXPERIMENTS, Experiment, Variant
from vlm_rl_assets.research.findings import write_findings
from vlm_rl_assets.research.runner import RESULTS, run_experiment, variant_resource
from vlm_rl_assets.research.variants import with_overrides
from vlm_rl_assets.resources import PipelineResource
from vlm_rl_assets.store import schemas

CONFIG = Path(__file__).parent / "data" / "two_categories.yaml"
TINY = Experiment(
    "tiny",
    "ablation_tiny",
    "Does beta matter on count?",
    "It does.",
    ("count",),
    (Variant("low"), Variant("high", {"categories.count.beta": 2.0})),
)


def test_overrides_set_nested_keys_and_refuse_paths_through_values():
    raw = {"training": {"seed": 0}, "categories": {"count": {"beta": 0.3}}}
    out = with_overrides(raw, {"training.seed": 2, "categories.count.beta": 1.0, "eval.samples_per_prompt": 32})
    assert out == {"training": {"seed": 2}, "categories": {"count": {"beta": 1.0}}, "eval": {"samples_per_prompt": 32}}
    assert raw["training"]["seed"] == 0  # a copy
    with pytest.raises(ValueError, match="training.seed is 0, not a mapping"):
        with_overrides(raw, {"training.seed.x": 1})


def test_every_experiment_variant_is_a_valid_config(tmp_path):
    main = PipelineResource(storage_root=str(tmp_path))
    (tmp_path / "base_model" / "embedded").mkdir(parents=True)
    for name, text in (("config.json", "{}"), ("preprocessor_config.json", "{}"), ("chat_template.jinja", "{{ x }}")):
        (tmp_path / "base_model" / "embedded" / name).write_text(text)  # a folder base_model_dir accepts
    for experiment in EXPERIMENTS.values():
        for variant in experiment.variants:
            config = variant_resource(main, experiment, variant).config()  # validates
            assert config.storage.root.endswith(f"experiments/{experiment.name}/{variant.name}")
            assert config.model.path == str(tmp_path / "base_model" / "embedded")
            # sweeps choose on dev; only the report of the chosen defaults reads bench
            assert config.eval.split == ("bench" if experiment.name == "seeds" else "dev")


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    home = tmp_path_factory.mktemp("dagster_home")
    main = PipelineResource(config_path=str(CONFIG), storage_root=str(root))
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        results = run_experiment(TINY, main, instance, log=lambda line: None)
        runs = len(instance.get_run_records())
        again = run_experiment(TINY, main, instance, log=lambda line: None)
        yield root, results, again, runs, len(instance.get_run_records()), rollout_metadata(instance)


def rollout_metadata(instance: dg.DagsterInstance) -> dict[str, dict]:
    """The rollouts materialization's metadata of each variant's run."""
    records = instance.fetch_materializations(dg.AssetKey("rollouts"), limit=10).records
    return {
        instance.get_run_by_id(r.run_id).tags["variant"]: {k: v.value for k, v in r.asset_materialization.metadata.items()}
        for r in records
    }


def test_variants_run_into_their_own_stores_from_one_base_model(tiny_run):
    root, results, _, runs, _, _ = tiny_run
    assert runs == 3  # base_model once, then the count category once per variant
    for variant, beta in (("low", 0.3), ("high", 2.0)):
        raw = yaml.safe_load((root / "experiments" / "tiny" / variant / "config" / f"tiny-{variant}.yaml").read_text())
        assert raw["categories"]["count"]["beta"] == beta
        assert raw["model"]["path"] == str(root / "base_model" / "embedded")
        assert (root / "experiments" / "tiny" / variant / "dpo_checkpoint" / "count").is_dir()
    stored = pl.read_parquet(root / RESULTS / "tiny.parquet")
    assert_frame_equal(stored, results)
    got = set(results.select("variant", "model", "metric").unique().iter_rows())
    for variant in ("low", "high"):
        assert {(variant, "base", "accuracy"), (variant, "dpo", "accuracy"), (variant, "dpo", "delta"),
                (variant, "dpo", "pass@6"), (variant, "dpo", "rewards/accuracies"), (variant, "dpo", "train_steps"),
                (variant, "base", "response_words")} <= got  # fmt: skip
    base = results.filter((pl.col("model") == "base") & (pl.col("metric") == "accuracy"))
    assert base["value"].n_unique() == 1  # both variants benchmark the same base on the same prompts
    prompts = pl.read_parquet(root / "experiments" / "tiny" / "low" / "prompt_mixture" / "count.parquet")
    verdicts = pl.read_parquet(root / "experiments" / "tiny" / "low" / "benchmark_verdicts" / "count.parquet")
    measured = prompts.join(verdicts.select("prompt_id").unique(), on="prompt_id")
    assert measured["split"].unique().to_list() == ["dev"]  # a sweep never reads bench


def test_a_variant_that_changes_only_training_reuses_the_first_variants_rollouts(tiny_run):
    root, _, _, _, _, rollouts = tiny_run
    assert rollouts["low"]["shards_generated"] == 3 and rollouts["low"]["shards_reused"] == 0
    assert rollouts["high"]["shards_generated"] == 0 and rollouts["high"]["shards_reused"] == 3
    tables = [pl.read_parquet(root / "experiments" / "tiny" / v / "rollouts" / "count.parquet") for v in ("low", "high")]
    assert_frame_equal(*tables)


def test_a_rerun_resumes_without_running_finished_categories(tiny_run):
    _, results, again, runs, runs_after, _ = tiny_run
    assert runs_after == runs
    assert_frame_equal(again, results)


def fake_results(experiment: Experiment) -> pl.DataFrame:
    """Numbers in the recipe's direction for every experiment: ground truth saturates and gains less, chain of
    thought and DPO gain more, base catches up at large k, long answers prefer the higher beta."""
    rows = []
    for v, variant in enumerate(experiment.variants):
        for c, category in enumerate(experiment.categories):
            good = {"ground_truth": 0.0, "short_answer": 0.01, "sft_on_chosen": 0.005}.get(variant.name, 0.04)
            if variant.name.startswith("beta_"):
                beta = float(variant.name.removeprefix("beta_"))
                good = 0.05 - abs(beta - (0.05 if c < 2 else 1.0)) / 20
            rows += [
                (variant.name, category, "base", "accuracy", None, 0.5),
                (variant.name, category, "dpo", "accuracy", None, 0.5 + good),
                (variant.name, category, "dpo", "delta", None, good),
                (variant.name, category, "base", "response_words", None, 2.0 + 3 * c),
                (variant.name, category, "dpo", "response_words", None, 2.0 + 3 * c),
                (variant.name, category, "dpo", "saturation_step", None, 5.0 if variant.name == "ground_truth" else None),
            ]
            rows += [(variant.name, category, "dpo", "rewards/accuracies", s, min(1.0, 0.5 + s / 10)) for s in (5, 10)]
            rows += [(variant.name, category, m, f"pass@{k}", None, 0.5 + k / 10 + (good if m == "dpo" else 0) / k) for k in range(1, 5) for m in ("base", "dpo")]
            if experiment.release:
                rows.append((variant.name, category, "policy", "delta", None, 0.04))
        if experiment.release:
            rows.append((variant.name, "overall", "policy", "delta", None, 0.04))
    df = pl.DataFrame(rows, schema=["variant", "category", "model", "metric", "step", "value"], orient="row")
    return df.with_columns(
        experiment=pl.lit(experiment.name),
        ci_low=pl.when(pl.col("metric") == "delta").then(pl.col("value") - 0.02),
        ci_high=pl.when(pl.col("metric") == "delta").then(pl.col("value") + 0.02),
    ).select(list(schemas.EXPERIMENT_RESULTS)).cast(schemas.EXPERIMENT_RESULTS)


def test_findings_page_shows_each_experiment_with_its_verdict_and_plots(tmp_path):
    results = {name: fake_results(e) for name, e in EXPERIMENTS.items() if name != "answer_format"}
    plots = write_findings(results, tmp_path / "findings.md")
    page = (tmp_path / "findings.md").read_text()
    assert page.count("**Direction held**") == len(results)
    assert "Not run yet: `python -m vlm_rl_assets.experiments run answer_format`" in page
    assert page.count("Measured on the `dev` split") == len(EXPERIMENTS) - 1  # the seed repeats report bench
    assert page.count("Measured on the `bench` split") == 1
    assert {p.name for p in plots} == {
        "chosen_source_rewards_accuracies.png", "pass_at_k.png", "beta_sweep.png", "controls_deltas.png"
    }  # fmt: skip
    assert all(p.read_bytes().startswith(b"\x89PNG") and f"(findings/{p.name})" in page for p in plots)


def test_findings_say_plainly_when_a_direction_did_not_hold(tmp_path):
    flipped = fake_results(EXPERIMENTS["controls"]).with_columns(
        value=pl.when((pl.col("variant") == "sft_on_chosen") & (pl.col("metric") == "delta")).then(0.2).otherwise("value")
    )
    write_findings({"controls": flipped}, tmp_path / "findings.md")
    assert "**Direction did not hold**: a preference loss (DPO or DPO + SFT) beat SFT" in (tmp_path / "findings.md").read_text()


def test_ground_truth_that_gains_less_without_saturating_is_not_called_the_recipes_direction(tmp_path):
    never_saturates = fake_results(EXPERIMENTS["chosen_source"]).with_columns(
        value=pl.when(pl.col("metric") == "saturation_step").then(None).otherwise("value")
    )
    write_findings({"chosen_source": never_saturates}, tmp_path / "findings.md")
    page = (tmp_path / "findings.md").read_text()
    assert "**Direction did not hold**: ground truth as chosen saturated" in page
    assert "gained less in 3 of 3, saturated in 0 of 3" in page
