"""GRPOModule: every algo x decoder preset runs, bad settings fail at start, exact resume, DDP."""

from __future__ import annotations

import json
import math

import lightning as L
import mlflow
import pytest
import torch

from conftest import RUN_DECODERS, small_decoder
from dllm_lab.errors import ConfigError
from dllm_lab.paths import config_dir
from dllm_lab.runs import run_eval, run_train
from rank_recorder import RankRecorder

# text_length: a reward that (almost) always differs within a group, from a user module (tests/extra_rewards.py)
TEXT_LENGTH = ["imports=[extra_rewards]", "algo.rewards=[text_length]"]

# the GRPO family (SFT and posterior SFT have their own tests)
ALGOS = sorted(p.stem for p in (config_dir() / "algo").glob("*.yaml") if p.stem not in ("mdlm_sft", "posterior_sft"))
FAST_RL = [
    "experiment=rl_countdown", "data.num_eval=2", "data.eval_batch_size=2", "data.batch_size=2",
    "algo.num_generations=2", "algo.sample_table_every=1", "trainer.num_threads=1", "eval_after_fit=false",
    "trainer.log_every_n_steps=1",
]
SMALL_DECODE = ["decoder.gen_length=16", "decoder.block_length=8", "decoder.steps=8"]


def test_presets_exist():
    assert {"diffu_grpo", "one_step_grpo", "cj_grpo", "tcr", "tcr_acc"} <= set(ALGOS)


@pytest.mark.slow
@pytest.mark.parametrize("decoder", RUN_DECODERS)
@pytest.mark.parametrize("algo", ALGOS)
def test_every_algo_and_decoder_pair_runs_a_fast_dev_step(algo, decoder, compose_cfg, tiny_model_dir, tmp_path):
    cfg = compose_cfg("train", [*FAST_RL, f"algo={algo}", f"decoder={decoder}", f"model.name_or_path={tiny_model_dir}",
                                "trainer.fast_dev_run=true", "logger=none"])
    for key, value in small_decoder(decoder).items():
        cfg.decoder[key] = value
    metrics = run_train(cfg)
    assert torch.isfinite(torch.tensor(metrics["train/loss"]))
    assert 0.0 <= metrics["train/accuracy"] <= 1.0 and metrics["train/nfe_per_rollout"] >= 1


@pytest.mark.parametrize(
    ("override", "message"),
    [
        ("algo.num_generations=1", "num_generations"),
        ("algo.temperature=0", "temperature"),
        ("algo.rewards=[speed]", "algo.rewards"),
        ("algo.reward_weights=[1.0,2.0]", "reward_weights"),
        ("algo.estimator=two_step", "algo.estimator"),
        ("decoder=posterior", "rollouts sample without the answer"),
    ],
)
def test_bad_settings_fail_at_start_naming_the_setting(override, message, compose_cfg, tiny_model_dir):
    cfg = compose_cfg("train", [*FAST_RL, *SMALL_DECODE, f"model.name_or_path={tiny_model_dir}", override,
                                "logger=none"])
    with pytest.raises(ConfigError, match=message):
        run_train(cfg)


def _weights(module: L.LightningModule) -> dict[str, torch.Tensor]:
    return {k: v.detach().clone() for k, v in module.lm.model.state_dict().items()}


class _KeepModule(L.Callback):
    def on_train_end(self, trainer, pl_module):
        self.weights = _weights(pl_module)


@pytest.mark.slow
@pytest.mark.parametrize("algo", ["diffu_grpo", "cj_grpo"])
def test_resume_continues_the_same_run_step_optimizer_and_data(algo, compose_cfg, tiny_model_dir, tmp_path):
    # mu = 2 updates per rollout: 4 updates = 2 rollouts; the "killed" job stopped after the first rollout
    common = [*FAST_RL, *SMALL_DECODE, f"algo={algo}", f"model.name_or_path={tiny_model_dir}",
              "algo.num_iterations=2", "trainer.max_steps=4", "trainer.checkpoint_every_n_steps=2",
              "trainer.val_check_interval=100", "algo.lr=1e-3"]
    straight_cfg = compose_cfg("train", [*common, "run_name=job"])
    straight_cfg.paths.output_dir = str(tmp_path / "job")
    straight = _KeepModule()
    run_train(straight_cfg, callbacks=[straight])
    ckpt = next((tmp_path / "job" / "checkpoints").glob("*step=2.ckpt"))
    state = torch.load(ckpt, map_location="cpu", weights_only=False)
    assert state["global_step"] == 2 and state["optimizer_states"][0]["state"], "optimizer state is saved"
    resumed_cfg = compose_cfg("train", [*common, f"ckpt_path='{ckpt}'"])
    resumed_cfg.paths.output_dir = str(tmp_path / "resumed")
    resumed = _KeepModule()
    run_train(resumed_cfg, callbacks=[resumed])

    for k, v in straight.weights.items():
        torch.testing.assert_close(v, resumed.weights[k], rtol=0, atol=1e-6, msg=k)
    client = mlflow.MlflowClient()
    runs = client.search_runs(client.get_experiment_by_name("dllm-lab/rl_countdown").experiment_id)
    assert len(runs) == 1, "resuming continues the run stored in the checkpoint"
    by_step: dict[int, list[float]] = {}
    for m in client.get_metric_history(runs[0].info.run_id, "train/reward"):
        by_step.setdefault(m.step, []).append(m.value)
    # the second rollout ran before the "kill" and after resuming (the same prompts and samples: the weights
    # match); the resumed run skips the point it already has
    assert len(by_step) == 2 and all(len(v) == 1 for v in by_step.values()), by_step


