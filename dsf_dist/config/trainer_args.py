"""pl.Trainer's arguments and the YAML-expressible types they take (pytorch-lightning 2.6).

A snapshot, so that checking a config never imports Lightning (about 5 s here); a test compares it
with the installed pl.Trainer's signature, so it cannot drift unnoticed.
"""

from __future__ import annotations

from typing import Literal

Batches = int | float | None
Precision = (
    Literal[
        64,
        32,
        16,
        "64",
        "32",
        "16",
        "bf16",
        "16-true",
        "16-mixed",
        "bf16-true",
        "bf16-mixed",
        "32-true",
        "64-true",
        "transformer-engine",
        "transformer-engine-float16",
    ]
    | None
)

TRAINER_ARGS: dict[str, object] = {
    "accelerator": str,
    "devices": list[int] | str | int,
    "num_nodes": int,
    "precision": Precision,
    "fast_dev_run": int | bool,
    "max_epochs": int | None,
    "min_epochs": int | None,
    "max_steps": int,
    "min_steps": int | None,
    "max_time": str | dict[str, int] | None,
    "limit_train_batches": Batches,
    "limit_val_batches": Batches,
    "limit_test_batches": Batches,
    "limit_predict_batches": Batches,
    "overfit_batches": int | float,
    "val_check_interval": int | float | str | dict[str, int] | None,
    "check_val_every_n_epoch": int | None,
    "num_sanity_val_steps": int | None,
    "log_every_n_steps": int | None,
    "enable_progress_bar": bool | None,
    "enable_model_summary": bool | None,
    "accumulate_grad_batches": int,
    "gradient_clip_val": int | float | None,
    "gradient_clip_algorithm": Literal["value", "norm"] | None,
    "deterministic": bool | Literal["warn"] | None,
    "benchmark": bool | None,
    "inference_mode": bool,
    "use_distributed_sampler": bool,
    "profiler": Literal["simple", "advanced", "pytorch", "xla"] | None,
    "detect_anomaly": bool,
    "barebones": bool,
    "sync_batchnorm": bool,
    "reload_dataloaders_every_n_epochs": int,
    "enable_autolog_hparams": bool,
    "model_registry": str | None,
}

# pl.Trainer arguments that dsf builds itself from other sections; setting them would bypass those.
TRAINER_ARGS_OWNED = {
    "strategy": "set strategy.name instead",
    "callbacks": "use the checkpoint and early_stopping sections, and list your own under callbacks",
    "logger": "dsf logs to <run>/logs",
    "plugins": "the strategy section chooses plugins",
    "enable_checkpointing": "use the checkpoint section",
    "default_root_dir": "use run.output_root and run.name",
}
