"""Config ergonomics and extension points: dict overrides replace the eval set, the model carries its prompt
style, and users add rewards, decoding callbacks and trainer callbacks from the command line."""

from __future__ import annotations

import json
import re
import subprocess
import textwrap
from pathlib import Path

import mlflow
import pytest
import torch

from dllm_lab.errors import ConfigError
from dllm_lab.factory import build_job
from dllm_lab.models import load_model
from dllm_lab.paths import project_root
from dllm_lab.runs import run_eval, run_train
from dllm_lab.tasks import get_task

ROOT = project_root()
FIXTURES = Path(__file__).parent / "fixtures" / "tasks"
SMALL = ["data.num_eval=3", "data.eval_batch_size=3", "decoder.gen_length=16", "decoder.block_length=8",
         "decoder.steps=8", "trainer.num_threads=1", "print_table=false"]


def _eval_tasks(metrics: dict) -> set[str]:
    return {k.split("/")[1] for k in metrics if k.startswith("eval/") and k.endswith("/accuracy")}


def test_the_readmes_real_benchmark_command_runs_on_a_local_file(compose_cfg, tiny_model_dir):
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"'data\.eval_tasks=\{gsm8k: openai/gsm8k\}'", readme)
    assert match, "the README's real-benchmark command changed; update this test"
    override = match.group(0).strip("'").replace("openai/gsm8k", str(FIXTURES / "gsm8k_test.jsonl"))
    metrics = run_eval(compose_cfg("eval", [f"model.name_or_path={tiny_model_dir}", override, *SMALL,
                                            "logger=none"]))
    assert _eval_tasks(metrics) == {"gsm8k"}, "the dict replaces the synthetic eval set"
    assert metrics["eval/gsm8k/samples"] == 3  # num_eval=3 of the fixture's valid rows (4 bad rows are skipped)


def _readme_block(after: str) -> str:
    readme = (ROOT / "README.md").read_text()
    start = readme.index("```bash", readme.index(after)) + len("```bash")
    return readme[start : readme.index("```", start)]


def test_the_readmes_llada_8b_rl_commands_compose_and_validate(compose_cfg):
    """The README's LLaDA-8B RL commands, expanded by bash as a user's shell would, compose and pass every
    start-up check (the model is not loaded: that needs the weights and a GPU)."""
    block = _readme_block("**LLaDA-8B-Instruct on GPUs**")
    local = str(ROOT / "data" / "countdown_cd3_style_test.jsonl")
    shell_prints_args = "dllm-train() { printf '%s\\0' \"$@\"; printf '\\n'; }\n"
    script = shell_prints_args + block.replace("<path>/countdown_cd3_test.jsonl", local)
    out = subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout
    commands = [line.strip("\0").split("\0") for line in out.splitlines() if line]
    assert len(commands) == 2, out
    countdown, gsm8k = cfgs = [compose_cfg("train", args) for args in commands]
    for cfg in cfgs:
        job = build_job(cfg, "train")
        s = job.grpo
        assert (job.optim.lr, s.num_generations, s.beta, s.eps, s.temperature) == (3e-6, 6, 0.04, 0.5, 0.9)
        assert s.lora["r"] == 128 and job.decoder.gen_length == 256 and job.decoder.steps == 128
    assert countdown.data.train_sources.countdown == "Jiayi-Pan/Countdown-Tasks-3to4"
    assert countdown.data.task_options.countdown.num_numbers == 3
    assert countdown.trainer.max_steps == 5000 * countdown.algo.num_iterations
    assert dict(gsm8k.data.eval_tasks) == {"gsm8k": "openai/gsm8k"} and not countdown.eval_decoders
    assert list(gsm8k.algo.rewards) == ["task", "d1_integer", "d1_strict_format", "d1_soft_format", "d1_xml_count"]


def test_a_one_task_eval_set_evaluates_one_task(compose_cfg, tiny_model_dir):
    metrics = run_eval(compose_cfg("eval", [f"model.name_or_path={tiny_model_dir}",
                                            "data.eval_tasks={arith: synthetic}", *SMALL, "logger=none"]))
    assert _eval_tasks(metrics) == {"arith"}


