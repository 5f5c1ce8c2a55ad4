"""Decoding and GRPO on one GPU with no download: an 8B-shaped LLaDA-like model with random bf16 weights, and the
embedded model.

The large model is a Llama decoder of LLaDA-8B's shape (4096 wide, 32 layers, 32 heads, MLP 12288, vocabulary
126,464), run with full attention (the ``bidirectional`` family, which can cache keys/values). Random weights
decode garbage, which does not matter for speed and memory: every step does the work a trained model's does.

Per model, batch (1/8/32) and cache (none, prefix, dual, and dual with ``decoder.cache_window`` of one block):
generated tokens/s, NFE, peak memory, and the achieved TFLOP/s against the device's dense bf16 peak. FLOPs
per forward: 2 x (non-embedding parameters) x tokens run through the model, plus attention (4 x layers x width
x queries x keys). Then a few GRPO updates with LoRA on the large model (diffu-GRPO's one-step estimator,
4 prompts x G=4, mu=1) and their peak memory, against the README's 35-45 GB estimate for LoRA GRPO on LLaDA-8B.

    python benchmarks/gpu_decode.py [--batches 1 8 32] [--gen-length 256] [--block 32] [--prompt-length 200]
        [--reps 3] [--peak-tflops <device bf16 peak>] [--smoke]

``--smoke`` runs a scaled-down model on whatever device there is (CPU included), to check the script. Prints a
Markdown table; writes benchmarks/results/gpu_decode.json.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from dllm_lab.paths import project_root

LLADA_8B_SHAPE = {"hidden_size": 4096, "num_hidden_layers": 32, "num_attention_heads": 32, "num_key_value_heads": 32,
                  "intermediate_size": 12288, "vocab_size": 126464, "max_position_embeddings": 4096}
SMOKE_SHAPE = {"hidden_size": 64, "num_hidden_layers": 2, "num_attention_heads": 2, "num_key_value_heads": 2,
               "intermediate_size": 128, "vocab_size": 1024, "max_position_embeddings": 1024}
# dense bf16 tensor-core peaks (TFLOP/s) of common cards, by a substring of torch.cuda.get_device_name()
BF16_PEAK = {"H200": 989.0, "H100": 989.0, "A100": 312.0, "L40S": 362.0, "A10G": 70.0, "L4": 121.0, "4090": 165.0}


def random_llada_like(shape: dict, device: torch.device, dtype: torch.dtype):
    """A bidirectional Llama of ``shape`` with random weights, as a DiffusionLM (mask id: the last token)."""
    from transformers import LlamaConfig, LlamaForCausalLM

    from dllm_lab.models import DiffusionLM

    config = LlamaConfig(**shape, tie_word_embeddings=False, attn_implementation="sdpa")
    torch.manual_seed(0)
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype).eval()
    vocab = shape["vocab_size"]
    tokenizer = _IdTokenizer(vocab)
    return DiffusionLM(model, tokenizer, "bidirectional", mask_token_id=vocab - 1, eos_token_ids=(vocab - 2,),
                       pad_token_id=vocab - 3)


class _IdTokenizer:
    """Enough of a tokenizer for prompts given as ids and completions decoded to their ids."""

    def __init__(self, vocab: int) -> None:
        self.vocab = vocab

    def decode(self, ids, skip_special_tokens: bool = True) -> str:
        return " ".join(str(int(i)) for i in ids)


def forward_flops(lm, tokens: int, keys: int) -> float:
    """FLOPs of one forward over ``tokens`` queries attending ``keys`` keys (matmuls only)."""
    cfg = lm.model.config
    embedding = cfg.vocab_size * cfg.hidden_size
    dense = sum(p.numel() for p in lm.model.parameters()) - embedding * (1 if cfg.tie_word_embeddings else 2)
    head = embedding  # the vocabulary projection runs on every query
    attention = 4 * cfg.num_hidden_layers * cfg.hidden_size * tokens * keys
    return 2 * (dense + head) * tokens + attention


class FlopCounter:
    """Counts the FLOPs of every model forward during a decode (query and key lengths from the inputs)."""

    def __init__(self, lm) -> None:
        self.lm, self.flops = lm, 0.0
        lm.model.register_forward_pre_hook(self._hook, with_kwargs=True)

    def _hook(self, _module, _args, kwargs) -> None:
        ids, mask = kwargs["input_ids"], kwargs.get("attention_mask")
        keys = mask.shape[-1] if mask is not None and mask.dim() == 4 else ids.shape[1]
        self.flops += ids.shape[0] * forward_flops(self.lm, ids.shape[1], keys)


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def peak_gb(device: torch.device) -> float:
    return torch.cuda.max_memory_allocated() / 2**30 if device.type == "cuda" else float("nan")


def decode_rows(name: str, lm, device, args, peak_tflops: float | None) -> list[dict]:
    from dllm_lab.decoding import DecodeConfig, decode

    counter = FlopCounter(lm)
    rows = []
    caches = {"none": {"cache": "none"}}
    if lm.can_cache:  # the dual cache also with decoder.cache_window of one block
        caches |= {"prefix": {"cache": "prefix"}, "dual": {"cache": "dual"},
                   f"dual, window {args.block}": {"cache": "dual", "cache_window": args.block}}
    for batch in args.batches:
        prompt = torch.randint(0, min(lm.model.config.vocab_size - 8, 30000), (batch, args.prompt_length),
                               device=device)
        for cache, changes in caches.items():
            cfg = DecodeConfig(gen_length=args.gen_length, block_length=args.block, steps=args.gen_length, **changes)
            decode(lm, prompt, cfg.replace(gen_length=args.block, block_length=args.block, steps=args.block))  # warm
            walls, flops = [], []
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats()
            for _ in range(args.reps):
                counter.flops = 0.0
                sync(device)
                start = time.perf_counter()
                out = decode(lm, prompt, cfg)
                sync(device)
                walls.append(time.perf_counter() - start)
                flops.append(counter.flops)
            wall = statistics.median(walls)
            tflops = statistics.median(flops) / wall / 1e12
            rows.append({"model": name, "batch": batch, "cache": cache, "nfe": out.nfe,
                         "tokens_per_s": batch * args.gen_length / wall, "peak_gb": peak_gb(device),
                         "tflops": tflops, "mfu": tflops / peak_tflops if peak_tflops else None})
            print(f"  {name} batch {batch} cache {cache}: {rows[-1]['tokens_per_s']:.1f} tokens/s", flush=True)
    return rows


def grpo_lora_updates(lm, device, args) -> dict:
    """A few diffu-GRPO updates with LoRA (r 128, all linear layers, as d1) on random prompts; peak memory."""
    from peft import LoraConfig, get_peft_model

    from dllm_lab.decoding import DecodeConfig, decode
    from dllm_lab.rl import GRPOSettings, policy_loss
    from dllm_lab.rl.batch import Rollout

    settings = GRPOSettings(estimator="one_step", num_generations=4, num_iterations=1, beta=0.0, temperature=1.0)
    lm.model = get_peft_model(lm.model, LoraConfig(r=128, lora_alpha=64, target_modules="all-linear"))
    if args.checkpointing:
        lm.model.gradient_checkpointing_enable()
    optimizer = torch.optim.AdamW([p for p in lm.parameters() if p.requires_grad], lr=3e-6)
    estimator = settings.make_estimator()
    cfg = DecodeConfig(gen_length=args.rl_gen_length, block_length=32, steps=args.rl_gen_length // 2,
                       temperature=1.0)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats()
    times = []
    G, prompts = settings.num_generations, 4
    for _ in range(args.rl_updates):
        prompt = torch.randint(0, 30000 if lm.model.config.vocab_size > 30000 else 500,
                               (prompts, args.prompt_length), device=device).repeat_interleave(G, 0)
        sync(device)
        start = time.perf_counter()
        out = decode(lm, prompt, cfg)
        n = len(prompt)
        completion, prompt = out.sequences.to(device).clone(), prompt.clone()  # out of inference mode
        zeros = torch.zeros(n, device=device)
        ro = Rollout(prompt_ids=prompt, attention_mask=torch.ones_like(prompt), completion=completion,
                     completion_mask=torch.ones_like(completion), commit_step=None, num_steps=0, rewards={},
                     total=zeros, advantages=torch.randn(n, device=device), correct=zeros, tse=None, texts=[""] * n,
                     examples=[{}] * n, tasks=[""] * n, seed=0, nfe=out.nfe, seconds=0.0)
        logp, mask = estimator.logps(lm, ro, 0)
        loss, _ = policy_loss(logp, logp.detach(), None, ro.advantages, mask, beta=0.0)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        sync(device)
        times.append(time.perf_counter() - start)
    return {"updates": args.rl_updates, "rows": prompts * G, "gen_length": args.rl_gen_length,
            "step_s": statistics.median(times), "peak_gb": peak_gb(device)}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 8, 32])
    parser.add_argument("--gen-length", type=int, default=256)
    parser.add_argument("--block", type=int, default=32)
    parser.add_argument("--prompt-length", type=int, default=200)
    parser.add_argument("--reps", type=int, default=3)
    parser.add_argument("--rl-updates", type=int, default=3)
    parser.add_argument("--rl-gen-length", type=int, default=256)
    parser.add_argument("--checkpointing", action="store_true", help="gradient checkpointing in the GRPO updates")
    parser.add_argument("--peak-tflops", type=float, default=None, help="the device's dense bf16 peak")
    parser.add_argument("--smoke", action="store_true", help="a scaled-down model on any device (checks the script)")
    parser.add_argument("--skip-embedded", action="store_true")
    parser.add_argument("--out", default=str(Path(__file__).parent / "results" / "gpu_decode.json"))
    args = parser.parse_args()
    cuda = torch.cuda.is_available()
    if not cuda and not args.smoke:
        raise SystemExit("gpu_decode.py needs a CUDA device (torch.cuda.is_available() is False); "
                         "add --smoke to check the script on this machine with a scaled-down model")
    device = torch.device("cuda" if cuda else "cpu")
    device_name = torch.cuda.get_device_name() if cuda else "cpu"
    peak = args.peak_tflops or next((v for k, v in BF16_PEAK.items() if k in device_name), None)
    dtype = torch.bfloat16 if cuda else torch.float32
    rows = []
    big = random_llada_like(SMOKE_SHAPE if args.smoke else LLADA_8B_SHAPE, device, dtype)
    big_name = "LLaDA-8B-shaped (random)" if not args.smoke else "smoke-shaped (random)"
    rows += decode_rows(big_name, big, device, args, peak)
    if not args.skip_embedded:
        from dllm_lab.models import load_model

        tiny = load_model(project_root() / "checkpoints" / "tiny-mdlm").to(device)
        rows += decode_rows("embedded tiny-mdlm", tiny, device, args, peak)
    if device.type == "cuda":
        torch.cuda.empty_cache()
    grpo = grpo_lora_updates(big, device, args)

    print(f"\nDecoding on {device_name}, gen_length {args.gen_length}, block {args.block}, prompt "
          f"{args.prompt_length} tokens, one token per step, median of {args.reps}"
          + (f"; bf16 peak {peak:.0f} TFLOP/s" if peak else "") + "\n")
    print("| model | batch | cache | NFE | tokens/s | peak memory (GB) | TFLOP/s | of peak |")
    print("|---|---:|---|---:|---:|---:|---:|---:|")
    for r in rows:
        mfu = f"{r['mfu']:.1%}" if r["mfu"] is not None else "-"
        print(f"| {r['model']} | {r['batch']} | {r['cache']} | {r['nfe']} | {r['tokens_per_s']:,.1f} | "
              f"{r['peak_gb']:.1f} | {r['tflops']:.2f} | {mfu} |")
    print(f"\nGRPO with LoRA r128 on the {big_name} model: {grpo['rows']} rows x {grpo['gen_length']} tokens, "
          f"{grpo['step_s']:.1f} s per rollout+update (median of {grpo['updates']}), peak memory "
          f"{grpo['peak_gb']:.1f} GB (README estimate for LLaDA-8B: 35-45 GB)")
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps({"device": device_name, "peak_tflops": peak, "rows": rows, "grpo": grpo,
                                          "smoke": args.smoke}, indent=1))


if __name__ == "__main__":
    main()
