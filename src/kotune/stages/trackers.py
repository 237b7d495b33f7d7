"""Experiment trackers named in `report_to`, through transformers' own callbacks, plus kotune's config.

    report_to: [wandb]     # WANDB_MODE=offline for no account; runs go to output_dir/wandb unless WANDB_DIR is set
    report_to: [mlflow]    # a local file store in output_dir/mlruns unless MLFLOW_TRACKING_URI is set

transformers logs TrainingArguments (and the model config) as the run's params/config; kotune adds its resolved
config (dataset_mixture, prompt_format, the LoRA and model fields...) under `kotune/...` in MLflow params (flattened:
`kotune/dataset_mixture.datasets.0.id`) and `kotune` in the W&B config. A tracker whose client is not installed is
a config error, said before anything loads.
"""

from __future__ import annotations

import difflib
import importlib.util
import logging
import os
from pathlib import Path

logger = logging.getLogger("kotune")

# report_to name -> (module its client installs, the pip command); the names are transformers 5.23's integrations.
CLIENTS = {
    "wandb": ("wandb", "pip install wandb==0.31.0"),
    "mlflow": ("mlflow", "pip install mlflow-skinny==3.17.2"),
    "tensorboard": ("tensorboard", "pip install tensorboard==2.21.0"),
    "comet_ml": ("comet_ml", "pip install comet_ml"),
    "neptune": ("neptune", "pip install neptune"),
    "clearml": ("clearml", "pip install clearml"),
    "trackio": ("trackio", "pip install trackio"),
    "swanlab": ("swanlab", "pip install swanlab"),
    "dvclive": ("dvclive", "pip install dvclive"),
    "codecarbon": ("codecarbon", "pip install codecarbon"),
    "dagshub": ("dagshub", "pip install dagshub mlflow-skinny==3.17.2"),
    "azure_ml": ("azureml", "pip install azureml-core"),
    "flyte": ("flytekit", "pip install flytekit"),
    "kubeflow": (None, None),
}
MAX_PARAM_LENGTH = 6000  # MLflow 3's limit on a param value


def requested(report_to) -> list[str]:
    """report_to as a list of names ('all' and 'none' are transformers' to resolve)."""
    names = [report_to] if isinstance(report_to, str) else list(report_to or [])
    return [n for n in names if n not in ("all", "none")]


def tracker_problems(report_to) -> list[str]:
    """Unknown tracker names, and trackers whose client is not installed, each with the fix (no import)."""
    problems = []
    for name in requested(report_to):
        if name not in CLIENTS:
            near = difflib.get_close_matches(str(name), CLIENTS, n=1)
            problems.append(f"report_to: unknown tracker '{name}'" + (f"; did you mean '{near[0]}'?" if near else
                                                                      f" (known: {', '.join(CLIENTS)})"))
            continue
        module, pip = CLIENTS[name]
        if module and importlib.util.find_spec(module) is None:
            problems.append(f"report_to: '{name}' needs its client, which is not installed: {pip} "
                            f"(or pip install -e .[dev]), or remove '{name}' from report_to")
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if "mlflow" in requested(report_to) and uri.split(":", 1)[0].split("+")[0] in ("sqlite", "postgresql", "mysql") \
            and importlib.util.find_spec("sqlalchemy") is None:
        problems.append(f"report_to: mlflow with MLFLOW_TRACKING_URI={uri} needs MLflow's database store, which "
                        "mlflow-skinny lacks: pip install mlflow==3.17.2, or use a file store (file:/path/mlruns)")
    return problems


