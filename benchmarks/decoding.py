"""Decoding speed per preset on the embedded model: NFE, generated tokens/s and the engine's overhead.

Overhead = wall time minus time spent inside model forward passes, as a share of the wall time: what the
engine itself costs (scoring, selection, bookkeeping, callbacks). Extra rows measure the trajectory
recorder and the temporal callback (TCV/TSE parsing) against plain semi-AR decoding at the same batch, and
No Compute Left Behind's pieces: the answer-likelihood callback against the same infilling decode without
it, and posterior sampling (gold answer pre-filled, plus the one pass that scores each finished trace)
against plain semi-AR. "passes" counts the model's forward calls per decode.

    python benchmarks/decoding.py [--batches 1 32] [--reps 3] [--presets semi_ar threshold ...] [--threads 2]
    python benchmarks/decoding.py --cache-model checkpoints/tiny-llama-long [--cache-batches 1 8] [--reps 3]

The second form measures the KV caches (issue 18): uncached, prefix and dual decodes side by side in one run,
gen_length 256, block 32, one token per step, a 200-token prompt, on a model that can cache; speed-up and
token agreement are against the uncached decode of the same prompts (targets: prefix >= 2.5x, dual >= 5x,
agreement >= 98%); ``--cache-window`` adds dual rows with ``decoder.cache_window``, ``--cache-refresh`` rows
with ``decoder.cache_refresh``. A second table gives the same for every decoder preset at its own settings
(the windowed dual cache with a window of one block), on task prompts (``--cache-presets`` picks them; none
skips it). Writes benchmarks/results/decoding_cache.json.

Targets (issues 3, 4 and 15): overhead <= 10% at batch 32; trajectory recorder <= +5% wall; temporal
callback <= +5% wall with zero extra forward passes; the answer-likelihood callback adds no forward pass.
Prints a Markdown table; writes benchmarks/results/decoding.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from dllm_lab.decoding import DecodeConfig, InfillTemplate, TrajectoryRecorder, decode
from dllm_lab.decoding.infill import AnswerLikelihood, encode_answers, trace_records
from dllm_lab.evaluation.stats import paired_bootstrap
from dllm_lab.factory import load_decoder_preset
from dllm_lab.models import left_pad, load_model
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


def measure(lm, timer, prompts, cfg, reps, make_callbacks=lambda: [], answers=None, after=None):
    """Median wall, NFE per sample, forward passes per decode, tokens/s and overhead; ``after(out)`` runs
    inside the timed region (the trace score of posterior sampling)."""
    walls, model_s, nfe, passes = [], [], None, 0
    decode(lm, prompts, cfg, make_callbacks(), answers=answers)  # warm-up
    for _ in range(reps):
        timer.seconds, timer.calls = 0.0, 0
        start = time.perf_counter()
        out = decode(lm, prompts, cfg, make_callbacks(), answers=answers)
        if after is not None:
            after(out)
        walls.append(time.perf_counter() - start)
        model_s.append(timer.seconds)
        nfe, passes = float(out.nfe_per_sample.float().mean()), timer.calls
    wall = statistics.median(walls)
    overhead = statistics.median((w - m) / w for w, m in zip(walls, model_s, strict=True))
    return {"wall_s": wall, "nfe": nfe, "passes": passes, "tokens_per_s": len(prompts) * cfg.gen_length / wall,
            "overhead": overhead}


def ncl_rows(lm, timer, task, examples, prompts, semi_ar_row, reps) -> list[dict]:
    """The answer-likelihood callback vs the same infilling decode, and posterior sampling vs semi-AR."""
    batch = len(prompts)
    infill = DecodeConfig.from_dict(load_decoder_preset("infill_early_exit")).replace(early_exit=False)
    template = InfillTemplate.from_config(infill, lm.tokenizer)
    gold = [task.gold_answer_text(e) for e in examples]
    gold_ids = encode_answers(lm.tokenizer, gold)
    plain = {"setting": "infill (no exit)", "batch": batch, **measure(lm, timer, prompts, infill, reps)}
    scored = {"setting": "infill + answer-likelihood callback", "batch": batch,
              **measure(lm, timer, prompts, infill, reps, lambda: [AnswerLikelihood(template, gold_ids)])}
    scored["extra_wall"] = scored["wall_s"] / plain["wall_s"] - 1
    posterior = DecodeConfig.from_dict(load_decoder_preset("posterior"))
    ids, mask = left_pad([lm.chat.prompt_ids(p, task.chat_template) for p in prompts], lm.pad_token_id)
    sampled = {"setting": "posterior sampling + trace score", "batch": batch,
               **measure(lm, timer, ids, posterior, reps, answers=gold,
                         after=lambda out: trace_records(lm, posterior, out, mask, gold))}
    sampled["extra_wall"] = sampled["wall_s"] / semi_ar_row["wall_s"] - 1
    return [plain, scored, sampled]


def long_prompts(lm, task, examples, length: int) -> torch.Tensor:
    """(B, length) prompt ids: chat prompts of several problems in a row, cut to ``length`` tokens in the
    middle (the chat header and the last problem, with the generation header, stay)."""
    rows = []
    for i in range(len(examples)):
        text, j = "", i
        while len(lm.chat.prompt_ids(text)) < length:
            text += task.build_prompt(examples[j % len(examples)]) + "\n"
            j += 1
        ids = lm.chat.prompt_ids(text)
        rows.append(ids[:4] + ids[len(ids) - (length - 4):])
    return torch.tensor(rows)


def timed_decode(lm, prompts, cfg: DecodeConfig, reps: int, answers=None):
    """The last of ``reps`` decodes and their median wall time in seconds."""
    walls = []
    for _ in range(reps):
        start = time.perf_counter()
        out = decode(lm, prompts, cfg, answers=answers)
        walls.append(time.perf_counter() - start)
    return out, statistics.median(walls)


def cache_rows(lm, prompts: torch.Tensor, reps: int, refresh: list[int], windows: list[int],
               gen_length: int = 256, block: int = 32) -> list[dict]:
    """Uncached, prefix and dual decodes of the same prompts (then the dual cache with each window in
    ``windows``, and each cache refreshing every k passes, for k in ``refresh``): tokens/s, speed-up and token
    agreement with the uncached decode."""
    rows, base = [], None
    settings = [("none", None, 0), ("prefix", None, 0), ("dual", None, 0)]
    settings += [("dual", None, w) for w in windows]
    settings += [(cache, k, 0) for k in refresh for cache in ("prefix", "dual")]
    for cache, k, w in settings:
        cfg = DecodeConfig(gen_length=gen_length, block_length=block, steps=gen_length, cache=cache,
                           cache_refresh=k, cache_window=w)
        decode(lm, prompts[:1], cfg.replace(gen_length=block, block_length=block, steps=block))  # warm-up
        out, wall = timed_decode(lm, prompts, cfg, reps)
        setting = f"cache={cache}" + (f", window {w}" if w else "") + (f", refresh every {k}" if k else "")
        row = {"setting": setting, "batch": len(prompts), "nfe": out.nfe,
               "tokens_per_s": len(prompts) * gen_length / wall, "wall_s": wall}
        if base is None:
            base = (row, out.sequences)
        else:
            content = base[1] != lm.eos_token_ids[0]  # positions the uncached decode filled with non-EOS tokens
            row["speedup"] = row["tokens_per_s"] / base[0]["tokens_per_s"]
            same = out.sequences == base[1]
            row["agreement"] = float(same.float().mean())
            row["agreement_per_prompt"] = same.float().mean(1).tolist()
            if len(prompts) > 1:  # 95% interval of the mean over prompts (a bootstrap over prompts)
                ci = paired_bootstrap(row["agreement_per_prompt"], [0.0] * len(prompts))
                row["agreement_low"], row["agreement_high"] = ci.low, ci.high
            row["agreement_content"] = float(same[content].float().mean()) if content.any() else None
        rows.append(row)
    return rows


def cache_preset_rows(lm, presets: list[str], per_task: int, reps: int) -> list[dict]:
    """Every decoder preset at its own settings on the task prompts (``per_task`` of each synthetic task in one
    batch): the prefix and dual caches' token agreement with the uncached decode, and their speed-up."""
    ids, gold = [], []
    for name in ("arith", "countdown", "sudoku4"):
        task = get_task(name, prompt_style=lm.prompt_style)
        for e in task.synthetic(per_task, seed=99):
            ids.append(lm.chat.prompt_ids(task.build_prompt(e), task.chat_template))
            gold.append(task.gold_answer_text(e))
    rows = []
    for name in presets:
        cfg = DecodeConfig.from_dict(load_decoder_preset(name))
        # posterior sampling pre-fills the gold answer: only the problems that have one (not countdown)
        rows_in = [i for i, g in enumerate(gold) if g is not None] if cfg.posterior else list(range(len(ids)))
        prompts = [ids[i] for i in rows_in]
        answers = [gold[i] for i in rows_in] if cfg.posterior else None
        settings = {"none": {"cache": "none"}, "prefix": {"cache": "prefix"}, "dual": {"cache": "dual"},
                    "dual_window": {"cache": "dual", "cache_window": cfg.block}}
        runs = {key: timed_decode(lm, prompts, cfg.replace(**changes), reps, answers)
                for key, changes in settings.items()}
        base, wall = runs["none"]
        row = {"preset": name, "batch": len(prompts), "gen_length": cfg.gen_length, "block_length": cfg.block_length,
               "nfe": float(base.nfe_per_sample.float().mean())}
        for key in ("prefix", "dual", "dual_window"):
            out, w = runs[key]
            row[f"{key}_speedup"] = wall / w
            row[f"{key}_agreement"] = float((out.sequences == base.sequences).float().mean())
        rows.append(row)
    return rows


