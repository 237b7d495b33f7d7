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
