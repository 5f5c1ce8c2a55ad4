"""Model layer: the DiffusionLM adapter, load_model (local dirs, remote code), the tiny tokenizer, ChatFormat.

Remote-code fixtures live in ``tests/fixtures/remote_code_model/`` (see its README): a LLaDA-like and a
Dream-like custom model. They are copied to a tmp dir, given random weights and the tiny tokenizer, and
transformers copies their code into a per-module tmp ``HF_MODULES_CACHE`` (never ``~/.cache``).

The LLaDA-like fixture has LLaDA's vocabulary size (126464), so load_model's default LLaDA ids
(mask 126336, EOS 126081, EOT 126348) are real ids of the model and are asserted as such; passing
``mask_token_id`` explicitly is tested separately.
"""

from __future__ import annotations

import copy
import pickle
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

from dllm_lab.models import FAMILIES, DiffusionLM, detect_family, load_model
from dllm_lab.models.adapter import DREAM_MASK_ID, LLADA_EOS_ID, LLADA_EOT_ID, LLADA_MASK_ID
from dllm_lab.models.chat import ChatFormat
from dllm_lab.models.tiny import CHAT_TEMPLATE, ROLE_TOKENS, SPECIAL_TOKENS

FIXTURES = Path(__file__).parent / "fixtures" / "remote_code_model"
ATOL = 1e-5


def _ids(tokenizer, text: str) -> list[int]:
    return list(tokenizer(text, add_special_tokens=False)["input_ids"])