def print_cache_rows(rows: list[dict], lm, args) -> None:
    print(f"\nKV cache on {Path(args.cache_model).name} ({lm.family}), gen_length 256, block 32, 256 steps, "
          f"{args.prompt_length}-token prompts, {torch.get_num_threads()} threads, median of {args.reps}\n")
    print("| setting | batch | NFE | tokens/s | speed-up | token agreement [95% over prompts] | "
          "agreement on non-EOS tokens |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        speed = f"{r['speedup']:.2f}x" if "speedup" in r else "1.00x"
        agree = f"{r['agreement']:.1%}" if "agreement" in r else "-"
        if "agreement_low" in r:
            agree += f" [{r['agreement_low']:.1%}, {r['agreement_high']:.1%}]"
        content = f"{r['agreement_content']:.1%}" if r.get("agreement_content") is not None else "-"
        print(f"| {r['setting']} | {r['batch']} | {r['nfe']} | {r['tokens_per_s']:,.1f} | {speed} | {agree} | "
              f"{content} |")


def print_cache_presets(presets: list[dict], args) -> None:
    print(f"\nPer decoder preset, at its own gen_length / block_length, on {args.cache_per_task} prompts each of "
          f"arith, countdown and sudoku4 in one batch (posterior: those with a gold answer), median of {args.reps}\n")
    print("| preset | gen / block | NFE | prefix speed-up | prefix agreement | dual speed-up | dual agreement | "
          "dual, window one block: speed-up | agreement |")
    print("|---|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in presets:
        print(f"| {r['preset']} | {r['gen_length']} / {r['block_length'] or r['gen_length']} | {r['nfe']:.1f} | "
              f"{r['prefix_speedup']:.2f}x | {r['prefix_agreement']:.1%} | {r['dual_speedup']:.2f}x | "
              f"{r['dual_agreement']:.1%} | {r['dual_window_speedup']:.2f}x | {r['dual_window_agreement']:.1%} |")


def cache_main(args) -> None:
    lm = load_model(args.cache_model)
    task = get_task("arith", prompt_style=lm.prompt_style)
    examples = task.synthetic(max(args.cache_batches, default=0) + 8, seed=99)
    rows = []
    for batch in args.cache_batches:
        prompts = long_prompts(lm, task, examples[: batch + 8], args.prompt_length)[:batch]
        rows += cache_rows(lm, prompts, args.reps, args.cache_refresh, args.cache_window)
    if rows:
        print_cache_rows(rows, lm, args)
    presets = cache_preset_rows(lm, args.cache_presets, args.cache_per_task, args.reps) if args.cache_presets else []
    if presets:
        print_cache_presets(presets, args)
    out = Path(args.out).with_name("decoding_cache.json") if args.out == DEFAULT_OUT else Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({"threads": torch.get_num_threads(), "model": str(args.cache_model), "rows": rows,
                               "presets": presets}, indent=1))


DEFAULT_OUT = str(Path(__file__).parent / "results" / "decoding.json")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(project_root() / "checkpoints" / "tiny-mdlm"))
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 32])
    parser.add_argument("--reps", type=int, default=3)
    presets = sorted(p.stem for p in (config_dir() / "decoder").glob("*.yaml"))
    parser.add_argument("--presets", nargs="+", default=presets)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=DEFAULT_OUT)
    parser.add_argument("--cache-model", help="measure the KV caches on this model (it must be able to cache)")
    parser.add_argument("--cache-batches", type=int, nargs="*", default=[1, 8])
    parser.add_argument("--prompt-length", type=int, default=200)
    parser.add_argument("--cache-presets", nargs="*", default=[p for p in presets if p != "base"],
                        help="decoder presets whose cache agreement is measured (none: skip that table)")
    parser.add_argument("--cache-per-task", type=int, default=8)
    parser.add_argument("--cache-window", type=int, nargs="*", default=[32],
                        help="also measure the dual cache recomputing w positions after the block "
                             "(decoder.cache_window)")
    parser.add_argument("--cache-refresh", type=int, nargs="*", default=[8],
                        help="also measure each cache refreshed every k passes of a block (decoder.cache_refresh)")
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.cache_model:
        cache_main(args)
        return
    lm = load_model(args.model)
    timer = ForwardTimer(lm)
    task = get_task("arith", prompt_style="compact")
    examples = task.synthetic(max(args.batches), seed=99)
    rows = []
    for batch in args.batches:
        prompts = [task.build_prompt(e) for e in examples[:batch]]
        for name in args.presets:
            values = load_decoder_preset(name)
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
        rows += ncl_rows(lm, timer, task, examples[:batch], prompts, base, args.reps)

    print(f"\nDecoding on {Path(args.model).name}, gen_length per preset (64), {torch.get_num_threads()} threads, "
          f"median of {args.reps}\n")
    print("| setting | batch | NFE | passes | tokens/s | engine overhead | extra wall |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        extra = f"{r['extra_wall']:+.1%}" if "extra_wall" in r else ""
        print(f"| {r['setting']} | {r['batch']} | {r['nfe']:.1f} | {r['passes']} | {r['tokens_per_s']:,.0f} | "
              f"{r['overhead']:.1%} | {extra} |")
    print("\nextra wall: against semi_ar at the same batch; the answer-likelihood callback against infill (no exit).")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"threads": torch.get_num_threads(), "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
