"""Continued-pretraining entry point: raw Korean text, every token trained.

    python train/pt.py CONFIG.yaml [--key=value ...]
    accelerate launch train/pt.py CONFIG.yaml [--key=value ...]
    deepspeed train/pt.py CONFIG.yaml --deepspeed deepspeed/zero3.json

The sections (logging, config, tokenizer, data, model, trainer, train, save) live in kotune/stages/pt.py, so that
`kotune pt` runs the very same code.
"""

import sys

from kotune.errors import user_errors_exit
from kotune.stages.pt import main

if __name__ == "__main__":
    with user_errors_exit():
        sys.exit(main(sys.argv[1:]))
