"""The answer-likelihood study (No Compute Left Behind, arXiv 2510.19990; experiments/answer_likelihood/).

How well does a partial trace predict the final answer's correctness? Greedy decoding into the
reasoning-as-infilling template, one token per step, left to right (blocks of one token), with the answer
block masked until the reasoning is done. At every step, three scores of the partial trace:

- answer likelihood: mean log p(a*_i | c, r so far) over the gold answer tokens, from that step's own
  forward pass (``decoding.AnswerLikelihood``);
- mean token confidence so far: the mean probability of the tokens committed up to that step;
- temporal agreement so far: the share of the steps so far whose intermediate answer (the answer block of the
  step's full prediction) equals the current one.

For each fraction of the reasoning block decoded, the Pearson correlation of each score with final
correctness over the problems, with a 95% bootstrap band (resampling problems).

    python scripts/answer_likelihood_study.py            # ~10 min on 2 CPU cores
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np
import torch

from dllm_lab.decoding import DecodeCallback, DecodeConfig, InfillTemplate, decode
from dllm_lab.decoding.infill import AnswerLikelihood, encode_answers
from dllm_lab.models import load_model
from dllm_lab.paths import project_root
from dllm_lab.tasks import get_task

FRACTIONS = [round(0.1 * i, 1) for i in range(11)]
SIGNALS = {"answer_ll": "answer likelihood", "confidence": "mean token confidence", "agreement": "temporal agreement"}


class StepSignals(DecodeCallback):
    """Per step and row: the running mean confidence of committed tokens, and the intermediate answer read from
    the answer block of the step's full prediction."""

    name = "step_signals"

    def __init__(self, lm, task, template: InfillTemplate) -> None:
        self.lm, self.task, self.template = lm, task, template

    def on_decode_start(self, state) -> None:
        B = state.canvas.shape[0]
        self._sum, self._count = torch.zeros(B), torch.zeros(B)
        self.confidence: list[torch.Tensor] = []
        self.answers: list[list[str | None]] = []

    def on_step(self, state) -> None:
        committed = state.committed.cpu()
        conf = torch.where(committed, state.confidence.cpu().float(), torch.zeros(()))
        self._sum += conf.sum(1)
        self._count += committed.sum(1)
        self.confidence.append(self._sum / self._count.clamp_min(1))
        a0, A = self.template.answer_start, self.template.answer_length
        drop = {int(t) for t in self.lm.end_token_ids} | {int(self.lm.mask_token_id)}
        step_answers = []
        for row in state.prediction[:, a0:a0 + A].cpu().tolist():
            text = self.lm.tokenizer.decode([t for t in row if t not in drop], skip_special_tokens=True)
            answer = self.task.parse_answer(f"\\boxed{{{text}}}")
            step_answers.append(None if answer is None else str(answer))
        self.answers.append(step_answers)

    def on_decode_end(self, state, output) -> None:
        agreement = []
        for s in range(len(self.answers)):
            now = self.answers[s]
            agreement.append([np.mean([self.answers[j][b] == now[b] for j in range(s + 1)]) if now[b] is not None
                              else 0.0 for b in range(len(now))])
        output.extras[self.name] = {"confidence": torch.stack(self.confidence).numpy(),
                                    "agreement": np.array(agreement)}


def pearson(x: np.ndarray, y: np.ndarray) -> float:
    if x.std() == 0 or y.std() == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def band(x: np.ndarray, y: np.ndarray, resamples: int, rng: np.random.Generator) -> tuple[float, float]:
    idx = rng.integers(0, len(x), size=(resamples, len(x)))
    values = np.array([pearson(x[i], y[i]) for i in idx])
    values = values[np.isfinite(values)]
    if values.size == 0:
        return float("nan"), float("nan")
    return float(np.quantile(values, 0.025)), float(np.quantile(values, 0.975))


def run_task(lm, name: str, num: int, batch: int, config: DecodeConfig) -> dict[str, np.ndarray]:
    task = get_task(name, model=lm)
    examples = task.synthetic(num, seed=1234)  # the held-out test seed of every eval config
    template = InfillTemplate.from_config(config, lm.tokenizer)
    per_problem = {k: [] for k in ("answer_ll", "confidence", "agreement", "unmasked")}
    correct = []
    for start in range(0, num, batch):
        chunk = examples[start:start + batch]
        prompts = [lm.chat.prompt_ids(task.build_prompt(e), task.chat_template) for e in chunk]
        gold = encode_answers(lm.tokenizer, [task.gold_answer_text(e) for e in chunk])
        signals = StepSignals(lm, task, template)
        out = decode(lm, prompts, config, [AnswerLikelihood(template, gold), signals])
        likelihood = out.extras["answer_likelihood"]
        per_problem["answer_ll"].append(likelihood["score"].numpy().T)  # (B, S)
        per_problem["unmasked"].append(likelihood["reasoning_unmasked"].numpy().T)
        per_problem["confidence"].append(out.extras["step_signals"]["confidence"].T)
        per_problem["agreement"].append(out.extras["step_signals"]["agreement"].T)
        correct += [task.is_correct(text, e) for text, e in zip(out.texts, chunk, strict=True)]
    arrays = {k: np.concatenate(v) for k, v in per_problem.items()}
    arrays["correct"] = np.array(correct, dtype=float)
    return arrays