@pytest.mark.slow
def test_ddp_rollouts_differ_per_rank_and_updates_stay_in_sync(compose_cfg, tiny_model_dir, tmp_path):
    cfg = compose_cfg("train", [*FAST_RL, *SMALL_DECODE, f"model.name_or_path={tiny_model_dir}", "trainer=ddp_cpu",
                                "trainer.max_steps=2", "algo.num_iterations=1", "trainer.val_check_interval=100",
                                "algo.lr=1e-3", "algo.weight_decay=0", *TEXT_LENGTH, "run_name=ddp"])
    run_train(cfg, callbacks=[RankRecorder(str(tmp_path))])
    for step in (1, 2):
        r0 = json.loads((tmp_path / f"rank0_step{step}.json").read_text())
        r1 = json.loads((tmp_path / f"rank1_step{step}.json").read_text())
        assert set(r0["prompts"]).isdisjoint(r1["prompts"]), "ranks roll out different prompts"
        assert r0["texts"] != r1["texts"]
        assert r0["grad_norm"] > 0 and r1["grad_norm"] > 0
        assert r0["grads"] == r1["grads"], "gradients are averaged across ranks before the step"
        assert r0["weights"] == r1["weights"], "so every rank applies the same update"
    first = json.loads((tmp_path / "rank0_step1.json").read_text())["weights"]
    assert first != json.loads((tmp_path / "rank0_step2.json").read_text())["weights"], "the policy moved"
    client = mlflow.MlflowClient()
    runs = client.search_runs(client.get_experiment_by_name("dllm-lab/rl_countdown").experiment_id)
    assert [r.info.run_name for r in runs] == ["ddp"], "one MLflow run per DDP job"
    steps = {m.step for m in client.get_metric_history(runs[0].info.run_id, "train/reward")}
    assert steps == {0, 1}, "one point per rollout"


@pytest.mark.slow
def test_lora_trains_only_the_adapter_and_the_base_is_the_reference(compose_cfg, tiny_model_dir, tmp_path):
    from dllm_lab.models import load_model

    base = {k: v.clone() for k, v in load_model(tiny_model_dir).model.state_dict().items()}
    cfg = compose_cfg("train", [*FAST_RL, *SMALL_DECODE, f"model.name_or_path={tiny_model_dir}", "logger=none",
                                "algo.lora={r: 4, alpha: 8, dropout: 0.0, target_modules: all-linear}",
                                "trainer.max_steps=2", "algo.num_iterations=2", "algo.lr=1e-2",
                                *TEXT_LENGTH, f"export_dir={tmp_path / 'merged'}",
                                "trainer.val_check_interval=100"])
    keep = _KeepModule()
    run_train(cfg, callbacks=[keep])
    lora = {k: v for k, v in keep.weights.items() if "lora_" in k}
    assert lora and any(v.abs().sum() > 0 for k, v in lora.items() if "lora_B" in k), "the adapter was trained"
    frozen = {k.replace("base_model.model.", "").replace(".base_layer", ""): v
              for k, v in keep.weights.items() if "lora_" not in k}
    assert frozen.keys() == base.keys()
    for k, v in base.items():
        torch.testing.assert_close(frozen[k], v, rtol=0, atol=0, msg=k)
    # the export merges the adapter: a plain model that load_model reads, with changed weights
    merged = load_model(tmp_path / "merged").model.state_dict()
    assert merged.keys() == base.keys()
    assert any(not torch.equal(merged[k], base[k]) for k in base)


