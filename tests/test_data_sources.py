"""Training streams from real sources: local files and (streamed, rank-sharded) hub datasets, exact resume,
no duplicates across ranks, and the fields each mode needs checked at start."""

from __future__ import annotations

import json
import logging

import pytest

from dllm_lab.data import TaskDataModule
from dllm_lab.errors import ConfigError
from dllm_lab.paths import project_root
from dllm_lab.runs import run_train

SMALL = ["data.num_eval=2", "data.eval_batch_size=2", "data.batch_size=2", "data.num_val_batches=1",
         "decoder.gen_length=16", "decoder.block_length=8", "decoder.steps=8", "trainer.num_threads=1",
         "trainer.fast_dev_run=true", "logger=none", "eval_after_fit=false"]


def _gsm8k_train(path, n: int = 12):
    rows = [{"question": f"Ann has {i} apples and buys {i + 1} more. How many?",
             "answer": f"{i} + {i + 1} = <<{i}+{i + 1}={2 * i + 1}>>{2 * i + 1}\n#### {2 * i + 1}"} for i in range(n)]
    rows.insert(3, {"question": "broken, no answer"})
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _countdown_hub_rows(path):
    rows = [{"nums": [i, i + 1, i + 2], "target": 3 * i + 3} for i in range(1, 9)]
    rows += [{"nums": [1, 2, 3, 4], "target": 10}, {"nums": [5, 6, 7, 8], "target": 26}]  # 4 numbers: filtered
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


def _module(tiny_lm, **kw) -> TaskDataModule:
    return TaskDataModule(tiny_lm.chat, tiny_lm.mask_token_id, num_eval=2, batch_size=2, **kw)


def test_a_local_file_streams_its_rows_each_once_per_epoch_with_reasoning(tiny_lm, tmp_path, caplog):
    path = _gsm8k_train(tmp_path / "train.jsonl")
    dm = _module(tiny_lm, tasks=["gsm8k"], train_sources={"gsm8k": str(path)}, eval_tasks={})
    with caplog.at_level(logging.WARNING):
        stream = dm.train_dataloader().dataset
    assert "skipping line 4 of" in caplog.text  # the broken row is named by its line
    items = [stream.item(g) for g in range(24)]  # two epochs of 12 valid rows
    first, second = [i["example"]["question"] for i in items[:12]], [i["example"]["question"] for i in items[12:]]
    assert len(set(first)) == 12 and set(first) == set(second) and first != second, "each row once, reshuffled"
    text = tiny_lm.tokenizer.decode(items[0]["response_ids"])
    assert "<<" in text and "####" not in text, "the SFT target is the row's own worked solution"


def test_ranks_take_disjoint_rows_and_a_resume_continues_exactly(tiny_lm, tmp_path, monkeypatch):
    from dllm_lab.data import datamodule

    path = _gsm8k_train(tmp_path / "train.jsonl")
    seen = []
    for rank in (0, 1):
        monkeypatch.setattr(datamodule, "_rank_world", lambda r=rank: (r, 2))
        stream = _module(tiny_lm, tasks=["gsm8k"], train_sources={"gsm8k": str(path)}, eval_tasks={},
                         train_mode="prompts").train_dataloader().dataset
        it = iter(stream)
        seen.append([e["question"] for _ in range(3) for e in next(it)["examples"]])  # 3 batches of 2
    assert not set(seen[0]) & set(seen[1]) and len(set(seen[0]) | set(seen[1])) == 12
    monkeypatch.setattr(datamodule, "_rank_world", lambda: (1, 2))
    dm = _module(tiny_lm, tasks=["gsm8k"], train_sources={"gsm8k": str(path)}, eval_tasks={}, train_mode="prompts")
    dm.load_state_dict({"batches_seen": 2})  # a checkpoint after this rank's first two batches
    resumed = next(iter(dm.train_dataloader().dataset))
    assert [e["question"] for e in resumed["examples"]] == seen[1][4:6]


def test_a_streamed_hub_dataset_is_sharded_by_rank_and_resumes(tiny_lm, tmp_path, monkeypatch):
    import datasets

    from dllm_lab.data import datamodule

    path = _countdown_hub_rows(tmp_path / "countdown.jsonl")
    real = datasets.load_dataset

    def hub(name, config=None, split="train", streaming=False):  # the hub, offline: the same rows, streamed
        assert name == "Jiayi-Pan/Countdown-Tasks-3to4" and streaming
        return real("json", data_files=str(path), split=split, streaming=True)

    monkeypatch.setattr(datasets, "load_dataset", hub)
    kw = {"tasks": ["countdown"], "train_sources": {"countdown": "Jiayi-Pan/Countdown-Tasks-3to4"},
          "task_options": {"countdown": {"num_numbers": 3}}, "eval_tasks": {}, "train_mode": "prompts"}
    seen = []
    for rank in (0, 1):
        monkeypatch.setattr(datamodule, "_rank_world", lambda r=rank: (r, 2))
        it = iter(_module(tiny_lm, **kw).train_dataloader().dataset)
        seen.append([tuple(e["numbers"]) for _ in range(2) for e in next(it)["examples"]])
    assert all(len(n) == 3 for s in seen for n in s), "4-number rows are filtered out"
    assert not set(seen[0]) & set(seen[1]) and len(set(seen[0]) | set(seen[1])) == 8, "disjoint shards"
    monkeypatch.setattr(datamodule, "_rank_world", lambda: (0, 2))
    dm = _module(tiny_lm, **kw)
    dm.load_state_dict({"batches_seen": 1})
    resumed = next(iter(dm.train_dataloader().dataset))
    assert [tuple(e["numbers"]) for e in resumed["examples"]] == seen[0][2:4]


