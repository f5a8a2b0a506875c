"""A GPT-2-class causal LM of about 30 M parameters (8 layers, 512 wide, block 256, vocabulary 8,192) on 2 CPU
ranks: tokens/s of `dsf train` against a hand-written loop with the same FSDP2 (`fully_shard` on each GPT2Block,
then the root) or the same DeepSpeed ZeRO-3 engine, on the same model, data, per-rank batch and precision (fp32);
and per-rank training state of each, with DDP's as the reference.

    python benchmarks/lm_throughput.py --strategy fsdp --pairs 5       # appends raw measurements to --log
    python benchmarks/lm_throughput.py --strategy deepspeed --pairs 5
    python benchmarks/lm_throughput.py --ddp-memory                    # DDP's per-rank state, once
    python benchmarks/lm_throughput.py --report                        # table of the log -> RESULTS.md

Runs alternate (dsf, raw, dsf, raw, ...), so slow drifts of a shared machine hit both alike; each is a fresh
2-process job (torchrun for the raw loop, `dsf train` for dsf). Both time the same steps the same way: the first
step is left out (it measures FLOPs in dsf and warms caches in both), then windows of --window steps, tokens/s of
all ranks per window, the median over windows. The data is the causal LM task's own blocks of Python's
documentation (dsf_dist/tasks/causal_lm), so both see identical batches. Never gated in CI: minutes per run.
Targets (issue 17): dsf/raw tokens/s >= 0.97; per-rank training state <= 0.55x DDP's.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import REPO, append, dsf, env, load, machine, median_range, run

ARCHITECTURE = {"model_type": "gpt2", "n_layer": 8, "n_embd": 512, "n_head": 8, "n_positions": 256, "vocab_size": 8192}
BLOCK, BATCH, LR = 256, 2, 3e-4
STRATEGIES = {
    "fsdp": ["strategy.name=fsdp", "strategy.fsdp.wrap_modules=[GPT2Block]"],
    "deepspeed": ["strategy.name=deepspeed", "strategy.deepspeed.stage=3"],
    "ddp": ["strategy.name=ddp"],
}
PARTS = ("parameters", "gradients", "optimizer_state", "master_weights")
LOG = Path(__file__).with_name("lm_throughput.jsonl")


def config_overrides(steps: int, window: int) -> list[str]:
    return [
        "model.task=causal_lm",
        f"model.architecture={json.dumps(ARCHITECTURE)}",
        f"model.optimizer={{name: adamw, lr: {LR}}}",
        "data.dataset=pydoc_topics",
        f"data.block_size={BLOCK}",
        f"data.batch_size={BATCH}",
        "existing_model.kind=none",
        "trainer.devices=2",
        f"trainer.max_steps={steps}",
        "trainer.limit_val_batches=1",
        "trainer.enable_progress_bar=false",
        "trainer.enable_model_summary=false",
        "trainer.log_every_n_steps=50",
        f"throughput.window_steps={window}",
        "run.memory_report=true",
        "run.name=lm",
    ]


def sets(items: list[str]) -> list[str]:
    return [arg for item in items for arg in ("--set", item)]


# -- one measurement each ---------------------------------------------------------------------------------------
def measure_dsf(strategy: str, steps: int, window: int, workdir: Path) -> dict:
    command = dsf(
        "train", "--output", str(workdir / "runs"), *sets([*config_overrides(steps, window), *STRATEGIES[strategy]])
    )
    run(command, workdir, timeout=1800)
    folder = workdir / "runs" / "lm" / "results"
    throughput = json.loads((folder / "throughput.json").read_text())
    memory = json.loads((folder / "memory.json").read_text())["ranks"]
    return {"tokens_per_s": throughput["tokens_per_s"], "windows": throughput["windows"], "memory": memory}


def measure_raw(strategy: str, steps: int, window: int, workdir: Path) -> dict:
    out = workdir / "raw.json"
    worker = [str(Path(__file__).resolve()), "--raw-worker", "--strategy", strategy, "--out", str(out)]
    worker += ["--steps", str(steps), "--window", str(window)]
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node=2", *worker]
    run(command, workdir, timeout=1800, DS_ACCELERATOR="cpu")
    return json.loads(out.read_text())


# -- the hand-written loop (one rank; started by torchrun) --------------------------------------------------------
def raw_worker(strategy: str, steps: int, window: int, out: Path) -> None:
    import torch
    import torch.distributed as dist
    from torch.utils.data import DataLoader, DistributedSampler

    from dsf_dist.config import load_config
    from dsf_dist.hooks.memory import measure
    from dsf_dist.tasks import get_task
    from dsf_dist.tasks.causal_lm import hf

    rank, world = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    cfg = load_config(overrides=config_overrides(steps, window), check_machine=False)
    torch.manual_seed(cfg.run.seed)
    task = get_task("causal_lm")
    blocks = task.splits(cfg).train  # the same blocks dsf trains on
    config = hf.network_config(cfg.model, task.tokenizer(cfg))
    model = hf.new_network(config)
    model.config.use_cache = False
    model.train()
    sampler = DistributedSampler(blocks, num_replicas=world, rank=rank, shuffle=True, seed=cfg.run.seed)
    loader = DataLoader(blocks, BATCH, sampler=sampler)
    if strategy == "fsdp":
        from torch.distributed.fsdp import fully_shard

        dist.init_process_group("gloo")
        for block in model.transformer.h:
            fully_shard(block)
        fully_shard(model)
        optimizer = torch.optim.AdamW(model.parameters(), lr=LR)

        def step(batch, before_step):
            model(**batch).loss.backward()
            before_step(model, optimizer)
            optimizer.step()
            optimizer.zero_grad()

    else:
        import deepspeed

        deepspeed.init_distributed("gloo")
        zero = {"stage": 3, "allgather_bucket_size": 200_000_000, "reduce_bucket_size": 200_000_000}
        engine, optimizer, _, _ = deepspeed.initialize(
            model=model,
            optimizer=torch.optim.AdamW(model.parameters(), lr=LR),
            config={"train_micro_batch_size_per_gpu": BATCH, "zero_optimization": zero, "gradient_clipping": 0.0},
        )

        def step(batch, before_step):
            engine.backward(engine(**batch).loss)
            before_step(engine.module, optimizer)
            engine.step()

    windows, memory, started, tokens, count = [], {}, None, 0, 0

    def measure_second(module, optimizer) -> None:  # as dsf's MemoryReport: before the second optimizer step
        if number == 1:
            memory.update(rank=rank, **measure(module, optimizer))

    batches = iter(loader)
    for number in range(steps):
        batch = next(batches)
        step(batch, measure_second)
        if number == 0:
            started = time.perf_counter()
            continue
        tokens, count = tokens + int(batch["attention_mask"].sum()), count + 1
        if count == window:
            now = time.perf_counter()
            windows.append(world * tokens / (now - started))
            started, tokens, count = now, 0, 0
    ranks = [None] * world
    dist.all_gather_object(ranks, memory)
    if rank == 0:
        out.write_text(
            json.dumps({"tokens_per_s": statistics.median(windows), "windows": len(windows), "memory": ranks})
        )
    dist.destroy_process_group()


# -- pairs, log, report -----------------------------------------------------------------------------------------
def logged_pairs(strategy: str, log: Path) -> int:
    """Pairs of `strategy` already in the log: a later call numbers its pairs after them, so the report, which
    matches dsf and raw by pair number, counts every pair instead of overwriting the first ones."""
    if not log.exists():
        return 0
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    return 1 + max((e["pair"] for e in entries if e["strategy"] == strategy), default=-1)


def pairs(strategy: str, count: int, steps: int, window: int, log: Path) -> None:
    first = logged_pairs(strategy, log)
    for pair in range(first, first + count):
        for side, measure in (("dsf", measure_dsf), ("raw", measure_raw)):
            with tempfile.TemporaryDirectory() as scratch:
                started = time.time()
                figures = measure(strategy, steps, window, Path(scratch))
            entry = {"strategy": strategy, "side": side, "pair": pair, "load": load(), **figures}
            entry["wall_s"] = round(time.time() - started, 1)
            with log.open("a") as handle:
                handle.write(json.dumps(entry) + "\n")
            print(f"{strategy} {side} pair {pair}: {figures['tokens_per_s']:.1f} tokens/s ({entry['wall_s']} s)")


def ddp_memory(steps: int, log: Path) -> None:
    with tempfile.TemporaryDirectory() as scratch:
        figures = measure_dsf("ddp", steps, 2, Path(scratch))
    with log.open("a") as handle:
        handle.write(json.dumps({"strategy": "ddp", "side": "dsf", "pair": -1, "load": load(), **figures}) + "\n")


def state_bytes(entry: dict) -> int:
    return max(sum(rank[part] for part in PARTS) for rank in entry["memory"])


def report(log: Path) -> str:
    entries = [json.loads(line) for line in log.read_text().splitlines() if line.strip()]
    ddp = next((e for e in entries if e["strategy"] == "ddp"), None)
    lines = [
        "| strategy | pairs | dsf tokens/s | raw tokens/s | dsf / raw, median (range) | target ≥ 0.97 "
        "| per-rank state dsf / raw | / DDP's | target ≤ 0.55 |",
        "|---|---:|---:|---:|---:|---|---:|---:|---|",
    ]
    for strategy in ("fsdp", "deepspeed"):
        sides = {
            side: [e for e in entries if e["strategy"] == strategy and e["side"] == side] for side in ("dsf", "raw")
        }
        matched = sorted({e["pair"] for e in sides["dsf"]} & {e["pair"] for e in sides["raw"]})
        if not matched:
            continue
        speed = {side: {e["pair"]: e["tokens_per_s"] for e in sides[side]} for side in sides}
        ratios = [speed["dsf"][p] / speed["raw"][p] for p in matched]
        ratio = statistics.median(ratios)
        memory = {side: state_bytes(sides[side][-1]) for side in sides}
        versus_ddp = memory["dsf"] / state_bytes(ddp) if ddp else None
        lines.append(
            f"| {strategy} | {len(matched)} | {statistics.median(speed['dsf'][p] for p in matched):.1f} "
            f"| {statistics.median(speed['raw'][p] for p in matched):.1f} | {median_range(ratios)} "
            f"| {'met' if ratio >= 0.97 else 'missed'} | {memory['dsf'] / 2**20:.1f} / {memory['raw'] / 2**20:.1f} MiB "
            f"| {f'{versus_ddp:.3f}' if versus_ddp else 'n/a'} "
            f"| {('met' if versus_ddp <= 0.55 else 'missed') if versus_ddp else 'n/a'} |"
        )
    loads = [e["load"] for e in entries]
    ddp_line = f"DDP's per-rank training state: {state_bytes(ddp) / 2**20:.1f} MiB. " if ddp else ""
    return (
        f"Machine: {machine()}. Model: GPT-2 {ARCHITECTURE['n_layer']} layers x {ARCHITECTURE['n_embd']} wide, "
        f"{ARCHITECTURE['n_head']} heads, vocabulary {ARCHITECTURE['vocab_size']:,} (about 29.5 M parameters, tied "
        f"embeddings), block {BLOCK}, {BATCH} blocks per rank per step, AdamW, fp32, 2 CPU ranks (gloo, one thread "
        f"each). {ddp_line}Per-rank state: parameters + gradients + optimizer state + master copies, the larger "
        f"rank, at the second step. 1-minute load average during the runs: {min(loads)}–{max(loads)}. Commands: "
        "`python benchmarks/lm_throughput.py --strategy fsdp --pairs 5` (and deepspeed, `--ddp-memory`, "
        "`--report`).\n\n" + "\n".join(lines) + "\n"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=("fsdp", "deepspeed"), default="fsdp")
    parser.add_argument("--pairs", type=int, default=5, help="alternating dsf/raw pairs to run now")
    parser.add_argument("--steps", type=int, default=7, help="steps per run: 1 left out, then windows")
    parser.add_argument("--window", type=int, default=2, help="steps per timing window")
    parser.add_argument("--log", type=Path, default=LOG, help="JSON lines of every measurement (appended)")
    parser.add_argument("--ddp-memory", action="store_true", help="measure DDP's per-rank state once")
    parser.add_argument("--report", action="store_true", help="print the log's table and append it to RESULTS.md")
    parser.add_argument("--no-append", action="store_true", help="with --report: print only")
    parser.add_argument("--raw-worker", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.raw_worker:
        raw_worker(args.strategy, args.steps, args.window, args.out)
    elif args.report:
        body = report(args.log)
        print(body)
        if not args.no_append:
            append("Causal LM throughput: dsf train vs a hand-written loop, 2 CPU ranks", body)
    elif args.ddp_memory:
        ddp_memory(3, args.log)
    else:
        pairs(args.strategy, args.pairs, args.steps, args.window, args.log)


if __name__ == "__main__":
    os.environ.update({key: value for key, value in env().items() if key in ("OMP_NUM_THREADS",)})
    sys.path.insert(0, str(REPO))
    main()