@pytest.mark.slow
def test_rl_study_report_pairs_each_seed_with_the_base_per_set_and_decoder(compose_cfg, tiny_model_dir, tmp_path):
    from dllm_lab.evaluation.rl_report import write_report

    small = [f"model.name_or_path={tiny_model_dir}", "data.num_eval=3", "data.eval_batch_size=3",
             "eval_decoders.few_step.gen_length=16", *SMALL_DECODE]
    run_eval(compose_cfg("eval", ["experiment=rl_base", *small, "print_table=false"]))
    for seed in (0, 1, 1):  # seed 1 twice: the rerun replaces the first run, it is not averaged with it
        run_train(compose_cfg("train", [*FAST_RL, *small, f"seed={seed}", "trainer.max_steps=2",
                                        "eval_after_fit=true", "eval_before_fit=false", "print_table=false"]))
    table = write_report(mlflow.get_tracking_uri(), tmp_path)
    rows = json.loads((tmp_path / "results.json").read_text())
    assert {(r["decoder"], r["set"]) for r in rows} == {(d, s) for d in ("run", "few_step")
                                                         for s in ("countdown", "countdown.d1")}
    assert all(r["arm"] == "rl_countdown" and r["seeds"] == [0, 1] and r["problems"] == 3 for r in rows)
    assert table.count("diffu-GRPO, accuracy reward (d1)") == 4 and "cd3-style file" in table
    ledger = json.loads((tmp_path / "per_problem.json").read_text())
    assert set(ledger) == {"rl_base", "rl_countdown"} and set(ledger["rl_countdown"]) == {"0", "1"}
    assert (tmp_path / "vs_base.png").stat().st_size > 0


@pytest.mark.parametrize("estimator", ["one_step", "full_mask", "trajectory"])
def test_updates_raise_the_likelihood_of_positive_advantage_completions(estimator, tiny_model_dir):
    from dllm_lab.decoding import DecodeConfig
    from dllm_lab.models import left_pad, load_model
    from dllm_lab.rl import GRPOSettings, policy_loss
    from dllm_lab.tasks import get_task
    from dllm_lab.training.grpo import GRPOModule

    torch.manual_seed(0)
    lm = load_model(tiny_model_dir)
    decoder = DecodeConfig(gen_length=16, block_length=8, steps=8)
    settings = GRPOSettings(estimator=estimator, num_generations=2, beta=0.0, temperature=1.0)
    module = GRPOModule(lm, settings, decoder)
    task = get_task("countdown", prompt_style="compact")
    example = task.synthetic(1, seed=3)[0]
    ids, mask = left_pad([lm.chat.prompt_ids(task.build_prompt(example))], lm.pad_token_id)
    ro = module.rollout({"prompt_ids": ids, "attention_mask": mask, "examples": [example], "tasks": ["countdown"]})
    assert not torch.equal(ro.completion[0], ro.completion[1]), "the two samples must differ for this test"
    ro.advantages = torch.tensor([1.0, -1.0])  # reward the first completion, penalise the second

    def sequence_logp() -> torch.Tensor:
        with torch.no_grad():
            logp, m = module.estimator.logps(lm, ro, 0)
        total = logp * m  # (2, L), or (S, 2, L) for trajectory
        return total.sum(-1) if total.dim() == 2 else total.sum((0, 2))

    before = sequence_logp()
    optimizer = torch.optim.SGD(lm.parameters(), lr=0.05)
    for _ in range(3):
        logp, m = module.estimator.logps(lm, ro, 0)
        loss, _ = policy_loss(logp, logp.detach(), None, ro.advantages, m, beta=0.0)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
    after = sequence_logp()
    assert after[0] > before[0] and after[1] < before[1], (before, after)


def test_dynamic_sampling_keeps_whole_groups_with_a_non_zero_advantage(compose_cfg, tiny_model_dir):
    from dllm_lab.rl import Rollout

    n, L = 6, 4
    ro = Rollout(
        prompt_ids=torch.arange(n)[:, None], attention_mask=torch.ones(n, 1), completion=torch.arange(n * L).view(n, L),
        completion_mask=torch.ones(n, L, dtype=torch.bool), commit_step=None, num_steps=0,
        rewards={"task": torch.tensor([1.0, 1.0, 0.0, 1.0, 0.0, 0.0])}, total=torch.tensor([1.0, 1, 0, 1, 0, 0]),
        advantages=torch.tensor([0.0, 0.0, -0.5, 0.5, 0.0, 0.0]), correct=torch.tensor([1.0, 1, 0, 1, 0, 0]),
        tse=None, texts=list("abcdef"), examples=[{"i": i} for i in range(n)], tasks=["countdown"] * n, seed=0,
        nfe=1, seconds=0.0)
    rows = ro.informative_rows(group_size=2)  # groups (0,1) and (4,5) tie; (2,3) differs
    assert rows.tolist() == [2, 3]
    kept = ro.select(rows)
    assert kept.texts == ["c", "d"] and kept.advantages.tolist() == [-0.5, 0.5]
    assert kept.completion.tolist() == [[8, 9, 10, 11], [12, 13, 14, 15]] and kept.rewards["task"].tolist() == [0, 1]
    metrics = run_train(compose_cfg("train", [*FAST_RL, *SMALL_DECODE, f"model.name_or_path={tiny_model_dir}",
                                              "algo.drop_uniform_groups=true", "trainer.fast_dev_run=true",
                                              "logger=none", *TEXT_LENGTH]))
    assert 0 <= metrics["train/informative_groups"] <= 2 and math.isfinite(metrics["train/loss"])
