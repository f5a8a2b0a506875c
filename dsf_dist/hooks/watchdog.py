"""A lost or hung rank ends the job within a bounded time, with one line naming it (DESIGN.md rule 5).

Every rank runs a watchdog thread while a trainer runs. It ends the process when:
- a phase overruns its deadline (strategy.timeouts: init, train_step, checkpoint, test): some rank is hung or
  gone and the collective would otherwise wait for the process-group timeout;
- a peer process is gone: under Lightning's own `ddp` launcher rank zero is the parent of the other ranks on its
  node, so rank zero sees a child exit and a child sees its parent vanish (under torchrun, srun and Ray Train the
  launcher ends the other ranks itself, and the deadlines bound the rest);
- a collective raised because a peer's connection closed;
- another rank raised (a mistake on that rank only, or a fault): it posts one line, `rank R: <error>`, to the
  process group's key-value store, and every other rank's thread, which polls the store about once a second, ends
  its rank with that line. Without it the others would wait in their next collective until the process-group
  timeout whenever the launcher leaves them running (a Ray worker that returned, a rank with restarts allowed).
Before exiting, the rank writes its Python stacks (faulthandler, all threads) and torch's flight recorder (the
last collectives, gloo and NCCL) into <run>/logs/, and rank zero kills the ranks it launched, so nothing is
left behind. The thread exits the process with os._exit: the main thread is blocked inside a collective, and a
normal interpreter exit would wait on it (or on DeepSpeed's and gloo's own shutdown) without bound.
"""

from __future__ import annotations

import faulthandler
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any

import pytorch_lightning as pl
from pytorch_lightning.callbacks import Callback

from dsf_dist.config.strategy import PhaseTimeouts
from dsf_dist.errors import Preempted
from dsf_dist.launchers.environment import process_group, resolve

EXIT_RANK_LOST = 1
POLL_S = 0.2
LOST_PEER_GRACE_S = 3.0  # after a collective fails: how long to wait for the dead peer's process to be seen gone
NOTICE_POLL_S = 1.0  # how often each rank asks the store whether another rank failed (one small request)
FAILURE_KEY = "dsf/failed"
FLIGHT_RECORDER_ENV = "TORCH_FR_BUFFER_SIZE"

# The processes Lightning's `ddp` launcher started from this one (ranks 1..N-1 of its node). Kept past the fit
# trainer, because the test trainer that follows runs on the same processes but launched none of them.
_launched: list[subprocess.Popen] = []
# This process's parent when it started (for a rank Lightning launched: its node's rank zero), before it can die.
_PARENT = os.getppid()


def record_collectives() -> None:
    """Ask torch to keep its flight recorder (the last collectives) for every process group created from now on."""
    os.environ.setdefault(FLIGHT_RECORDER_ENV, "2000")


