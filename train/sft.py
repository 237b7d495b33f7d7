"""Supervised fine-tuning entry point.

    python train/sft.py CONFIG.yaml [--key=value ...]
    accelerate launch train/sft.py CONFIG.yaml [--key=value ...]
    deepspeed train/sft.py CONFIG.yaml --deepspeed deepspeed/zero3_offload.json

The sections (logging, config, tokenizer, data, model, trainer, train, save) live in kotune/stages/sft.py, so that
`kotune sft` runs the very same code.
"""

import sys

from kotune.errors import user_errors_exit
from kotune.stages.sft import main

if __name__ == "__main__":
    with user_errors_exit():
        sys.exit(main(sys.argv[1:]))
