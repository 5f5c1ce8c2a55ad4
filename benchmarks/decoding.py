"""Decoding speed per preset on the embedded model: NFE, generated tokens/s and the engine's overhead.

Overhead = wall time minus time spent inside model forward passes, as a share of the wall time: what the
engine itself costs (scoring, selection, bookkeeping, callbacks). Extra rows measure the trajectory
recorder and the temporal callback (TCV/TSE parsing) against plain semi-AR decoding at the same batch.

    python benchmarks/decoding.py [--batches 1 32] [--reps 3] [--presets semi_ar threshold ...] [--threads 2]

Targets (issues 3 and 4): overhead <= 10% at batch 32; trajectory recorder <= +5% wall; temporal
callback <= +5% wall with zero extra forward passes. Prints a Markdown table; writes
benchmarks/results/decoding.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from dllm_lab.decoding import DecodeConfig, TrajectoryRecorder, decode
from dllm_lab.factory import load_decoder_preset
from dllm_lab.models import load_model
from dllm_lab.paths import config_dir, project_root
from dllm_lab.tasks import get_task
from dllm_lab.temporal import TemporalCallback


class ForwardTimer:
    """Wraps ``lm.logits`` and accumulates the time spent in it."""

    def __init__(self, lm) -> None:
        self.inner, self.seconds, self.calls = lm.logits, 0.0, 0
        lm.logits = self

    def __call__(self, *args, **kwargs):
        start = time.perf_counter()
        out = self.inner(*args, **kwargs)
        self.seconds += time.perf_counter() - start
        self.calls += 1
        return out


def measure(lm, timer, prompts, cfg, reps, make_callbacks=lambda: []):
    walls, model_s, nfe = [], [], None
    decode(lm, prompts, cfg, make_callbacks())  # warm-up
    for _ in range(reps):
        timer.seconds = 0.0
        start = time.perf_counter()
        out = decode(lm, prompts, cfg, make_callbacks())
        walls.append(time.perf_counter() - start)
        model_s.append(timer.seconds)
        nfe = float(out.nfe_per_sample.float().mean())
    wall = statistics.median(walls)
    overhead = statistics.median((w - m) / w for w, m in zip(walls, model_s, strict=True))
    return {"wall_s": wall, "nfe": nfe, "tokens_per_s": len(prompts) * cfg.gen_length / wall, "overhead": overhead}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(project_root() / "checkpoints" / "tiny-mdlm"))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--reps", type=int, default=3)
    presets = sorted(p.stem for p in (config_dir() / "decoder").glob("*.yaml"))
    parser.add_argument("--presets", nargs="+", default=presets)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "decoding.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    timer = ForwardTimer(lm)
    task = get_task("arith", prompt_style="compact")
    examples = task.synthetic(max(args.batches), seed=99)
    rows = []
    for batch in args.batches:
        prompts = [task.build_prompt(e) for e in examples[:batch]]
        for name in args.presets:
            values = load_decoder_preset(name)
            if name == "infill_early_exit":  # the embedded model's own answer delimiter
                values.update(infill_delimiter="</reasoning>\n<answer>\n\\boxed{", infill_closing="}\n</answer>")
            rows.append({"setting": name, "batch": batch,
                         **measure(lm, timer, prompts, DecodeConfig.from_dict(values), args.reps)})
        semi_ar = DecodeConfig.from_dict(load_decoder_preset("semi_ar"))
        base = next(r for r in rows if r["setting"] == "semi_ar" and r["batch"] == batch)
        for label, make in (
            ("semi_ar + trajectory recorder", lambda: [TrajectoryRecorder()]),
            ("semi_ar + temporal callback", lambda p=prompts: [TemporalCallback(lm, task, examples[: len(p)])]),
        ):
            r = {"setting": label, "batch": batch, **measure(lm, timer, prompts, semi_ar, args.reps, make)}
            r["extra_wall"] = r["wall_s"] / base["wall_s"] - 1
            rows.append(r)

    print(f"\nDecoding on {Path(args.model).name}, gen_length per preset (64), {torch.get_num_threads()} threads, "
          f"median of {args.reps}\n")
    print("| setting | batch | NFE | tokens/s | engine overhead | extra wall vs semi_ar |")
    print("|---|---:|---:|---:|---:|---:|")
    for r in rows:
        extra = f"{r['extra_wall']:+.1%}" if "extra_wall" in r else ""
        print(f"| {r['setting']} | {r['batch']} | {r['nfe']:.1f} | {r['tokens_per_s']:,.0f} | "
              f"{r['overhead']:.1%} | {extra} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
