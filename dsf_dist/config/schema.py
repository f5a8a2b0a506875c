"""The typed config: one class per YAML section, the explanation next to each field.

Every section forbids unknown keys, so a typo fails at load time naming its key path. The defaults
below are the embedded default run (digits image classification); `configs/default.yaml` is their
written-out form and a test keeps the two equal.
"""

from __future__ import annotations

import math
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from dsf_dist.config.base import IMPORT_PATH, SAFE_NAME, Section, import_path
from dsf_dist.config.metrics import GATEABLE
from dsf_dist.config.strategy import StrategyConfig


class OptimizerConfig(Section):
    name: Literal["adam", "adamw", "sgd"] = "adam"
    """torch.optim class, by its lower-case name."""
    lr: float = Field(3e-3, gt=0)
    weight_decay: float = Field(0.0, ge=0)
    momentum: float = Field(0.0, ge=0)
    """Used by sgd only."""


class SchedulerConfig(Section):
    name: Literal["none", "cosine", "step"] = "none"
    """'cosine' anneals over trainer.max_epochs; 'step' multiplies the lr by gamma every step_size epochs."""
    step_size: int = Field(10, ge=1)
    gamma: float = Field(0.1, gt=0)


class ModelConfig(Section):
    network: str = "mlp"
    """Built-in network ('mlp', 'autoencoder') or an import path 'pkg.mod:factory' returning an nn.Module."""
    network_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for the network builder (built-ins: see dsf_dist/models/networks.py)."""
    module: str | None = None
    """Import path of your own LightningModule; replaces the built-in PlModel (network/loss are then yours)."""
    module_kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments for your LightningModule."""
    task: Literal["classification", "regression", "token_classification", "sequence_classification", "causal_lm"] = (
        "classification"
    )
    """classification: cross-entropy and class metrics; regression (e.g. the autoencoder): MSE/MAE;
    token_classification: a Hugging Face model tags each word (BIO tags from data.path JSONL or parquet; hf extra);
    sequence_classification: a Hugging Face model labels each text (data.path JSONL, CSV or parquet; hf extra);
    causal_lm: a Hugging Face causal language model learns the next token of text files (needs the hf extra)."""
    pretrained: str | None = None
    """token_classification: a Hugging Face model name or local folder for from_pretrained (model and tokenizer);
    sequence_classification, causal_lm: a local folder save_pretrained wrote (safetensors weights only)."""
    architecture: dict[str, Any] | None = None
    """sequence_classification, causal_lm without model.pretrained: a new model with random weights,
    AutoConfig.for_model(model_type, **the rest), e.g. {model_type: gpt2, n_layer: 4, n_embd: 256, n_head: 4,
    n_positions: 256, vocab_size: 4096} or {model_type: bert, num_hidden_layers: 2, hidden_size: 64}. Its tokenizer
    is trained on the training split and kept in <run>/tokenizer/ (causal_lm: a byte-level BPE whose size is
    vocab_size; sequence_classification: WordPiece)."""
    tokenizer: str | None = None
    """causal_lm: a local tokenizer folder (AutoTokenizer.from_pretrained). None: model.pretrained's own, or for
    pre-training a byte-level BPE trained on the training split and written to <run>/tokenizer/."""
    activation_checkpointing: bool = False
    """Recompute each FSDP wrap unit's activations (a transformer's blocks, from its _no_split_modules) in backward
    instead of storing them: under fsdp they become strategy.fsdp.activation_checkpointing unless that names some;
    under ddp and deepspeed a Hugging Face model uses its own gradient checkpointing."""
    new_head: bool = False
    """sequence_classification: give model.pretrained a new head for the data's labels even when its own head was
    fine-tuned on other label names (off: such a folder is refused, since its head would be thrown away)."""
    trust_remote_code: bool = False
    """token_classification, causal_lm: let a Hugging Face model folder run its own Python code (config.json's
    `auto_map`), as transformers' trust_remote_code=True does, for model.pretrained and a pretrained existing model
    alike (causal_lm: and model.tokenizer). Off: a model folder is data, and dsf loads only its safetensors weights
    and built-in architectures; set it only for a folder whose code you have read and trust."""
    input_size: int | None = Field(None, ge=1)
    """Features per sample; None takes it from the data set."""
    num_classes: int | None = Field(None, ge=2)
    """Classes for classification; None takes it from the data set."""
    optimizer: OptimizerConfig = Field(default_factory=OptimizerConfig)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)

    _check_module = field_validator("module")(import_path)

    @field_validator("network")
    @classmethod
    def _known_network(cls, value: str) -> str:
        if value in ("mlp", "autoencoder") or IMPORT_PATH.match(value):
            return value
        raise ValueError(f"'{value}' is neither 'mlp', 'autoencoder' nor an import path 'pkg.mod:factory'")


