"""What part of a long text a model sees: the token-id policies shared by the embedders and the fine-tune.

  head       the first tokens
  head+tail  the first half and the last half (the study's later runs: 256 + 256), so the end is seen too
  chunks     (embedders only) the whole text, as windows of the model's length starting every `stride` tokens;
             the embedder pools the windows' vectors weighted by their token counts
"""
import math

TRUNCATION = ("head", "head+tail")
EMBED_TRUNCATION = TRUNCATION + ("chunks",)


def truncate_ids(ids, max_tokens, policy="head"):
    """Token ids cut to max_tokens by `head` or `head+tail`."""
    if policy not in TRUNCATION:
        raise ValueError(f"truncation must be one of {TRUNCATION}, not {policy!r}")
    if len(ids) <= max_tokens:
        return list(ids)
    if policy == "head":
        return list(ids[:max_tokens])
    head = max_tokens - max_tokens // 2
    return list(ids[:head]) + list(ids[len(ids) - max_tokens // 2:])


def chunk_count(n_tokens, length, stride):
    """Windows of `length` starting every `stride` tokens until one reaches the end (at least one)."""
    return 1 + math.ceil(max(0, n_tokens - length) / stride)


def windows(ids, length, policy="head", stride=None):
    """The id windows a text is encoded as: one for head and head+tail, chunk_count(...) for chunks."""
    if policy != "chunks":
        return [truncate_ids(ids, length, policy)]
    stride = stride or length
    return [list(ids[i * stride:i * stride + length]) for i in range(chunk_count(len(ids), length, stride))]


def special_tokens(tokenizer):
    """(prefix, suffix): the special token ids the tokenizer puts around one text ([CLS] … [SEP], <s> … </s>,
    nothing for most causal LMs), found by tokenising a word with and without them."""
    bare = tokenizer("word", add_special_tokens=False)["input_ids"]
    full = tokenizer("word", add_special_tokens=True)["input_ids"]
    for i in range(len(full) - len(bare) + 1):
        if full[i:i + len(bare)] == bare:
            return list(full[:i]), list(full[i + len(bare):])
    raise ValueError("cannot locate the text between the tokenizer's special tokens")
