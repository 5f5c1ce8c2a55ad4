"""The SFT stream (determinism, rank sharding, resume) and the masked-diffusion noising collator."""

from __future__ import annotations

import pytest
import torch

from dllm_lab.data import SFTCollator, TaskDataModule, TaskMixtureStream
from dllm_lab.data.collate import sample_mask_prob
from dllm_lab.errors import ConfigError
from dllm_lab.models import left_pad
from dllm_lab.tasks import get_task

TASKS = [get_task(n, prompt_style="compact") for n in ("arith", "countdown", "sudoku4")]


def stream(tiny_lm, seed=0, batch_size=4, exclude=None):
    collator = SFTCollator(tiny_lm.mask_token_id, tiny_lm.pad_token_id, seed=seed)
    return TaskMixtureStream(TASKS, [1, 1, 1], tiny_lm.chat, collator, batch_size, seed, exclude)


def take(iterable, n):
    it = iter(iterable)
    return [next(it) for _ in range(n)]


def test_stream_is_deterministic_and_seed_dependent(tiny_lm):
    a, b, c = take(stream(tiny_lm), 3), take(stream(tiny_lm), 3), take(stream(tiny_lm, seed=1), 3)
    for x, y in zip(a, b, strict=True):
        assert all(torch.equal(x[k], y[k]) for k in x)
    assert not torch.equal(a[0]["labels"], c[0]["labels"])


def test_ranks_get_disjoint_batches_that_cover_the_single_process_stream(tiny_lm, monkeypatch):
    import dllm_lab.data.datamodule as dm

    single = take(stream(tiny_lm), 4)
    per_rank = []
    for rank in range(2):
        monkeypatch.setattr(dm, "_rank_world", lambda r=rank: (r, 2))
        per_rank.append(take(stream(tiny_lm), 2))
    # global batch j*W + r: rank 0 takes 0, 2; rank 1 takes 1, 3
    interleaved = [per_rank[0][0], per_rank[1][0], per_rank[0][1], per_rank[1][1]]
    for x, y in zip(single, interleaved, strict=True):
        assert torch.equal(x["labels"], y["labels"])
    assert not torch.equal(per_rank[0][0]["labels"], per_rank[1][0]["labels"])


def test_resume_continues_where_it_stopped_and_workers_do_not_change_the_stream(tiny_lm):
    full = take(stream(tiny_lm), 5)
    resumed = stream(tiny_lm)
    resumed.start_batch = 3
    for x, y in zip(full[3:], take(resumed, 2), strict=True):
        assert torch.equal(x["input_ids"], y["input_ids"])
    loader = torch.utils.data.DataLoader(stream(tiny_lm), batch_size=None, num_workers=2)
    for x, y in zip(full, take(loader, 5), strict=True):
        assert torch.equal(x["input_ids"], y["input_ids"])


def test_held_out_prompts_are_never_trained_on(tiny_lm):
    first = stream(tiny_lm, batch_size=1).item(0)
    held_out = next(_prompts_of(stream(tiny_lm, batch_size=1), 0))
    assert first["prompt_ids"] == tiny_lm.encode_prompt(held_out)
    replaced = stream(tiny_lm, batch_size=1, exclude={held_out}).item(0)
    assert replaced["prompt_ids"] != first["prompt_ids"]


def _prompts_of(s, g):
    import random

    rng = random.Random(f"sft-{s.seed}-{g}")
    task = rng.choices(s.tasks, s.weights)[0]
    yield task.build_prompt(task.sample(rng))