class Watchdog(Callback):
    def __init__(self, timeouts: PhaseTimeouts, logs: Path, spawn: bool = False) -> None:
        """spawn: ranks are spawned from this process (ddp_spawn), which then only waits for them (torch's
        multiprocessing ends the others when one fails), so it watches nothing itself; each rank does."""
        record_collectives()
        env = resolve()
        self.timeouts, self.logs = timeouts, logs
        self.rank, self.local_rank = env.rank, env.local_rank
        self._child_of_rank_zero = False
        self._rank_offset = 0
        self._stage_phase = "train_step"
        self._deadline: tuple[str, float] | None = None
        self._start(watch=not spawn)

    def _start(self, watch: bool) -> None:
        self._watching = threading.Event()
        self._failing = threading.Lock()
        self._closed = not watch  # True: no thread (or this trainer is done: its thread ends)
        self._notices_closed = True  # the thread that watches other ranks' failure notices runs from setup()
        if not watch:
            return
        self.arm("init")  # from now until setup(): Lightning creates the process group in between
        threading.Thread(target=self._watch, name="dsf-watchdog", daemon=True).start()

    # ddp_spawn pickles the trainer, callbacks included, into each rank: each rank starts its own thread.
    def __getstate__(self) -> dict[str, Any]:
        return {
            k: v for k, v in self.__dict__.items() if k not in ("_watching", "_failing", "_closed", "_notices_closed")
        }

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._start(watch=True)

    # -- phases --------------------------------------------------------------------------------------------
    def arm(self, phase: str) -> None:
        self._deadline = (phase, time.monotonic() + getattr(self.timeouts, f"{phase}_s"))
        self._watching.set()

    def disarm(self) -> None:
        self._deadline = None

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Arm `name` for the block, then re-arm the phase it interrupted (from its start: it waited on us)."""
        before = self._deadline
        self.arm(name)
        try:
            yield
        finally:
            if before is None:
                self.disarm()
            else:
                self.arm(before[0])

    # -- Lightning hooks -----------------------------------------------------------------------------------
    # While a trainer runs some phase is always armed: a hang between batches (an epoch-end metric sync, a
    # barrier) is caught by the deadline of the phase that comes next.
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._learn(trainer)
        self._stage_phase = "train_step" if stage == "fit" else "test"
        self.arm(self._stage_phase)
        if not self._closed and trainer.world_size > 1:
            self._notices_closed = False
            threading.Thread(target=self._watch_notices, name="dsf-failure-notices", daemon=True).start()

    def _watch_notices(self) -> None:
        """Its own thread: a store request can wait on a slow host, and the deadlines must not wait with it."""
        while not (self._closed or self._notices_closed):
            time.sleep(NOTICE_POLL_S)
            notice = posted_failure()
            if notice and not (self._closed or self._notices_closed):
                self.fail(f"{notice}; the job stops")

    def _learn(self, trainer: pl.Trainer) -> None:
        """This rank and its peers, once the strategy knows them (at setup, or at a failure before it)."""
        self.rank = trainer.global_rank
        launcher = trainer.strategy.launcher
        procs = getattr(launcher, "procs", None)
        if procs:
            _launched[:] = procs
        environment = type(getattr(trainer.strategy, "cluster_environment", None)).__name__
        # A rank that Lightning's `ddp` launcher started: its parent is its node's local rank zero.
        self._child_of_rank_zero = environment == "LightningEnvironment" and trainer.local_rank > 0
        self._rank_offset = trainer.node_rank * trainer.num_devices

    def teardown(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # Between trainers (and once the last one is done) a peer may exit normally before this rank does.
        self._watching.clear()
        self._closed = True
        self.disarm()

    def on_train_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.arm("train_step")

    def on_train_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.arm("train_step")

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.disarm()

    # Validation and test batches, and the gather after the last one, share the test deadline.
    def on_validation_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.arm("test")

    def on_validation_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.arm("test")

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.arm(self._stage_phase)

    def on_test_batch_start(self, trainer: pl.Trainer, *args: Any) -> None:
        self.arm("test")

    def on_test_batch_end(self, trainer: pl.Trainer, *args: Any) -> None:
        self.arm("test")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.disarm()

    def on_exception(self, trainer: pl.Trainer, pl_module: pl.LightningModule, exception: BaseException) -> None:
        if not self._watching.is_set():
            return
        if isinstance(exception, Preempted | KeyboardInterrupt):
            return  # a stop every rank agreed on, or the user's own interrupt
        if not is_collective_failure(exception):
            # A mistake or fault on this rank: the CLI reports it here; the other ranks learn it from the store.
            self._notices_closed = True  # this rank's own notice must not end it before it reports
            post_failure(f"rank {trainer.global_rank}: {type(exception).__name__}: {first_line(exception)}")
            return
        self._learn(trainer)
        waited = time.monotonic() + LOST_PEER_GRACE_S
        while time.monotonic() < waited:
            lost = self._lost_peer()
            if lost:
                self.fail(lost)
            notice = posted_failure()  # the peer raised, and said why before it exited
            if notice:
                self.fail(f"{notice}; the job stops")
            time.sleep(POLL_S)
        self.fail(
            f"rank {self.rank}: a collective failed ({first_line(exception)}); another rank was lost or ended first"
        )

    # -- the thread ----------------------------------------------------------------------------------------
    def _watch(self) -> None:
        while not self._closed:
            time.sleep(POLL_S)
            if not self._watching.is_set():
                continue
            deadline = self._deadline
            if deadline is not None and time.monotonic() > deadline[1]:
                phase, limit = deadline[0], getattr(self.timeouts, f"{deadline[0]}_s")
                self.fail(
                    f"rank {self.rank}: {phase} took longer than strategy.timeouts.{phase}_s={limit}; "
                    "a rank is hung or lost (raise the timeout if this phase is legitimately slow)"
                )
            lost = self._lost_peer()
            if lost:
                self.fail(lost)

    def _lost_peer(self) -> str | None:
        for index, proc in enumerate(_launched):
            code = proc.poll()
            if code:  # None: running; 0: finished its part normally
                return f"rank {self._rank_offset + index + 1} lost ({describe_exit(code)}, pid {proc.pid})"
        if self._child_of_rank_zero and os.getppid() != _PARENT:
            return f"rank {self._rank_offset} lost (the process that launched this rank is gone)"
        return None

    def fail(self, message: str) -> None:
        """Write stacks and the flight recorder, say `message` in one line, end the ranks this one launched, exit."""
        if not self._failing.acquire(blocking=False):
            return  # the other thread is already on it
        stacks = self._dump()
        print(
            f"dsf: error: {message}; stopping rank {self.rank} (pid {os.getpid()}, stacks: {stacks})",
            file=sys.stderr,
            flush=True,
        )
        for proc in _launched:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait()
        os._exit(EXIT_RANK_LOST)

    def _dump(self) -> Path:
        self.logs.mkdir(parents=True, exist_ok=True)
        stacks = self.logs / f"stacks-rank{self.rank}.txt"
        with open(stacks, "w") as handle:
            faulthandler.dump_traceback(handle, all_threads=True)
        trace = flight_recorder()
        if trace:
            (self.logs / f"flight-recorder-rank{self.rank}.json").write_bytes(trace)
        return stacks


def flight_recorder() -> bytes | None:
    """torch's record of the last collectives of every process group, as JSON; None where torch has none."""
    try:
        from torch._C._distributed_c10d import _dump_fr_trace_json

        if not process_group():
            return None
        return _dump_fr_trace_json(onlyActive=False)
    except Exception:  # an older torch, or a backend without a recorder: the stacks are still written
        return None


