"""Items 3, 12 and 13: broken model directories fail at load with a message that names the fix, and the
remote-code presets pin a revision."""

from __future__ import annotations

import re
import shutil

import pytest
import yaml

from dllm_lab.models import load_model
from dllm_lab.paths import config_dir


def test_a_model_dir_without_tokenizer_files_says_so(tiny_model_dir, tmp_path):
    broken = tmp_path / "weights_only"
    shutil.copytree(tiny_model_dir, broken)
    for name in ("tokenizer.json", "tokenizer_config.json", "chat_template.jinja", "special_tokens_map.json"):
        (broken / name).unlink(missing_ok=True)
    with pytest.raises(FileNotFoundError, match=r"no tokenizer files.*tokenizer\.save_pretrained"):
        load_model(broken)


def test_corrupted_weights_are_refused_not_decoded_to_zero(tiny_model_dir, tmp_path):
    broken = tmp_path / "corrupted"
    shutil.copytree(tiny_model_dir, broken)
    weights = broken / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-8192:-4096] = b"\xff" * 4096  # 4 KB of 0xff inside the tensor data: NaN floats, a valid header
    weights.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"NaN or inf values .*corrupted"):
        load_model(broken)
    load_model(tiny_model_dir)  # the intact copy still loads


def test_remote_code_presets_pin_a_revision_the_user_can_change(compose_cfg):
    for path in sorted((config_dir() / "model").glob("*.yaml")):
        preset = yaml.safe_load(path.read_text())
        if preset.get("trust_remote_code"):
            assert re.fullmatch(r"[0-9a-f]{40}", str(preset.get("revision"))), f"{path.name}: pin a commit"
    cfg = compose_cfg("eval", ["model=llada_8b_instruct", "model.revision=abc123"])
    assert cfg.model.revision == "abc123"


def test_the_revision_reaches_every_hub_download(monkeypatch):
    import transformers

    seen = []

    def record(name):
        def from_pretrained(source, **kwargs):
            seen.append((name, kwargs.get("revision")))
            raise OSError("offline")  # stop after the first download, like a machine without network
        return from_pretrained

    monkeypatch.setattr(transformers.AutoConfig, "from_pretrained", record("config"))
    with pytest.raises(FileNotFoundError, match="cannot load a model"):
        load_model("GSAI-ML/LLaDA-8B-Instruct", trust_remote_code=True, revision="0" * 40)
    assert seen == [("config", "0" * 40)]
