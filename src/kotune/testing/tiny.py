"""Tiny offline bases for the demo and the tests: random-weight models built from config, and tokenizers that
need no Hub (a Korean BPE trained on the bundled sample, or the Llama/Mistral SentencePiece model that the
`mistral-common` wheel ships)."""

from __future__ import annotations

import json
import shutil
from importlib import resources
from pathlib import Path

from kotune.models.architectures import get_spec

SAMPLE_DIR = resources.files("kotune") / "data" / "sample"


def sample_path(name: str = "instructions.jsonl") -> Path:
    return Path(str(SAMPLE_DIR / name))


def sample_texts() -> list[str]:
    rows = [json.loads(line) for line in sample_path().read_text(encoding="utf-8").splitlines() if line.strip()]
    return [" ".join(filter(None, (r.get("instruction"), r.get("input"), r.get("output")))) for r in rows]


def korean_bpe_tokenizer(out_dir: str | Path, vocab_size: int = 2000):
    """A byte-level BPE like Polyglot-Ko's, trained on the bundled sample. EOS and pad are distinct tokens."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    specials = ["<|endoftext|>", "<|pad|>", "<|unk|>"]
    trainer = trainers.BpeTrainer(vocab_size=vocab_size, special_tokens=specials,
                                  initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False)
    texts = sample_texts() + ["### 질문: ### 답변: ### instruction: ### Response: [INST] [/INST]"]
    tok.train_from_iterator(texts, trainer=trainer)
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|endoftext|>", bos_token="<|endoftext|>",
                                   pad_token="<|pad|>", unk_token="<|unk|>")
    fast.chat_template = None
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    fast.save_pretrained(out)
    return fast


def sentencepiece_tokenizer(out_dir: str | Path):
    """Mistral-7B v1's SentencePiece model (Llama-2 layout: bos 1, eos 2, no pad), loaded as a LlamaTokenizer."""
    from transformers import AutoTokenizer

    try:
        import mistral_common
    except ImportError as err:  # a dev dependency
        raise RuntimeError("the SentencePiece test tokenizer needs `pip install -e .[dev]` (mistral-common)") from err
    src = Path(mistral_common.__file__).parent / "data" / "tokenizer.model.v1"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    shutil.copy(src, out / "tokenizer.model")
    (out / "tokenizer_config.json").write_text(json.dumps({
        "tokenizer_class": "LlamaTokenizer", "bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>",
        "add_bos_token": True, "add_eos_token": False, "model_max_length": 4096,
    }))
    return AutoTokenizer.from_pretrained(out)


def tiny_model(arch: str, tokenizer, out_dir: str | Path, hidden: int = 64, layers: int = 2, seed: int = 0,
               init_std: float = 0.02):
    """A random causal LM of a registered architecture (its spec's tiny config), saved with its tokenizer so it
    loads like a Hub base."""
    import torch

    from kotune.models.architectures import auto_class

    spec = get_spec(arch)
    if spec.tiny_config is None:
        raise ValueError(f"architecture '{arch}' has no tiny_config")
    config = spec.tiny_config(dict(
        vocab_size=len(tokenizer), hidden_size=hidden, num_hidden_layers=layers, num_attention_heads=4,
        intermediate_size=hidden * 4, max_position_embeddings=512, initializer_range=init_std,
        eos_token_id=tokenizer.eos_token_id, bos_token_id=tokenizer.bos_token_id, pad_token_id=tokenizer.pad_token_id,
        tie_word_embeddings=False))
    torch.manual_seed(seed)
    model = auto_class(config).from_config(config)
    out = Path(out_dir)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    return model


def tiny_base(arch: str, out_dir: str | Path, hidden: int = 64, layers: int = 2, seed: int = 0,
              init_std: float = 0.02) -> Path:
    """Tokenizer + model for a registered `arch` in one folder, with the tokenizer its spec names (a Korean BPE like
    Polyglot-Ko's, or the Llama/Mistral SentencePiece model)."""
    out = Path(out_dir)
    tok = korean_bpe_tokenizer(out) if get_spec(arch).tiny_tokenizer == "bpe" else sentencepiece_tokenizer(out)
    tiny_model(arch, tok, out, hidden=hidden, layers=layers, seed=seed, init_std=init_std)
    return out