def test_plain_text_tasks_skip_the_chat_template_in_training_and_evaluation(tiny_lm):
    tok, equations = tiny_lm.tokenizer, get_task("equations")
    collator = SFTCollator(tiny_lm.mask_token_id, tiny_lm.pad_token_id)
    mixed = TaskMixtureStream([equations, TASKS[0]], [1, 1], tiny_lm.chat, collator, 16, seed=0)
    items = [mixed.item(g) for g in range(16)]
    assert {it["task"] for it in items} == {"equations", "arith"}
    for it in items:
        text = tok.decode(it["prompt_ids"])
        if it["task"] == "equations":  # <bos>185-17= then the value: the line the reasoning writes
            assert it["prompt_ids"] == [tok.bos_token_id, *tok(it["prompt"], add_special_tokens=False)["input_ids"]]
            assert tok.decode(it["response_ids"], skip_special_tokens=True) == str(it["example"]["value"])
        else:
            assert it["prompt_ids"] == tiny_lm.chat.prompt_ids(it["prompt"]) and "<|assistant|>" in text
    dm = TaskDataModule(tiny_lm.chat, tiny_lm.mask_token_id, tasks=["equations"], num_eval=3)
    (evals,) = dm.eval_sets()
    assert evals.ids == [tiny_lm.chat.prompt_ids(p, chat_template=False) for p in evals.prompts]
    assert all("<|user|>" not in tok.decode(ids) for ids in evals.ids)


def test_task_options_reach_training_and_evaluation_tasks(tiny_lm):
    dm = TaskDataModule(tiny_lm.chat, tiny_lm.mask_token_id, tasks=["equations"], num_eval=20,
                        task_options={"equations": {"context_lines": 0}})
    (evals,) = dm.eval_sets()
    assert evals.task.context_lines == 0 and not any(e["context"] for e in evals.examples)
    stream = dm._stream(0, set())
    assert stream.tasks[0].context_lines == 0 and not any(stream.item(g)["example"]["context"] for g in range(20))


def test_context_prompts_lengthen_prompts_with_problems_of_the_same_task_and_leave_other_draws_alone(tiny_lm):
    dm = TaskDataModule(tiny_lm.chat, tiny_lm.mask_token_id, tasks=["arith"], context_prompts=3, context_prob=0.5)
    long, plain = dm._stream(0, set()), stream(tiny_lm)
    task = long.tasks[0]
    items = [long.item(g) for g in range(40)]
    lines = [it["prompt"].count(task.build_prompt(it["example"])) for it in items]
    assert lines == [1] * 40 and all(it["prompt"].endswith(task.build_prompt(it["example"])) for it in items)
    extra = [it["prompt"].count("Put the final answer") - 1 for it in items]  # every arith problem ends so
    assert set(extra) == {0, 1, 2, 3} and 10 < sum(e > 0 for e in extra) < 30
    with_context = [it for it, e in zip(items, extra, strict=True) if e]
    assert all(len(it["prompt_ids"]) > len(tiny_lm.chat.prompt_ids(task.build_prompt(it["example"])))
               for it in with_context)
    # without context the stream draws exactly what it drew before the option existed
    off = TaskDataModule(tiny_lm.chat, tiny_lm.mask_token_id, tasks=["arith", "countdown", "sudoku4"])
    assert [off._stream(0, set()).item(g)["prompt"] for g in range(8)] == [plain.item(g)["prompt"] for g in range(8)]
    for bad in ({"context_prompts": -1}, {"context_prob": 1.5}):
        with pytest.raises(ConfigError, match="data.context_prompts"):
            TaskDataModule(tiny_lm.chat, tiny_lm.mask_token_id, **bad)