def test_a_labelled_second_set_and_a_further_decoder_are_scored_and_logged_apart(compose_cfg, tiny_model_dir,
                                                                                tmp_path):
    # the RL study's layout: the synthetic held-out set beside the real (d1 jsonl) test file, each decoded by
    # the run's decoder and by the few-step EOSER + ASS decoder
    cd3 = FIXTURES / "countdown_cd3_test.jsonl"
    metrics = run_eval(compose_cfg("eval", [
        f"model.name_or_path={tiny_model_dir}", f"data.eval_tasks={{countdown: synthetic, countdown.d1: {cd3}}}",
        "+eval_decoders={few: {preset: eoser_ass, gen_length: 16}}", *SMALL]))
    assert _eval_tasks(metrics) == {"countdown", "countdown.d1"}
    assert metrics["eval_few/countdown.d1/nfe"] == 4 and metrics["eval/countdown.d1/nfe"] == 8  # log2(16) steps
    client = mlflow.MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("dllm-lab/eval").experiment_id])[0]
    assert run.data.metrics["eval_few/countdown.d1/samples"] == 3
    rows = [json.loads(line) for line in Path(client.download_artifacts(
        run.info.run_id, "eval_few/predictions/countdown.d1.jsonl", str(tmp_path))).read_text().splitlines()]
    assert [r["task"] for r in rows] == ["countdown.d1"] * 3 and rows[0]["prompt"].count("30, 100, 93") == 1
    with pytest.raises(ConfigError, match=r"eval_decoders.few: give the decoder preset"):
        run_eval(compose_cfg("eval", ["+eval_decoders={few: {steps: 4}}", "logger=none"]))
    with pytest.raises(ConfigError, match=r"unknown task 'countdwn.d1'.*<task>.<label>"):
        run_eval(compose_cfg("eval", ["data.eval_tasks={countdwn.d1: synthetic}", "logger=none"]))


def test_the_checkpoint_carries_its_prompt_style(tiny_model_dir, tmp_path):
    shipped = load_model(ROOT / "checkpoints" / "tiny-mdlm")
    assert shipped.prompt_style == "compact"  # data.prompt_style of its config.yaml
    task = get_task("countdown", model=shipped)
    assert task.prompt_style == "compact" and "You are a math expert" not in task.build_prompt(task.synthetic(1)[0])
    assert get_task("countdown").prompt_style == "d1", "without a model: the d1 format of LLaDA / Dream"
    assert get_task("countdown", model=shipped, prompt_style="d1").prompt_style == "d1", "explicit wins"
    assert load_model(tiny_model_dir).prompt_style == "d1"  # a bare save_pretrained dir has no config.yaml
    assert load_model(ROOT / "checkpoints" / "tiny-mdlm", prompt_style="d1").prompt_style == "d1"


def test_an_eval_run_uses_and_records_the_models_prompt_style(compose_cfg, tmp_path):
    cfg = compose_cfg("eval", ["data.num_eval=2", "data.eval_batch_size=2", "decoder.gen_length=16",
                               "decoder.block_length=8", "decoder.steps=8", "data.eval_tasks={arith: synthetic}",
                               "trainer.num_threads=1", "print_table=false", "temporal.enabled=false"])
    assert cfg.data.prompt_style is None
    run_eval(cfg)
    client = mlflow.MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("dllm-lab/eval").experiment_id])[0]
    assert run.data.params["data.prompt_style"] == "compact"
    rows = [json.loads(line) for line in Path(client.download_artifacts(
        run.info.run_id, "predictions/arith.jsonl", str(tmp_path))).read_text().splitlines()]
    assert rows and all("You are a math expert" not in r["prompt"] for r in rows)


