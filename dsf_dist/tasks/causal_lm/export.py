"""A causal LM checkpoint of any strategy as a Hugging Face folder (`dsf export RUN --format hf`): config.json,
model.safetensors and the tokenizer, written by save_pretrained, so that AutoModelForCausalLM.from_pretrained and
AutoTokenizer.from_pretrained load it with no dsf installed. Folders are written whole or not at all."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from dsf_dist.checkpoints.pretrained import save_folder
from dsf_dist.errors import DsfError
from dsf_dist.tasks.causal_lm import hf

PREFIX = "network."  # CausalLM keeps the Hugging Face model as self.network


def export_folder(checkpoint: str, out: Path, config: Any, tokenizer: Any) -> Path:
    """Consolidate `checkpoint` (dsf_dist.checkpoints reads every strategy's format, ZeRO-3 and FSDP shards
    included) into the model `config` describes, and save it with its tokenizer into `out`."""
    from dsf_dist.checkpoints import load_weights

    state = load_weights(checkpoint)
    weights = {key.removeprefix(PREFIX): value for key, value in state.items() if key.startswith(PREFIX)}
    network = hf.new_network(config)
    missing, unexpected = network.load_state_dict(weights, strict=False)
    missing = [key for key in missing if key not in tied_keys(network)]
    if missing or unexpected or not weights:
        raise DsfError(
            f"{checkpoint}: does not fit the run's causal LM (missing {missing[:3]}, unexpected {unexpected[:3]}); "
            "export a checkpoint of this run"
        )
    network.tie_weights()

    def write(folder: Path) -> None:
        network.save_pretrained(folder, safe_serialization=True)
        tokenizer.save_pretrained(folder)

    save_folder(out, write)
    return out


def tied_keys(network: Any) -> set[str]:
    """Weights that share another's storage (GPT-2's lm_head is its token embedding): absent from some
    consolidated checkpoints, and restored by tie_weights."""
    tied = getattr(network, "_tied_weights_keys", None) or {}
    return set(tied) if not isinstance(tied, dict) else set(tied.keys())
