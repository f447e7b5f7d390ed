"""Sharded DPO (issue 28): the accelerate config files a run launches with, read back the way `accelerate launch`
reads them into its processes' plugins; the launch naming that file; what is refused (sharding off GPUs, GRPO, zero3
without DeepSpeed, text-only pairs); what a sharded trainer leaves out (a reference model, the batch-dependent
shared-prompt pass); the gathered save and the resume of a sharded run's checkpoints. All on CPU: accelerate shards
only on GPUs (bench/gpu_device.py --leg fsdp2 runs the file on one)."""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import sys
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from accelerate.commands.config.config_args import load_config_from_file
from accelerate.commands.launch import _validate_launch_command, launch_command_parser
from accelerate.utils import DeepSpeedPlugin, FullyShardedDataParallelPlugin
from accelerate.utils.launch import prepare_deepspeed_cmd_env, prepare_multi_gpu_env

from vlm_rl_assets.config import ConfigError, load_config
from vlm_rl_assets.dpo import launch as dpo_launch
from vlm_rl_assets.dpo.job import DPOJob, write_job
from vlm_rl_assets.dpo.launch import WORKER, launch_command, launch_job
from vlm_rl_assets.model import trainer as model_trainer
from vlm_rl_assets.model.gathered import save_gathered
from vlm_rl_assets.model.loading import load_model
from vlm_rl_assets.model.resume import latest_checkpoint
from vlm_rl_assets.model.trainer import StrictResume, common_args
from vlm_rl_assets.training import sharding
from vlm_rl_assets.training.settings import TrainingSettings
from vlm_rl_assets_tests.helpers import colour_pairs, perturb

CATEGORY = "categories:\n  c: {source: 'synthetic:color'}\n"


@pytest.fixture
def launcher_env():
    """Restores the environment the launcher's variables and accelerate's plugins write into."""
    saved = dict(os.environ)
    yield
    os.environ.clear()
    os.environ.update(saved)


def _launched(config_file: Path) -> tuple:
    """What `accelerate launch --config_file config_file -m WORKER job` resolves: its arguments, and the environment
    its processes start with (set here, as in a launched process), as accelerate's `launch_command` does."""
    args = launch_command_parser().parse_args(["--config_file", str(config_file), "-m", WORKER, "job"])
    args, defaults, precision_from_file = _validate_launch_command(args)
    if args.use_deepspeed:
        fields = [*defaults.deepspeed_config, *(["mixed_precision"] if precision_from_file else [])]
        args.deepspeed_fields_from_accelerate_config = ",".join(fields)
        _, env = prepare_deepspeed_cmd_env(args)
    else:
        env = prepare_multi_gpu_env(args)
    os.environ.update(env)
    return args, env


def test_the_fsdp2_file_becomes_accelerates_fsdp2_plugin_with_a_gathered_save(tmp_path: Path, launcher_env) -> None:
    path = sharding.write_accelerate_config(tmp_path / "a.yaml", "fsdp2", 4, "bf16")
    config = load_config_from_file(str(path))
    assert (config.distributed_type, config.num_processes, config.mixed_precision) == ("FSDP", 4, "bf16")

    args, env = _launched(path)
    plugin = FullyShardedDataParallelPlugin()  # as the Trainer's Accelerator builds it in a launched process

    assert args.use_fsdp and not args.multi_gpu and env["ACCELERATE_MIXED_PRECISION"] == "bf16"
    assert plugin.fsdp_version == 2
    assert plugin.state_dict_type.name == "FULL_STATE_DICT"  # whole tensors for save_pretrained
    assert plugin.reshard_after_forward is True and plugin.cpu_ram_efficient_loading is True
    assert plugin.auto_wrap_policy.__name__ == "transformer_auto_wrap_policy"  # the model's _no_split_modules
    assert plugin.activation_checkpointing is False  # gradient checkpointing goes through TrainingArguments


def test_the_zero3_file_becomes_accelerates_deepspeed_plugin_with_16bit_gathered_weights(
    tmp_path: Path, launcher_env
) -> None:
    path = sharding.write_accelerate_config(tmp_path / "a.yaml", "zero3", 2, "bf16")
    assert load_config_from_file(str(path)).distributed_type == "DEEPSPEED"

    args, env = _launched(path)
    plugin = DeepSpeedPlugin()  # constructible without DeepSpeed installed: it only reads the launcher's variables

    assert args.use_deepspeed and env["ACCELERATE_USE_DEEPSPEED"] == "true"
    assert (plugin.zero_stage, plugin.zero3_init_flag, plugin.zero3_save_16bit_model) == (3, True, True)
    assert plugin.deepspeed_config["zero_optimization"]["stage3_gather_16bit_weights_on_model_save"] is True
    assert plugin.deepspeed_config["zero_optimization"]["offload_param"]["device"] == "none"


