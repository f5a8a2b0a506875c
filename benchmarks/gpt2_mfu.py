"""GPU: a GPT-2-small-class model in bf16 trained for a fixed number of steps by a raw PyTorch loop and by
dsf-dist on one GPU; tokens/s, TFLOP/s and MFU for both, side by side.

    python benchmarks/gpt2_mfu.py [--steps 300] [--compile] [--no-append]     # on a GPU machine
    python benchmarks/gpt2_mfu.py --cpu-smoke                                  # tiny, fp32, on CPU (tests)

The same model (12 layers, 768 wide, 12 heads, 1,024 tokens of context, vocabulary 50,304, tied embeddings,
PyTorch's fused scaled-dot-product attention), random tokens, fused AdamW and batch size. The raw loop times the
steps after a warm-up with CUDA events; dsf-dist trains the model as a user's LightningModule (model.module)
with precision bf16-mixed and reports through its throughput monitor (results/throughput.json). FLOPs per token
are 6·N + 12·L·d·T (PaLM's accounting, N all weights as nanoGPT counts them), the same for both loops; the peak
is Lightning's table of GPUs (bf16, dense). Targets (issue 7): MFU ≥ 45 %, dsf's tokens/s within 3 % of raw.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

import pytorch_lightning as pl
import torch
from torch import nn
from torch.nn import functional as F
from torch.utils.data import DataLoader, Dataset

SIZES = {
    "gpt2-small": {"layers": 12, "width": 768, "heads": 12, "context": 1024, "vocab": 50304, "batch": 16},
    "tiny": {"layers": 2, "width": 64, "heads": 4, "context": 32, "vocab": 256, "batch": 4},
}


class Block(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.heads = heads
        self.attention_norm, self.mlp_norm = nn.LayerNorm(width), nn.LayerNorm(width)
        self.qkv, self.projection = nn.Linear(width, 3 * width), nn.Linear(width, width)
        self.mlp = nn.Sequential(nn.Linear(width, 4 * width), nn.GELU(approximate="tanh"), nn.Linear(4 * width, width))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, length, width = x.shape
        q, k, v = self.qkv(self.attention_norm(x)).split(width, dim=2)
        q, k, v = (t.view(batch, length, self.heads, width // self.heads).transpose(1, 2) for t in (q, k, v))
        attended = F.scaled_dot_product_attention(q, k, v, is_causal=True)
        x = x + self.projection(attended.transpose(1, 2).reshape(batch, length, width))
        return x + self.mlp(self.mlp_norm(x))


class GPT(nn.Module):
    def __init__(self, layers: int, width: int, heads: int, context: int, vocab: int, **_: int) -> None:
        super().__init__()
        self.tokens, self.positions = nn.Embedding(vocab, width), nn.Embedding(context, width)
        self.blocks = nn.ModuleList(Block(width, heads) for _ in range(layers))
        self.norm, self.head = nn.LayerNorm(width), nn.Linear(width, vocab, bias=False)
        self.head.weight = self.tokens.weight  # tied, as GPT-2
        for module in self.modules():  # GPT-2's initialisation
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, std=0.02)

    def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
        x = self.tokens(input_ids) + self.positions(torch.arange(input_ids.shape[1], device=input_ids.device))
        for block in self.blocks:
            x = block(x)
        return self.head(self.norm(x))


def loss_of(model: nn.Module, batch: dict[str, torch.Tensor]) -> torch.Tensor:
    logits = model(batch["input_ids"])
    return F.cross_entropy(logits.flatten(0, 1).float(), batch["labels"].flatten())


def flops_per_token(size: dict[str, int], parameters: int) -> float:
    return 6 * parameters + 12 * size["layers"] * size["width"] * size["context"]


class RandomTokens(Dataset):
    """Random token sequences, generated once (the benchmark measures the model, not a tokenizer)."""

    def __init__(self, size: str, samples: int) -> None:
        spec = SIZES[size]
        generator = torch.Generator().manual_seed(0)
        self.tokens = torch.randint(0, spec["vocab"], (samples, spec["context"] + 1), generator=generator)

    def __len__(self) -> int:
        return len(self.tokens)

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.tokens[index, :-1], "labels": self.tokens[index, 1:]}


class TokenData(pl.LightningDataModule):
    def __init__(self, size: str = "gpt2-small", steps: int = 300) -> None:
        super().__init__()
        self.size, self.batch = size, SIZES[size]["batch"]
        self.train = RandomTokens(size, self.batch * steps)  # one epoch is exactly the timed run
        self.val = RandomTokens(size, self.batch)

    def train_dataloader(self) -> DataLoader:
        return DataLoader(self.train, batch_size=self.batch, shuffle=True, pin_memory=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(self.val, batch_size=self.batch)

    test_dataloader = val_dataloader


class GPTModule(pl.LightningModule):
    """The model as a dsf-dist user brings it: a plain LightningModule."""

    def __init__(self, size: str = "gpt2-small", compile: bool = False) -> None:
        super().__init__()
        self.model = GPT(**SIZES[size])
        self.compile = compile

    def configure_model(self) -> None:
        if self.compile:
            self.model = torch.compile(self.model)

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        return loss_of(self.model, batch)

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        self.log("val_loss", loss_of(self.model, batch))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=6e-4, fused=self.device.type == "cuda")


def raw(size: str, steps: int, warmup: int, device: str, compile: bool) -> dict[str, float]:
    """The hand-written loop: tokens/s over the steps after the warm-up, timed with CUDA events on a GPU."""
    torch.manual_seed(0)
    if device == "cpu":
        torch.set_num_threads(1)  # as dsf's processes get (benchmarks/common.py)
    model = GPT(**SIZES[size]).to(device)
    parameters = sum(p.numel() for p in model.parameters())
    step_model = torch.compile(model) if compile else model
    optimizer = torch.optim.AdamW(model.parameters(), lr=6e-4, fused=device == "cuda")
    autocast = torch.autocast(device, dtype=torch.bfloat16, enabled=device == "cuda")
    data = TokenData(size, steps).train_dataloader()
    started = None
    for step, batch in enumerate(data):
        batch = {key: value.to(device, non_blocking=True) for key, value in batch.items()}
        if step == warmup:
            torch.cuda.synchronize() if device == "cuda" else None
            started = time.perf_counter()
        with autocast:
            loss = loss_of(step_model, batch)
        loss.backward()
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
    torch.cuda.synchronize() if device == "cuda" else None
    seconds = time.perf_counter() - started
    spec = SIZES[size]
    tokens_per_s = (steps - warmup) * spec["batch"] * spec["context"] / seconds
    return {"tokens_per_s": tokens_per_s, "parameters": parameters, "loss": loss.item()}


def with_dsf(size: str, steps: int, window: int, device: str, compile: bool, scratch: Path) -> dict[str, float]:
    """`dsf train` with the model as model.module; the throughput monitor's medians over its windows."""
    from common import dsf, run

    sets = [
        "model.module=gpt2_mfu:GPTModule",
        f"model.module_kwargs={{size: {size}, compile: {str(compile).lower()}}}",
        "data.datamodule=gpt2_mfu:TokenData",
        f"data.datamodule_kwargs={{size: {size}, steps: {steps}}}",
        "existing_model.kind=none",
        f"trainer={{max_epochs: 1, accelerator: {'gpu' if device == 'cuda' else 'cpu'}, devices: 1, "
        f"precision: {'bf16-mixed' if device == 'cuda' else '32-true'}, num_sanity_val_steps: 0}}",
        f"throughput.window_steps={window}",
        "checkpoint.save_top_k=0",
        "checkpoint.save_last=false",
        "run.name=gpt2",
    ]
    run(dsf("train", "--output", str(scratch), *[arg for item in sets for arg in ("--set", item)]), cwd=scratch)
    return json.loads((scratch / "gpt2" / "results" / "throughput.json").read_text())


