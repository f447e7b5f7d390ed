"""Experiments: config variants through the real assets into their own stores, resumable, and the findings page."""

from __future__ import annotations

import re
from pathlib import Path

import dagster as dg
import polars as pl
import pytest
import yaml
from polars.testing import assert_frame_equal

from vlm_rl_assets.config import configured
from vlm_rl_assets.orchestration.resources import PipelineResource
from vlm_rl_assets.research.experiments import COSTS, EXPERIMENTS, SEEDS, Experiment, Variant
from vlm_rl_assets.research.findings import _noise_line, _table, paired_gaps, write_findings
from vlm_rl_assets.research.runner import ITEMS, RESULTS, run_experiment, variant_resource
from vlm_rl_assets.research.variants import with_overrides
from vlm_rl_assets.store import schemas
from vlm_rl_assets.store.base import round_key

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


REPORTS = ("seeds", "rounds", "grpo_vs_dpo")  # measured on bench; every other experiment chooses on dev


@pytest.fixture(scope="module")
def variant_configs(tmp_path_factory) -> tuple[Path, dict[tuple[str, str], object]]:
    """The main storage root, and every experiment variant's validated config by (experiment, variant)."""
    tmp_path = tmp_path_factory.mktemp("variants")
    main = PipelineResource(configured(), str(tmp_path))
    (tmp_path / "base_model" / "embedded").mkdir(parents=True)
    for name, text in (("config.json", "{}"), ("preprocessor_config.json", "{}"), ("chat_template.jinja", "{{ x }}")):
        (tmp_path / "base_model" / "embedded" / name).write_text(text)  # a folder base_model_dir accepts
    return tmp_path, {
        (experiment.name, variant.name): variant_resource(main, experiment, variant).config  # validates
        for experiment in EXPERIMENTS.values()
        for variant in experiment.variants
    }


def test_every_experiment_variant_is_a_valid_config(variant_configs):
    tmp_path, configs = variant_configs
    for (experiment, variant), config in configs.items():
        assert config.storage.root.endswith(f"experiments/{experiment}/{variant}")
        assert config.model.path == str(tmp_path / "base_model" / "embedded")
        # sweeps choose on dev; only the reports read bench
        assert config.eval.split == ("bench" if experiment in REPORTS else "dev")
        if EXPERIMENTS[experiment].per_category:  # their per-category results are one round's
            assert config.rounds.count == 1


def test_compared_arms_sample_equal_tokens_and_run_every_round(variant_configs):
    _, configs = variant_configs
    budgets = {}  # completions per train prompt over every round, cut at the same length
    for (experiment, variant), config in configs.items():
        if experiment not in ("rounds", "grpo_vs_dpo"):
            continue
        assert config.rounds.stop_early is False and config.eval.samples_per_prompt == 1
        samples = {c.samples_per_prompt for c in config.categories.values()}
        assert len(samples) == 1 and {c.n_train for c in config.categories.values()} == {1000}
        if config.training.algorithm == "grpo":  # an epoch samples num_generations per prompt of the mixture
            grpo = config.training.grpo
            assert config.rounds.count == 1 and grpo.max_completion_length == config.engine.max_new_tokens
            budget = config.training.epochs * grpo.num_generations
        else:
            budget = config.rounds.count * samples.pop()
        budgets.setdefault(experiment, {})[variant] = (budget, config.engine.max_new_tokens)
    assert set(budgets["rounds"].values()) == {(24, 40)} and len(budgets["rounds"]) == 3 * len(SEEDS)
    assert set(budgets["grpo_vs_dpo"].values()) == {(16, 40)} and len(budgets["grpo_vs_dpo"]) == 2 * len(SEEDS)
    rounds = {variant: configs[("rounds", variant)].rounds.count for variant in budgets["rounds"]}
    assert sorted(set(rounds.values())) == [1, 2, 3]


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    root = tmp_path_factory.mktemp("store")
    home = tmp_path_factory.mktemp("dagster_home")
    main = PipelineResource.from_file(str(CONFIG), str(root))
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        results = run_experiment(TINY, main, instance, log=lambda line: None)
        runs = len(instance.get_run_records())
        again = run_experiment(TINY, main, instance, log=lambda line: None)
        yield root, results, again, runs, len(instance.get_run_records()), rollout_metadata(instance)