def test_the_unsharded_file_launches_as_the_multi_gpu_flags_did(tmp_path: Path) -> None:
    path = sharding.write_accelerate_config(tmp_path / "a.yaml", "none", 2, "no")
    old_flags = "--multi_gpu --num_processes 2 --num_machines 1 --mixed_precision no --dynamo_backend no"
    parser = launch_command_parser()
    before, _, _ = _validate_launch_command(parser.parse_args([*old_flags.split(), "--main_process_port", "0", "x"]))
    after, _, _ = _validate_launch_command(parser.parse_args(["--config_file", str(path), "x"]))
    launch = ("multi_gpu", "use_fsdp", "use_deepspeed", "use_cpu", "num_processes", "num_machines")
    settings = ("mixed_precision", "dynamo_backend", "main_process_port", "num_cpu_threads_per_process")
    for name in launch + settings:
        assert getattr(after, name) == getattr(before, name), name


def test_bf16_mixed_precision_only_for_sharded_bfloat16_checkpoints() -> None:
    assert sharding.mixed_precision("fsdp2", "bfloat16") == sharding.mixed_precision("zero3", "bfloat16") == "bf16"
    assert sharding.mixed_precision("none", "bfloat16") == "no"  # DDP trains in the checkpoint's dtype, as before
    assert sharding.mixed_precision("fsdp2", "float32") == "no"


def test_the_trainer_takes_bf16_from_the_launched_config(monkeypatch: pytest.MonkeyPatch) -> None:
    """DeepSpeed refuses a Trainer whose bf16 disagrees with the launch config's mixed precision."""
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "bf16")
    assert common_args("out", 0, 1e-5, 4, 1)["bf16"] is True
    monkeypatch.setenv("ACCELERATE_MIXED_PRECISION", "no")
    assert common_args("out", 0, 1e-5, 4, 1)["bf16"] is False


def _model_dir(tmp_path: Path, dtype: str) -> Path:
    """A folder with only the config.json the job reads its checkpoint dtype from."""
    folder = tmp_path / f"model_{dtype}"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"dtype": dtype}))
    return folder


def test_a_sharded_job_launches_on_its_folders_config_even_on_one_process(tmp_path: Path) -> None:
    pairs = colour_pairs(2, seed=0)
    job = DPOJob(str(_model_dir(tmp_path, "bfloat16")), "out", TrainingSettings(batch_size=2, sharding="fsdp2"))
    job_dir = write_job(tmp_path / "work", job, pairs, "fp")

    config = load_config_from_file(str(job_dir / sharding.CONFIG_FILE))
    command = launch_command(job_dir)

    assert (config.distributed_type, config.num_processes, config.mixed_precision) == ("FSDP", 1, "bf16")
    assert command[command.index("--config_file") + 1] == str(job_dir / sharding.CONFIG_FILE)
    assert command[-3:] == ["-m", WORKER, str(job_dir)] and command[0] == sys.executable
    unsharded = DPOJob(job.model_dir, "out", TrainingSettings(batch_size=2))
    in_process = write_job(tmp_path / "work2", unsharded, pairs, "fp")
    assert not (in_process / sharding.CONFIG_FILE).exists()  # one process, no sharding: trains in the caller


def test_zero3_without_deepspeed_is_refused_before_anything_launches(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sharding, "is_deepspeed_available", lambda: False)
    monkeypatch.setattr(dpo_launch, "run_streamed", lambda *a, **k: pytest.fail("launched without DeepSpeed"))
    job = DPOJob(str(_model_dir(tmp_path, "bfloat16")), "out", TrainingSettings(batch_size=2, sharding="zero3"))
    job_dir = write_job(tmp_path / "work", job, colour_pairs(2, seed=0), "fp")
    with pytest.raises(sharding.ShardingUnavailable, match="pip install deepspeed"):
        launch_job(job_dir, job, "cuda", print)


def test_sharding_on_cpu_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text("model: {device: cpu}\ntraining: {sharding: fsdp2}\n" + CATEGORY)
    with pytest.raises(ConfigError, match="accelerate does not shard on cpu"):
        load_config(path)
    path.write_text("model: {device: cuda}\ntraining: {sharding: fsdp2}\n" + CATEGORY)
    assert load_config(path).training.sharding == "fsdp2"