def test_collator_masks_only_the_response_with_probability_p(tiny_lm):
    items = [{"key": k, "prompt_ids": [5, 6, 7], "response_ids": list(range(10, 10 + n))} for k, n in
             enumerate([4, 6, 2])]
    collator = SFTCollator(tiny_lm.mask_token_id, pad_token_id=1, min_response_length=8)
    batch = collator(items)
    assert batch["input_ids"].shape == (3, 3 + 8)
    assert (batch["labels"][:, 3:][0, 4:] == 1).all()  # EOS padding counts as response
    assert batch["response_lengths"].tolist() == [8, 8, 8]
    assert not batch["loss_mask"][:, :3].any(), "the prompt is never masked"
    assert torch.equal(batch["input_ids"][batch["loss_mask"]], torch.full_like(
        batch["input_ids"][batch["loss_mask"]], tiny_lm.mask_token_id))
    assert torch.equal(batch["input_ids"][~batch["loss_mask"]], batch["labels"][~batch["loss_mask"]])
    # the realised masking rate follows p over many sequences
    many = [{"key": k, "prompt_ids": [5], "response_ids": list(range(10, 210))} for k in range(200)]
    big = collator(many)
    rate = big["loss_mask"][:, 1:].float().mean(1)
    p_seq = big["p_mask"][:, 1]
    assert torch.equal(big["p_mask"][:, 1:], p_seq[:, None].expand(-1, 200)), "one p per sequence"
    torch.testing.assert_close(rate, p_seq, atol=0.15, rtol=0)
    assert ((p_seq >= 1e-3) & (p_seq <= 1)).all()


def test_block_noise_keeps_a_clean_prefix_a_noised_block_and_a_masked_rest(tiny_lm):
    mask_id, n = tiny_lm.mask_token_id, 40
    items = [{"key": k, "prompt_ids": [5, 6], "response_ids": list(range(10, 10 + n))} for k in range(300)]
    plain = SFTCollator(mask_id, pad_token_id=1, seed=3)(items)
    half = SFTCollator(mask_id, pad_token_id=1, seed=3, block_noise_prob=0.5, block_noise_length=8)(items)
    starts, block_rates = [], []
    for b in range(len(items)):
        p_row, masked = half["p_mask"][b, 2:], half["loss_mask"][b, 2:]
        assert torch.equal(half["input_ids"][b, 2:][masked], torch.full((int(masked.sum()),), mask_id))
        if torch.equal(p_row, plain["p_mask"][b, 2:]):  # not block-noised: the uniform draw, unchanged
            assert torch.equal(masked, plain["loss_mask"][b, 2:])
            continue
        start = int((p_row > 0).nonzero()[0])
        p = p_row[start]
        assert start < n and not masked[:start].any() and (p_row[:start] == 0).all(), "clean prefix"
        assert torch.equal(p_row[start:start + 8], p.expand(min(8, n - start))), "one p inside the block"
        assert masked[start + 8:].all() and (p_row[start + 8:] == 1).all(), "everything after is masked"
        starts.append(start)
        block_rates.append(masked[start:start + 8].float().mean() - p)
    assert 100 < len(starts) < 200, "about half the sequences are block-noised"
    assert min(starts) < 5 and max(starts) > n - 5, "block starts cover the response"
    assert abs(float(torch.stack(block_rates).mean())) < 0.05, "the block is masked at rate p"
    with pytest.raises(ValueError, match="block_noise_prob"):
        SFTCollator(mask_id, pad_token_id=1, block_noise_prob=1.5)


def test_block_noise_cut_opens_the_block_on_a_result(tiny_lm):
    tok, mask_id = tiny_lm.tokenizer, tiny_lm.mask_token_id
    equals = tok("=", add_special_tokens=False)["input_ids"][0]
    response = tok("27+4=31\n31-10=21\nend", add_special_tokens=False)["input_ids"]
    cuts = {i + 1 for i, t in enumerate(response) if t == equals}
    items = [{"key": k, "prompt_ids": [5], "response_ids": response} for k in range(60)]
    batch = SFTCollator(mask_id, 1, block_noise_prob=1.0, block_noise_length=4, block_cut_token_id=equals)(items)
    starts = {int((row[1:] > 0).nonzero()[0]) for row in batch["p_mask"]}
    assert starts == cuts, "every block starts right after an '=', and both occur"
    no_equals = [{"key": k, "prompt_ids": [5], "response_ids": [7, 8, 9, 10]} for k in range(60)]
    batch = SFTCollator(mask_id, 1, block_noise_prob=1.0, block_noise_length=2, block_cut_token_id=equals)(no_equals)
    assert {int((row[1:] > 0).nonzero()[0]) for row in batch["p_mask"]} == {0, 1, 2, 3}, "uniform without one"
    dm = TaskDataModule(tiny_lm.chat, mask_id, block_noise_prob=0.5, block_noise_cut="=")
    assert dm.collator.block_cut_token_id == equals
    with pytest.raises(ValueError, match="block_noise_cut"):
        TaskDataModule(tiny_lm.chat, mask_id, block_noise_cut="=<|eos|>=")