def rollout_metadata(instance: dg.DagsterInstance) -> dict[str, dict]:
    """The rollouts materialization's metadata of each variant's run."""
    records = instance.fetch_materializations(dg.AssetKey("rollouts"), limit=10).records
    return {
        instance.get_run_by_id(r.run_id).tags["variant"]: {
            k: v.value for k, v in r.asset_materialization.metadata.items()
        }
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
        assert {
            (variant, "base", "accuracy"),
            (variant, "dpo", "accuracy"),
            (variant, "dpo", "delta"),
            (variant, "dpo", "pass@6"),
            (variant, "dpo", "rewards/accuracies"),
            (variant, "dpo", "train_steps"),
            (variant, "base", "response_words"),
        } <= got
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
    tables = [
        pl.read_parquet(root / "experiments" / "tiny" / v / "rollouts" / "count.parquet") for v in ("low", "high")
    ]
    assert_frame_equal(*tables)


def test_a_rerun_resumes_without_running_finished_categories(tiny_run):
    _, results, again, runs, runs_after, _ = tiny_run
    assert runs_after == runs
    assert_frame_equal(again, results)


TINY_ROUNDS = Experiment(
    "tiny_rounds",
    "ablation_tiny_rounds",
    "Do two rounds of 3 samples per prompt beat one of 6?",
    "They do.",
    ("count",),
    (
        Variant("one", {"rounds.count": 1, "categories.count.samples_per_prompt": 6}),
        Variant("two", {"rounds.count": 2, "rounds.stop_early": False, "categories.count.samples_per_prompt": 3}),
    ),
    release=True,
    split="bench",
    per_category=False,
)


@pytest.fixture(scope="module")
def rounds_run(tmp_path_factory):
    """TINY_ROUNDS on `count` alone: `one` (one round) and `two` (two rounds), both in this process, each on the
    partitions of its own config; then run again."""
    root, home = tmp_path_factory.mktemp("rounds_store"), tmp_path_factory.mktemp("rounds_home")
    raw = yaml.safe_load(CONFIG.read_text())
    del raw["categories"]["color"]
    config = root / "count_only.yaml"
    config.write_text(yaml.safe_dump(raw))
    main = PipelineResource.from_file(str(config), str(root))
    with dg.instance_for_test(temp_dir=str(home)) as instance:
        first = run_experiment(TINY_ROUNDS, main, instance, log=lambda line: None, only="o*")
        results = run_experiment(TINY_ROUNDS, main, instance, log=lambda line: None)
        runs = {r.dagster_run.run_id: r.dagster_run.tags for r in instance.get_run_records()}
        again = run_experiment(TINY_ROUNDS, main, instance, log=lambda line: None)
        yield root, results, again, runs, len(instance.get_run_records()), first


def test_variants_run_a_few_at_a_time_keep_each_others_results(rounds_run):
    _, results, _, _, _, first = rounds_run
    assert first["variant"].unique().to_list() == ["one"]
    assert results["variant"].unique(maintain_order=True).to_list() == ["one", "two"]
    assert_frame_equal(results.filter(pl.col("variant") == "one"), first)  # "one" was not run again
    with pytest.raises(ValueError, match="no variant of tiny_rounds matches 'three'"):
        run_experiment(TINY_ROUNDS, PipelineResource.from_file(str(CONFIG)), None, only="three")


def test_a_variant_with_more_rounds_runs_them_in_process_with_a_cost_per_round(rounds_run):
    root, results, _, runs, _, _ = rounds_run
    partitions = sorted(tags.get("dagster/partition", "-") for tags in runs.values() if tags.get("variant") == "two")
    assert partitions == ["1", "2", "count|1", "count|2"]  # its own partitions: category x round, and rounds
    one = sorted(tags.get("dagster/partition", "-") for tags in runs.values() if tags.get("variant") == "one")
    assert one == ["-", "count"]  # one round here: no round dimension; the release is unpartitioned
    two = root / "experiments" / "tiny_rounds" / "two"
    assert not (two / "dpo_checkpoint").exists()  # per_category False: no per-category checkpoint or benchmark
    assert pl.read_parquet(two / "rollouts" / "round2" / "count.parquet").height == 12 * 3
    rows = results.filter(pl.col("category") == "overall")
    got = {(v, m, s) for v, m, s in rows.select("variant", "metric", "step").iter_rows()}
    for variant, rounds in (("one", [1]), ("two", [1, 2])):
        assert {(variant, "delta", r) for r in rounds} <= got
        for name in COSTS:
            assert {(variant, name, r) for r in [*rounds, None]} <= got
        costs = rows.filter((pl.col("variant") == variant) & pl.col("metric").is_in(["generated_tokens", "cpu_hours"]))
        per_round = costs.filter(pl.col("step").is_not_null()).group_by("metric").agg(pl.col("value").sum())
        total = costs.filter(pl.col("step").is_null()).select("metric", "value")
        assert_frame_equal(per_round.sort("metric"), total.sort("metric"))  # the rounds add up to the variant's cost
        assert (costs["value"] > 0).all()
    dev = rows.filter(pl.col("metric") == "dev_gain")
    assert dev.select("variant", "step").rows() == [("two", 1), ("two", 2)]  # round_gain runs only with rounds
    assert (dev["ci_low"] <= dev["value"]).all() and (dev["value"] <= dev["ci_high"]).all()
    items = pl.read_parquet(root / ITEMS / "tiny_rounds.parquet")
    released = pl.concat(
        pl.read_parquet(
            root / "experiments" / "tiny_rounds" / v / "release_report" / f"{round_key('verdicts', r)}.parquet"
        )
        .filter(pl.col("model") == "policy")
        .select(variant=pl.lit(v), step=pl.lit(r, pl.Int64), correct="correct")
        for v, r in (("one", 1), ("two", 1), ("two", 2))
    )
    assert items.select("variant", "step", "correct").equals(released)  # every round's policy verdict per prompt
    gap = paired_gaps(items.with_columns(variant=pl.col("variant") + "_seed0"), "two", "one", ["0"])
    two, one = (
        rows.filter((pl.col("variant") == v) & (pl.col("metric") == "delta")).sort("step")["value"][-1]
        for v in ("two", "one")
    )
    assert gap["0"][0] == pytest.approx(two - one)  # paired on the same prompts: the gap of their deltas over base


def test_a_rounds_experiment_rerun_runs_nothing_new(rounds_run):
    _, results, again, runs, runs_after, _ = rounds_run
    assert runs_after == len(runs)
    assert_frame_equal(again, results)


def fake_results(experiment: Experiment) -> pl.DataFrame:
    """Numbers in the recipe's direction for every experiment: ground truth saturates and gains less, chain of
    thought and DPO gain more, base catches up at large k, long answers prefer the higher beta, more rounds and
    GRPO gain more for the same tokens."""
    if not experiment.per_category:
        return fake_round_results(experiment)
    rows = []
    for variant in experiment.variants:
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
                (
                    variant.name,
                    category,
                    "dpo",
                    "saturation_step",
                    None,
                    5.0 if variant.name == "ground_truth" else None,
                ),
            ]
            rows += [(variant.name, category, "dpo", "rewards/accuracies", s, min(1.0, 0.5 + s / 10)) for s in (5, 10)]
            rows += [
                (variant.name, category, m, f"pass@{k}", None, 0.5 + k / 10 + (good if m == "dpo" else 0) / k)
                for k in range(1, 5)
                for m in ("base", "dpo")
            ]
            if experiment.release:
                rows.append((variant.name, category, "policy", "delta", None, 0.04))
        if experiment.release:
            rows.append((variant.name, "overall", "policy", "delta", None, 0.04))
    df = pl.DataFrame(rows, schema=["variant", "category", "model", "metric", "step", "value"], orient="row")
    return (
        df.with_columns(
            experiment=pl.lit(experiment.name),
            ci_low=pl.when(pl.col("metric") == "delta").then(pl.col("value") - 0.02),
            ci_high=pl.when(pl.col("metric") == "delta").then(pl.col("value") + 0.02),
        )
        .select(list(schemas.EXPERIMENT_RESULTS))
        .cast(schemas.EXPERIMENT_RESULTS)
    )


