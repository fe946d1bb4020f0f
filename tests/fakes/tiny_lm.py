"""Tiny GPT-2-style causal LMs built offline, for the ``local`` provider's tests: ``build(directory)``.

The tokenizer is a word-level ``tokenizers`` vocabulary of a few hundred words (trained on nothing: the words
are listed), wrapped as a ``PreTrainedTokenizerFast`` with (or without) a chat template. The model is a real
``GPT2LMHeadModel`` (2 layers, random attention and MLP weights) saved with ``save_pretrained``, so the
provider's real loading, templating and generation code runs. To make its answers known in advance, the
embeddings are one-hot, the blocks' output projections zero and the (untied) output head a successor table:
whatever the prompt, greedy decoding writes the chain that follows the prompt's last token (``:``, which ends
every chat prompt here):

- ``kind="chain"``: ``CHAIN`` (six words), then end-of-sequence, so a plain answer finishes with ``stop``;
- ``kind="endless"``: ``CHAIN`` over and over, never ending: answers run to ``max_tokens`` (slow-generation
  and queue tests);
- ``kind="random"``: the random model as initialised, nothing scripted.
"""

from __future__ import annotations

from pathlib import Path

SPECIAL = ["[PAD]", "[UNK]", "[EOS]"]
PUNCT = [":", ".", ",", "?", "!", "'"]
ROLES = ["system", "user", "assistant"]
WORDS = ("alpha bravo charlie delta echo foxtrot golf hotel india juliet kilo lima mike november oscar papa "
         "quebec romeo sierra tango uniform victor whiskey xray yankee zulu hello there world the a of and to in is "
         "you that it he was for on are as with his they at be this have from or one had by word but not what all "
         "were we when your can said there use an each which she do how their if will up other about out many then "
         "them these so some her would make like him into time has look two more write go see number no way could "
         "people my than first water been call who oil its now find long down day did get come made may part over "
         "new sound take only little work know place year live me back give most very after thing our just name "
         "good sentence man think say great where help through much before line right too mean old any same tell "
         "boy follow came want show also around form three small set put end does another well large must big even "
         "such because turn here why ask went men read need land different home us move try kind hand picture "
         "again change off play spell air away animal house point page letter mother answer found study still learn "
         "should america brief answer short line ping pong sdk stream words please give me json paris sunny utc "
         "weather city zone").split()
CHAIN = WORDS[:6]  # "alpha bravo charlie delta echo foxtrot"
CHAT_TEMPLATE = ("{% for m in messages %}{{ m['role'] }} : {{ m['content'] }}\n{% endfor %}"
                 "{% if add_generation_prompt %}assistant :{% endif %}")


def vocabulary() -> list[str]:
    """The tokens, in id order (duplicates of the word list dropped)."""
    return list(dict.fromkeys(SPECIAL + PUNCT + ROLES + WORDS))


def build(directory: str | Path, *, kind: str = "chain", chat_template: bool = True, positions: int = 512) -> str:
    """Save a tiny model and its tokenizer in ``directory`` (see module docstring); returns the path."""
    import torch
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    from transformers import GPT2Config, GPT2LMHeadModel, PreTrainedTokenizerFast

    path = Path(directory)
    path.mkdir(parents=True, exist_ok=True)
    vocab = vocabulary()
    ids = {token: i for i, token in enumerate(vocab)}
    core = Tokenizer(models.WordLevel(vocab=ids, unk_token="[UNK]"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    core.decoder = decoders.WordPiece(prefix="##")  # joins words with spaces
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=core, unk_token="[UNK]", pad_token="[PAD]",
                                        eos_token="[EOS]", model_max_length=positions)
    if chat_template:
        tokenizer.chat_template = CHAT_TEMPLATE
    tokenizer.save_pretrained(path)

    width = len(vocab) + len(vocab) % 2  # one-hot embeddings need a dimension per token (even, for 2 heads)
    config = GPT2Config(vocab_size=len(vocab), n_positions=positions, n_embd=width, n_layer=2, n_head=2,
                        bos_token_id=ids["[EOS]"], eos_token_id=ids["[EOS]"], pad_token_id=ids["[PAD]"],
                        tie_word_embeddings=kind == "random")
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config)
    if kind != "random":
        _script(model, ids, endless=kind == "endless")
    model.generation_config.do_sample = False
    model.save_pretrained(path)
    return str(path)


def _script(model, ids: dict[str, int], *, endless: bool) -> None:
    import torch

    vocab_size = len(ids)
    chain = [ids[w] for w in CHAIN]
    successor = {i: chain[0] for i in range(vocab_size)}  # every token starts the chain…
    for a, b in zip(chain, chain[1:]):
        successor[a] = b
    successor[chain[-1]] = chain[0] if endless else ids["[EOS]"]
    with torch.no_grad():
        wte = model.transformer.wte.weight
        wte.zero_()
        wte[:, :vocab_size] = torch.eye(vocab_size)
        model.transformer.wpe.weight.zero_()
        for block in model.transformer.h:
            for proj in (block.attn.c_proj, block.mlp.c_proj):
                proj.weight.zero_()
                proj.bias.zero_()
        head = model.lm_head.weight  # (vocab, width): logit j reads the one-hot dimensions of its predecessors
        head.zero_()
        for i, j in successor.items():
            head[j, i] = 100.0  # LayerNorm output sums to zero, so margins shrink with many predecessors: scale up
