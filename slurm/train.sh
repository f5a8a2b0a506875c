#!/usr/bin/env bash
# dsf-dist on a SLURM cluster: train, test the best checkpoint, evaluate the existing model, compare, into
# one run folder: <run.output_root>/<dataset>-<job id> (or run.name when the config sets it).
#
#   sbatch slurm/train.sh CONFIG [--set KEY=VALUE ...]
#   sbatch --nodes=2 --ntasks-per-node=4 --gpus-per-node=4 slurm/train.sh configs/ddp.yaml --set trainer.accelerator=gpu
#
# The #SBATCH lines below are defaults: edit them here or override them on the sbatch command line.
# srun starts one task per device: --ntasks-per-node is the number of devices per node, and the script sets
# trainer.devices and trainer.num_nodes from the allocation (SLURM_NTASKS_PER_NODE, SLURM_NNODES).
#
# Preemption: --signal makes SLURM send SIGUSR1 to every task that many seconds before the time limit (or
# send it yourself: scancel --signal=USR1 --full JOBID). Each rank only sets a flag; after the next step all
# ranks agree to stop, save checkpoints/last.ckpt (written under a temporary name, then renamed), and rank 0
# runs `scontrol requeue` while SLURM_RESTART_COUNT < run.max_requeues (default 3). The requeued job keeps its
# job id, so it finds the same run folder and continues from last.ckpt; a run that already finished
# (results/done.json) exits 0 at once. SIGTERM (scancel, the time limit itself) checkpoints and stops too,
# but does not requeue.
#
#SBATCH --job-name=dsf
#SBATCH --nodes=1
#SBATCH --ntasks-per-node=2
#SBATCH --cpus-per-task=8
##SBATCH --gpus-per-node=2
#SBATCH --time=04:00:00
#SBATCH --signal=USR1@180
#SBATCH --requeue
#SBATCH --open-mode=append
#SBATCH --output=%x-%j.out
#
# GPUs: enable the --gpus-per-node line (or pass --gpus-per-node=N) with N equal to --ntasks-per-node.
# 180 s before the limit must cover one training step plus writing a checkpoint; raise it for big models.
# --open-mode=append keeps the output of every restart in one file; %x-%j.out lands in the submit directory.
#
# NCCL on real clusters (the defaults are usually right; set these in the environment you submit from):
#   NCCL_SOCKET_IFNAME=ib0      the interface for bootstrap and socket traffic (e.g. ib0, eth0; ^lo,docker0 excludes)
#   NCCL_IB_HCA=mlx5            the InfiniBand adapters to use; NCCL_IB_DISABLE=1 falls back to TCP sockets
#   NCCL_DEBUG=INFO             prints the transport NCCL picked: run it once on a new cluster
#   NCCL_P2P_DISABLE=1          only where GPU peer-to-peer over PCIe is broken (hangs in the first all-reduce)
#   TORCH_NCCL_ASYNC_ERROR_HANDLING=1   a failed or hung collective ends the job (strategy.timeout_s) instead of hanging
#   MASTER_ADDR, MASTER_PORT    Lightning takes the first node of the allocation and 15000 + the job id's last
#                               4 digits; set them when those do not resolve or collide
# Other environment: DSF_PYTHON, the Python with dsf-dist installed (default: python on PATH);
# OMP_NUM_THREADS defaults to --cpus-per-task.
# Containers (pyxis/enroot): DSF_CONTAINER_IMAGE=<image or .sqsh file> runs every rank in that image, with the
# submit directory mounted at the same path as the working directory (add mounts in DSF_CONTAINER_MOUNTS,
# pyxis syntax); DSF_PYTHON then names the Python inside the image. See docker/README.md.
set -uo pipefail

die() {
  echo "train.sh: error: $*" >&2
  exit 2
}

