"""GSM8K (openai/gsm8k) and SVAMP (ChilleD/SVAMP): grade-school math with numeric answers."""

from __future__ import annotations

from typing import Any

from dllm_lab.tasks.base import Example, Task, format_completion, parse_number


class GSM8K(Task):
    """Gold answers follow ``####`` in the reference solution; equivalence is numeric."""

    name = "gsm8k"
    hf_id, hf_config = "openai/gsm8k", "main"

    def normalize(self, row: dict[str, Any]) -> Example:
        example = super().normalize(row)
        raw = str(example["answer"])
        reasoning, _, final = raw.rpartition("####")
        if parse_number(final) is None:
            raise ValueError(f"answer {raw[-40:]!r} has no number after '####'")
        example["reasoning"] = reasoning.strip()
        example["answer"] = final.strip().replace(",", "")
        return example

    def reference_completion(self, example: Example) -> str:
        return format_completion(str(example.get("reasoning", "")), str(example["answer"]))


class SVAMP(Task):
    name = "svamp"
    hf_id, hf_config = "ChilleD/SVAMP", None
    required_fields = ("question", "answer")

    def normalize(self, row: dict[str, Any]) -> Example:
        row = dict(row)
        if "question" not in row and "Question" in row:
            body = str(row.get("Body", "")).strip()
            row["question"] = f"{body} {row['Question']}".strip() if body else row["Question"]
        if "answer" not in row and "Answer" in row:
            row["answer"] = row["Answer"]
        example = super().normalize(row)
        if parse_number(str(example["answer"])) is None:
            raise ValueError(f"answer {example['answer']!r} is not numeric")
        return example
