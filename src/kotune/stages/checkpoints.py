"""Which checkpoints can be resumed: every file the Trainer reads back is there and whole.

A run killed in the middle of a save (kill -9, a full disk, preemption) leaves a checkpoint dir with some files
missing or cut short, and a disk can corrupt one later. trainer_state.json alone says nothing about the weights or
the optimizer: the Trainer then fails deep inside torch, or, without optimizer.pt, silently restarts the optimizer.
A checkpoint is complete when its trainer state parses, its weights (safetensors: header readable and the file as long
as the header says) and its optimizer and scheduler (torch's zip files: every member's CRC matches) are whole, or
DeepSpeed's global_step dir holds them, or FSDP's sharded dirs do (torch.distributed.checkpoint writes `.metadata`
after every rank's shard, so it marks a whole save). No heavy import: the config check calls this.
"""

from __future__ import annotations

import json
import logging
import re
import struct
import zipfile
from pathlib import Path

from kotune.errors import KotuneError

logger = logging.getLogger(__name__)

CHECKPOINT = re.compile(r"^checkpoint-(\d+)$")
WEIGHTS = ("adapter_model.safetensors", "model.safetensors", "model.safetensors.index.json", "adapter_model.bin",
           "pytorch_model.bin", "pytorch_model.bin.index.json", "pytorch_model_fsdp.bin")
FSDP_SHARDED = ("pytorch_model_fsdp_0", "optimizer_0")  # accelerate's dirs for SHARDED_STATE_DICT checkpoints
OPTIMIZERS = ("optimizer.pt", "optimizer.bin")
SCHEDULER = "scheduler.pt"


def safetensors_problem(path: Path) -> str | None:
    """Why a .safetensors file is not whole, or None: an 8-byte header length, a JSON header, and data exactly as
    long as the header's last offset (a cut file is shorter)."""
    try:
        size = path.stat().st_size
        with open(path, "rb") as f:
            head = f.read(8)
            if len(head) < 8:
                return f"{path.name} is {size} bytes, too short for a safetensors header"
            (length,) = struct.unpack("<Q", head)
            if length > size - 8:
                return (f"{path.name}: its header length ({length} bytes) exceeds the file ({size} bytes); it was cut "
                        "short or is not a safetensors file")
            header = json.loads(f.read(length))
        end = max((int(t["data_offsets"][1]) for k, t in header.items() if k != "__metadata__"), default=0)
    except (OSError, ValueError, TypeError, KeyError, IndexError, AttributeError) as err:
        return f"{path.name} has no readable safetensors header ({type(err).__name__})"
    if size != 8 + length + end:
        return f"{path.name} is {size} bytes where its header says {8 + length + end}; it was cut short or is damaged"
    return None


def torch_file_problem(path: Path, deep: bool = True) -> str | None:
    """Why a torch.save file (a zip archive) is not whole, or None. `deep`: also read every member and check its
    CRC (torch.load itself does not, and loads damaged bytes)."""
    try:
        with zipfile.ZipFile(path) as archive:
            bad = archive.testzip() if deep else None
    except (OSError, zipfile.BadZipFile, EOFError, ValueError) as err:
        return f"{path.name} cannot be read as a torch file ({err}); it was cut short or is damaged"
    if bad:
        return f"{path.name} is damaged (member {bad} fails its CRC check)"
    return None


def sharded_problem(folder: Path) -> str | None:
    """Why an FSDP sharded dir (torch.distributed.checkpoint) is not whole, or None."""
    shards = sorted(folder.glob("*.distcp"))
    if not (folder / ".metadata").is_file():
        return f"{folder.name}/.metadata is missing (the sharded save did not finish)"
    if not shards or any(p.stat().st_size == 0 for p in shards):
        return f"{folder.name}/ holds no shard, or an empty one"
    return None


def weights_problem(ckpt: Path, deepspeed: bool) -> str | None:
    if (ckpt / FSDP_SHARDED[0]).is_dir():
        return sharded_problem(ckpt / FSDP_SHARDED[0])
    found = [name for name in WEIGHTS if (ckpt / name).is_file()]
    if not found:
        if deepspeed:
            return None  # ZeRO-3 without gathered weights keeps them in global_step*/
        return f"no weights file ({' or '.join(WEIGHTS[:2])})"
    for name in found:
        path = ckpt / name
        if name.endswith(".index.json"):
            try:
                shards = sorted(set(json.loads(path.read_text(encoding="utf-8"))["weight_map"].values()))
            except (OSError, ValueError, KeyError, AttributeError) as err:
                return f"{name} is not a readable index ({type(err).__name__})"
            for shard in shards:
                if not (ckpt / shard).is_file():
                    return f"{shard}, named in {name}, is missing"
                problem = (safetensors_problem if shard.endswith(".safetensors") else torch_file_problem)(ckpt / shard)
                if problem:
                    return problem
        else:
            problem = (safetensors_problem if name.endswith(".safetensors") else torch_file_problem)(path)
            if problem:
                return problem
    return None


