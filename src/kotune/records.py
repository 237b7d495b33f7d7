"""What a finished run leaves beside the model: resolved config, run record, data report, loss curve."""

from __future__ import annotations

import hashlib
import json
import logging
import subprocess
import sys
from importlib import metadata
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)

PACKAGES = ("kotune", "torch", "transformers", "peft", "trl", "accelerate", "datasets", "bitsandbytes", "deepspeed",
            "tokenizers")


def package_versions() -> dict[str, str | None]:
    out = {}
    for name in PACKAGES:
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def git_sha() -> str | None:
    try:
        here = Path(__file__).resolve().parent
        return subprocess.run(["git", "rev-parse", "HEAD"], cwd=here, capture_output=True, text=True,
                              timeout=5).stdout.strip() or None
    except (OSError, subprocess.SubprocessError):
        return None


def file_sha256(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def write_resolved_config(output_dir: str, resolved: dict) -> None:
    Path(output_dir, "kotune_config.yaml").write_text(
        yaml.safe_dump(resolved, allow_unicode=True, sort_keys=False), encoding="utf-8")


def write_run_record(output_dir: str, data_files: list[str], world_size: int, extra: dict | None = None) -> None:
    record = {
        "command": [sys.executable] + sys.argv,
        "git_sha": git_sha(),
        "versions": package_versions(),
        "world_size": world_size,
        "data_files": {p: file_sha256(p) for p in data_files if Path(p).is_file()},
    }
    record.update(extra or {})
    Path(output_dir, "run_info.json").write_text(json.dumps(record, indent=2, ensure_ascii=False))


def write_json(path: str | Path, obj) -> None:
    Path(path).write_text(json.dumps(obj, indent=2, ensure_ascii=False))


def plot_loss(log_history: list[dict], path: str | Path) -> bool:
    """A PNG of training (and eval) loss against step, with the Korean answer health when it was logged and, for
    preference stages, a panel of the chosen answers' likelihood (kotune.stages.displacement); False when nothing was
    logged."""
    train = [(h["step"], h["loss"]) for h in log_history if "loss" in h and "step" in h]
    evals = [(h["step"], h["eval_loss"]) for h in log_history if "eval_loss" in h]
    if not train and not evals:
        return False
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    chosen = [(h["step"], h["chosen_logp_change"], h["chosen_less_likely"]) for h in log_history
              if "chosen_logp_change" in h]
    fig, axes = plt.subplots(2 if chosen else 1, 1, figsize=(6, 5.5 if chosen else 3.5), dpi=100, squeeze=False,
                             sharex=True)
    ax = axes[0][0]
    if train:
        ax.plot(*zip(*train), label="train loss")
    if evals:
        ax.plot(*zip(*evals), "o-", label="eval loss")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left")
    health = [(h["step"], h["eval_hangul_share"]) for h in log_history if "eval_hangul_share" in h]
    if health:  # Korean answer health: a drift into another language shows as a falling line
        share = ax.twinx()
        share.plot(*zip(*health), "s--", color="#228833", label="Hangul share of eval answers")
        share.set_ylim(0, 1.05)
        share.set_ylabel("Hangul share")
        share.legend(loc="upper right")
    if chosen:  # likelihood displacement: chosen answers falling below their start cut answers short
        steps, change, less = zip(*chosen)
        low = axes[1][0]
        low.plot(steps, change, color="#aa3377", label="chosen answers: mean change of log p")
        low.axhline(0.0, color="grey", lw=0.8)
        low.set_ylabel("nats per answer")
        low.grid(alpha=0.3)
        low.legend(loc="lower left", fontsize=8)
        frac = low.twinx()
        frac.plot(steps, less, ":", color="#4477aa", label="share less likely than at the start")
        frac.set_ylim(0, 1.05)
        frac.set_ylabel("share")
        frac.legend(loc="upper right", fontsize=8)
    axes[-1][0].set_xlabel("optimizer step")
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return True
