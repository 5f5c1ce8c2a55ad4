"""Shared pieces of the reliability suite: tiny, fast training configs (not a test module)."""

from __future__ import annotations

TINY_TRAIN = [
    "model=tiny_scratch", "model.init.hidden_size=32", "model.init.num_layers=1", "model.init.num_heads=1",
    "model.init.intermediate_size=64", "model.init.corpus_examples=50", "data.batch_size=4", "data.num_eval=2",
    "data.eval_batch_size=2", "data.num_val_batches=1", "data.min_response_length=0", "data.long_response_prob=0",
    "decoder.gen_length=16", "decoder.block_length=8", "decoder.steps=8", "trainer.num_threads=1",
    "trainer.log_every_n_steps=1", "eval_after_fit=false",
]
