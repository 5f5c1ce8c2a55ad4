"""One RL step per estimator on the embedded model: rollout time, tokens/s and the share of it spent inside
model forward passes, update time, peak memory.

The update of ``one_step`` / ``full_mask`` costs about one forward/backward per inner iteration;
``trajectory`` (CJ-GRPO) about ``S`` of them, one per recorded step. The CJ-GRPO memory claim is
measured by replaying the same rollout batch with EOSER + ascending step sizes (log2 L states) and with
semi-AR at L/2 steps (L/2 states). Each setting runs in its own process, so the peak memory it reports
is its own: on CPU the growth of peak RSS over the process' RSS before the step, on CUDA
``max_memory_allocated``.

    python benchmarks/rl_step.py [--prompts 4] [--generations 4] [--gen-length 64] [--iterations 1]
        [--reps 3] [--threads 2]

Prints a Markdown table (medians over ``--reps`` steps); writes benchmarks/results/rl_step.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

from dllm_lab.paths import project_root


def half_steps(L: int) -> dict:
    return {"steps": L // 2}


# label -> (estimator, decoder preset, decoder overrides given the generation length L, rewards)
SETTINGS = {
    "one_step (diffu-GRPO), semi_ar L/2 steps": ("one_step", "semi_ar", half_steps, {"task": 1.0}),
    "one_step + TCR reward (-TSE), semi_ar L/2 steps": ("one_step", "semi_ar", half_steps, {"tcr": 1.0}),
    "full_mask, semi_ar L/2 steps": ("full_mask", "semi_ar", half_steps, {"task": 1.0}),
    "trajectory (CJ-GRPO), eoser_ass log2 L steps": ("trajectory", "eoser_ass", lambda L: {}, {"task": 1.0}),
    "trajectory (CJ-GRPO), semi_ar L/2 steps": ("trajectory", "semi_ar", half_steps, {"task": 1.0}),
}


def _rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux: KiB


def run_one(label: str, args: argparse.Namespace) -> dict:
    """Measure one setting in this process (called in a fresh subprocess by :func:`main`)."""
    from decoding import ForwardTimer  # benchmarks/decoding.py: time spent inside lm.logits

    from dllm_lab.decoding import DecodeConfig
    from dllm_lab.factory import load_decoder_preset
    from dllm_lab.models import left_pad, load_model
    from dllm_lab.rl import GRPOSettings, policy_loss
    from dllm_lab.tasks import get_task
    from dllm_lab.training.grpo import GRPOModule

    if args.threads:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() and not args.cpu else "cpu")
    estimator, preset, extra, rewards = SETTINGS[label]
    L = args.gen_length
    values = {**load_decoder_preset(preset), "gen_length": L, **extra(L), "temperature": 1.0}
    if preset == "semi_ar":
        values["block_length"] = min(values["block_length"], L)
    lm = load_model(args.model).to(device)
    settings = GRPOSettings(estimator=estimator, num_generations=args.generations, num_iterations=args.iterations,
                            beta=0.0, temperature=1.0, rewards=rewards)
    module = GRPOModule(lm, settings, DecodeConfig.from_dict(values)).to(device)
    timer = ForwardTimer(lm)
    optimizer = torch.optim.AdamW([p for p in lm.parameters() if p.requires_grad], lr=1e-6)
    task = get_task("countdown", prompt_style="compact")
    examples = task.synthetic(args.prompts * (args.reps + 1), seed=7)
    rollouts, updates, peaks, states, forward_shares = [], [], [], [], []
    for rep in range(args.reps + 1):  # the first step warms up
        chunk = examples[rep * args.prompts : (rep + 1) * args.prompts]
        ids, mask = left_pad([lm.chat.prompt_ids(task.build_prompt(e)) for e in chunk], lm.pad_token_id)
        batch = {"prompt_ids": ids.to(device), "attention_mask": mask.to(device), "examples": chunk,
                 "tasks": ["countdown"] * len(chunk)}
        timer.seconds = 0.0
        start = time.perf_counter()
        ro = module.rollout(batch)
        if device.type == "cuda":
            torch.cuda.synchronize()
        rollout_s = time.perf_counter() - start
        forward_share = timer.seconds / rollout_s
        if device.type == "cuda":
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated() / 2**20
        else:
            base = _rss_mb()
        start = time.perf_counter()
        for i in range(args.iterations):
            logp, tok_mask = module.estimator.logps(lm, ro, i)
            loss, _ = policy_loss(logp, logp.detach(), None, ro.advantages, tok_mask, beta=0.0)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
        if device.type == "cuda":
            torch.cuda.synchronize()
            peak = torch.cuda.max_memory_allocated() / 2**20 - base
        else:
            peak = _rss_mb() - base
        if rep:
            rollouts.append(rollout_s)
            forward_shares.append(forward_share)
            updates.append(time.perf_counter() - start)
            peaks.append(peak)
            states.append(ro.num_steps if estimator == "trajectory" else 1)
    rollout_s = statistics.median(rollouts)
    return {"setting": label, "rollout_s": rollout_s, "update_s": statistics.median(updates),
            "rollout_tokens_per_s": args.prompts * args.generations * L / rollout_s,
            "forward_share": statistics.median(forward_shares),
            "peak_mb": max(peaks), "states": statistics.median(states), "device": device.type,
            "rows": args.prompts * args.generations}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default=str(project_root() / "checkpoints" / "tiny-mdlm"))
    parser.add_argument("--prompts", type=int, default=4)
    parser.add_argument("--generations", type=int, default=4)
    parser.add_argument("--gen-length", type=int, default=64)
    parser.add_argument("--iterations", type=int, default=1)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--cpu", action="store_true", help="stay on CPU even when CUDA is available")
    parser.add_argument("--settings", nargs="+", default=list(SETTINGS), choices=list(SETTINGS))
    parser.add_argument("--one", help=argparse.SUPPRESS)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "rl_step.json"))
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args)))
        return
    rows = []
    for label in args.settings:  # the child reads the same arguments; --one makes it measure one setting
        out = subprocess.run([sys.executable, __file__, *sys.argv[1:], "--one", label], check=True,
                             capture_output=True, text=True)
        rows.append(json.loads(out.stdout.strip().splitlines()[-1]))
    print(f"\nOne RL step on {Path(args.model).name}: {args.prompts} prompts x {args.generations} generations, "
          f"L={args.gen_length}, mu={args.iterations}, {rows[0]['device']}, median of {args.reps}\n")
    print("| setting | states replayed | rollout s | rollout tokens/s | forward share of rollout | update s | "
          "update peak memory MB |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(f"| {r['setting']} | {r['states']:.0f} | {r['rollout_s']:.2f} | {r['rollout_tokens_per_s']:,.0f} | "
              f"{r['forward_share']:.1%} | {r['update_s']:.2f} | {r['peak_mb']:.1f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"args": {k: v for k, v in vars(args).items() if k != "one"},
                                          "rows": rows}, indent=1))


if __name__ == "__main__":
    main()