class SplitConfig(Section):
    train: float = Field(0.7, gt=0, lt=1)
    val: float = Field(0.15, gt=0, lt=1)
    test: float = Field(0.15, ge=0, lt=1)
    """Set to 0 when data.test_path gives a separate test set."""

    @model_validator(mode="after")
    def _sums_to_one(self) -> SplitConfig:
        total = self.train + self.val + self.test
        if abs(total - 1.0) > 1e-6:
            raise ValueError(f"train + val + test is {total:g}; the fractions must add up to 1")
        return self


class DataConfig(Section):
    dataset: str = "digits"
    """'digits' (scikit-learn's bundled 8x8 digits, offline) or 'pkg.mod:fn' with fn(path, **kwargs) -> Dataset."""
    dataset_kwargs: dict[str, Any] = Field(default_factory=dict)
    path: str | None = None
    """The seed's dataset_path: handed to the dataset function."""
    test_path: str | None = None
    """The seed's test_dataset_path: a separate test set (then split.test must be 0)."""
    datamodule: str | None = None
    """Import path of your own LightningDataModule; replaces the built-in DataModule and split()."""
    datamodule_kwargs: dict[str, Any] = Field(default_factory=dict)
    split: SplitConfig = Field(default_factory=SplitConfig)
    batch_size: int = Field(64, ge=1)
    """Per rank."""
    num_workers: int = Field(0, ge=0)
    text_field: str = "text"
    """Text tasks reading .jsonl or .parquet files: the field (column) that holds each document's text."""
    block_size: int | None = Field(None, ge=2)
    """causal_lm: tokens per training and test block (documents are packed end to end, each block starting with
    the tokenizer's BOS token); None: the model's context length, at most 1024. At most the context length."""
    text_pair_field: str | None = None
    """sequence_classification: a second text field (column) for pairs (e.g. question and passage); None: one text."""
    label_field: str = "label"
    """sequence_classification: the field (column) that holds each text's label (a name or an integer)."""
    cache_dir: str | None = None
    """Where Hugging Face datasets caches what it reads from text files; None: <run.output_root>/.cache/datasets."""

    _check_paths = field_validator("datamodule")(import_path)

    @model_validator(mode="after")
    def _test_source(self) -> DataConfig:
        if self.test_path is not None and self.split.test != 0:
            raise ValueError("data.test_path gives the test set, so set data.split.test to 0")
        if self.test_path is None and self.split.test == 0 and self.datamodule is None:
            raise ValueError("data.split.test is 0 and no data.test_path is set; there would be no test set")
        return self


class MetricsConfig(Section):
    """The seed's metric flags: set to true the results you want."""

    accuracy: bool = True
    precision: bool = True
    recall: bool = True
    f1: bool = True
    confusion_matrix: bool = True
    mse: bool = False
    """Regression tasks."""
    mae: bool = False
    """Regression tasks."""
    entity_f1: bool = True
    """token_classification only: entity-level F1 (exact span and type match, as seqeval's default mode)."""
    token_loss: bool = True
    """causal_lm only: mean loss per test token (cross-entropy of the next token, in nats)."""
    perplexity: bool = True
    """causal_lm only: exp(token_loss); lower is better."""
    next_token_accuracy: bool = True
    """causal_lm only: the share of test tokens that are the model's most likely next token."""
    average: Literal["macro", "micro", "weighted"] = "macro"
    """How precision, recall and f1 average over classes (accuracy is always the share of correct samples)."""


class CheckpointConfig(Section):
    """Lightning's ModelCheckpoint; the best checkpoint is the one tested."""

    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    save_top_k: int = Field(1, ge=-1)
    save_last: bool = True
    every_n_epochs: int = Field(1, ge=1)
    every_n_train_steps: int | None = Field(None, ge=1)
    """Also save last.ckpt every N training steps, so that a run killed mid-epoch (SIGKILL, a lost node) loses at
    most N steps; the best-k are still chosen at epoch ends. None: only at epoch ends (and on a stop signal)."""
    async_save: bool = False
    """Write checkpoints in the background: training waits only while the state is copied to host memory (which
    needs room for one more copy of it). At most one write is in flight; fit ends with the last one complete.
    DeepSpeed saves stay synchronous (dsf says so once)."""