USER_MODULE = '''
import torch
from dllm_lab.decoding import DecodeCallback
from dllm_lab.rl import register_reward

CALLS = []


@register_reward("{name}_length")
def length(batch):
    return [len(c) / 100 for c in batch.completions]


class Steps(DecodeCallback):
    """Counts the steps each sample was decoded in."""

    name = "steps_seen"

    def __init__(self, tag: str = "x") -> None:
        self.tag = tag

    def on_decode_start(self, state):
        self.count = torch.zeros(state.canvas.shape[0], dtype=torch.long)

    def on_step(self, state):
        self.count += state.active.long().cpu()

    def on_decode_end(self, state, output):
        CALLS.append(self.tag)
        output.extras[self.name] = self.count.tolist()
'''


@pytest.fixture
def user_module(tmp_path, monkeypatch, request):
    name = f"user_ext_{request.node.name[:20].replace('[', '_').replace(']', '_')}"
    (tmp_path / f"{name}.py").write_text(textwrap.dedent(USER_MODULE.replace("{name}", name)))
    monkeypatch.syspath_prepend(str(tmp_path))
    return name


@pytest.mark.slow
def test_a_user_reward_is_named_from_the_command_line(compose_cfg, tiny_model_dir, user_module):
    metrics = run_train(compose_cfg("train", [
        "experiment=rl_countdown", f"model.name_or_path={tiny_model_dir}", f"imports=[{user_module}]",
        f"algo.rewards=[task,{user_module}_length]", "algo.reward_weights=[1.0,0.5]", "algo.num_generations=2",
        "data.batch_size=2", "trainer.fast_dev_run=true", "logger=none", *SMALL[:-1],
    ]))
    assert f"train/reward_{user_module}_length" in metrics and metrics[f"train/reward_{user_module}_length"] > 0


def test_a_user_decoding_callback_rides_along_every_eval_decode(compose_cfg, tiny_model_dir, user_module, tmp_path):
    import importlib

    run_eval(compose_cfg("eval", [
        f"model.name_or_path={tiny_model_dir}", "data.eval_tasks={arith: synthetic}", *SMALL,
        f"+decode_callbacks.steps={{_target_: {user_module}.Steps, tag: mine}}",
    ]))
    assert importlib.import_module(user_module).CALLS == ["mine"]  # one eval batch
    client = mlflow.MlflowClient()
    run = client.search_runs([client.get_experiment_by_name("dllm-lab/eval").experiment_id])[0]
    rows = [json.loads(line) for line in Path(client.download_artifacts(
        run.info.run_id, "predictions/arith.jsonl", str(tmp_path))).read_text().splitlines()]
    assert len(rows) == 3 and all(r["steps_seen"] == 8 for r in rows), "every sample takes part in all 8 steps"


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["imports=[no_such_module_xyz]"], r"imports: cannot import 'no_such_module_xyz'"),
        (["algo.kind=rlhf"], r"algo\.kind='rlhf'"),
        (["+decode_callbacks.bad={_target_: no_such_module_xyz.Cb}"], r"decode_callbacks\.bad: cannot instantiate"),
        (["+decode_callbacks.bad=3"], r"decode_callbacks\.bad: give a mapping with _target_"),
        (["+callbacks.bad={_target_: no_such_module_xyz.Cb}"], r"callbacks\.bad: cannot instantiate"),
        (["algo=diffu_grpo", "algo.rewards=[task,task]", "algo.reward_weights=[1,1]"], "listed twice"),
        (["experiment=rl_countdown", "algo.rewards=[task,answer_likelihood]", "algo.reward_weights=[1,1]"],
         r"answer_likelihood .*infilling decoder"),
        (["experiment=rl_countdown", "algo.rewards=[task,answer_likelihood]", "algo.reward_weights=[1,1]",
          "decoder=infill_early_exit", "decoder.early_exit=false"], r"answer_likelihood needs gold answers.*countdown"),
    ],
)
def test_bad_extensions_fail_at_start_naming_the_override(compose_cfg, overrides, message):
    cfg = compose_cfg("train", [*overrides, "logger=none", "model.name_or_path=/nonexistent"])
    with pytest.raises(ConfigError, match=message):
        build_job(cfg, "train")