def fake_round_results(experiment: Experiment, gain_per_round: float = 0.02, grpo_gain: float = 0.07) -> pl.DataFrame:
    """Per round of each variant's release: round r gains `gain_per_round` * r (GRPO's one round `grpo_gain`), dev gains
    with rounds, and 1 M generated tokens and 0.5 CPU-hours per variant, spread over its rounds."""
    rows = []
    for variant in experiment.variants:
        rounds = variant.overrides.get("rounds.count", 1)
        grpo = variant.overrides.get("training.algorithm") == "grpo"
        for r in range(1, rounds + 1):
            gain = grpo_gain if grpo else gain_per_round * r
            for category in experiment.categories:
                rows += [
                    (variant.name, category, "base", "accuracy", r, 0.5),
                    (variant.name, category, "policy", "accuracy", r, 0.5 + gain),
                    (variant.name, category, "policy", "delta", r, gain),
                ]
            rows.append((variant.name, "overall", "policy", "delta", r, gain))
            if rounds > 1:
                rows.append((variant.name, "overall", "policy", "dev_gain", r, gain_per_round))
        for step, share in [(r, 1 / rounds) for r in range(1, rounds + 1)] + [(None, 1.0)]:
            rows += [
                (variant.name, "overall", "policy", "generated_tokens", step, 1e6 * share),
                (variant.name, "overall", "policy", "cpu_hours", step, 0.5 * share),
                (variant.name, "overall", "policy", "accelerator_hours", step, 0.0),
                (variant.name, "overall", "policy", "wall_hours", step, 0.3 * share),
            ]
    df = pl.DataFrame(rows, schema=["variant", "category", "model", "metric", "step", "value"], orient="row")
    with_ci = pl.col("metric").is_in(["delta", "dev_gain"])
    return (
        df.with_columns(
            experiment=pl.lit(experiment.name),
            ci_low=pl.when(with_ci).then(pl.col("value") - 0.02),
            ci_high=pl.when(with_ci).then(pl.col("value") + 0.02),
        )
        .select(list(schemas.EXPERIMENT_RESULTS))
        .cast(schemas.EXPERIMENT_RESULTS)
    )