class EarlyStoppingConfig(Section):
    enabled: bool = False
    monitor: str = "val_loss"
    mode: Literal["min", "max"] = "min"
    patience: int = Field(3, ge=0)
    min_delta: float = Field(0.0, ge=0)


class ExistingModelConfig(Section):
    """The model that the trained one is compared against, scored on the same test samples."""

    kind: Literal["callable", "checkpoint", "previous", "pretrained", "base", "none"] = "callable"
    """base: the model.pretrained folder the run fine-tunes, scored as it is, the natural existing model of a
    fine-tuning run (no path: it is model.pretrained); the other kinds are described under target and path."""
    target: str | None = "dsf_dist.models.baselines:logistic_regression"
    """kind=callable: 'pkg.mod:fn', fn(datasets, **kwargs) -> predictions (labels or scores) for datasets.test."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    path: str | None = None
    """kind=checkpoint: a checkpoint of any strategy (.ckpt file, DeepSpeed or FSDP folder) or an exported
    .safetensors; kind=previous: an earlier run folder, whose best checkpoint is used; kind=pretrained: a
    pretrained model folder (model.safetensors + config.yaml, as `dsf export` writes), in its own architecture."""

    _check_target = field_validator("target")(import_path)

    @model_validator(mode="after")
    def _has_source(self) -> ExistingModelConfig:
        if self.kind == "callable" and not self.target:
            raise ValueError("kind is 'callable' but existing_model.target is empty; set it to 'pkg.mod:fn'")
        if self.kind in ("checkpoint", "previous", "pretrained") and not self.path:
            what = {"checkpoint": "a checkpoint", "previous": "a run folder", "pretrained": "a model folder"}[self.kind]
            raise ValueError(f"kind is '{self.kind}' but existing_model.path is empty; set it to {what}")
        return self


class ComparisonConfig(Section):
    """Trained vs existing model on the same test samples: paired statistics, and the gates a release must pass.

    Gates judge a metric's improvement: trained - existing for accuracy, precision, recall and f1, and
    existing - trained for mse and mae (lower is better), so a threshold always reads "at least this much
    better" and a negative one is a loss you tolerate. `dsf run` and `dsf compare` exit 3 when any configured
    gate fails; with no gates configured (the default) nothing can fail.
    """

    enabled: bool = True
    """Compare at all: results/comparison.json, comparison.md, comparison.html and its PNG plots."""
    primary_metric: str = "accuracy"
    """The metric the summary line leads with."""
    class_names: list[str] | None = None
    """Names of classes 0, 1, 2, ... in the reports and plots; None shows the class index."""
    bootstrap_resamples: int = Field(1000, ge=100, le=100_000)
    """Paired bootstrap resamples of the test samples behind each confidence interval."""
    confidence: float = Field(0.95, gt=0.5, lt=1)
    """Level of the bootstrap intervals; McNemar's test is significant below p = 1 - confidence."""
    seed: int = 0
    """Seeds the bootstrap: the same predictions always give the same intervals."""
    min_absolute: dict[str, float] = Field(default_factory=dict)
    """Gate, per metric: the least improvement, e.g. {accuracy: 0.0} (no drop) or {f1: -0.01} (at most 0.01 worse)."""
    min_relative: dict[str, float] = Field(default_factory=dict)
    """Gate, per metric: the least improvement as a fraction of the existing model's value, e.g. {mse: 0.05}."""
    no_significant_regression: list[str] = Field(default_factory=list)
    """Gate, metrics that must not be significantly worse: fails when the bootstrap interval of the improvement
    lies entirely below 0, and for accuracy also when McNemar's test is significant in the existing model's favour."""

    @field_validator("confidence", mode="before")
    @classmethod
    def _a_fraction(cls, value: Any) -> Any:
        if isinstance(value, int | float) and not isinstance(value, bool) and 1 < value < 100:
            raise ValueError(f"{value} reads as a percentage; give the level as a fraction, e.g. {value / 100:g}")
        return value

    @field_validator("min_absolute", "min_relative")
    @classmethod
    def _thresholds(cls, value: dict[str, float]) -> dict[str, float]:
        cls._known_metrics(list(value))
        for metric, threshold in value.items():
            if not math.isfinite(threshold):
                raise ValueError(f"{metric}: {threshold} is not a finite threshold; give a number such as 0.0")
        return value

    @field_validator("no_significant_regression")
    @classmethod
    def _gated_metrics(cls, value: list[str]) -> list[str]:
        cls._known_metrics(value)
        if len(set(value)) != len(value):
            raise ValueError("a metric is listed twice; list each metric once")
        return value

    @field_validator("class_names")
    @classmethod
    def _class_names(cls, value: list[str] | None) -> list[str] | None:
        if value is not None and (not value or len(set(value)) != len(value)):
            raise ValueError("class names must be unique and not empty; give one name per class, or null")
        return value

    @model_validator(mode="after")
    def _gates_need_the_comparison(self) -> ComparisonConfig:
        if not self.enabled and (self.min_absolute or self.min_relative or self.no_significant_regression):
            raise ValueError("gates are set but enabled is false, so they would never run; enable it or remove them")
        return self

    @classmethod
    def _known_metrics(cls, metrics: list[str]) -> None:
        for metric in metrics:
            if metric not in GATEABLE:
                raise ValueError(f"'{metric}' is not a metric dsf can gate; use {', '.join(GATEABLE)}")


