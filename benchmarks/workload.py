"""One workload trained three ways (a plain PyTorch loop, stock Lightning, dsf-dist) for the overhead and start-up
benchmarks: the same MLP, synthetic data, Adam and batch size, and the same clock.

The clock records time.perf_counter() after every optimizer step (the raw loop inline, Lightning and dsf-dist
through StepClock) and writes them, with the wall time of the first step, to $DSF_BENCH_CLOCK.<rank>.json.
Run as a script it is the raw loop (`python benchmarks/workload.py raw --model small --ranks 2`) or the stock
Lightning script (`... lightning ...`); dsf-dist runs it from a config (`step_overhead.py` writes it).
"""

from __future__ import annotations

import argparse
import cProfile
import json
import os
import pstats
import time

STARTED = time.time()  # before torch is imported: the start-up benchmark measures from process start

import pytorch_lightning as pl  # noqa: E402
import torch  # noqa: E402
from torch import nn  # noqa: E402
from torch.utils.data import DataLoader, DistributedSampler, TensorDataset  # noqa: E402

# small: about 0.5 ms per step on one CPU thread; compute: about 10 ms (FACTS.md's two regimes).
MODELS = {
    "small": {"features": 64, "hidden": [128, 64], "classes": 10, "batch": 64, "samples": 300_000},
    "compute": {"features": 256, "hidden": [1024, 1024], "classes": 10, "batch": 128, "samples": 60_000},
}
# samples: one epoch per rank (2 ranks) is longer than any timed run, so no validation or epoch end falls inside
# the clock's window.


def network(model: str) -> nn.Module:
    from dsf_dist.models.networks import mlp

    spec = MODELS[model]
    return mlp(spec["features"], spec["classes"], spec["hidden"], dropout=0.1)


class BatchedTensors(TensorDataset):
    """A TensorDataset that the DataLoader reads a whole batch from with one index operation (__getitems__),
    so the loader costs microseconds and a step measures the model and the training loop, not Python
    collation of 64 samples."""

    def __getitems__(self, indices: list[int]) -> tuple[torch.Tensor, ...]:
        index = torch.as_tensor(indices)
        return tuple(tensor[index] for tensor in self.tensors)


def as_batch(batch: tuple[torch.Tensor, ...]) -> tuple[torch.Tensor, ...]:
    return batch


def dataset(model: str) -> BatchedTensors:
    spec = MODELS[model]
    generator = torch.Generator().manual_seed(0)
    inputs = torch.randn(spec["samples"], spec["features"], generator=generator)
    return BatchedTensors(inputs, torch.randint(0, spec["classes"], (spec["samples"],), generator=generator))


def loader(data: BatchedTensors, model: str, **kwargs: object) -> DataLoader:
    return DataLoader(data, batch_size=MODELS[model]["batch"], collate_fn=as_batch, **kwargs)


def rank() -> int:
    return int(os.environ.get("RANK", os.environ.get("LOCAL_RANK", "0")))


def write_clock(times: list[float], cpu: list[float], first_wall: float, process_rank: int, calls: CallCounter) -> None:
    target = os.environ.get("DSF_BENCH_CLOCK")
    if target:
        record = {"times": times, "cpu_times": cpu, "first_step_wall": first_wall, "process_started": STARTED}
        record["calls_per_step"] = calls.per_step()
        with open(f"{target}.{process_rank}.json", "w") as handle:
            json.dump(record, handle)


class CallCounter:
    """Function calls (Python and built-in) per step between two steps, by cProfile: a count that the machine's
    load cannot blur. On with DSF_BENCH_CALLS=first,last (steps); DSF_BENCH_PROFILE=file also keeps the profile
    (read it with `python -m pstats file`)."""

    def __init__(self) -> None:
        spec = os.environ.get("DSF_BENCH_CALLS")
        self.first, self.last = map(int, spec.split(",")) if spec else (-1, -1)
        self.profile = cProfile.Profile()
        self.calls = 0

    def at_step(self, step: int) -> None:
        if step == self.first:
            self.profile.enable()
        elif step == self.last:
            self.profile.disable()
            stats = pstats.Stats(self.profile)
            self.calls = stats.total_calls
            if os.environ.get("DSF_BENCH_PROFILE"):
                stats.dump_stats(f"{os.environ['DSF_BENCH_PROFILE']}.{rank()}")

    def per_step(self) -> float | None:
        return self.calls / (self.last - self.first) if self.last > self.first else None