def test_mask_probability_and_left_pad():
    torch.testing.assert_close(sample_mask_prob(torch.tensor([0.0, 1.0]), eps=1e-3), torch.tensor([1e-3, 1.0]))
    ids, mask = left_pad([[1, 2, 3], [4]], pad_id=0)
    assert ids.tolist() == [[1, 2, 3], [0, 0, 4]] and mask.tolist() == [[1, 1, 1], [0, 0, 1]]


def test_infill_layout_matches_the_decoding_template_and_never_targets_its_fixed_tokens(tiny_lm):
    """Reasoning-as-infilling SFT: the laid-out response is the template that decoding pre-fills, with
    the reference reasoning and answer in its two blocks; the pre-filled tokens are never a target."""

    tok, eos = tiny_lm.tokenizer, tiny_lm.chat.eos_token_ids[0]
    dm = TaskDataModule(tiny_lm.chat, tiny_lm.mask_token_id, tasks=["arith", "countdown", "sudoku4", "equations"],
                        prompt_style="compact", infill_prob=0.5, infill_gen_lengths=[64, 80])
    s = dm._stream(0, set())
    items = [s.item(g) for g in range(120)]
    laid_out = [it for it in items if "response_fixed" in it]
    assert 30 < len(laid_out) < 70, "about half of the chat items"
    assert all(it["task"] != "equations" for it in laid_out), "plain-text drills keep their layout"
    for it in laid_out:
        ids, fixed = it["response_ids"], it["response_fixed"]
        template = next(t for t in dm.infill.templates if t.gen_length == len(ids))
        canvas, prefilled = template.canvas(1, tiny_lm.mask_token_id, eos)
        assert fixed == prefilled[0].tolist(), "fixed exactly where decoding pre-fills"
        assert torch.equal(torch.tensor(ids)[prefilled[0]], canvas[0][prefilled[0]])
        reference = get_task(it["task"], prompt_style="compact").reference_completion(it["example"])
        head, _, rest = reference.rpartition(dm.infill.delimiter)
        text = tok.decode([t for t, f in zip(ids, fixed, strict=True) if not f and t != eos])
        assert text == head + rest.removesuffix(dm.infill.closing), "the reference reasoning, then its answer"
    batch = SFTCollator(tiny_lm.mask_token_id, eos, seed=0)(laid_out[:8])
    for b, it in enumerate(laid_out[:8]):
        P, fixed = len(it["prompt_ids"]), torch.tensor(it["response_fixed"])
        assert not batch["loss_mask"][b, P:P + len(fixed)][fixed].any()
        assert not batch["loss_mask"][b, P + len(fixed):].any(), "the batch padding after the template is fixed too"
    assert batch["loss_mask"].any()


def test_an_infill_delimiter_the_completions_lack_fails_naming_it(tiny_lm):
    dm = TaskDataModule(tiny_lm.chat, tiny_lm.mask_token_id, tasks=["arith"], prompt_style="compact",
                        infill_prob=1.0, infill_delimiter="The answer is ")
    with pytest.raises(ConfigError, match="data.infill_delimiter"):
        dm._stream(0, set()).item(0)
    with pytest.raises(ConfigError, match="data.infill_prob"):
        TaskDataModule(tiny_lm.chat, tiny_lm.mask_token_id, infill_prob=2.0)
