"""Benchmark: how long a user waits for a config error, against importing the training stack in the same run.

    .venv/bin/python bench/config_errors.py [--repeat 5] [--write]

Times, as subprocesses on this machine: the interpreter alone, `kotune sft` on a config with a misspelled key, on
one with `learning_rate: -1`, on one naming a missing DeepSpeed file, and `import torch, transformers, trl` (what
every config error cost before the fields of TRL's configs were stored in kotune/config/library_fields.json).
Medians of --repeat runs; `--write` records the table in bench/RESULTS.md.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from packing import write_results  # noqa: E402

KOTUNE = str(Path(sys.executable).with_name("kotune"))
BASE = ("model_name_or_path: EleutherAI/polyglot-ko-1.3b\noutput_dir: {out}\n"
        "dataset_mixture: {{datasets: [{{id: beomi/KoAlpaca-v1.1a, format: instruction}}]}}\n")
MISTAKES = {"misspelled key (lerning_rate)": "lerning_rate: 2.0e-4\n",
            "out of range (learning_rate: -1)": "learning_rate: -1\n",
            "missing file (deepspeed: nope.json)": "deepspeed: nope.json\n"}


def wall(cmd: list[str], expect: int) -> float:
    start = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    took = time.perf_counter() - start
    if proc.returncode != expect:
        raise SystemExit(f"{cmd}: exit {proc.returncode}, expected {expect}\n{proc.stderr[-2000:]}")
    return took


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--write", action="store_true", help="record the results in bench/RESULTS.md")
    args = parser.parse_args()
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        cases = [("python -c pass (interpreter start)", [sys.executable, "-c", "pass"], 0)]
        for name, line in MISTAKES.items():
            path = Path(tmp) / f"{len(cases)}.yaml"
            path.write_text(BASE.format(out=Path(tmp) / "out") + line, encoding="utf-8")
            cases.append((f"kotune sft: {name}", [KOTUNE, "sft", str(path)], 2))
        cases.append(("import torch, transformers, trl (baseline)", [sys.executable, "-c",
                                                                    "import torch, transformers, trl"], 0))
        for name, cmd, expect in cases:
            rows.append((name, statistics.median(wall(cmd, expect) for _ in range(args.repeat))))
    baseline = rows[-1][1]
    table = "\n".join(["| measure | wall time (s) | vs importing the stack |", "|---|---|---|"]
                      + [f"| {name} | {t:.2f} | {t / baseline:.2f}× |" for name, t in rows])
    print(table)
    if args.write:
        write_results("config_errors", table, f"python bench/config_errors.py --repeat {args.repeat}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