class StepClock(pl.Callback):
    """After each optimizer step: the wall clock and the process's CPU clock, nothing else."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.cpu: list[float] = []
        self.first_wall = 0.0
        self.calls = CallCounter()

    def on_train_batch_end(self, *args: object) -> None:
        self.calls.at_step(len(self.times))
        self.times.append(time.perf_counter())
        self.cpu.append(time.process_time())
        if len(self.times) == 1:
            self.first_wall = time.time()

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        write_clock(self.times, self.cpu, self.first_wall, trainer.global_rank, self.calls)


class SyntheticData(pl.LightningDataModule):
    """The data module dsf-dist trains from (data.datamodule), the same loader the other two build."""

    def __init__(self, model: str = "small") -> None:
        super().__init__()
        self.model = model
        self.data = dataset(model)

    def train_dataloader(self) -> DataLoader:
        return loader(self.data, self.model, shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return DataLoader(torch.utils.data.Subset(self.data, range(256)), batch_size=256, collate_fn=as_batch)

    test_dataloader = val_dataloader


class StockModule(pl.LightningModule):
    """What a Lightning user writes for this workload."""

    def __init__(self, model: str) -> None:
        super().__init__()
        self.net = network(model)

    def training_step(self, batch: tuple[torch.Tensor, torch.Tensor], batch_idx: int) -> torch.Tensor:
        inputs, target = batch
        loss = nn.functional.cross_entropy(self.net(inputs), target)
        self.log("train_loss", loss, prog_bar=True)
        return loss

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.parameters(), lr=3e-3)


def raw(model: str, steps: int, ranks: int) -> None:
    """The plain loop; with 2 ranks, started by torchrun-style variables or spawned by run_raw."""
    torch.manual_seed(0)
    net, data = network(model), dataset(model)
    sampler = None
    if ranks > 1:
        torch.distributed.init_process_group("gloo")
        net = nn.parallel.DistributedDataParallel(net)
        sampler = DistributedSampler(data, shuffle=True)
    batches = loader(data, model, shuffle=sampler is None, sampler=sampler)
    optimizer = torch.optim.Adam(net.parameters(), lr=3e-3)
    net.train()
    times: list[float] = []
    cpu: list[float] = []
    first_wall = 0.0
    calls = CallCounter()
    for step, (inputs, target) in enumerate(batches):
        if step == steps:
            break
        optimizer.zero_grad(set_to_none=True)
        nn.functional.cross_entropy(net(inputs), target).backward()
        optimizer.step()
        calls.at_step(step)
        times.append(time.perf_counter())
        cpu.append(time.process_time())
        first_wall = first_wall or time.time()
    write_clock(times, cpu, first_wall, rank(), calls)
    if ranks > 1:
        torch.distributed.destroy_process_group()


def lightning(model: str, steps: int, ranks: int) -> None:
    """Stock Lightning with the default Trainer settings (its own launcher for 2 ranks)."""
    torch.manual_seed(0)
    trainer = pl.Trainer(
        max_steps=steps,
        accelerator="cpu",
        devices=ranks,
        strategy="ddp" if ranks > 1 else "auto",
        callbacks=[StepClock()],
    )
    data = SyntheticData(model)
    trainer.fit(StockModule(model), train_dataloaders=data.train_dataloader())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("variant", choices=["raw", "lightning"])
    parser.add_argument("--model", choices=sorted(MODELS), default="small")
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--ranks", type=int, default=1)
    args = parser.parse_args()
    {"raw": raw, "lightning": lightning}[args.variant](args.model, args.steps, args.ranks)


if __name__ == "__main__":
    main()