def first_line(exception: BaseException) -> str:
    text = str(exception).strip()
    return text.splitlines()[0][:200] if text else type(exception).__name__


def failure_store() -> Any:
    """The default process group's key-value store (torchrun's, Lightning's or Ray's TCPStore); None without one."""
    if not process_group():
        return None
    from torch.distributed import distributed_c10d

    try:
        return distributed_c10d._get_default_store()
    except (AttributeError, RuntimeError, ValueError):  # a torch without it: the deadlines still bound the rest
        return None


def post_failure(notice: str) -> None:
    store = failure_store()
    if store is not None:
        with suppress(Exception):  # the store's host may be the rank that is gone
            store.set(FAILURE_KEY, notice)


def posted_failure() -> str | None:
    store = failure_store()
    if store is None:
        return None
    try:
        return store.get(FAILURE_KEY).decode() if store.check([FAILURE_KEY]) else None
    except Exception:  # the store's host is gone: a lost peer, which the other checks report
        return None


def is_collective_failure(exception: BaseException) -> bool:
    import torch.distributed as dist

    if isinstance(exception, dist.DistError):
        return True
    text = str(exception)
    return isinstance(exception, RuntimeError) and any(
        sign in text for sign in ("Connection closed by peer", "Connection reset by peer", "gloo", "Timed out")
    )


def describe_exit(code: int) -> str:
    if code < 0:
        return f"killed by {signal.Signals(-code).name}"
    return f"exited with code {code}"


def watchdog_of(trainer: pl.Trainer) -> Watchdog | None:
    return next((callback for callback in trainer.callbacks if isinstance(callback, Watchdog)), None)