def _left_pad(seqs: list[list[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Left-padded ``(B, N)`` ids and attention mask, as the decoders build them."""
    n = max(len(s) for s in seqs)
    ids = torch.tensor([[pad_id] * (n - len(s)) + s for s in seqs])
    mask = torch.tensor([[0] * (n - len(s)) + [1] * len(s) for s in seqs])
    return ids, mask


# -- the embedded masked LM through load_model -------------------------------------------------------


@pytest.fixture(scope="module")
def loaded(tiny_model_dir) -> DiffusionLM:
    return load_model(tiny_model_dir)


@pytest.fixture(scope="module")
def tok(tiny_lm):
    return tiny_lm.tokenizer


@pytest.fixture(scope="module")
def sample_ids(tok) -> list[list[int]]:
    texts = ["What is 12 + 345? Answer in \\boxed{}.", "Sudoku 4x4", "Use 3, 7 and 21 to make 42 exactly once"]
    return [_ids(tok, t) for t in texts]


def test_load_model_masked_lm_conventions(loaded, tok):
    assert isinstance(loaded, DiffusionLM)
    assert loaded.family == "masked_lm"
    assert not loaded.shift
    assert loaded.mask_token_id == tok.mask_token_id == tok.convert_tokens_to_ids(SPECIAL_TOKENS["mask_token"])
    assert loaded.eos_token_ids == (tok.eos_token_id,)
    assert loaded.eot_token_ids == ()
    assert loaded.pad_token_id == tok.pad_token_id
    assert loaded.max_length == loaded.model.config.max_position_embeddings == 512
    assert not loaded.model.training
    assert loaded.tokenizer.convert_ids_to_tokens(loaded.mask_token_id) == SPECIAL_TOKENS["mask_token"]


def test_loaded_weights_match_saved_model(loaded, tiny_lm, sample_ids):
    x = torch.tensor([sample_ids[0]])
    with torch.no_grad():
        torch.testing.assert_close(loaded.logits(x), tiny_lm.logits(x), atol=ATOL, rtol=0)


def test_logits_shape_and_full_mask_equals_none(loaded, sample_ids):
    v = loaded.model.config.vocab_size
    x = torch.tensor([sample_ids[0], sample_ids[0][::-1]])
    with torch.no_grad():
        out = loaded.logits(x)
        out_mask = loaded.logits(x, torch.ones_like(x))
        out_fwd = loaded(x)
    assert out.shape == (2, x.shape[1], v)
    assert torch.isfinite(out).all()
    torch.testing.assert_close(out_mask, out, atol=0, rtol=0)
    torch.testing.assert_close(out_fwd, out, atol=0, rtol=0)
    assert not torch.allclose(out[0], out[1])  # different inputs, different logits: not a constant model


@pytest.mark.parametrize("pad_with", ["pad", "mask"])
def test_left_padding_does_not_change_real_token_logits(loaded, sample_ids, pad_with):
    pad_id = loaded.pad_token_id if pad_with == "pad" else loaded.mask_token_id
    ids, mask = _left_pad(sample_ids, pad_id)
    n = ids.shape[1]
    with torch.no_grad():
        batch = loaded.logits(ids, mask)
        assert torch.isfinite(batch).all()
        for row, seq in enumerate(sample_ids):
            single = loaded.logits(torch.tensor([seq]))[0]
            torch.testing.assert_close(batch[row, n - len(seq) :], single, atol=ATOL, rtol=1e-4)


def test_attention_mask_matters(loaded, sample_ids):
    """Guards the padding test above: padding without the mask does change the real tokens' logits."""
    ids, mask = _left_pad(sample_ids, loaded.pad_token_id)
    with torch.no_grad():
        masked = loaded.logits(ids, mask)
        unmasked = loaded.logits(ids, None)
    shortest = min(range(len(sample_ids)), key=lambda r: len(sample_ids[r]))
    assert not torch.allclose(masked[shortest, -1], unmasked[shortest, -1], atol=1e-3)


def test_save_pretrained_round_trip(loaded, tmp_path, sample_ids):
    loaded.save_pretrained(tmp_path)
    again = load_model(tmp_path)
    x = torch.tensor([sample_ids[1]])
    with torch.no_grad():
        torch.testing.assert_close(again.logits(x), loaded.logits(x), atol=0, rtol=0)
    assert (again.mask_token_id, again.eos_token_ids) == (loaded.mask_token_id, loaded.eos_token_ids)


def test_load_model_missing_dir_is_a_clear_error(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a local directory"):
        load_model(tmp_path / "no_such_model")


def test_load_model_rejects_unknown_family(tiny_model_dir):
    with pytest.raises(ValueError, match="model.family"):
        load_model(tiny_model_dir, family="bogus")


# -- a tokenizer without a mask token ----------------------------------------------------------------


@pytest.fixture(scope="module")
def no_mask_dir(tmp_path_factory, tiny_lm) -> Path:
    path = tmp_path_factory.mktemp("no_mask_model")
    tiny_lm.model.save_pretrained(path)
    tokenizer = copy.deepcopy(tiny_lm.tokenizer)
    tokenizer.mask_token = None
    assert tokenizer.mask_token_id is None
    tokenizer.save_pretrained(path)
    return path


def test_tokenizer_without_mask_token_raises_with_fix(no_mask_dir):
    with pytest.raises(ValueError, match=r"no mask token") as err:
        load_model(no_mask_dir)
    assert "mask_token_id=" in str(err.value)
    assert "model.mask_token_id" in str(err.value)


def test_explicit_mask_token_id_is_used(no_mask_dir, tiny_lm):
    wanted = tiny_lm.tokenizer.convert_tokens_to_ids(SPECIAL_TOKENS["mask_token"])
    lm = load_model(no_mask_dir, mask_token_id=wanted)
    assert lm.mask_token_id == wanted
    assert lm.family == "masked_lm"


def test_mask_token_id_outside_vocabulary_raises(no_mask_dir, tiny_lm):
    too_big = tiny_lm.model.config.vocab_size
    with pytest.raises(ValueError, match="mask_token_id"):
        load_model(no_mask_dir, mask_token_id=too_big)


# -- the tiny tokenizer ------------------------------------------------------------------------------


@pytest.mark.parametrize("number", ["12345", "0", "9081726354", "100"])
def test_digits_are_single_tokens(tok, number):
    ids = _ids(tok, number)
    assert len(ids) == len(number)
    assert tok.convert_ids_to_tokens(ids) == list(number)


def test_digits_split_inside_text(tok):
    text = "x=12345+678, y12z 2024"
    for token in tok.convert_ids_to_tokens(_ids(tok, text)):
        if any(c.isdigit() for c in token):
            assert token.isdigit() and len(token) == 1, token


ROUND_TRIP = [
    "plain text",
    "  leading and trailing spaces  ",
    "tabs\tand\nnew\nlines\n\n",
    "a , b . c ' s ?!",  # no clean-up of tokenization spaces
    "héllo wörld ∑ 数学 🙂 — ✓",
    r"The answer is \boxed{42} and $\frac{1}{2}$",
    "\\boxed{}",
    "x  y   z    ",
    "<think>3 * 7 = 21</think><answer>21</answer>",
    "",
]


@pytest.mark.parametrize("text", ROUND_TRIP)
def test_encode_decode_round_trip(tok, text):
    assert tok.decode(_ids(tok, text)) == text
    assert tok.unk_token_id not in _ids(tok, text)  # byte level: nothing is unknown


def test_special_tokens_are_single_distinct_ids(tok):
    names = [*SPECIAL_TOKENS.values(), *ROLE_TOKENS]
    for name in names:
        ids = _ids(tok, name)
        assert ids == [tok.convert_tokens_to_ids(name)], name
        assert ids[0] != tok.unk_token_id or name == SPECIAL_TOKENS["unk_token"]
    distinct = {tok.convert_tokens_to_ids(n) for n in dict.fromkeys(names)}
    assert len(distinct) == len(dict.fromkeys(names))  # eos and pad share one token, nothing else does
    assert tok.mask_token == "<|mask|>" and tok.mask_token_id is not None
    assert tok.eos_token_id == tok.pad_token_id
    assert tok.bos_token_id is not None and tok.bos_token_id != tok.eos_token_id
    assert set(ROLE_TOKENS) <= set(tok.all_special_tokens)
    # a special token inside text stays one token
    assert _ids(tok, "a<|mask|><|mask|>b").count(tok.mask_token_id) == 2


def test_chat_template_generation_prompt(tok):
    messages = [{"role": "user", "content": "What is 2 + 3?"}]
    text = tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
    assert text == "<|bos|><|user|>\nWhat is 2 + 3?\n<|assistant|>\n"
    without = tok.apply_chat_template(messages, add_generation_prompt=False, tokenize=False)
    assert "<|assistant|>" not in without
    ids = ChatFormat(tok, (tok.eos_token_id,)).prompt_ids("What is 2 + 3?")
    assert ids[0] == tok.bos_token_id and ids.count(tok.bos_token_id) == 1
    assert ids[1] == tok.convert_tokens_to_ids("<|user|>")
    assert ids[-2:] == [tok.convert_tokens_to_ids("<|assistant|>"), *_ids(tok, "\n")]
    assert tok.decode(ids) == text


def test_chat_template_assistant_turn_ends_with_eos(tok):
    messages = [
        {"role": "system", "content": "S"},
        {"role": "user", "content": "Q"},
        {"role": "assistant", "content": "A"},
    ]
    text = tok.apply_chat_template(messages, tokenize=False)
    assert text == "<|bos|><|system|>\nS\n<|user|>\nQ\n<|assistant|>\nA\n<|eos|>"


def test_tokenizer_survives_save_and_reload(tok, tmp_path):
    from transformers import AutoTokenizer

    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    assert len(again) == len(tok)
    for attr in ("mask_token_id", "eos_token_id", "pad_token_id", "bos_token_id", "unk_token_id"):
        assert getattr(again, attr) == getattr(tok, attr), attr
    assert again.chat_template == tok.chat_template == CHAT_TEMPLATE
    assert set(ROLE_TOKENS) <= set(again.all_special_tokens)
    for text in ROUND_TRIP + ["12345 apples"]:
        assert _ids(again, text) == _ids(tok, text)
        assert again.decode(_ids(again, text)) == text
    messages = [{"role": "user", "content": "hi 42"}]
    assert ChatFormat(again, (again.eos_token_id,)).prompt_ids("hi 42") == ChatFormat(
        tok, (tok.eos_token_id,)
    ).prompt_ids("hi 42")
    assert again.apply_chat_template(messages, add_generation_prompt=True, tokenize=False).startswith("<|bos|><|user|>")


# -- ChatFormat and decode_completion ----------------------------------------------------------------


def test_response_ids_end_with_eot_then_eos(tok):
    eos = tok.eos_token_id
    eot = tok.convert_tokens_to_ids("<|system|>")  # any distinct id stands in for an end-of-turn token
    completion = "The answer is \\boxed{5}."
    body = _ids(tok, completion)
    with_eot = ChatFormat(tok, (eos,), (eot,)).response_ids(completion)
    assert with_eot == [*body, eot, eos]
    plain = ChatFormat(tok, (eos, 7)).response_ids(completion)
    assert plain == [*body, eos]
    assert tok.decode(plain[:-1]) == completion


def test_prompt_ids_without_chat_template_falls_back_to_plain_encoding(tok):
    bare = copy.deepcopy(tok)
    bare.chat_template = None
    ids = ChatFormat(bare, (bare.eos_token_id,)).prompt_ids("hi 12")
    assert ids == list(bare("hi 12", add_special_tokens=True)["input_ids"])
    assert bare.convert_tokens_to_ids("<|assistant|>") not in ids


def test_chat_format_is_picklable(tok):
    chat = ChatFormat(tok, (tok.eos_token_id,), (5,))
    again = pickle.loads(pickle.dumps(chat))
    assert again.prompt_ids("2+2?") == chat.prompt_ids("2+2?")
    assert again.response_ids("4") == chat.response_ids("4")


def test_encode_prompt_and_chat_property(loaded):
    assert loaded.chat.eos_token_ids == loaded.eos_token_ids
    assert loaded.encode_prompt("hi") == loaded.chat.prompt_ids("hi")


@pytest.fixture(scope="module")
def lm_with_eot(tiny_lm) -> DiffusionLM:
    tokenizer = tiny_lm.tokenizer
    eot = tokenizer.convert_tokens_to_ids("<|system|>")
    return DiffusionLM(
        tiny_lm.model, tokenizer, "masked_lm", tokenizer.mask_token_id, (tokenizer.eos_token_id,), (eot,)
    )


def test_decode_completion_cuts_at_first_end_token(lm_with_eot):
    tokenizer = lm_with_eot.tokenizer
    eos, (eot,) = lm_with_eot.eos_token_ids[0], lm_with_eot.eot_token_ids
    body = _ids(tokenizer, "The answer is 12.")
    tail = _ids(tokenizer, " garbage after the end")
    assert lm_with_eot.decode_completion(body + [eos] + tail) == "The answer is 12."
    assert lm_with_eot.decode_completion(body + [eot] + tail + [eos]) == "The answer is 12."
    assert lm_with_eot.decode_completion(torch.tensor(body + [eos, eos, eos])) == "The answer is 12."
    assert lm_with_eot.decode_completion(body) == "The answer is 12."
    assert lm_with_eot.decode_completion([eos] + body) == ""


def test_decode_completion_drops_mask_tokens(lm_with_eot):
    tokenizer = lm_with_eot.tokenizer
    m, eos = lm_with_eot.mask_token_id, lm_with_eot.eos_token_ids[0]
    a, b = _ids(tokenizer, "12"), _ids(tokenizer, "+3")
    assert lm_with_eot.decode_completion([m, *a, m, m, *b, m, eos, *a]) == "12+3"


def test_decode_completion_drops_mask_id_even_if_not_special(tiny_lm):
    """Families whose mask is not a special token of the tokenizer (the filter, not skip_special_tokens)."""
    tokenizer = tiny_lm.tokenizer
    (x_id,) = _ids(tokenizer, "x")
    lm = DiffusionLM(tiny_lm.model, tokenizer, "masked_lm", x_id, (tokenizer.eos_token_id,))
    assert lm.decode_completion(_ids(tokenizer, "x1x2") + [tokenizer.eos_token_id]) == "12"


# -- family detection, constructor validation --------------------------------------------------------


@pytest.mark.parametrize(
    ("model_type", "family"),
    [
        ("llada", "llada"),
        ("LLaDA", "llada"),
        ("llada_moe", "llada"),
        ("tiny_llada", "llada"),
        ("Dream", "dream"),
        ("dream", "dream"),
        ("modernbert", "masked_lm"),
        ("bert", "masked_lm"),
        ("", "masked_lm"),
    ],
)
def test_detect_family(model_type, family):
    assert detect_family(SimpleNamespace(model_type=model_type)) == family


def test_detect_family_on_real_configs():
    from transformers import BertConfig, ModernBertConfig

    assert detect_family(ModernBertConfig()) == "masked_lm"
    assert detect_family(BertConfig()) == "masked_lm"
    assert detect_family(object()) == "masked_lm"


def test_diffusion_lm_rejects_unknown_family(tiny_lm):
    tokenizer = tiny_lm.tokenizer
    with pytest.raises(ValueError, match="bogus"):
        DiffusionLM(tiny_lm.model, tokenizer, "bogus", tokenizer.mask_token_id, (tokenizer.eos_token_id,))
    assert set(FAMILIES) == {"llada", "dream", "masked_lm", "bidirectional"}


def test_diffusion_lm_defaults(tiny_lm):
    tokenizer = tiny_lm.tokenizer
    lm = DiffusionLM(tiny_lm.model, tokenizer, "dream", 3, (7, 8))
    assert lm.pad_token_id == 7  # padding uses the first EOS id
    assert lm.shift and lm.eot_token_ids == ()
    assert lm.max_length == tiny_lm.model.config.max_position_embeddings
    assert DiffusionLM(tiny_lm.model, tokenizer, "llada", 3, (7,), max_length=33).max_length == 33


# -- remote code: LLaDA-like and Dream-like fixtures -------------------------------------------------


@pytest.fixture(scope="module")
def modules_cache(tmp_path_factory):
    """Point transformers' dynamic-module cache at a tmp dir for this module's tests."""
    import transformers.dynamic_module_utils as dmu

    cache = tmp_path_factory.mktemp("hf_modules")
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(dmu, "HF_MODULES_CACHE", str(cache))
        mp.setenv("HF_MODULES_CACHE", str(cache))
        yield cache


def _build_remote_dir(name: str, tmp_path_factory, tokenizer) -> Path:
    from transformers import AutoConfig, AutoModel

    path = tmp_path_factory.mktemp("remote") / name
    shutil.copytree(FIXTURES / name, path)
    config = AutoConfig.from_pretrained(path, trust_remote_code=True)
    torch.manual_seed(0)
    AutoModel.from_config(config, trust_remote_code=True).save_pretrained(path)
    tokenizer.save_pretrained(path)
    assert (path / "model.safetensors").exists() and (path / "config.json").exists()
    return path


@pytest.fixture(scope="module")
def llada_dir(modules_cache, tmp_path_factory, tiny_lm) -> Path:
    return _build_remote_dir("tiny_llada", tmp_path_factory, tiny_lm.tokenizer)


@pytest.fixture(scope="module")
def dream_dir(modules_cache, tmp_path_factory, tiny_lm) -> Path:
    return _build_remote_dir("tiny_dream", tmp_path_factory, tiny_lm.tokenizer)


@pytest.fixture(scope="module")
def llada(llada_dir) -> DiffusionLM:
    return load_model(llada_dir, trust_remote_code=True)


@pytest.fixture(scope="module")
def dream(dream_dir) -> DiffusionLM:
    return load_model(dream_dir, trust_remote_code=True)


def test_remote_code_modules_go_to_the_tmp_cache(llada, dream, modules_cache):
    copied = {p.name for p in Path(modules_cache).rglob("*.py")}
    assert {"modeling_tinyllada.py", "modeling_tinydream.py"} <= copied


@pytest.mark.parametrize("name", ["llada_dir", "dream_dir"])
def test_remote_code_needs_trust_remote_code(name, request):
    path = request.getfixturevalue(name)
    with pytest.raises(ValueError, match="trust_remote_code") as err:
        load_model(path)
    assert "model.trust_remote_code=true" in str(err.value)
    assert str(path) in str(err.value)


def test_llada_family_and_fixed_ids(llada):
    assert llada.family == "llada" and not llada.shift
    assert llada.mask_token_id == LLADA_MASK_ID == 126336
    assert llada.eos_token_ids == (LLADA_EOS_ID,) == (126081,)
    assert llada.eot_token_ids == (LLADA_EOT_ID,) == (126348,)
    assert llada.max_length == 64  # the config's max_sequence_length
    assert type(llada.model).__name__ == "TinyLladaModel"
    assert not llada.model.training


def test_llada_logits_are_aligned_and_unshifted(llada, sample_ids):
    x = torch.tensor([sample_ids[0] + [LLADA_MASK_ID] * 4])
    with torch.no_grad():
        out = llada.logits(x)
        raw = llada.model(x).logits
        out_mask = llada.logits(x, torch.ones_like(x))
    assert out.shape == (1, x.shape[1], 126464)
    torch.testing.assert_close(out, raw, atol=0, rtol=0)
    torch.testing.assert_close(out_mask, raw, atol=0, rtol=0)


def test_llada_left_padding_uses_attention_bias(llada, sample_ids):
    seqs = [s + [LLADA_MASK_ID] * 3 for s in sample_ids]
    ids, mask = _left_pad(seqs, LLADA_EOS_ID)
    n = ids.shape[1]
    with torch.no_grad():
        batch = llada.logits(ids, mask)
        unmasked = llada.logits(ids)
        assert torch.isfinite(batch).all()
        for row, seq in enumerate(seqs):
            single = llada.logits(torch.tensor([seq]))[0]
            torch.testing.assert_close(batch[row, n - len(seq) :], single, atol=ATOL, rtol=1e-4)
    shortest = min(range(len(seqs)), key=lambda r: len(seqs[r]))
    assert not torch.allclose(unmasked[shortest, -1], batch[shortest, -1], atol=1e-3)  # the fixture does care


def test_llada_explicit_ids_are_used(llada_dir):
    lm = load_model(llada_dir, trust_remote_code=True, mask_token_id=126000, eos_token_ids=[126001, 126002])
    assert lm.mask_token_id == 126000
    assert lm.eos_token_ids == (126001, 126002)
    assert lm.eot_token_ids == (LLADA_EOT_ID,)


def test_llada_mask_id_outside_vocabulary_raises(llada_dir):
    with pytest.raises(ValueError, match="mask_token_id=200000"):
        load_model(llada_dir, trust_remote_code=True, mask_token_id=200000)


def test_dream_family_takes_ids_from_its_tokenizer(dream, tiny_lm):
    tokenizer = tiny_lm.tokenizer
    assert dream.family == "dream" and dream.shift
    # the tiny tokenizer's mask id is 0: a valid id that must not fall back to Dream's 151666
    assert tokenizer.mask_token_id == 0
    assert dream.mask_token_id == tokenizer.mask_token_id != DREAM_MASK_ID
    assert dream.eos_token_ids == (tokenizer.eos_token_id,)
    assert dream.eot_token_ids == ()
    assert dream.max_length == 64


def test_dream_logits_are_right_shifted(dream, sample_ids):
    x = torch.tensor([sample_ids[0], sample_ids[0][::-1]])
    with torch.no_grad():
        out = dream.logits(x)
        raw = dream.model(x, attention_mask="full").logits
        out_mask = dream.logits(x, torch.ones_like(x))
    assert out.shape == raw.shape == (2, x.shape[1], dream.model.config.vocab_size)
    torch.testing.assert_close(out[:, 0], raw[:, 0], atol=0, rtol=0)
    torch.testing.assert_close(out[:, 1:], raw[:, :-1], atol=0, rtol=0)
    assert not torch.allclose(out[:, 1:], raw[:, 1:])  # the shift is observable on this fixture
    torch.testing.assert_close(out_mask, out, atol=0, rtol=0)


def test_dream_left_padding_mask_and_positions(dream, sample_ids):
    ids, mask = _left_pad(sample_ids, dream.pad_token_id)
    n = ids.shape[1]
    with torch.no_grad():
        batch = dream.logits(ids, mask)
        # fully masked padding rows must not turn into NaN (they reach real positions through the shift)
        assert torch.isfinite(batch).all()
        for row, seq in enumerate(sample_ids):
            single = dream.logits(torch.tensor([seq]))[0]
            start = n - len(seq)
            # position 0 of a sequence has no prediction from before it; compare from 1 on
            torch.testing.assert_close(batch[row, start + 1 :], single[1:], atol=ATOL, rtol=1e-4)
