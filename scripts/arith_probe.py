"""Can the model compute, and where? Greedy semi-AR accuracy on two-number sums and differences written
in three contexts:

    python scripts/arith_probe.py checkpoints/tiny-mdlm [--n 100] [--seed 99]

- ``bos``: the line right after BOS, as plain text (``<bos>86+29=``);
- ``after_lines``: the same line after three other complete lines (``<bos>12+40=52\\n7-3=4\\n61+5=66\\n86+29=``);
- ``reasoning``: the line opening the reasoning of an ``arith`` chat prompt
  (``...<|assistant|>\\n<reasoning>\\n86+29=``), where the tasks need it.

A model that is right at ``bos`` only has learned to locate the operands from the start of the
sequence, not on the current line (README, "The embedded tiny model").
"""

from __future__ import annotations

import argparse

import torch

from dllm_lab.decoding import DecodeConfig, decode
from dllm_lab.models import load_model
from dllm_lab.tasks import get_task


def probe(model_dir: str, n: int = 100, seed: int = 99) -> dict[str, float]:
    lm = load_model(model_dir)
    tok, equations = lm.tokenizer, get_task("equations", context_lines=0)
    examples = [e for e in equations.synthetic(4 * n, seed=seed) if e["kind"] in ("sum2", "difference")][:n]
    arith = get_task("arith", prompt_style="compact")
    question = arith.build_prompt(arith.synthetic(1, seed=seed)[0])

    def encode(text: str) -> list[int]:
        return tok(text, add_special_tokens=False)["input_ids"]

    contexts = {
        "bos": lambda line: [tok.bos_token_id, *encode(line)],
        "after_lines": lambda line: [tok.bos_token_id, *encode(f"12+40=52\n7-3=4\n61+5=66\n{line}")],
        "reasoning": lambda line: [*lm.chat.prompt_ids(question), *encode(f"<reasoning>\n{line}")],
    }
    accuracy = {}
    for name, make in contexts.items():
        prompts = [make(f"{e['expression']}=") for e in examples]
        out = decode(lm, prompts, DecodeConfig(gen_length=16, block_length=16, steps=16))
        values = [text.split("\n")[0] for text in out.texts]  # the rest of the canvas may go on reasoning
        hits = sum(equations.is_correct(v, e) for v, e in zip(values, examples, strict=True))
        accuracy[name] = round(hits / len(examples), 3)
    return accuracy


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("model_dir")
    parser.add_argument("--n", type=int, default=100)
    parser.add_argument("--seed", type=int, default=99)
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(probe(args.model_dir, args.n, args.seed))


if __name__ == "__main__":
    main()