def test_trainer_callbacks_are_instantiated_from_the_config(compose_cfg):
    from lightning.pytorch.callbacks import ModelCheckpoint

    job = build_job(compose_cfg("train", ["trainer.checkpoint_every_n_steps=7", "logger=none"]), "train")
    (checkpoint,) = job.trainer_callbacks
    assert isinstance(checkpoint, ModelCheckpoint) and checkpoint._every_n_train_steps == 7
    assert build_job(compose_cfg("train", ["callbacks.model_checkpoint=null", "logger=none"]), "train") \
        .trainer_callbacks == []


def test_one_temporal_block_sets_evaluation_and_the_tcr_reward(compose_cfg):
    job = build_job(compose_cfg("train", ["algo=tcr_acc", "temporal.tse_skip_ratio=0.25", "logger=none"]), "train")
    assert job.temporal.tse_skip_ratio == 0.25 and job.eval_temporal is job.temporal
    assert job.grpo.rewards == {"tcr": 2.0} and job.grpo.needs_temporal
    off = build_job(compose_cfg("eval", ["temporal.enabled=false", "logger=none"]), "eval")
    assert off.eval_temporal is None and off.temporal.tse_skip_ratio == 0.5


def test_another_logger_class_is_built_from_its_target(compose_cfg, tiny_model_dir, tmp_path):
    cfg = compose_cfg("eval", [f"model.name_or_path={tiny_model_dir}", "data.eval_tasks={arith: synthetic}", *SMALL,
                               "logger=csv"])
    metrics = run_eval(cfg)
    (csv,) = (tmp_path / "csv").rglob("metrics.csv")
    assert "eval/arith/accuracy" in csv.read_text() and "eval/arith/accuracy" in metrics
    (params,) = (tmp_path / "csv").rglob("hparams.yaml")
    assert "decoder.gen_length: 16" in params.read_text()


@pytest.mark.parametrize(
    ("overrides", "error", "message"),
    [
        (["model.name_or_path=null"], ConfigError, r"set model\.name_or_path"),
        (["model.name_or_path=checkpoints/tiny-mdlm-nope"], FileNotFoundError, "make train-tiny"),
        (["+decode_callbacks.bad={_target_: collections.OrderedDict}"], ConfigError, "is not a DecodeCallback"),
        (["trainer.num_threads=0"], ConfigError, r"trainer\.num_threads=0"),
        (["+temporal.tse_base=1"], ConfigError, r"temporal\.tse_base=1"),
    ],
)
def test_bad_model_and_run_settings_fail_before_decoding(compose_cfg, overrides, error, message):
    with pytest.raises(error, match=message):
        run_eval(compose_cfg("eval", [*overrides, "logger=none"]))


def test_a_missing_checkpoint_to_resume_is_named(compose_cfg, tiny_model_dir, tmp_path):
    cfg = compose_cfg("train", [f"model.name_or_path={tiny_model_dir}", f"ckpt_path={tmp_path}/nope.ckpt",
                                "logger=none", "trainer.max_steps=1"])
    with pytest.raises(FileNotFoundError, match="nope.ckpt"):
        run_train(cfg)


def test_decoder_preset_names_are_checked():
    from dllm_lab.factory import load_decoder_preset

    with pytest.raises(ConfigError, match=r"unknown decoder preset 'semi_arr'.*semi_ar"):
        load_decoder_preset("semi_arr")


def test_prompt_style_of_a_checkpoint_dir(tmp_path, caplog):
    from dllm_lab.models import DiffusionLM
    from dllm_lab.models.adapter import checkpoint_prompt_style

    assert checkpoint_prompt_style(tmp_path) is None  # no config.yaml
    (tmp_path / "config.yaml").write_text("data: {prompt_style: compact}\n")
    assert checkpoint_prompt_style(tmp_path) == "compact"
    (tmp_path / "config.yaml").write_text("data: {prompt_style: fancy}\n")
    assert checkpoint_prompt_style(tmp_path) is None  # not a style: the default applies
    (tmp_path / "config.yaml").write_text("data: [unclosed\n")
    assert checkpoint_prompt_style(tmp_path) is None and "not valid YAML" in caplog.text
    with pytest.raises(ValueError, match="prompt_style='fancy'"):
        DiffusionLM(torch.nn.Linear(1, 1), None, "masked_lm", 0, (1,), prompt_style="fancy")
