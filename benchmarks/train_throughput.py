"""Training throughput: the Lightning SFT loop vs a plain PyTorch loop, same model, same batches.

Both loops run the same MDLMModule loss, AdamW + warm-up/cosine schedule and gradient clipping on the
same pre-generated batches (data generation is excluded from both). The rounds alternate between the
two loops so machine noise hits both alike. Reported: median step time and tokens/s over the timed
steps, and Lightning's overhead relative to the plain loop. Then the streaming DataModule's own cost: the
median time to produce one batch from the synthetic generators, from the same with the infilling layout
and block noise on, and from a local GSM8K-format jsonl file, as a share of the Lightning step (target: at
most 5%).

    python benchmarks/train_throughput.py [--steps 20] [--rounds 3] [--batch-size 64] [--threads 2]

Prints a Markdown table and writes benchmarks/results/train_throughput.json.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from pathlib import Path

import lightning as L
import torch

from dllm_lab.data import TaskDataModule
from dllm_lab.models import DiffusionLM, build_tiny_model, build_tokenizer
from dllm_lab.models.tiny import task_corpus
from dllm_lab.training.mdlm import MDLMModule
from dllm_lab.training.optim import OptimSettings

WARMUP = 3


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.starts: list[float] = []

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self.starts.append(time.perf_counter())

    def on_train_end(self, trainer, pl_module) -> None:
        self.starts.append(time.perf_counter())


def build(seed: int = 0) -> DiffusionLM:
    tokenizer = build_tokenizer(task_corpus(["arith", "countdown", "sudoku4"], 1000), 1024)
    return DiffusionLM(build_tiny_model(tokenizer, seed=seed), tokenizer, "masked_lm", tokenizer.mask_token_id,
                       (tokenizer.eos_token_id,))


def plain_loop(lm: DiffusionLM, batches: list[dict]) -> list[float]:
    module = MDLMModule(lm, OptimSettings(total_steps=len(batches)))
    opt_cfg = module.configure_optimizers()
    optimizer, scheduler = opt_cfg["optimizer"], opt_cfg["lr_scheduler"]["scheduler"]
    lm.train()
    starts = []
    for batch in batches:
        starts.append(time.perf_counter())
        loss = module._loss(batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(lm.parameters(), 1.0)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)
    starts.append(time.perf_counter())
    return [b - a for a, b in zip(starts, starts[1:], strict=False)]


def lightning_loop(lm: DiffusionLM, batches: list[dict]) -> list[float]:
    module = MDLMModule(lm, OptimSettings(total_steps=len(batches)))
    timer = StepTimer()
    trainer = L.Trainer(
        accelerator="cpu", devices=1, max_steps=len(batches), logger=False, enable_checkpointing=False,
        enable_progress_bar=False, enable_model_summary=False, gradient_clip_val=1.0, limit_val_batches=0,
        callbacks=[timer],
    )
    trainer.fit(module, train_dataloaders=torch.utils.data.DataLoader(batches, batch_size=None))
    return [b - a for a, b in zip(timer.starts, timer.starts[1:], strict=False)]


def loading_sources(lm: DiffusionLM, batch_size: int, folder: Path) -> dict[str, TaskDataModule]:
    """DataModules for the loading rows: the default mixture, with infill layout + block noise, a local file."""
    gsm8k = folder / "gsm8k_train.jsonl"
    rows = [{"question": f"Ann has {i} apples and buys {i % 7 + 2} more. How many apples does she have?",
             "answer": f"{i} + {i % 7 + 2} = <<{i}+{i % 7 + 2}={i + i % 7 + 2}>>{i + i % 7 + 2}\n#### {i + i % 7 + 2}"}
            for i in range(2000)]
    gsm8k.write_text("".join(json.dumps(r) + "\n" for r in rows))
    common = {"batch_size": batch_size, "min_response_length": 64}
    return {
        "synthetic mixture": TaskDataModule(lm.chat, lm.mask_token_id, **common),
        "synthetic, infill layout + block noise": TaskDataModule(
            lm.chat, lm.mask_token_id, infill_prob=0.5, block_noise_prob=0.5, block_noise_cut="=", **common),
        "local GSM8K jsonl (2,000 rows)": TaskDataModule(
            lm.chat, lm.mask_token_id, tasks=["gsm8k"], eval_tasks={"arith": "synthetic"},
            train_sources={"gsm8k": str(gsm8k)}, **common),
    }


def loading_times(datamodule: TaskDataModule, steps: int) -> float:
    """Median seconds to produce one batch (after the first, which opens the stream)."""
    stream = iter(datamodule.train_dataloader())
    next(stream)
    times = []
    for _ in range(steps):
        start = time.perf_counter()
        next(stream)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "train_throughput.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    lm = build()
    data = TaskDataModule(lm.chat, lm.mask_token_id, batch_size=args.batch_size, min_response_length=64)
    stream = iter(data.train_dataloader())
    batches = [next(stream) for _ in range(args.steps)]
    tokens = statistics.mean(b["input_ids"].numel() for b in batches)

    times: dict[str, list[float]] = {"plain PyTorch": [], "Lightning": []}
    for _ in range(args.rounds):
        for name, loop in (("plain PyTorch", plain_loop), ("Lightning", lightning_loop)):
            times[name] += loop(build(), batches)[WARMUP:]
    med = {k: statistics.median(v) for k, v in times.items()}
    overhead = med["Lightning"] / med["plain PyTorch"] - 1

    print(f"\nTraining throughput, tiny model ({sum(p.numel() for p in lm.parameters()) / 1e6:.2f}M params), "
          f"batch {args.batch_size} x ~{tokens / args.batch_size:.0f} tokens, {torch.get_num_threads()} threads, "
          f"{args.rounds} rounds x {args.steps - WARMUP} timed steps\n")
    print("| loop | median step (s) | tokens/s |")
    print("|---|---:|---:|")
    for name, m in med.items():
        print(f"| {name} | {m:.3f} | {tokens / m:,.0f} |")
    print(f"\nLightning overhead: {overhead:+.1%} (target: at most +10%)")
    with tempfile.TemporaryDirectory() as tmp:
        loading = {name: loading_times(dm, args.steps) for name, dm in loading_sources(lm, args.batch_size,
                                                                                       Path(tmp)).items()}
    print(f"\n| data source (batch {args.batch_size}) | median batch (s) | share of the Lightning step |")
    print("|---|---:|---:|")
    for name, seconds in loading.items():
        print(f"| {name} | {seconds:.4f} | {seconds / med['Lightning']:.1%} |")
    print("\n(target: at most 5% of the step)")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps({
        "median_step_s": med, "tokens_per_step": tokens, "tokens_per_s": {k: tokens / m for k, m in med.items()},
        "lightning_overhead": overhead, "loading_s": loading,
        "loading_share": {k: v / med["Lightning"] for k, v in loading.items()},
        "threads": torch.get_num_threads(), "batch_size": args.batch_size,
        "steps": args.steps, "rounds": args.rounds, "torch": torch.__version__, "lightning": L.__version__,
        "machine": platform.machine(), "processor": platform.processor(),
    }, indent=2))


if __name__ == "__main__":
    main()
