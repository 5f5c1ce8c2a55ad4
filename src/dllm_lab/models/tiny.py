"""The embedded tiny model: a byte-level BPE tokenizer with digits split one per token, and a small
bidirectional ModernBERT masked LM. Both are plain transformers objects, saved with ``save_pretrained``
and loaded back through :func:`dllm_lab.models.load_model`, exactly like LLaDA.

ModernBERT was chosen over a Gemma-3 config with bidirectional attention after measuring both on a
2-core CPU (``benchmarks/model_candidates.py``, table in the README): at equal width and depth it trains
1.2-1.4x faster and is a native masked LM (``AutoModelForMaskedLM``), so no custom head is needed.
"""

from __future__ import annotations

from collections.abc import Iterable

SPECIAL_TOKENS = {
    "mask_token": "<|mask|>",
    "eos_token": "<|eos|>",
    "pad_token": "<|eos|>",
    "bos_token": "<|bos|>",
    "unk_token": "<|unk|>",
}
ROLE_TOKENS = ["<|system|>", "<|user|>", "<|assistant|>"]
CHAT_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}<|{{ m['role'] }}|>\n{{ m['content'] }}\n"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{% endfor %}"
    "{% if add_generation_prompt %}<|assistant|>\n{% endif %}"
)


def build_tokenizer(corpus: Iterable[str], vocab_size: int = 1024):
    """Train a byte-level BPE tokenizer on ``corpus``; digits are always single tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    specials = list(dict.fromkeys([*SPECIAL_TOKENS.values(), *ROLE_TOKENS]))
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [pre_tokenizers.Digits(individual_digits=True), pre_tokenizers.ByteLevel(add_prefix_space=False)]
    )
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=specials,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(corpus, trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, **SPECIAL_TOKENS, additional_special_tokens=ROLE_TOKENS)
    fast.chat_template = CHAT_TEMPLATE
    fast.model_max_length = 512
    return fast


ARCHS = ("modernbert", "llama")


def build_tiny_model(
    tokenizer,
    hidden_size: int = 192,
    num_layers: int = 6,
    num_heads: int = 3,
    intermediate_size: int = 384,
    max_position_embeddings: int = 512,
    seed: int = 0,
    arch: str = "modernbert",
):
    """A randomly initialised tiny masked diffusion LM sized for a CPU (about 2.5M parameters).

    ``arch``: ``modernbert`` (the embedded model: a native masked LM, no KV cache) or ``llama`` (a Llama
    decoder run with full bidirectional attention, as LLaDA is: family ``bidirectional``, which can cache
    keys/values, ``decoder.cache=prefix|dual``). Load it back with :func:`dllm_lab.models.load_model`.
    """
    import torch

    if arch not in ARCHS:
        raise ValueError(f"model.init.arch={arch!r}: choose one of {ARCHS}")
    special = {"pad_token_id": tokenizer.pad_token_id, "eos_token_id": tokenizer.eos_token_id,
               "bos_token_id": tokenizer.bos_token_id}
    torch.manual_seed(seed)
    if arch == "llama":
        from transformers import LlamaConfig, LlamaForCausalLM

        config = LlamaConfig(
            vocab_size=len(tokenizer), hidden_size=hidden_size, intermediate_size=intermediate_size,
            num_hidden_layers=num_layers, num_attention_heads=num_heads, num_key_value_heads=num_heads,
            max_position_embeddings=max_position_embeddings, tie_word_embeddings=True, attn_implementation="sdpa",
            **special,
        )
        config.dllm_family = "bidirectional"  # read back by load_model: run with full attention, aligned logits
        return LlamaForCausalLM(config)
    from transformers import ModernBertConfig, ModernBertForMaskedLM

    config = ModernBertConfig(
        vocab_size=len(tokenizer),
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_hidden_layers=num_layers,
        num_attention_heads=num_heads,
        max_position_embeddings=max_position_embeddings,
        layer_types=["full_attention"] * num_layers,  # every layer global: the canvas is short
        cls_token_id=tokenizer.bos_token_id,
        sep_token_id=tokenizer.eos_token_id,
        attn_implementation="sdpa",
        **special,
    )
    return ModernBertForMaskedLM(config)


def task_corpus(task_names: Iterable[str], n_per_task: int, prompt_style: str = "compact", seed: int = 0) -> list[str]:
    """Prompts and reference completions of the synthetic tasks (plus the d1 system prompt), the text
    the tiny tokenizer is trained on."""
    from dllm_lab.tasks import D1_SYSTEM_PROMPT, get_task

    texts = [D1_SYSTEM_PROMPT] * 20
    for name in task_names:
        task = get_task(name, prompt_style=prompt_style)
        for example in task.synthetic(n_per_task, seed=seed + 777):
            texts += [task.build_prompt(example), task.reference_completion(example)]
    return texts