def fake_round_items(experiment: Experiment, gain_per_round: float = 0.02, grpo_gain: float = 0.07) -> pl.DataFrame:
    """Verdicts per bench prompt to match fake_round_results: 100 prompts per category, the first 100 * (0.5 + gain)
    of them right, so a better arm is right on a superset of a worse one's prompts."""
    rows = []
    for variant in experiment.variants:
        rounds = variant.overrides.get("rounds.count", 1)
        grpo = variant.overrides.get("training.algorithm") == "grpo"
        for r in range(1, rounds + 1):
            right = round(100 * (0.5 + (grpo_gain if grpo else gain_per_round * r)))
            rows += [(variant.name, r, c, f"{c}-{i}", i < right) for c in experiment.categories for i in range(100)]
    df = pl.DataFrame(rows, schema=["variant", "step", "category", "prompt_id", "correct"], orient="row")
    return df.select(pl.lit(experiment.name).alias("experiment"), pl.all()).cast(schemas.EXPERIMENT_ITEMS)


RELEASED = ("rounds", "grpo_vs_dpo")


def test_findings_page_shows_each_experiment_with_its_verdict_and_plots(tmp_path):
    results = {name: fake_results(e) for name, e in EXPERIMENTS.items() if name != "answer_format"}
    items = {name: fake_round_items(EXPERIMENTS[name]) for name in RELEASED}
    plots = write_findings(results, tmp_path / "findings.md", items)
    page = (tmp_path / "findings.md").read_text()
    assert page.count("**Direction held**") == len(results)
    assert "Not run yet: `python -m vlm_rl_assets.experiments run answer_format`" in page
    assert page.count("Measured on the `dev` split") == len(EXPERIMENTS) - len(REPORTS)
    assert page.count("Measured on the `bench` split") == len(REPORTS)
    assert {p.name for p in plots} == {
        "chosen_source_rewards_accuracies.png",
        "pass_at_k.png",
        "beta_sweep.png",
        "controls_deltas.png",
        "rounds_gain_vs_cost.png",
        "grpo_vs_dpo_deltas.png",
    }
    assert all(p.read_bytes().startswith(b"\x89PNG") and f"(findings/{p.name})" in page for p in plots)