class RunConfig(Section):
    output_root: str = "runs"
    """Run folders are created under here (`dsf run --output DIR` sets it)."""
    name: str | None = None
    """The run folder's name; None makes '<dataset>-<date>-<time>' (or uses the SLURM job id)."""
    seed: int = 42
    """Seeds the split, the weights and the data order."""
    memory_report: bool = False
    """Write results/memory.json: per-rank bytes of parameters, gradients, optimizer state at the first step."""
    resume: Literal["never", "auto"] = "never"
    """auto: continue the run folder's last checkpoint if there is one (`dsf run --resume`), else start fresh."""
    max_requeues: int = Field(3, ge=0)
    """Preempted under SLURM (SIGUSR1 before the time limit, or SIGTERM), the job checkpoints and requeues itself
    while SLURM_RESTART_COUNT is below this; 0 never requeues (see slurm/train.sh)."""
    stop_check_s: float = Field(0.5, ge=0)
    """How often, in seconds of training, the ranks agree whether a stop signal (SIGUSR1, SIGTERM) reached any of
    them (one small all-reduce); the run stops at the first such check after the signal. 0 checks at every step."""

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        if value is not None and (not SAFE_NAME.match(value) or ".." in value):
            raise ValueError(f"'{value}' is not a safe folder name; use letters, digits, '.', '_' and '-'")
        return value


