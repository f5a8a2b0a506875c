#!/usr/bin/env bash
# dsf-dist under torchrun: one process per device, on one node or several.
#
#   launchers/torchrun.sh CONFIG [--set KEY=VALUE ...]
#
# One node, two processes (the run folder is <dataset>-<RUN_ID>; rerunning with the same RUN_ID continues it):
#   NPROC_PER_NODE=2 RUN_ID=exp1 launchers/torchrun.sh configs/ddp.yaml
# Two nodes: run the same line on each node; RDZV_ENDPOINT is a host:port on the first node that all can reach.
#   NNODES=2 NPROC_PER_NODE=4 RDZV_ENDPOINT=node0:29400 RUN_ID=exp1 launchers/torchrun.sh configs/ddp.yaml
#
# Environment (all optional on one node):
#   NPROC_PER_NODE  processes (= devices) per node; default: the GPUs nvidia-smi lists, else 1
#   NNODES          nodes taking part; default 1
#   RDZV_ENDPOINT   rendezvous host:port; default 127.0.0.1 on a free port (one node only)
#   RUN_ID          id shared by all nodes: torchrun's --rdzv-id and the run folder's suffix; default: the time
#   MAX_RESTARTS    torchrun restarts of a failed or preempted worker group; each continues from last.ckpt
#   RDZV_CONF       torchrun's --rdzv-conf, e.g. keep_alive_interval=1 (a lost node is dropped after 3 missed
#                   keep-alives: 15 s with torch's default interval of 5 s, 3 s with 1 s)
#   DSF_PYTHON      the Python with dsf-dist installed; default: python
# trainer.devices and trainer.num_nodes are set from NPROC_PER_NODE and NNODES. The run always continues
# its folder's last checkpoint when there is one (--resume), and a finished run is not run again.
set -euo pipefail

die() { echo "torchrun.sh: error: $*" >&2; exit 2; }

[ $# -ge 1 ] || die "no config given; usage: launchers/torchrun.sh CONFIG [--set KEY=VALUE ...]"
config=$1
shift
[ -f "$config" ] || die "config '$config' not found; give the path of a YAML config"
python=${DSF_PYTHON:-python}
command -v "$python" >/dev/null || die "'$python' not found; activate the environment with dsf-dist or set DSF_PYTHON"

gpus=0
if command -v nvidia-smi >/dev/null; then gpus=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true); fi
nproc=${NPROC_PER_NODE:-$((gpus > 0 ? gpus : 1))}
nnodes=${NNODES:-1}
endpoint=${RDZV_ENDPOINT:-127.0.0.1:0}
run_id=${RUN_ID:-$(date +%Y%m%d-%H%M%S)}
[[ $nproc =~ ^[1-9][0-9]*$ ]] || die "NPROC_PER_NODE='$nproc' is not a process count; give a number >= 1"
[[ $nnodes =~ ^[1-9][0-9]*$ ]] || die "NNODES='$nnodes' is not a node count; give a number >= 1"
[[ $run_id =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] || die "RUN_ID='$run_id' is not a safe name; use letters, digits, '.', '_', '-'"
if [ "$nnodes" -gt 1 ] && { [ -z "${RDZV_ENDPOINT:-}" ] || [ -z "${RUN_ID:-}" ]; }; then
  die "NNODES=$nnodes needs RDZV_ENDPOINT=<host:port on the first node> and the same RUN_ID on every node"
fi

# torch >= 2.4 lets the rank-0 agent's TCP store serve the workers too, and an agent keeps that store's address
# from its first rendezvous: after a lost node is replaced, a surviving rank-0 agent never writes the new round's
# MASTER_ADDR (the new agent waits 60 s for it and fails), and a survivor that becomes rank 1 sends its workers to
# the old round's store, not the new rank 0's (see also pytorch/pytorch#135712). With the sharing off, rank 0 of every round publishes a fresh address.
export TORCH_DISABLE_SHARE_RDZV_TCP_STORE=${TORCH_DISABLE_SHARE_RDZV_TCP_STORE:-1}
rdzv_conf=()
if [ -n "${RDZV_CONF:-}" ]; then rdzv_conf=(--rdzv-conf="$RDZV_CONF"); fi

exec "$python" -m torch.distributed.run \
  --nnodes="$nnodes" --nproc-per-node="$nproc" \
  --rdzv-backend=c10d --rdzv-endpoint="$endpoint" --rdzv-id="$run_id" "${rdzv_conf[@]}" \
  --max-restarts="${MAX_RESTARTS:-0}" \
  -m dsf_dist run --config="$config" --resume "$@" \
  --set "trainer.devices=$nproc" --set "trainer.num_nodes=$nnodes"
