"""Can the model add? Mask the result of the first ``drill`` equation and everything after it, keep the
prompt and operands, and read the greedy prediction of each result digit.

    python scripts/arith_probe.py checkpoints/tiny-mdlm [--n 60] [--seed 99] [--width 3]

Prints the share of drills whose hundreds, tens and units digit of the first result were predicted right.
The rest of the response is masked because a chained line repeats the result (``111-050=061``),
which would let the model copy instead of add.
"""

from __future__ import annotations

import argparse

import torch

from dllm_lab.models import load_model
from dllm_lab.tasks import get_task


def probe(model_dir: str, n: int = 60, seed: int = 99, width: int = 3) -> dict[str, float]:
    lm = load_model(model_dir)
    task = get_task("drill", prompt_style="compact", reasoning_number_width=width)
    names = ["hundreds", "tens", "units"][-width:] if width <= 3 else [f"digit{i}" for i in range(width)]
    hits = torch.zeros(width)
    for example in task.synthetic(n, seed=seed):
        prompt = lm.chat.prompt_ids(task.build_prompt(example))
        response = lm.chat.response_ids(task.reference_completion(example))
        tokens = [lm.tokenizer.decode([i]) for i in response]
        first = len(prompt) + tokens.index("=") + 1  # the first result digit
        ids = torch.tensor([prompt + response])
        noised = ids.clone()
        noised[0, first:] = lm.mask_token_id
        with torch.no_grad():
            logits = lm.logits(noised, torch.ones_like(noised))
        positions = slice(first, first + width)
        hits += (logits[0, positions].argmax(-1) == ids[0, positions]).float()
    return {name: round(float(h) / n, 3) for name, h in zip(names, hits, strict=True)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--n", type=int, default=60)
    parser.add_argument("--seed", type=int, default=99)
    parser.add_argument("--width", type=int, default=3, help="digits per number in the reasoning")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(probe(args.model_dir, args.n, args.seed, args.width))


if __name__ == "__main__":
    main()
