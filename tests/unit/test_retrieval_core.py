"""The retrieval core: chunking at whitespace by the embedding model's tokens, AIP-160 metadata
filters, reciprocal-rank fusion."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from localgem import errors
from localgem.retrieval.chunking import MAX_TOKENS_LIMIT, ChunkingRule, chunk_text
from localgem.retrieval.fusion import fuse
from localgem.retrieval.metadata_filter import matches, parse


def one_per_word(words):
    return [1] * len(words)


def test_chunks_fit_and_overlap_by_words() -> None:
    text = " ".join(f"w{i}" for i in range(25))
    chunks = chunk_text(text, ChunkingRule(10, 3), one_per_word)
    assert [c.text.split()[0] for c in chunks] == ["w0", "w7", "w14", "w21"]
    assert all(c.tokens <= 10 for c in chunks)
    assert chunks[1].text.split()[:3] == chunks[0].text.split()[-3:]
    assert chunks[-1].text.endswith("w24")
    for chunk in chunks:  # each chunk is the document's own text where it says it starts
        assert text[chunk.start : chunk.start + len(chunk.text)] == chunk.text


def test_chunks_keep_the_texts_spacing_and_a_huge_word_stands_alone() -> None:
    text = "First line\n\nsecond   paragraph " + "x" * 50 + " end"
    sizes = {"x" * 50: 40}
    chunks = chunk_text(text, ChunkingRule(8, 0), lambda words: [sizes.get(w, 1) for w in words])
    assert chunks[0].text == "First line\n\nsecond   paragraph"
    assert chunks[1].text == "x" * 50 and chunks[1].tokens == 40
    assert chunks[2].text == "end"
    assert chunk_text("  \n ", ChunkingRule(), one_per_word) == []


@pytest.mark.parametrize(
    ("size", "overlap", "field"),
    [(MAX_TOKENS_LIMIT + 1, None, "max_tokens_per_chunk"), (10, 10, "max_overlap_tokens"), (10, -1, "max_overlap")],
)
def test_bad_chunking_configs_are_400s_naming_the_field(size: int, overlap: int | None, field: str) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        ChunkingRule.of(size, overlap)
    assert field in str(caught.value.details)


def test_a_small_chunk_size_alone_gets_a_smaller_overlap() -> None:
    assert ChunkingRule.of(8, None) == ChunkingRule(8, 2)
    assert ChunkingRule.of(None, None) == ChunkingRule()


def test_chunks_are_measured_in_the_embedding_models_own_tokens() -> None:
    """The packaged MiniLM's WordPiece tokenizer: no chunk is longer than it reads (with its two
    special tokens), and long words take several tokens."""
    from transformers import AutoTokenizer

    from localgem.models.packaged import all_minilm_l6_v2

    tokenizer = AutoTokenizer.from_pretrained(str(all_minilm_l6_v2(Path("."))))

    def word_tokens(words):
        return [len(ids) for ids in tokenizer(list(words), add_special_tokens=False)["input_ids"]]

    text = " ".join(["Antidisestablishmentarianism is unquestionably lengthy."] * 60)
    chunks = chunk_text(text, ChunkingRule(50, 10), word_tokens)
    assert len(chunks) > 1
    for chunk in chunks:
        real = len(tokenizer(chunk.text, add_special_tokens=False)["input_ids"])
        assert real == chunk.tokens <= 50
    assert sum(len(c.text.split()) for c in chunks) > len(text.split())  # they overlap


def test_filters_as_google_writes_them() -> None:
    graves = {"author": "Robert Graves", "year": 1929, "tags": ["war", "memoir"]}
    for text, expected in [
        ('author = "Robert Graves"', True),
        ("author=Robert Graves", True),
        ("author = Graves", False),
        ("year > 1920 AND year < 1930", True),
        ("year >= 1930 OR tags : war", True),
        ("NOT year = 1929", False),
        ("-year = 1929", False),
        ("tags = memoir AND NOT tags : poetry", True),
        ('year = "1929"', False),  # a string against a number: empty, as Google
        ("missing = 1", False),
        ("NOT missing = 1", True),
        ("chunk.custom_metadata.year = 1929", True),
        ("author != Someone", True),
        ('year = 1929 author : "Robert Graves"', True),  # side by side: AND
        ('(year < 1900 OR year > 1920) AND author = "Robert Graves"', True),
        ("year < 1900 OR year > 1920 AND author = nobody", False),  # OR binds tighter than AND
        ("year > -5", True),
    ]:
        assert matches(parse(text), graves) is expected, text
    assert parse("   ") is None and matches(None, graves)


@pytest.mark.parametrize(
    ("text", "position"),
    [("year >", 7), ("a = 1 AND", 10), ("(a = 1", 7), ("a == 1", 4), ("= 3", 1), ("a = 1 )", 7), ('a = "open', 5)],
)
def test_a_bad_filter_is_a_400_naming_the_position(text: str, position: int) -> None:
    with pytest.raises(errors.InvalidArgument) as caught:
        parse(text, "tools[0].file_search.metadata_filter")
    message = caught.value.message
    assert re.search(rf"at position {position}\b", message), message


def test_reciprocal_rank_fusion() -> None:
    vector, keyword = ["a", "b", "c", "d"], ["c", "e", "a"]
    fused = fuse([vector, keyword])
    assert [item for item, _ in fused][:2] == ["a", "c"]  # in both lists, high in each
    assert fused[0][1] == pytest.approx(1 / 61 + 1 / 63)
    assert [item for item, _ in fuse([vector, keyword], limit=3)] == ["a", "c", "b"]
    assert fuse([]) == []