def peak_flops(device: str) -> float | None:
    if device != "cuda":
        return None
    from lightning_fabric.utilities.throughput import get_available_flops

    return get_available_flops(torch.device("cuda"), torch.bfloat16)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--compile", action="store_true", help="torch.compile the model in both loops")
    parser.add_argument("--cpu-smoke", action="store_true", help="tiny model, fp32, CPU: checks the script runs")
    parser.add_argument("--no-append", action="store_true", help="print only; do not append to RESULTS.md")
    args = parser.parse_args()
    device = "cpu" if args.cpu_smoke else "cuda"
    if device == "cuda" and not torch.cuda.is_available():
        sys.exit("gpt2_mfu: no GPU here; run with --cpu-smoke to check the script at a tiny size on CPU")
    size, steps = ("tiny", 24) if args.cpu_smoke else ("gpt2-small", args.steps)
    warmup, window = max(steps // 6, 2), max(steps // 6, 2)
    spec = SIZES[size]
    raw_figures = raw(size, steps, warmup, device, args.compile)
    with tempfile.TemporaryDirectory() as scratch:
        dsf_figures = with_dsf(size, steps, window, device, args.compile, Path(scratch))
    per_token = flops_per_token(spec, raw_figures["parameters"])
    peak = peak_flops(device)
    rows = []
    for name, tokens_per_s in (("raw PyTorch", raw_figures["tokens_per_s"]), ("dsf-dist", dsf_figures["tokens_per_s"])):
        tflops = tokens_per_s * per_token / 1e12
        mfu = f"{100 * tflops * 1e12 / peak:.1f} %" if peak else "—"
        rows.append(f"| {name} | {tokens_per_s:,.0f} | {tflops:.1f} | {mfu} |")
    ratio = dsf_figures["tokens_per_s"] / raw_figures["tokens_per_s"]
    measured = dsf_figures.get("flops_per_sample", 0) / spec["context"]
    body = (
        f"Device: {torch.cuda.get_device_name() if device == 'cuda' else 'CPU (smoke test, not a figure)'}; "
        f"torch {torch.__version__}; {size}, {raw_figures['parameters'] / 1e6:.1f} M parameters, batch "
        f"{spec['batch']} x {spec['context']} tokens, {steps} steps ({warmup} warm-up), "
        f"{'bf16 autocast / bf16-mixed' if device == 'cuda' else 'fp32'}{', torch.compile' if args.compile else ''}. "
        f"Command: `python benchmarks/gpt2_mfu.py{' --compile' if args.compile else ''}`. FLOPs per token "
        f"{per_token / 1e9:.3f} G (6N + 12·L·d·T; dsf's FLOP counter measured {measured / 1e9:.3f} G); peak "
        f"{peak / 1e12 if peak else 0:.0f} TFLOP/s (Lightning's table, bf16).\n\n"
        "| loop | tokens/s | TFLOP/s | MFU |\n|---|---:|---:|---:|\n" + "\n".join(rows) + "\n\n"
        f"dsf / raw tokens/s: {ratio:.3f} (target ≥ 0.97)\n"
    )
    print(body)
    if not args.cpu_smoke:
        assert math.isfinite(raw_figures["loss"])
        if not args.no_append:
            from common import append

            append("GPU: GPT-2-small-class model, raw PyTorch vs dsf-dist", body)
    print(json.dumps({"ratio": ratio, "raw": raw_figures, "dsf": dsf_figures}))


if __name__ == "__main__":
    main()