def at_fraction(arrays: dict[str, np.ndarray], signal: str, fraction: float) -> np.ndarray:
    """Each problem's score at the last pass whose input had at most ``fraction`` of the reasoning unmasked
    (the answer likelihood: the last such pass with the answer block still fully masked)."""
    values, unmasked = arrays[signal], arrays["unmasked"]
    out = np.full(len(values), np.nan)
    for b in range(len(values)):
        ok = unmasked[b] <= fraction + 1e-9
        if signal == "answer_ll":
            ok &= np.isfinite(values[b])
        steps = np.nonzero(ok)[0]
        if steps.size:
            out[b] = values[b, steps[-1]]
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(project_root() / "checkpoints" / "tiny-mdlm"))
    parser.add_argument("--tasks", nargs="+", default=["arith", "sudoku4"])
    parser.add_argument("--num", type=int, default=200)
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--resamples", type=int, default=2000)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=str(project_root() / "experiments" / "answer_likelihood"))
    args = parser.parse_args(argv)
    torch.set_num_threads(args.threads)
    lm = load_model(args.model)
    lm.eval()
    for name in args.tasks:
        if not get_task(name).has_gold_answer:
            parser.error(f"--tasks: {name!r} has no single gold answer to score (Countdown); drop it")
    # the paper's protocol: greedy, one token per step, left to right (a block per token)
    config = DecodeConfig(gen_length=80, block_length=1, steps=80, infill=True)
    rng = np.random.default_rng(0)
    results = []
    for name in args.tasks:
        arrays = run_task(lm, name, args.num, args.batch, config)
        for signal in SIGNALS:
            for f in FRACTIONS:
                x = at_fraction(arrays, signal, f)
                keep = np.isfinite(x)
                r = pearson(x[keep], arrays["correct"][keep])
                lo, hi = band(x[keep], arrays["correct"][keep], args.resamples, rng)
                results.append({"task": name, "signal": signal, "fraction": f, "pearson": r, "low": lo, "high": hi,
                                "problems": int(keep.sum()), "accuracy": float(arrays["correct"].mean())})
        print(f"{name}: accuracy {arrays['correct'].mean():.3f} on {args.num} problems", file=sys.stderr)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "results.json").write_text(json.dumps(results, indent=1))
    (out / "results.md").write_text(markdown(results))
    plot(results, out / "correlation_vs_fraction.png")
    print(markdown(results))
    return 0


def markdown(results: list[dict]) -> str:
    lines = []
    for name in dict.fromkeys(r["task"] for r in results):
        rows = [r for r in results if r["task"] == name]
        lines += [f"### {name} (accuracy {rows[0]['accuracy']:.3f}, {rows[0]['problems']} problems)", "",
                  "| reasoning decoded | " + " | ".join(SIGNALS.values()) + " |", "|---:|" + "---:|" * len(SIGNALS)]
        for f in FRACTIONS:
            cells = []
            for signal in SIGNALS:
                r = next(r for r in rows if r["signal"] == signal and r["fraction"] == f)
                cells.append("-" if not np.isfinite(r["pearson"]) else
                             f"{r['pearson']:+.2f} [{r['low']:+.2f}, {r['high']:+.2f}]")
            lines.append(f"| {f:.0%} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


DECODER = "greedy infilling, 1 token per step left to right, L=80"


def correlation_figure(results: list[dict], decoder: str = DECODER):
    """One panel per task: each signal's Pearson r with final correctness against the fraction of the reasoning
    decoded, with its 95% band; the legend above the panels, the study and decoder in the title."""
    from dllm_lab.temporal.plots import figure_title, new_figure, say

    tasks = list(dict.fromkeys(r["task"] for r in results))
    title = figure_title("How well a partial trace predicts final correctness", decoder=decoder,
                         study="answer_likelihood")
    fig, axes = new_figure(4.6 * max(len(tasks), 1) + 1.8, 4.2, 1, max(len(tasks), 1), sharey=True)
    fig.suptitle(title, fontsize=10)
    if not tasks:
        say(axes[0][0], "no results")
        return fig
    for ax, name in zip(axes[0], tasks, strict=True):
        rows_of = [r for r in results if r["task"] == name]
        for i, (signal, label) in enumerate(SIGNALS.items()):
            rows = [r for r in rows_of if r["signal"] == signal]
            f = np.array([r["fraction"] for r in rows])
            ax.plot(f, [r["pearson"] for r in rows], marker="o", ms=3, color=f"C{i}", label=label)
            ax.fill_between(f, [r["low"] for r in rows], [r["high"] for r in rows], color=f"C{i}", alpha=0.2)
        ax.axhline(0, color="black", lw=0.6)
        ax.set_title(f"{name} (accuracy {rows_of[0]['accuracy']:.3f}, {rows_of[0]['problems']} problems)",
                     fontsize=9)
        ax.set_xlabel("fraction of the reasoning decoded", fontsize=8)
        ax.tick_params(labelsize=7)
        ax.grid(lw=0.3, alpha=0.5)
    axes[0][0].set_ylabel("Pearson r with final correctness (95% band)", fontsize=8)
    fig.legend(*axes[0][0].get_legend_handles_labels(), loc="outside right upper", fontsize=8, frameon=False)
    return fig


def plot(results: list[dict], path: Path, decoder: str = DECODER) -> Path:
    """:func:`correlation_figure` as a PNG at ``path``."""
    from dllm_lab.temporal.plots import save_figure

    return save_figure(correlation_figure(results, decoder), path)


if __name__ == "__main__":
    raise SystemExit(main())
