"""The benchmarks run end to end on tiny settings and print their tables (no timing assertions here:
speed targets are read off the benchmark tables, not asserted by tests)."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from dllm_lab.paths import project_root

pytestmark = pytest.mark.slow
BENCH = project_root() / "benchmarks"


def run(script: str, *args: str) -> str:
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    out = subprocess.run([sys.executable, str(BENCH / script), *args], capture_output=True, text=True, env=env,
                         timeout=600, check=False)
    assert out.returncode == 0, out.stderr[-3000:]
    return out.stdout


def test_train_throughput_prints_both_loops(tmp_path):
    stdout = run("train_throughput.py", "--steps", "5", "--rounds", "1", "--batch-size", "4", "--threads", "1",
                 "--out", str(tmp_path / "t.json"))
    assert "| plain PyTorch |" in stdout and "| Lightning |" in stdout and "Lightning overhead" in stdout
    result = json.loads((tmp_path / "t.json").read_text())
    assert set(result["tokens_per_s"]) == {"plain PyTorch", "Lightning"}
    assert all(v > 0 for v in result["tokens_per_s"].values())
    assert "| local GSM8K jsonl (2,000 rows) |" in stdout and len(result["loading_share"]) == 3
    assert all(v > 0 for v in result["loading_s"].values())


def test_decoding_benchmark_reports_nfe_and_overhead(tmp_path, tiny_model_dir):
    stdout = run("decoding.py", "--model", str(tiny_model_dir), "--batches", "2", "--reps", "1", "--presets",
                 "semi_ar", "ass", "--threads", "1", "--out", str(tmp_path / "d.json"))
    assert "| semi_ar + temporal callback |" in stdout
    rows = {(r["setting"], r["batch"]): r for r in json.loads((tmp_path / "d.json").read_text())["rows"]}
    assert rows[("semi_ar", 2)]["nfe"] == 64 and rows[("ass", 2)]["nfe"] == 6  # log2(64) steps
    assert 0 <= rows[("semi_ar", 2)]["overhead"] < 1
    plain, scored = rows[("infill (no exit)", 2)], rows[("infill + answer-likelihood callback", 2)]
    assert scored["passes"] == plain["passes"] > 0, "the answer-likelihood score reuses the decode's passes"
    posterior = rows[("posterior sampling + trace score", 2)]
    assert posterior["passes"] == posterior["nfe"] + 1, "the reasoning steps, plus one pass to score the traces"


def test_rl_step_benchmark_replays_log2_states_with_ass(tmp_path, tiny_model_dir):
    stdout = run("rl_step.py", "--model", str(tiny_model_dir), "--prompts", "1", "--generations", "2", "--reps", "1",
                 "--gen-length", "16", "--threads", "1", "--cpu", "--out", str(tmp_path / "r.json"), "--settings",
                 "trajectory (CJ-GRPO), eoser_ass log2 L steps", "trajectory (CJ-GRPO), semi_ar L/2 steps",
                 "one_step + TCR reward (-TSE), semi_ar L/2 steps")
    assert "| setting | states replayed |" in stdout
    rows = {r["setting"]: r for r in json.loads((tmp_path / "r.json").read_text())["rows"]}
    assert rows["trajectory (CJ-GRPO), eoser_ass log2 L steps"]["states"] == 4  # log2(16)
    assert rows["trajectory (CJ-GRPO), semi_ar L/2 steps"]["states"] == 8
    assert all(r["rollout_s"] > 0 and r["update_s"] > 0 for r in rows.values())
    assert all(0 < r["forward_share"] <= 1 and r["rollout_tokens_per_s"] > 0 for r in rows.values())
    assert "| one_step + TCR reward (-TSE), semi_ar L/2 steps |" in stdout


def test_gpu_benchmark_runs_scaled_down_on_this_machine(tmp_path):
    """The GPU benchmark's code path on CPU (--smoke): every cache row, the FLOP count and the LoRA GRPO updates."""
    stdout = run("gpu_decode.py", "--smoke", "--batches", "2", "--gen-length", "32", "--block", "16",
                 "--prompt-length", "12", "--reps", "1", "--rl-updates", "1", "--rl-gen-length", "32",
                 "--skip-embedded", "--out", str(tmp_path / "g.json"))
    assert "| model | batch | cache |" in stdout and "GRPO with LoRA r128" in stdout
    result = json.loads((tmp_path / "g.json").read_text())
    assert [r["cache"] for r in result["rows"]] == ["none", "prefix", "dual", "dual, window 16"]
    assert all(r["nfe"] == 32 and r["tokens_per_s"] > 0 and r["tflops"] > 0 for r in result["rows"])
    assert result["grpo"]["rows"] == 16 and result["smoke"] is True


def test_decoding_benchmark_cache_rows_compare_with_the_uncached_decode(tmp_path, tiny_lm):
    from dllm_lab.models import DiffusionLM, build_tiny_model

    tok = tiny_lm.tokenizer
    llama = build_tiny_model(tok, hidden_size=32, num_layers=1, num_heads=2, intermediate_size=64, arch="llama")
    DiffusionLM(llama, tok, "bidirectional", tok.mask_token_id, (tok.eos_token_id,)).save_pretrained(tmp_path / "m")
    stdout = run("decoding.py", "--cache-model", str(tmp_path / "m"), "--cache-batches", "2", "--reps", "1",
                 "--threads", "1", "--prompt-length", "40", "--cache-refresh", "1", "--cache-window", "224",
                 "--cache-presets", "semi_ar", "posterior", "--cache-per-task", "1", "--out", str(tmp_path / "c.json"))
    assert "| cache=dual | 2 | 256 |" in stdout and "| posterior | 64 / 16 |" in stdout
    result = json.loads((tmp_path / "c.json").read_text())
    rows = {r["setting"]: r for r in result["rows"]}
    assert list(rows) == ["cache=none", "cache=prefix", "cache=dual", "cache=dual, window 224",
                          "cache=prefix, refresh every 1", "cache=dual, refresh every 1"]
    assert all(0 <= rows[k]["agreement"] <= 1 and rows[k]["speedup"] > 0 for k in list(rows)[1:])
    for r in list(rows.values())[1:]:  # the mean of the per-prompt agreements, inside its interval
        assert len(r["agreement_per_prompt"]) == 2 and abs(sum(r["agreement_per_prompt"]) / 2 - r["agreement"]) < 1e-6
        assert r["agreement_low"] <= r["agreement"] <= r["agreement_high"]
    # refreshing at every pass is the uncached decode
    assert rows["cache=dual, refresh every 1"]["agreement"] == rows["cache=prefix, refresh every 1"]["agreement"] == 1
    # a window over all 224 positions after the first block leaves nothing cached after a block: the prefix cache
    assert rows["cache=dual, window 224"]["agreement"] == rows["cache=prefix"]["agreement"]
    presets = {r["preset"]: r for r in result["presets"]}
    assert presets["semi_ar"]["batch"] == 3 and presets["posterior"]["batch"] == 2  # countdown has no gold answer
    assert all(0 <= r[f"{c}_agreement"] <= 1 for r in presets.values() for c in ("prefix", "dual", "dual_window"))