def test_a_tables_float_column_shows_every_value_with_the_same_decimals():
    table = pl.DataFrame({"arm": ["a", "b", "c"], "accuracy": [0.58, 0.583, None], "seeds": [3, None, 2]})
    assert _table(table).splitlines()[2:] == ["| a | 0.580 | 3 |", "| b | 0.583 | - |", "| c | - | 2 |"]


def test_a_gap_is_beyond_noise_only_when_its_ci_excludes_zero_by_more_than_float_error():
    assert "within noise" in _noise_line("gap", (0.021, 3.4e-19, 0.041))  # a sum of 0/1 verdicts that is 0
    assert "beyond noise (its 95% CI excludes 0, by 0.03 points)" in _noise_line("gap", (0.018, 0.00033, 0.036))
    assert "+0.0, +3.6]" in _noise_line("gap", (0.018, 0.00033, 0.036))  # the reason the margin is spelled out
    assert "beyond noise (its 95% CI excludes 0, by 0.50 points)" in _noise_line("gap", (-0.02, -0.04, -0.005))


def test_rounds_and_grpo_sections_show_each_round_with_its_gain_and_cost(tmp_path):
    results = {name: fake_results(EXPERIMENTS[name]) for name in RELEASED}
    write_findings(results, tmp_path / "findings.md", {name: fake_round_items(EXPERIMENTS[name]) for name in RELEASED})
    page = (tmp_path / "findings.md").read_text()
    # rounds3_seed0 after round 2: +4 points, a dev gain of +2, 2/3 of its 1 M tokens and 0.5 CPU-hours
    assert "| rounds3_seed0 | 2 | 0.5 | 0.54 | +4.0 [+2.0, +6.0] | +2.0 [+0.0, +4.0] | 0.67 | 0.33 | 6.0 |" in page
    assert "| rounds1_seed0 | 1 | 0.5 | 0.52 | +2.0 [+0.0, +4.0] | - | 1.00 | 0.50 | 2.0 |" in page  # no dev gain
    assert "| rounds3 | 3 | 3 | 6.0 | 6.0 | 6.0 | 1.0 | 0.5 | 6.0 | 12.0 |" in page  # per arm: points per M, per hour
    assert "| comparison | seed 0 | seed 1 | seed 2 | over seeds |" in page  # arm minus arm, paired per prompt
    assert re.search(r"\| rounds2 - rounds1 \| \+2\.0 \[\+\d\.\d, \+\d\.\d\] \|", page)
    assert re.search(r"\| rounds3 - rounds1 \| \+4\.0 \[\+\d\.\d, \+\d\.\d\] \|", page)  # most vs fewest
    assert (
        "**Direction held**: an arm with a round more gained more than the arm with a round fewer, seed by seed, "
        "comparisons in 6 of 6" in page
    )
    assert re.search(r"rounds3 - rounds2 over seeds: \+2\.0 \[\+\d\.\d, \+\d\.\d\] points, beyond noise", page)
    held = "**Direction held**: GRPO gained more than iterative DPO for the same generated tokens, seeds in 3 of 3"
    assert held in page
    assert re.search(r"GRPO minus iterative DPO over seeds: \+3\.0 \[\+\d\.\d, \+\d\.\d\] points, beyond noise", page)


def test_rounds_and_grpo_sections_say_when_they_have_not_run_or_did_not_hold(tmp_path):
    write_findings({}, tmp_path / "findings.md")
    page = (tmp_path / "findings.md").read_text()
    assert "Not run yet: `python -m vlm_rl_assets.experiments run rounds`" in page
    assert "Not run yet: `python -m vlm_rl_assets.experiments run grpo_vs_dpo`" in page
    flat = {name: fake_round_results(EXPERIMENTS[name], gain_per_round=0.0, grpo_gain=-0.01) for name in RELEASED}
    items = {name: fake_round_items(EXPERIMENTS[name], gain_per_round=0.0, grpo_gain=-0.01) for name in RELEASED}
    write_findings(flat, tmp_path / "findings.md", items)
    page = (tmp_path / "findings.md").read_text()
    assert "**Direction did not hold**: an arm with a round more gained more" in page
    assert "rounds2 - rounds1 over seeds: +0.0 [+0.0, +0.0] points, within noise (its 95% CI includes 0)" in page
    assert "**Direction did not hold**: GRPO gained more than iterative DPO" in page
    assert "GRPO minus iterative DPO over seeds: -1.0 [" in page
    write_findings(flat, tmp_path / "findings.md")  # results stored before the verdicts per prompt were
    page = (tmp_path / "findings.md").read_text()
    assert page.count("verdicts per bench prompt of rounds1_seed0, rounds2_seed0") == 1  # (f), and (g) likewise
    assert page.count("are not stored") == 2 and "Direction" not in page.split("## (f)")[1]
    some = {name: items[name].filter(pl.col("variant") != "rounds1_seed1") for name in RELEASED}
    write_findings(flat, tmp_path / "findings.md", some)  # one variant ran before they were stored
    page = (tmp_path / "findings.md").read_text()
    assert "the verdicts per bench prompt of rounds1_seed1 are not stored" in page and "round more gained" not in page