def test_sft_and_rl_train_from_local_real_format_files(compose_cfg, tiny_model_dir, tmp_path):
    gsm8k = _gsm8k_train(tmp_path / "gsm8k.jsonl")
    metrics = run_train(compose_cfg("train", [
        f"model.name_or_path={tiny_model_dir}", "data.tasks=[gsm8k]", "data.weights=[1.0]",
        f"data.train_sources={{gsm8k: {gsm8k}}}", "data.eval_tasks={arith: synthetic}", *SMALL]))
    assert metrics["train/loss"] > 0
    countdown = _countdown_hub_rows(tmp_path / "countdown.jsonl")
    metrics = run_train(compose_cfg("train", [
        "experiment=rl_countdown", f"model.name_or_path={tiny_model_dir}",
        f"data.train_sources={{countdown: {countdown}}}", "+data.task_options={countdown: {num_numbers: 3}}",
        "algo.num_generations=2", *SMALL]))
    assert 0.0 <= metrics["train/accuracy"] <= 1.0


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["data.tasks=[svamp]", "data.weights=[1.0]"], r"'svamp' has no synthetic generator.*train_sources"),
        (["data.tasks=[countdown]", "data.weights=[1.0]", "data.train_sources={countdown: FIXTURE}"],
         r"train_sources\.countdown=.*no reference reasoning.*RL"),
        (["data.train_sources={gsm8k: x.jsonl}"], r"train_sources\.gsm8k: 'gsm8k' is not in data\.tasks"),
        (["data.tasks=[gsm8k]", "data.weights=[1.0]", "data.train_sources={gsm8k: missing.jsonl}"],
         r"train_sources\.gsm8k=missing\.jsonl: .*does not exist"),
    ],
)
def test_a_source_without_what_the_mode_needs_fails_at_start(compose_cfg, tmp_path, overrides, message):
    fixture = _countdown_hub_rows(tmp_path / "cd.jsonl")
    overrides = [o.replace("FIXTURE", str(fixture)) for o in overrides]
    with pytest.raises(ConfigError, match=message):
        run_train(compose_cfg("train", [*overrides, "logger=none", "model.name_or_path=/nonexistent"]))


def test_math_rows_train_on_their_worked_solution():
    from dllm_lab.tasks import get_task

    task = get_task("math500")
    example = task.normalize({"problem": "What is 1+1?", "solution": "One and one make $2$.", "answer": "2"})
    assert example["reasoning"] == "One and one make $2$."
    assert task.reference_completion(example).startswith("<reasoning>\nOne and one make $2$.\n</reasoning>")


def test_a_local_source_is_read_once(tiny_lm, tmp_path, monkeypatch):
    from dllm_lab.data import datamodule
    from dllm_lab.tasks.sources import load_examples

    path = _gsm8k_train(tmp_path / "train.jsonl")
    calls = []
    monkeypatch.setattr(datamodule, "load_examples", lambda *a, **k: calls.append(a) or load_examples(*a, **k))
    dm = _module(tiny_lm, tasks=["gsm8k"], train_sources={"gsm8k": str(path)}, eval_tasks={})
    dm.train_dataloader(), dm.val_dataloader(), dm.train_dataloader()
    assert len(calls) == 1, "train and validation streams share the validated rows"
    from dllm_lab.tasks import get_task

    rows = load_examples(get_task("gsm8k"), split="train", source=str(path))
    given = _module(tiny_lm, tasks=["gsm8k"], train_sources={"gsm8k": str(path)}, eval_tasks={},
                    train_examples={"gsm8k": rows})
    given.train_dataloader()
    assert len(calls) == 1, "rows the factory already read are not read again"


def test_rl_validation_decodes_the_first_num_val_batches_of_each_set_and_the_test_loop_all(tiny_lm):
    d1_style = str(project_root() / "data" / "countdown_cd3_style_test.jsonl")
    dm = TaskDataModule(tiny_lm.chat, tiny_lm.mask_token_id, tasks=["countdown"], num_eval=7, batch_size=2,
                        eval_batch_size=3, num_val_batches=1, train_mode="prompts",
                        eval_tasks={"countdown": "synthetic", "countdown.d1": d1_style})
    val, test = dm.val_dataloader(), dm.test_dataloader()
    assert [len(loader.dataset) for loader in val] == [3, 3] and [len(loader.dataset) for loader in test] == [7, 7]
    first = next(iter(val[0]))["examples"]
    assert first == [test[0].dataset[i]["example"] for i in range(3)], "validation reads the start of each set"
