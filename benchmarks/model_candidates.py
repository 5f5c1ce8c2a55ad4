"""Which transformers architecture should the embedded tiny model use? Train/forward speed on this CPU.

Compares ModernBERT (a native masked LM) with a Gemma-3 text config using bidirectional attention at the
same width and depth, on random tokens with a full AdamW step. Prints a Markdown table and writes
benchmarks/results/model_candidates.json.

    python benchmarks/model_candidates.py [--batch-size 64] [--seq-len 128] [--threads 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch
from transformers import Gemma3ForCausalLM, Gemma3TextConfig, ModernBertConfig, ModernBertForMaskedLM

VOCAB = 546  # the embedded tokenizer's size


def modernbert(d: int, layers: int):
    return ModernBertForMaskedLM(ModernBertConfig(
        vocab_size=VOCAB, hidden_size=d, intermediate_size=2 * d, num_hidden_layers=layers,
        num_attention_heads=d // 64, max_position_embeddings=512, layer_types=["full_attention"] * layers,
        pad_token_id=0, bos_token_id=1, eos_token_id=2, cls_token_id=1, sep_token_id=2, attn_implementation="sdpa"))


def gemma3_bidirectional(d: int, layers: int):
    return Gemma3ForCausalLM(Gemma3TextConfig(
        vocab_size=VOCAB, hidden_size=d, intermediate_size=3 * d, num_hidden_layers=layers,
        num_attention_heads=d // 64, num_key_value_heads=d // 64, head_dim=64, max_position_embeddings=512,
        use_bidirectional_attention=True, sliding_window=512, attn_implementation="sdpa"))


def measure(model, batch: int, seq: int, reps: int = 6) -> tuple[float, float]:
    x = torch.randint(3, VOCAB, (batch, seq))
    mask = torch.ones_like(x)
    opt = torch.optim.AdamW(model.parameters(), 1e-3)
    train = []
    for _ in range(reps):
        t = time.perf_counter()
        model(input_ids=x, attention_mask=mask).logits.float().logsumexp(-1).mean().backward()
        opt.step()
        opt.zero_grad()
        train.append(time.perf_counter() - t)
    fwd = []
    with torch.inference_mode():
        for _ in range(reps):
            t = time.perf_counter()
            model(input_ids=x, attention_mask=mask)
            fwd.append(time.perf_counter() - t)
    tokens = batch * seq
    return tokens / statistics.median(train[1:]), tokens / statistics.median(fwd[1:])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch-size", type=int, default=64)
    parser.add_argument("--seq-len", type=int, default=128)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "model_candidates.json"))
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    rows = []
    for d, layers in [(128, 4), (192, 6), (256, 6)]:
        for name, build in (("ModernBERT", modernbert), ("Gemma-3 bidirectional", gemma3_bidirectional)):
            torch.manual_seed(0)
            model = build(d, layers)
            params = sum(p.numel() for p in model.parameters()) / 1e6
            train, fwd = measure(model, args.batch_size, args.seq_len)
            rows.append({"arch": name, "hidden": d, "layers": layers, "params_m": params,
                         "train_tokens_per_s": train, "forward_tokens_per_s": fwd})
    print(f"\nbatch {args.batch_size} x {args.seq_len} tokens, {torch.get_num_threads()} threads, medians of 5\n")
    print("| architecture | hidden x layers | params (M) | train tokens/s | forward tokens/s |")
    print("|---|---|---:|---:|---:|")
    for r in rows:
        print(f"| {r['arch']} | {r['hidden']} x {r['layers']} | {r['params_m']:.2f} | "
              f"{r['train_tokens_per_s']:,.0f} | {r['forward_tokens_per_s']:,.0f} |")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