class LoggingConfig(Section):
    """Experiment loggers of the training run; rank zero alone writes, so a job is one run in each."""

    loggers: list[Literal["csv", "tensorboard", "mlflow"]] = Field(default_factory=lambda: ["csv"])
    """csv: logs/metrics.csv (the reports' training curves); tensorboard: logs/tensorboard/; mlflow: a run in
    mlflow_tracking_uri. Each gets the resolved config and, after the comparison, its results."""
    mlflow_tracking_uri: str | None = None
    """None: a local file store in the run folder (file:<run>/mlruns); or e.g. http://127.0.0.1:5000."""
    mlflow_experiment: str = "dsf"

    @field_validator("loggers")
    @classmethod
    def _each_once(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("a logger is listed twice; list each of csv, tensorboard, mlflow once")
        return value


class RayConfig(Section):
    """Ray Train, for `python -m dsf_dist.launchers.ray` (e.g. under `ray job submit`); `dsf run` ignores it.

    The run folder is <storage_path>/<name>: Ray Train's run folder (RunConfig) and dsf's are one, so the reported
    checkpoints sit beside config.yaml, checkpoints/ and results/. The last three fields are environment variables
    the driver sets for Ray Train's controller and workers (Ray passes them on); with their defaults a small job
    waits less on Ray's polling than with Ray's (benchmarks/RESULTS.md has the measured difference)."""

    num_workers: int | None = Field(None, ge=1)
    """Training processes, one Lightning rank each (ScalingConfig.num_workers). None: trainer.devices x
    trainer.num_nodes, so a config that runs under `dsf run` runs the same ranks under Ray. Each worker's
    trainer.devices and trainer.num_nodes are then taken from where Ray placed the workers."""
    use_gpu: bool = False
    """One GPU per worker (ScalingConfig.use_gpu); needs trainer.accelerator gpu (or cuda)."""
    resources_per_worker: dict[str, float] = Field(default_factory=dict)
    """Ray resources each worker reserves, e.g. {CPU: 4} (ScalingConfig.resources_per_worker); {} is Ray's
    default of 1 CPU, or 1 GPU with use_gpu. At most one GPU: a worker is one Lightning rank on one device."""
    storage_path: str = "~/ray_results"
    """Absolute folder under which the run folder is made (RunConfig.storage_path; Ray's default). Every node
    must see it at the same path (NFS or similar): workers write checkpoints and results there directly. Not
    relative, because a job's working directory is a temporary copy; not a URI (s3://...), because dsf writes
    its files with plain file I/O."""
    name: str | None = None
    """Ray Train's run name (RunConfig.name) and the run folder's name; None: run.name, else
    '<dataset>-<Ray job submission id>' (or '<dataset>-<date>-<time>' outside a Ray job)."""
    max_failures: int = Field(1, ge=-1)
    """Times Ray restarts the worker group from the last reported checkpoint after a worker fails
    (FailureConfig.max_failures; Ray's default 0); -1 restarts forever. A config mistake is never retried."""
    num_to_keep: int | None = Field(1, ge=1)
    """Reported checkpoints Ray keeps in the run folder (CheckpointConfig.num_to_keep; Ray's default keeps all);
    the newest survive. dsf's own best and last checkpoints in checkpoints/ are kept as under `dsf run`."""
    health_check_interval_s: float = Field(0.5, gt=0)
    """RAY_TRAIN_HEALTH_CHECK_INTERVAL_S: how often Ray Train's controller polls the workers (Ray's default 2 s).
    Shorter notices a started, finished or dead worker group sooner, for a negligible polling cost."""
    preemption_watcher: bool = False
    """RAY_TRAIN_ENABLE_PREEMPTION_WATCHER: the actor that watches for node drains (Ray's default on). Off saves
    starting one more process with every run; workers lost to a drained node then count as a failure (max_failures)
    instead of a preemption."""
    print_patch: bool = False
    """RAY_TRAIN_ENABLE_PRINT_PATCH: Ray Train's rerouting of print() in workers into its logger (Ray's default
    on), which also echoes to the redirected stdout, so a job's log shows printed lines twice; off leaves print()
    alone."""

    @field_validator("name")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        return RunConfig._safe_name(value)


class CallbackConfig(Section):
    target: str
    """Import path 'pkg.mod:Name' of a pl.Callback class (or a function returning one)."""
    kwargs: dict[str, Any] = Field(default_factory=dict)
    """Keyword arguments it is called with."""

    _check_target = field_validator("target")(import_path)


class ThroughputConfig(Section):
    """The throughput monitor (dsf_dist/hooks/throughput.py): samples/s (tokens/s when batches carry an
    attention_mask or input_ids), TFLOP/s and MFU, and peak memory, logged every window_steps steps and summed
    up in results/throughput.json. It reads the clock once per window, so it never waits for the device at
    other steps."""

    enabled: bool = True
    window_steps: int = Field(50, ge=2)
    """Steps per measurement window; the only device synchronisation happens at a window's end."""
    flops_per_sample: float | None = Field(None, gt=0)
    """Training FLOPs (forward + backward) per sample; None measures one step with torch's FLOP counter."""
    peak_tflops: float | None = Field(None, gt=0)
    """Peak TFLOP/s of one device for MFU; None looks the GPU up in Lightning's table (no MFU on CPU)."""


def default_trainer() -> dict[str, Any]:
    return {"max_epochs": 20, "accelerator": "cpu", "devices": 1, "log_every_n_steps": 10}


class DsfConfig(Section):
    model: ModelConfig = Field(default_factory=ModelConfig)
    trainer: dict[str, Any] = Field(default_factory=default_trainer)
    """Passed to pl.Trainer as-is; keys are checked against its signature (dsf_dist.config.trainer_keys)."""
    data: DataConfig = Field(default_factory=DataConfig)
    metrics: MetricsConfig = Field(default_factory=MetricsConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    early_stopping: EarlyStoppingConfig = Field(default_factory=EarlyStoppingConfig)
    strategy: StrategyConfig = Field(default_factory=StrategyConfig)
    existing_model: ExistingModelConfig = Field(default_factory=ExistingModelConfig)
    comparison: ComparisonConfig = Field(default_factory=ComparisonConfig)
    run: RunConfig = Field(default_factory=RunConfig)
    logging: LoggingConfig = Field(default_factory=LoggingConfig)
    ray: RayConfig = Field(default_factory=RayConfig)
    throughput: ThroughputConfig = Field(default_factory=ThroughputConfig)
    callbacks: list[CallbackConfig] = Field(default_factory=list)
    """Your own Lightning callbacks, added after dsf's (checkpoint, preemption, throughput)."""

    @model_validator(mode="after")
    def _base_needs_pretrained(self) -> DsfConfig:
        if self.existing_model.kind == "base" and not self.model.pretrained:
            raise ValueError(
                "existing_model.kind is 'base' (the pretrained model the run fine-tunes) but model.pretrained is "
                "empty; set model.pretrained or another existing_model.kind"
            )
        return self
