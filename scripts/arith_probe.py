"""Can the model add? Mask the result of the first ``drill`` equation and everything after it, keep the
prompt and operands, and read the greedy prediction of each result digit.

    python scripts/arith_probe.py checkpoints/tiny-mdlm [--n 60] [--seed 99] [--width 3]

Prints, per place (units, tens, hundreds), the share of drills whose first result has that digit right.
The rest of the response is masked because a chained line repeats the result (``111-050=061``),
which would let the model copy instead of add.
"""

from __future__ import annotations

import argparse

import torch

from dllm_lab.models import load_model
from dllm_lab.tasks import get_task


def probe(model_dir: str, n: int = 60, seed: int = 99, width: int | None = 3) -> dict[str, float]:
    """Share of drills whose first result has each place (units, tens, ...) predicted right, counted
    over the drills whose result has that place; ``width=None`` probes the unpadded format."""
    lm = load_model(model_dir)
    task = get_task("drill", prompt_style="compact", reasoning_number_width=width)
    places = ["units", "tens", "hundreds", "thousands"]
    hits, seen = torch.zeros(len(places)), torch.zeros(len(places))
    for example in task.synthetic(n, seed=seed):
        prompt = lm.chat.prompt_ids(task.build_prompt(example))
        response = lm.chat.response_ids(task.reference_completion(example))
        tokens = [lm.tokenizer.decode([i]) for i in response]
        start = tokens.index("=") + 1  # the first result: its digits run up to the line break
        end = tokens.index("\n", start)
        ids = torch.tensor([prompt + response])
        noised = ids.clone()
        noised[0, len(prompt) + start:] = lm.mask_token_id
        with torch.no_grad():
            logits = lm.logits(noised, torch.ones_like(noised))
        positions = slice(len(prompt) + start, len(prompt) + end)
        right = (logits[0, positions].argmax(-1) == ids[0, positions]).float().flip(0)[: len(places)]
        hits[: len(right)] += right
        seen[: len(right)] += 1
    return {place: round(float(h / s), 3) for place, h, s in zip(places, hits, seen, strict=True) if s > 0}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--seed", type=int, default=99)
    parser.add_argument("--width", type=int, default=3, help="digits per number in the reasoning (0: as written)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(probe(args.model_dir, args.n, args.seed, args.width or None))


if __name__ == "__main__":
    main()