[ $# -ge 1 ] || die "no config given; usage: sbatch slurm/train.sh CONFIG [--set KEY=VALUE ...]"
config=$1
shift
[ -n "${SLURM_JOB_ID:-}" ] || die "not inside a SLURM job; submit it: sbatch slurm/train.sh $config"
command -v srun >/dev/null || die "srun not found on PATH; run this script under SLURM (sbatch), where srun starts the ranks"
[ -f "$config" ] || die "config '$config' not found (a relative path starts at the submit directory ${SLURM_SUBMIT_DIR:-.})"
python=${DSF_PYTHON:-python}
container=()
if [ -n "${DSF_CONTAINER_IMAGE:-}" ]; then
  container=(--container-image="$DSF_CONTAINER_IMAGE" --container-workdir="$SLURM_SUBMIT_DIR"
    --container-mounts="$SLURM_SUBMIT_DIR:$SLURM_SUBMIT_DIR${DSF_CONTAINER_MOUNTS:+,$DSF_CONTAINER_MOUNTS}")
else
  command -v "$python" >/dev/null || die "'$python' not found; activate the environment with dsf-dist before sbatch, or set DSF_PYTHON"
fi

# The allocation decides the ranks: one task per device, the same number on every node.
nodes=${SLURM_JOB_NUM_NODES:-${SLURM_NNODES:-1}}
per_node=${SLURM_NTASKS_PER_NODE:-}
[ -n "$per_node" ] || die "the allocation has no --ntasks-per-node; submit with --nodes=N --ntasks-per-node=<devices per node>"
case ${SLURM_TASKS_PER_NODE:-$per_node} in
*,*) die "the allocation puts different numbers of tasks on its nodes (SLURM_TASKS_PER_NODE=$SLURM_TASKS_PER_NODE); submit with --ntasks-per-node=N instead of --ntasks" ;;
esac
per_node=${SLURM_TASKS_PER_NODE:-$per_node}
per_node=${per_node%%(*}
[ "${SLURM_NTASKS:-$((nodes * per_node))}" = $((nodes * per_node)) ] ||
  die "the allocation has $SLURM_NTASKS task(s) on $nodes node(s), not $per_node per node; submit with --nodes=N --ntasks-per-node=<devices per node> instead of --ntasks"
gpus=${SLURM_GPUS_PER_NODE:-}
gpus=${gpus##*:}
if [ -n "$gpus" ] && [ "$gpus" != "$per_node" ]; then
  die "the allocation has $gpus GPU(s) per node but $per_node task(s) per node; dsf runs one task per GPU: submit with --ntasks-per-node=$gpus"
fi
previous=
for arg in "$@"; do
  if [ "$previous" = "--set" ]; then
    case $arg in
    trainer.devices=*) [ "${arg#*=}" = "$per_node" ] || die "--set $arg contradicts the allocation's $per_node task(s) per node; submit with --ntasks-per-node=${arg#*=} instead" ;;
    trainer.num_nodes=*) [ "${arg#*=}" = "$nodes" ] || die "--set $arg contradicts the allocation's $nodes node(s); submit with --nodes=${arg#*=} instead" ;;
    esac
  fi
  previous=$arg
done
ranks=(--set "trainer.devices=$per_node" --set "trainer.num_nodes=$nodes")

# A bad config or override: one line here, instead of one per rank (in a container, the ranks say it).
if [ ${#container[@]} -eq 0 ]; then
  "$python" -m dsf_dist config --check --config="$config" "$@" "${ranks[@]}" >/dev/null || exit 2
fi

export OMP_NUM_THREADS=${OMP_NUM_THREADS:-${SLURM_CPUS_PER_TASK:-1}}
echo "train.sh: job $SLURM_JOB_ID, restart ${SLURM_RESTART_COUNT:-0}: $nodes node(s) x $per_node task(s), config $config"

# A SIGUSR1 that reaches only this shell (--signal=B:USR1@..., scancel --batch) is passed on to the ranks.
trap 'echo "train.sh: SIGUSR1: the ranks checkpoint after their next step and the job requeues"; scancel --signal=USR1 "$SLURM_JOB_ID"' USR1

srun --kill-on-bad-exit=1 ${container[@]+"${container[@]}"} "$python" -m dsf_dist run --config="$config" --resume "$@" "${ranks[@]}" &
step=$!
while :; do
  wait "$step"
  rc=$?
  kill -0 "$step" 2>/dev/null || break # srun has ended; rc is its status (else a trapped signal woke wait)
done
echo "train.sh: srun exited with $rc"
exit "$rc"
