"""From a validated config to the training set: mixture → epoch variants → cache."""

from __future__ import annotations

import logging

from kotune.data.cache import cached_build
from kotune.data.encode_map import paused_gc
from kotune.data.epochs import epochs_needed
from kotune.data.sft_dataset import build_sft_data

logger = logging.getLogger(__name__)


def prepare_sft_data(cfg, tokenizer, loaded=None):
    """(variants, eval dataset or None, report, cache_hit) for an SFT run; every rank gets the same examples in the
    same order. `loaded`: the sources already read (`mixture.load_all`), used on a cache miss."""
    args, kot = cfg.training, cfg.kotune
    settings = {
        "max_length": args.max_length, "overlong": kot.overlong, "strict": kot.strict,
        "train_on_turns": kot.train_on_turns, "eval_split_size": kot.eval_split_size, "thinking": kot.thinking,
        "epochs": [args.num_train_epochs, args.max_steps, args.per_device_train_batch_size,
                   args.gradient_accumulation_steps, args.world_size],
    }

    def build():  # dataset_num_proc only changes how fast: it is not part of the cache key
        with paused_gc():
            return build_sft_data(kot.dataset_mixture, tokenizer, args.max_length, overlong=kot.overlong,
                                  strict=kot.strict, variants_for=lambda n: epochs_needed(n, args),
                                  last_turn_only=kot.train_on_turns == "last", eval_split_size=kot.eval_split_size,
                                  num_proc=getattr(args, "dataset_num_proc", None), loaded=loaded,
                                  thinking=kot.thinking)

    with args.main_process_first(desc="preparing data"):
        return cached_build(build, kot.dataset_mixture, tokenizer, settings, enabled=kot.data_cache)


def pt_batching(cfg, base_config) -> str:
    """How a pt run batches, decided as SFT decides it: padding_free (blocks of documents, the default for the
    registered families), bfd (explicit), or padded (one row per document piece: `packing: false`, and the default
    for families whose padding-free attention kotune has not tested)."""
    from kotune.data.packing import default_packing, packing_mode

    if "packing" not in cfg.resolved:
        cfg.training.packing = cfg.resolved["packing"] = default_packing(base_config, cfg.model.trust_remote_code)
    return packing_mode(cfg.resolved, cfg.training)


def prepare_pt_data(cfg, tokenizer, batching: str, loaded=None):
    """(training rows, eval rows or None, report, cache_hit) for a pt run (`pt_dataset.build_pt_data`): blocks of
    documents for padding-free batches, else one row per document piece. Every rank gets the same rows."""
    from kotune.data.pt_dataset import build_pt_data

    args, kot = cfg.training, cfg.kotune
    blocks = batching == "padding_free"
    settings = {"stage": "pt", "max_length": args.max_length, "strict": kot.strict,
                "eval_split_size": kot.eval_split_size, "blocks": blocks}

    def build():
        train, eval_dataset, report = build_pt_data(kot.dataset_mixture, tokenizer, args.max_length, kot.strict,
                                                    kot.eval_split_size, blocks, loaded)
        return [train], eval_dataset, report

    with args.main_process_first(desc="preparing data"):
        variants, eval_dataset, report, hit = cached_build(build, kot.dataset_mixture, tokenizer, settings,
                                                           enabled=kot.data_cache)
    return variants[0], eval_dataset, report, hit
