"""Run safety: never overwrite an output dir by accident, resume from the last complete checkpoint
(`kotune.stages.checkpoints` says which are), checkpoint on SIGTERM, and stop on a non-finite loss before it reaches
the weights."""

from __future__ import annotations

import logging
import signal
import threading
from pathlib import Path

import torch
from transformers import TrainerCallback

from kotune.errors import KotuneError
from kotune.stages.checkpoints import complete_checkpoints, resolve_resume  # noqa: F401 - kotune's run-safety API

logger = logging.getLogger(__name__)


class NonFiniteLossError(RuntimeError):
    """Raised inside training when a loss was NaN or inf, before any log, evaluation or save that follows it."""


def check_output_dir(output_dir: str, overwrite: bool, resuming: bool) -> None:
    """Refuse an existing, non-empty output_dir unless the user asked to overwrite or resume."""
    path = Path(output_dir)
    if path.exists() and not path.is_dir():
        raise KotuneError(f"output_dir: '{output_dir}' exists and is a file")
    if path.is_dir() and any(path.iterdir()) and not (overwrite or resuming):
        raise KotuneError(
            f"output_dir: '{output_dir}' already exists and is not empty. Use --resume_from_checkpoint=true to "
            "continue it, --overwrite_output_dir=true to replace it, or choose another output_dir"
        )


class SigtermCheckpoint(TrainerCallback):
    """On SIGTERM (preemption, `kill`, Slurm), finish the current step, save a checkpoint, and stop."""

    def __init__(self):
        self.received = False
        # Python takes signal handlers on the main thread only; Ray Train runs the training function in a worker
        # thread, where Ray itself owns SIGTERM, so there this callback installs nothing.
        self._installed = threading.current_thread() is threading.main_thread()
        self._previous = signal.signal(signal.SIGTERM, self._handle) if self._installed else None

    def _handle(self, signum, frame):
        if not self.received:
            logger.warning("SIGTERM received: saving a checkpoint after this step, then stopping")
        self.received = True

    def on_step_end(self, args, state, control, **kwargs):
        if self.received:
            control.should_save = True
            control.should_training_stop = True
        return control

    def restore(self):
        if self._installed:
            signal.signal(signal.SIGTERM, self._previous)


class NonFiniteLossGuard:
    """Trainer mixin: stop on a non-finite loss before anything is logged, evaluated or saved from it.

    Every micro-step's loss is checked on the device (no `.item()`: a host sync per step stalls a GPU's queue); the
    first bad step is read back once, just before a log, an evaluation, a checkpoint or the end of training. The
    last checkpoint on disk is then the last good one. (A TrainerCallback alone cannot do this: callbacks see the
    loss only at logging steps, as a float.)
    """

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.first_nonfinite = None  # on the loss's device: (first bad step or 0, its loss)
        self.add_callback(CheckBeforeOutput(self))

    def training_step(self, *args, **kwargs):
        loss = super().training_step(*args, **kwargs)
        value = loss.detach().float().mean()
        if self.first_nonfinite is None:
            self.first_nonfinite = (torch.zeros((), dtype=torch.long, device=value.device), torch.zeros_like(value))
        step, first = self.first_nonfinite
        new = ~torch.isfinite(value) & (step == 0)
        self.first_nonfinite = (torch.where(new, self.state.global_step + 1, step), torch.where(new, value, first))
        return loss

    def check_finite_loss(self) -> None:
        """Raise NonFiniteLossError if any micro-step so far had a NaN or inf loss (one host sync)."""
        if self.first_nonfinite is None:
            return
        step, value = (t.item() for t in self.first_nonfinite)
        if step:
            raise NonFiniteLossError(
                f"loss became {value} at step {step}; training stopped before anything was logged or saved from "
                "it. Lower learning_rate, use bf16 instead of fp16, or enable max_grad_norm. The last checkpoint "
                "in output_dir is the last good state."
            )

    def train(self, *args, **kwargs):
        result = super().train(*args, **kwargs)
        self.check_finite_loss()  # steps after the last log: the final model must not be saved from them
        return result


class CheckBeforeOutput(TrainerCallback):
    """Runs after the Trainer's flow callback has decided this step's log/eval/save, and before they happen."""

    def __init__(self, trainer):
        self.trainer = trainer

    def _check(self, control):
        if control.should_log or control.should_evaluate or control.should_save or control.should_training_stop:
            self.trainer.check_finite_loss()

    def on_step_end(self, args, state, control, **kwargs):
        self._check(control)

    def on_epoch_end(self, args, state, control, **kwargs):
        self._check(control)