def optimizer_problem(ckpt: Path, deep: bool) -> str | None:
    steps = [p for p in ckpt.glob("global_step*") if p.is_dir()]
    if steps:  # DeepSpeed saves optimizer, scheduler (and under ZeRO-3 the weights) in its own dir
        latest = ckpt / "latest"
        tag = latest.read_text(encoding="utf-8").strip() if latest.is_file() else None
        step = ckpt / tag if tag else max(steps, key=lambda p: p.stat().st_mtime)
        files = sorted(step.glob("*.pt")) if step.is_dir() else []
        if not files:
            return f"DeepSpeed's {step.name}/ (named in 'latest') holds no *.pt state files"
        return next((f"{step.name}/{p}" for p in (torch_file_problem(f, deep) for f in files) if p), None)
    if (ckpt / FSDP_SHARDED[1]).is_dir():
        problem = sharded_problem(ckpt / FSDP_SHARDED[1])
        return problem or (None if (ckpt / SCHEDULER).is_file() else
                           f"no {SCHEDULER}; the Trainer would silently restart the schedule")
    name = next((n for n in OPTIMIZERS if (ckpt / n).is_file()), None)
    if name is None:
        return ("no optimizer.pt (saved with save_only_model: true, or cut off mid-save); the Trainer would restart "
                "the optimizer from scratch")
    for path in (ckpt / name, ckpt / SCHEDULER):
        if not path.is_file():
            return f"no {path.name}; the Trainer would silently restart the optimizer and schedule"
        problem = torch_file_problem(path, deep)
        if problem:
            return problem
    return None


def checkpoint_problem(ckpt: str | Path, deep: bool = True) -> str | None:
    """The first reason `ckpt` cannot be resumed (naming the file), or None when it is complete."""
    ckpt = Path(ckpt)
    if not ckpt.is_dir():
        return "not a directory" if ckpt.exists() else "does not exist"
    try:
        json.loads((ckpt / "trainer_state.json").read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        return f"trainer_state.json is missing or unreadable ({type(err).__name__})"
    deepspeed = any(p.is_dir() for p in ckpt.glob("global_step*"))
    return weights_problem(ckpt, deepspeed) or optimizer_problem(ckpt, deep)


def checkpoint_dirs(output_dir: str | Path) -> list[Path]:
    """checkpoint-N dirs in output_dir, oldest first."""
    root = Path(output_dir)
    if not root.is_dir():
        return []
    found = [(int(m.group(1)), p) for p in root.iterdir() if (m := CHECKPOINT.match(p.name)) and p.is_dir()]
    return [p for _, p in sorted(found)]


def complete_checkpoints(output_dir: str | Path) -> list[Path]:
    """The complete checkpoint dirs in output_dir, oldest first; each incomplete one is logged with its reason."""
    complete = []
    for path in checkpoint_dirs(output_dir):
        problem = checkpoint_problem(path)
        if problem:
            logger.warning("skipping incomplete checkpoint %s: %s", path, problem)
        else:
            complete.append(path)
    return complete


def latest_complete(output_dir: str | Path) -> Path | None:
    """The newest complete checkpoint; each newer, incomplete one is logged as skipped with its reason."""
    for path in reversed(checkpoint_dirs(output_dir)):
        problem = checkpoint_problem(path)
        if not problem:
            return path
        logger.warning("skipping incomplete checkpoint %s: %s", path, problem)
    return None


def explicit_checkpoint_problem(resume: str, deep: bool = True) -> str | None:
    """The config check of `resume_from_checkpoint: PATH`: one message naming the file, or None."""
    problem = checkpoint_problem(resume, deep)
    if problem is None:
        return None
    return (f"resume_from_checkpoint: '{resume}' cannot be resumed: {problem}. Point it at a complete checkpoint-N "
            "dir, or use --resume_from_checkpoint=true for the newest complete one in output_dir")


def resolve_resume(output_dir: str, resume: str | bool | None) -> str | None:
    """`resume_from_checkpoint: true` → the newest complete checkpoint in output_dir; a path is checked."""
    if resume in (None, False, "false", "False", ""):
        return None
    if resume in (True, "true", "True"):
        latest = latest_complete(output_dir)
        if latest is None:
            raise KotuneError(f"resume_from_checkpoint: no complete checkpoint in '{output_dir}' to resume from; "
                              "drop the flag to start a new run")
        return str(latest)
    problem = explicit_checkpoint_problem(resume, deep=False)  # the config check read it whole already
    if problem:
        raise KotuneError(problem)
    return str(resume)