def test_rounds_and_grpo_sections_from_some_variants_say_which_ran_and_compare_only_whole_seeds(tmp_path):
    ran = pl.col("variant").str.ends_with("_seed0") | (pl.col("variant") == "rounds1_seed1")
    rounds = fake_round_results(EXPERIMENTS["rounds"]).filter(ran)
    dpo_only = fake_round_results(EXPERIMENTS["grpo_vs_dpo"]).filter(pl.col("variant").str.starts_with("dpo"))
    items = {"rounds": fake_round_items(EXPERIMENTS["rounds"]).filter(ran)}
    write_findings({"rounds": rounds, "grpo_vs_dpo": dpo_only}, tmp_path / "findings.md", items)
    page = (tmp_path / "findings.md").read_text()
    assert "**Run so far: 4 of 9 variants**; not yet rounds2_seed1, rounds3_seed1, rounds1_seed2" in page
    assert "comparisons in 2 of 2" in page  # seed 1 has not run in every arm: seed 0 alone is compared
    assert "| comparison | seed 0 | over seeds |" in page
    assert "**Run so far: 3 of 6 variants**; not yet grpo_seed0, grpo_seed1, grpo_seed2" in page
    assert "No verdict yet: no seed has run in every arm." in page and "GRPO gained more" not in page


def test_arms_benchmarked_on_different_prompts_are_not_compared():
    items = fake_round_items(EXPERIMENTS["grpo_vs_dpo"])
    shifted = items.with_columns(
        prompt_id=pl.when(pl.col("variant") == "grpo_seed0").then(pl.col("prompt_id") + "x").otherwise("prompt_id")
    )
    gaps = paired_gaps(items.sample(fraction=1.0, shuffle=True, seed=0), "grpo", "dpo_2_rounds", ["0"])
    assert gaps["0"][0] == pytest.approx(0.03)
    assert gaps["all"] == gaps["0"]  # one seed: over seeds is that seed, CI and all
    with pytest.raises(ValueError, match="grpo and dpo_2_rounds \\(seed 0\\) were benchmarked on different prompts"):
        paired_gaps(shifted, "grpo", "dpo_2_rounds", ["0"])


def test_findings_say_plainly_when_a_direction_did_not_hold(tmp_path):
    flipped = fake_results(EXPERIMENTS["controls"]).with_columns(
        value=pl.when((pl.col("variant") == "sft_on_chosen") & (pl.col("metric") == "delta"))
        .then(0.2)
        .otherwise("value")
    )
    write_findings({"controls": flipped}, tmp_path / "findings.md")
    assert (
        "**Direction did not hold**: a preference loss (DPO or DPO + SFT) beat SFT"
        in (tmp_path / "findings.md").read_text()
    )


def test_ground_truth_that_gains_less_without_saturating_is_not_called_the_recipes_direction(tmp_path):
    never_saturates = fake_results(EXPERIMENTS["chosen_source"]).with_columns(
        value=pl.when(pl.col("metric") == "saturation_step").then(None).otherwise("value")
    )
    write_findings({"chosen_source": never_saturates}, tmp_path / "findings.md")
    page = (tmp_path / "findings.md").read_text()
    assert "**Direction did not hold**: ground truth as chosen saturated" in page
    assert "gained less in 3 of 3, saturated in 0 of 3" in page