def configure_trackers(cfg) -> None:
    """Defaults for the trackers' environment variables the user left unset, each logged by name: W&B writes into
    output_dir (project 'kotune'); MLflow gets a file store in output_dir/mlruns and the experiment 'kotune'."""
    names = requested(cfg.training.report_to)
    out = Path(cfg.training.output_dir).absolute()
    defaults = {}
    if "wandb" in names:
        defaults.update(WANDB_DIR=str(out), WANDB_PROJECT="kotune")
    if "mlflow" in names:
        defaults.update(MLFLOW_TRACKING_URI=f"file:{out / 'mlruns'}", MLFLOW_EXPERIMENT_NAME="kotune")
    for key, value in defaults.items():
        if not os.environ.get(key):
            os.environ[key] = value
            logger.info("report_to: %s=%s (set it to change)", key, value)
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    if "mlflow" in names and (uri.startswith("file:") or "://" not in uri) \
            and not os.environ.get("MLFLOW_ALLOW_FILE_STORE"):
        os.environ["MLFLOW_ALLOW_FILE_STORE"] = "true"  # MLflow 3 refuses its file store unless asked
        logger.info("report_to: MLFLOW_ALLOW_FILE_STORE=true (MLflow 3 keeps its file store for local use only)")
    if "wandb" in names:
        logger.info("report_to: wandb in %s mode", os.environ.get("WANDB_MODE", "online"))


def flat(config: dict, prefix: str = "") -> dict[str, str]:
    """{"a": {"b": [1, 2]}} -> {"a.b.0": "1", "a.b.1": "2"}: one MLflow param per leaf.

    >>> flat({"dataset_mixture": {"seed": 1, "datasets": [{"id": "a.jsonl"}]}, "lora_r": 8})
    {'dataset_mixture.seed': '1', 'dataset_mixture.datasets.0.id': 'a.jsonl', 'lora_r': '8'}
    """
    out: dict[str, str] = {}
    items = config.items() if isinstance(config, dict) else enumerate(config)
    for key, value in items:
        name = f"{prefix}{key}"
        if isinstance(value, (dict, list, tuple)) and value:
            out.update(flat(value if isinstance(value, dict) else list(value), f"{name}."))
        else:
            out[name] = str(value)
    return out


def tracker_callbacks(cfg) -> list:
    """[a callback logging kotune's config to the trackers transformers started] when report_to names W&B or MLflow."""
    names = requested(cfg.training.report_to)
    if not {"wandb", "mlflow"} & set(names):
        return []
    from transformers import TrainerCallback

    class KotuneConfigToTrackers(TrainerCallback):
        """Runs after transformers' tracker callbacks (user callbacks come after the integrations), so their runs
        exist; ends a W&B run the trainer started (transformers leaves it open until the process exits)."""

        def __init__(self, config: dict, names: list[str]):
            self.config = config
            self.started_wandb = "wandb" in names and _wandb_run() is None

        def on_train_begin(self, args, state, control, **kwargs):
            if not state.is_world_process_zero:
                return
            names = set(requested(args.report_to))
            if "mlflow" in names:
                log_mlflow_params(self.config)
            run = _wandb_run() if "wandb" in names else None
            if run is not None:
                run.config.update({"kotune": self.config}, allow_val_change=True)

        def on_train_end(self, args, state, control, **kwargs):
            run = _wandb_run()
            if state.is_world_process_zero and run is not None and self.started_wandb:
                run.finish()

    return [KotuneConfigToTrackers({"stage": cfg.stage, **cfg.resolved}, names)]


def log_mlflow_params(config: dict) -> None:
    import mlflow

    if mlflow.active_run() is None:
        logger.warning("report_to: no active MLflow run; kotune's config is not logged")
        return
    params = {f"kotune/{k}": v for k, v in flat(config).items()}
    long = [k for k, v in params.items() if len(v) > MAX_PARAM_LENGTH]
    for key in long:
        logger.warning("report_to: %s is longer than MLflow's %d characters; not logged", key, MAX_PARAM_LENGTH)
        del params[key]
    items = list(params.items())
    for i in range(0, len(items), 100):  # MLflow takes at most 100 params per call
        mlflow.log_params(dict(items[i:i + 100]))


def _wandb_run():
    if importlib.util.find_spec("wandb") is None:
        return None
    import wandb

    return wandb.run