def test_grpo_with_sharding_is_refused_with_the_reason(tmp_path: Path) -> None:
    path = tmp_path / "pipeline.yaml"
    path.write_text("model: {device: cuda}\ntraining: {algorithm: grpo, sharding: zero3}\n" + CATEGORY)
    with pytest.raises(ConfigError, match="grpo trains in the asset's process.*sharding: zero3 cannot be honoured"):
        load_config(path)
    path.write_text("model: {device: cuda}\ntraining: {algorithm: grpo}\n" + CATEGORY)
    assert load_config(path).training.algorithm == "grpo"


def _cached(pairs: list) -> list:
    return [dataclasses.replace(p, ref_chosen_logps=-30.0, ref_rejected_logps=-31.0) for p in pairs]


def test_a_sharded_trainer_neither_loads_nor_shards_a_reference(
    tiny_vlm_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """TRL shards a given reference under FSDP (prepare_fsdp) and loads one from the model's path when given none;
    with cached log-probs neither may happen (TRL #6470: a precomputing reference beside the sharded policy)."""
    from transformers import Trainer
    from trl.trainer import dpo_trainer as trl_dpo

    from vlm_rl_assets.dpo.training import dpo_trainer

    prepared: list[object] = []
    monkeypatch.setattr(trl_dpo, "prepare_fsdp", lambda model, accelerator: prepared.append(model) or model)
    monkeypatch.setattr(trl_dpo, "create_model_from_path", lambda *a, **k: pytest.fail("loaded a reference"))
    accelerator_setup = Trainer.create_accelerator_and_postprocess

    def as_if_fsdp(self) -> None:  # the flag a launched FSDP process's Trainer sets
        accelerator_setup(self)
        self.is_fsdp_enabled = True

    monkeypatch.setattr(Trainer, "create_accelerator_and_postprocess", as_if_fsdp)
    trainer = dpo_trainer(tiny_vlm_dir, tmp_path, _cached(colour_pairs(2, seed=0)), TrainingSettings(batch_size=2))

    assert trainer.is_fsdp_enabled and trainer.ref_model is None and prepared == []


def test_sharded_batches_take_the_plain_forward_with_the_same_loss(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    """Whether the shared-prompt pass runs depends on the batch, and under FSDP2 / ZeRO-3 every process must run the
    language model as often as the others: there every batch takes the plain forward, to the same loss."""
    from vlm_rl_assets.dpo.training import dpo_trainer

    trainer = dpo_trainer(tiny_vlm_dir, tmp_path, _cached(colour_pairs(4, seed=1)), TrainingSettings(batch_size=4))
    perturb(trainer.model)
    calls: list[tuple[int, int]] = []
    record = lambda module, args, kwargs: calls.append(tuple(kwargs["inputs_embeds"].shape[:2]))  # noqa: E731
    trainer.model.model.language_model.register_forward_pre_hook(record, with_kwargs=True)
    examples = [trainer.train_dataset[i] for i in range(4)]

    def loss(sharded: bool) -> torch.Tensor:
        trainer.is_fsdp_enabled = sharded
        calls.clear()
        with torch.no_grad():
            return trainer.compute_loss(trainer.model, trainer.data_collator(copy.deepcopy(examples)))

    shared = loss(sharded=False)
    assert len(calls) == 2  # the prompts once, then the answers' tails
    plain = loss(sharded=True)
    rows, width = trainer.data_collator(copy.deepcopy(examples))["input_ids"].shape
    assert calls == [(rows, width)]  # once, every row whole
    assert torch.allclose(plain, shared, atol=1e-5, rtol=0)


def test_text_only_pairs_are_refused_under_sharding(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    from vlm_rl_assets.dpo.training import dpo_trainer

    pairs = colour_pairs(2, seed=0)
    pairs[0] = dataclasses.replace(pairs[0], images=())
    with pytest.raises(ValueError, match=r"fsdp2 needs an image in every pair, and 1 of 2 pairs have none"):
        dpo_trainer(tiny_vlm_dir, tmp_path, pairs, TrainingSettings(batch_size=2, sharding="fsdp2"))
    assert dpo_trainer(tiny_vlm_dir, tmp_path, pairs, TrainingSettings(batch_size=2)) is not None


@pytest.fixture(scope="module")
def bf16_base(tiny_vlm_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny model saved in bfloat16, as GPU checkpoints are."""
    folder = tmp_path_factory.mktemp("bf16_base")
    load_model(tiny_vlm_dir).to(torch.bfloat16).save_pretrained(folder)
    return folder


def test_gathered_float32_weights_save_in_the_bases_dtype(bf16_base: Path, tmp_path: Path) -> None:
    """FSDP2 trains float32 master weights under bf16 mixed precision: the folder keeps the base's dtype."""
    trained = load_model(bf16_base).float()
    perturb(trained)
    gathered = trained.state_dict()

    save_gathered(gathered, bf16_base, tmp_path / "out")

    assert json.loads((tmp_path / "out" / "config.json").read_text())["dtype"] == "bfloat16"
    saved = load_model(tmp_path / "out").state_dict()
    assert saved.keys() == gathered.keys()
    assert all(torch.equal(saved[k], gathered[k].to(torch.bfloat16)) for k in gathered)


def test_gathered_lora_weights_save_merged(tiny_vlm_dir: Path, tmp_path: Path) -> None:
    from peft import get_peft_model

    from vlm_rl_assets.training.policy import peft_config
    from vlm_rl_assets.training.settings import LoRASettings

    trained = get_peft_model(load_model(tiny_vlm_dir), peft_config(LoRASettings(r=4)))
    perturb(trained)  # adapters not zero: the merge changes the weights
    gathered = {k: v.clone() for k, v in trained.state_dict().items()}
    expected = trained.merge_and_unload().state_dict()

    save_gathered(gathered, tiny_vlm_dir, tmp_path / "out", trained.peft_config["default"])

    saved = load_model(tmp_path / "out").state_dict()
    assert saved.keys() == expected.keys()
    assert all(torch.allclose(saved[k], expected[k], atol=1e-6) for k in expected)


def test_every_process_of_a_sharded_run_enters_the_gather_and_only_the_main_one_saves(
    tiny_vlm_dir: Path, tmp_path: Path
) -> None:
    """accelerate's gather is a collective: a process that skipped it would leave the others waiting."""
    model = load_model(tiny_vlm_dir)
    gathers: list[object] = []

    def trainer(main: bool) -> SimpleNamespace:
        accelerator = SimpleNamespace(
            get_state_dict=lambda wrapped: gathers.append(wrapped) or model.state_dict(), unwrap_model=lambda m: m
        )
        return SimpleNamespace(
            is_fsdp_enabled=True,
            is_deepspeed_enabled=False,
            accelerator=accelerator,
            args=SimpleNamespace(should_save=main),
            model=model,
            model_wrapped=model,
        )

    model_trainer._save_model(trainer(main=False), tmp_path / "rank1")
    model_trainer._save_model(trainer(main=True), tmp_path / "rank0")

    assert gathers == [model, model] and not (tmp_path / "rank1").exists()
    assert load_model(tmp_path / "rank0").state_dict().keys() == model.state_dict().keys()


def _checkpoint(work: Path, step: int, files: tuple[str, ...], state: bool) -> Path:
    folder = work / f"checkpoint-{step}"
    for name in files:
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(b"x")
    if state:
        (folder / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return folder


def test_sharded_checkpoint_layouts_resume_and_a_cut_one_is_removed(tmp_path: Path) -> None:
    fsdp = _checkpoint(tmp_path, 4, ("pytorch_model_fsdp.bin", "optimizer.bin", "rng_state_0.pth"), state=True)
    zero3 = _checkpoint(tmp_path, 6, ("global_step6/zero_pp_rank_0_mp_rank_00_optim_states.pt", "latest"), state=True)
    cut = _checkpoint(tmp_path, 8, ("pytorch_model_fsdp_0/__0_0.distcp", "optimizer_0/.metadata"), state=False)

    assert latest_checkpoint(tmp_path) == zero3 and not cut.exists()
    (zero3 / "trainer_state.json").unlink()
    assert latest_checkpoint(tmp_path) == fsdp


class _TrainerLoad:
    """The Trainer's own `_load_from_checkpoint`, recorded."""

    def __init__(self, fsdp: bool) -> None:
        self.is_fsdp_enabled, self.model, self.loaded = fsdp, torch.nn.Linear(2, 2), []

    def _load_from_checkpoint(self, resume_from_checkpoint: str, model: torch.nn.Module | None = None) -> None:
        self.loaded.append(resume_from_checkpoint)


class _Resuming(StrictResume, _TrainerLoad):
    pass


def test_an_fsdp_resume_goes_through_the_trainers_own_loader(monkeypatch: pytest.MonkeyPatch) -> None:
    """Its checkpoint's weights are pytorch_model_fsdp.bin, which accelerate loads into the sharded model; the
    save_pretrained copy StrictResume reads otherwise would land in DTensors as plain tensors."""
    monkeypatch.setattr(model_trainer, "load_model", lambda path: torch.nn.Linear(2, 2))
    fsdp, plain = _Resuming(fsdp=True), _Resuming(fsdp=False)
    fsdp._load_from_checkpoint("checkpoint-4")
    plain._load_from_checkpoint("checkpoint-4")
    assert fsdp.loaded == ["checkpoint-4"] and plain.loaded == []
