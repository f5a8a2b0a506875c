"""Causal language modelling: a Hugging Face AutoModelForCausalLM learns the next token of local text.

Config: model.task causal_lm; model.pretrained (a local folder to fine-tune) or model.architecture (a new model,
AutoConfig.for_model(model_type, **sizes)); model.tokenizer optional; data.path (.txt / .jsonl / .parquet; or
data.dataset pydoc_topics), data.text_field, data.block_size. A sample of the comparison is a test token: test
predictions arrive per block and are rewritten one row per token before scoring (scoring.py); the existing model
is another causal LM folder with the same tokenizer, the n-gram baseline (ngram.py), or a dsf checkpoint.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dsf_dist.config.schema import DsfConfig, MetricsConfig, ModelConfig
from dsf_dist.errors import ConfigError
from dsf_dist.tasks.base import Task
from dsf_dist.tasks.causal_lm import corpus, folders

if TYPE_CHECKING:
    import numpy as np
    import pytorch_lightning as pl
    from torch import nn

    from dsf_dist.data import Splits
    from dsf_dist.scoring.predictions import Predictions

RUN_TOKENIZER = "tokenizer"  # <run>/tokenizer/: the tokenizer a pre-training run trained, with the run
LOGISTIC_REGRESSION = "dsf_dist.models.baselines:logistic_regression"
NGRAM = "dsf_dist.tasks.causal_lm.ngram:kneser_ney"


class CausalLMTask(Task):
    name = "causal_lm"
    metrics = ("token_loss", "perplexity", "next_token_accuracy")
    objective = "causal_lm"

    def __init__(self) -> None:
        self._documents: corpus.Documents | None = None
        self._tokenizer: Any = None
        self._trained_tokenizer = False

    # -- before anything runs ------------------------------------------------------------------------------
    def check_config(self, cfg: DsfConfig) -> None:
        model, existing = cfg.model, cfg.existing_model
        if model.module:
            raise ConfigError("model.module: causal_lm trains its own Hugging Face model; remove model.module")
        if bool(model.pretrained) == bool(model.architecture):
            raise ConfigError(
                "model.pretrained: causal_lm fine-tunes model.pretrained (a local folder) or pre-trains a new model "
                "from model.architecture; set exactly one of them"
            )
        if model.architecture is not None and not isinstance(model.architecture.get("model_type"), str):
            raise ConfigError("model.architecture: name the model type, e.g. {model_type: gpt2, n_layer: 4, ...}")
        if model.pretrained:
            config = folders.check_model_folder(model.pretrained, "model.pretrained", model.trust_remote_code)
            _check_context(config, cfg, "model.pretrained")
        if model.tokenizer or model.pretrained:
            folders.check_tokenizer_folder(
                model.tokenizer or model.pretrained, _tokenizer_key(model), model.trust_remote_code
            )
        corpus.check_source(cfg)
        if existing.kind == "callable" and existing.target == LOGISTIC_REGRESSION:
            raise ConfigError(
                f"existing_model.target: logistic regression does not model text; for causal_lm use {NGRAM} "
                "(an n-gram model fit on the training split), or kind pretrained with a model folder"
            )
        if existing.kind == "pretrained":
            config = folders.check_model_folder(existing.path, "existing_model.path", model.trust_remote_code)
            _check_context(config, cfg, "existing_model.path")
            folders.check_tokenizer_folder(existing.path, "existing_model.path", model.trust_remote_code)

    def check_before_fit(self, cfg: DsfConfig) -> None:
        kind = cfg.existing_model.kind
        if kind in ("pretrained", "base"):
            self._check_existing(cfg, cfg.model.pretrained if kind == "base" else cfg.existing_model.path)

    def prepare_run(self, cfg: DsfConfig) -> None:
        """Keep a tokenizer this run trained in <run>/tokenizer/: the other ranks, `dsf test`, `dsf eval` and the
        Hugging Face export read it from there."""
        if self._trained_tokenizer and self.run_root is not None:
            from dsf_dist.checkpoints.pretrained import save_folder

            save_folder(self.run_root / RUN_TOKENIZER, self._tokenizer.save_pretrained)

    # -- data ----------------------------------------------------------------------------------------------
    def splits(self, cfg: DsfConfig) -> Splits:
        from dsf_dist.data import Splits
        from dsf_dist.tasks.causal_lm import hf
        from dsf_dist.tasks.causal_lm.blocks import pack, tokenize

        documents, tokenizer = self._corpus(cfg), self.tokenizer(cfg)
        config = self.network_config(cfg)
        block = hf.block_size(cfg.data.block_size, config, _model_key(cfg.model))
        special, fingerprint = hf.special_ids(tokenizer), hf.fingerprint(tokenizer)
        parts = (documents.train, documents.val, documents.test)
        return Splits(
            *(pack(*tokenize(part, tokenizer, fingerprint), block, special, len(tokenizer)) for part in parts)
        )

    def tokenizer(self, cfg: DsfConfig) -> Any:
        """model.tokenizer, else model.pretrained's, else the one this run trained (<run>/tokenizer/), else a
        byte-level BPE trained now on the training split's documents."""
        if self._tokenizer is None:
            from dsf_dist.tasks.causal_lm import hf

            model, run_tokenizer = cfg.model, self.run_root / RUN_TOKENIZER if self.run_root else None
            if model.tokenizer or model.pretrained:
                self._tokenizer = hf.load_tokenizer(
                    model.tokenizer or model.pretrained, _tokenizer_key(model), model.trust_remote_code
                )
            elif run_tokenizer is not None and run_tokenizer.is_dir():
                self._tokenizer = hf.load_tokenizer(run_tokenizer, str(run_tokenizer))
            else:
                size = (model.architecture or {}).get("vocab_size", hf.DEFAULT_VOCAB_SIZE)
                self._tokenizer = hf.train_tokenizer(list(self._corpus(cfg).train["text"]), size)
                self._trained_tokenizer = True
        return self._tokenizer

    def network_config(self, cfg: DsfConfig) -> Any:
        """The model's Hugging Face config, its vocabulary checked against the tokenizer."""
        from dsf_dist.tasks.causal_lm import hf

        tokenizer, model = self.tokenizer(cfg), cfg.model
        config = hf.network_config(model, tokenizer)
        source = _tokenizer_source(cfg, self.run_root)
        hf.check_tokenizer_fits(
            tokenizer, config, _tokenizer_key(model), source, model.pretrained or "model.architecture"
        )
        return config

    def _corpus(self, cfg: DsfConfig) -> corpus.Documents:
        if self._documents is None:
            self._documents = corpus.documents(cfg)
        return self._documents

    # -- the model -----------------------------------------------------------------------------------------
    def module(self, cfg: DsfConfig, model: ModelConfig, splits: Splits) -> pl.LightningModule:
        from dsf_dist.tasks.causal_lm import hf
        from dsf_dist.tasks.causal_lm.model import CausalLM

        network = None if model.pretrained else hf.new_config_kwargs(model, self.tokenizer(cfg))
        # Under fsdp the strategy checkpoints the blocks (strategy.fsdp.activation_checkpointing); elsewhere the
        # Hugging Face model's own gradient checkpointing does.
        own_checkpointing = model.activation_checkpointing and cfg.strategy.name != "fsdp"
        return CausalLM(model.model_dump(mode="json"), network, model.pretrained, own_checkpointing)

    def module_from_hparams(self, hparams: dict[str, Any]) -> pl.LightningModule | None:
        return None  # a causal LM checkpoint is loaded into this config's model

    def pretrained_module(self, cfg: DsfConfig) -> pl.LightningModule:
        """existing_model.kind pretrained: another causal LM folder, scored as it is, with the same tokenizer."""
        from dsf_dist.tasks.causal_lm.model import CausalLM

        path = cfg.existing_model.path
        self._check_existing(cfg, path)
        return CausalLM(cfg.model.model_dump(mode="json"), pretrained=path, key="existing_model.path")

    def wrap_units(self, model: nn.Module) -> list[str]:
        from dsf_dist.models.units import transformer_blocks

        return transformer_blocks(model)

    def _check_existing(self, cfg: DsfConfig, path: str) -> None:
        """Same tokenizer (perplexities over different tokenizations do not compare), room for a block."""
        from dsf_dist.tasks.causal_lm import hf

        key = "existing_model.path"
        theirs, ours = hf.load_tokenizer(path, key, cfg.model.trust_remote_code), self.tokenizer(cfg)
        probe = "\n".join(list(self._corpus(cfg).test["text"])[:4])[:4000]
        if not hf.same_tokenizer(ours, theirs, probe):
            raise ConfigError(
                f"{key}: {path} has another tokenizer than the trained model ({_tokenizer_source(cfg, self.run_root)}),"
                " and perplexities over different tokenizations do not compare; give a model with the same tokenizer"
            )
        config = hf.folder_config(path, key, cfg.model.trust_remote_code)
        hf.check_tokenizer_fits(ours, config, key, _tokenizer_source(cfg, self.run_root), path)
        block = hf.block_size(cfg.data.block_size, self.network_config(cfg), _model_key(cfg.model))
        hf.block_size(block, config, key)  # the existing model must read blocks as long as the trained one's

    # -- scoring ---------------------------------------------------------------------------------------------
    def test_targets(self, splits: Splits) -> np.ndarray:
        return splits.test.labels()

    def score_file(self, cfg: DsfConfig, predictions: Path, splits: Splits) -> dict[str, Any]:
        from dsf_dist.files import read_arrays
        from dsf_dist.tasks.causal_lm.scoring import to_tokens

        test = splits.test
        to_tokens(predictions, test.documents)
        arrays = read_arrays(predictions)
        documents = int(test.documents.max()) + 1
        return {**self.score(arrays["preds"], arrays["target"], cfg.metrics, None), "num_documents": documents}

    def score(
        self, preds: np.ndarray, target: np.ndarray, metrics: MetricsConfig, num_classes: int | None
    ) -> dict[str, Any]:
        from dsf_dist.tasks.causal_lm.scoring import token_scores

        return token_scores(preds, target, metrics)

    def add_to_report(
        self,
        report: dict[str, Any],
        cfg: DsfConfig,
        test_results: dict[str, Any],
        trained: Predictions,
        existing: Predictions,
    ) -> None:
        from dsf_dist.tasks.causal_lm.scoring import lm_notes, lm_statistics

        if "block" not in trained.extra or "document" not in trained.extra:
            report["notes"].append("No per-token blocks and documents in the predictions: no intervals.")
            return
        report["statistics"] = lm_statistics(trained, existing, list(report["differences"]), cfg.comparison)
        report["notes"] += lm_notes(report, trained)

    # -- export ----------------------------------------------------------------------------------------------
    def export_pretrained(self, cfg: DsfConfig, checkpoint: str, out: Path) -> Path:
        from dsf_dist.tasks.causal_lm.export import export_folder

        return export_folder(checkpoint, out, self.network_config(cfg), self.tokenizer(cfg))


def _tokenizer_key(model: ModelConfig) -> str:
    """The config key the tokenizer comes from (model.architecture: one trained for it)."""
    if model.tokenizer:
        return "model.tokenizer"
    return "model.pretrained" if model.pretrained else "model.architecture"


def _model_key(model: ModelConfig) -> str:
    return "model.pretrained" if model.pretrained else "model.architecture"


def _tokenizer_source(cfg: DsfConfig, run_root: Path | None) -> str:
    if cfg.model.tokenizer or cfg.model.pretrained:
        return cfg.model.tokenizer or cfg.model.pretrained
    return str(run_root / RUN_TOKENIZER) if run_root else "trained on the training split"


def _check_context(config: dict[str, Any], cfg: DsfConfig, key: str) -> None:
    """Torch-free: data.block_size fits the folder's context length (its config.json)."""
    longest, block = folders.context_length(config), cfg.data.block_size
    if block is not None and longest is not None and block > longest:
        raise ConfigError(
            f"data.block_size: {block} tokens is above the context length of {key} ({longest}); "
            f"set data.block_size to at most {longest}"
        )
