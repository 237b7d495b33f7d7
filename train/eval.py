"""Evaluation entry point: the same as `kotune eval` (KoBEST + KLUE STS/YNAT through lm-eval-harness).

    python train/eval.py RUN_DIR [--tasks kit19] [--num_fewshot 0] [--baseline base] [--data_dir DIR]

The logic lives in kotune/eval/run.py (`evaluate_run` for Python callers, e.g. sweeps).
"""

import sys

from kotune.errors import user_errors_exit
from kotune.eval.run import main

if __name__ == "__main__":
    with user_errors_exit():
        sys.exit(main(sys.argv[1:]))
