#!/usr/bin/env bash
# Launch kotune training with the right launcher, and print the exact command first.
#
#   ./launch.sh STAGE CONFIG [--gpus N] [--zero 2|3|3-offload | --fsdp]
#               [--nodes N --node-rank R --master-addr A --master-port P] [--dry-run] [-- --key=value ...]
#   ./launch.sh STAGE CONFIG --slurm [--submit] [--cpu] [--gpus N] [--nodes N] [--zero Z | --fsdp]  (sbatch)
#
# STAGE is a registered stage (sft, dpo, ...: `python -m kotune.stages` lists them); its entry script is train/STAGE.py.
# Without --zero: `accelerate launch` (data parallel when more than one process).
# With --zero:    the `deepspeed` launcher and deepspeed/zero{2,3,3_offload}.json.
# With --fsdp:    `accelerate launch` with configs/accelerate/fsdp2.yaml (FSDP2: full, LoRA or QLoRA, sharded).
# --gpus is per node (default: the GPUs nvidia-smi sees, or 1). On a machine without GPUs the processes run on the
# CPU (gloo); DeepSpeed then uses its CPU accelerator (DS_ACCELERATOR=cpu). --slurm: `kotune slurm` (--help) writes
# the sbatch script (srun torchrun), --submit submits it, --cpu requests no GPUs.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"

usage() { sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2; exit 2; }
die() { echo "launch.sh: $*" >&2; exit 2; }

[ $# -ge 2 ] || usage
stage="$1"; config="$2"; shift 2
python="${KOTUNE_PYTHON:-python3}"
stages="$("$python" -m kotune.stages)" || die "cannot read kotune's stages with $python (set KOTUNE_PYTHON to the venv's python)"
entry="$("$python" -m kotune.stages "$stage" 2>/dev/null)" || die "first argument must be $(echo $stages | sed 's/ / or /g'), not '$stage'"
[ -f "$config" ] || die "config file '$config' not found"

gpus=""; zero=""; nodes=1; node_rank=0; master_addr=127.0.0.1; master_port=29500; dry_run=0; overrides=()
slurm=0; slurm_opts=(); fsdp=0
while [ $# -gt 0 ]; do
  case "$1" in
    --gpus) gpus="${2:?--gpus needs a number}"; shift 2;;
    --zero) zero="${2:?--zero needs 2, 3 or 3-offload}"; shift 2;;
    --nodes) nodes="${2:?}"; shift 2;;
    --node-rank) node_rank="${2:?}"; shift 2;;
    --master-addr) master_addr="${2:?}"; shift 2;;
    --master-port) master_port="${2:?}"; shift 2;;
    --fsdp) fsdp=1; shift;;
    --dry-run) dry_run=1; shift;;
    --slurm) slurm=1; shift;;
    --submit|--cpu) slurm_opts+=("$1"); shift;;
    --) shift; overrides=("$@"); break;;
    -h|--help) usage;;
    *) die "unknown option '$1' (training overrides go after --, e.g. -- --learning_rate=1e-4)";;
  esac
done
if [ $slurm = 1 ]; then  # an sbatch script rather than a launch here: kotune slurm checks the options and config
  [ -n "$gpus" ] && slurm_opts+=(--gpus-per-node "$gpus")
  [ -n "$zero" ] && slurm_opts+=(--zero "$zero")
  [ $fsdp = 1 ] && slurm_opts+=(--fsdp)
  exec "$python" -m kotune.tools.slurm "$stage" "$config" --nodes "$nodes" "${slurm_opts[@]}" -- "${overrides[@]}"
fi

have_gpu=0
if command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then have_gpu=1; fi
if [ -z "$gpus" ]; then
  if [ $have_gpu = 1 ]; then gpus=$(nvidia-smi -L | wc -l); else gpus=1; fi
fi
[[ "$gpus" =~ ^[1-9][0-9]*$ ]] || die "--gpus must be a positive number, not '$gpus'"
[[ "$nodes" =~ ^[1-9][0-9]*$ ]] || die "--nodes must be a positive number, not '$nodes'"
[[ "$node_rank" =~ ^[0-9]+$ ]] && [ "$node_rank" -lt "$nodes" ] || die "--node-rank must be in 0..$((nodes - 1))"

[ $fsdp = 1 ] && [ -n "$zero" ] && die "--fsdp and --zero are two ways to shard the same model: choose one"
script="$here/$entry"
env_prefix=()
if [ -n "$zero" ]; then
  case "$zero" in
    2) ds="$here/deepspeed/zero2.json";;
    3) ds="$here/deepspeed/zero3.json";;
    3-offload) ds="$here/deepspeed/zero3_offload.json";;
    *) die "--zero must be 2, 3 or 3-offload, not '$zero'";;
  esac
  [ $have_gpu = 1 ] || env_prefix=(env DS_ACCELERATOR=cpu)
  cmd=("${env_prefix[@]}" deepspeed --num_gpus "$gpus")
  if [ "$nodes" -gt 1 ]; then
    cmd+=(--no_ssh --num_nodes "$nodes" --node_rank "$node_rank" --master_addr "$master_addr" --master_port "$master_port")
  else
    cmd+=(--master_port "$master_port")
  fi
  cmd+=("$script" "$config" --deepspeed "$ds")
else
  total=$((gpus * nodes))
  cmd=(accelerate launch)
  [ $fsdp = 1 ] && cmd+=(--config_file "$here/configs/accelerate/fsdp2.yaml")
  cmd+=(--num_processes "$total" --num_machines "$nodes" --mixed_precision no --dynamo_backend no)
  [ "$total" -gt 1 ] && [ $fsdp = 0 ] && cmd+=(--multi_gpu)
  if [ "$nodes" -gt 1 ]; then
    cmd+=(--machine_rank "$node_rank" --main_process_ip "$master_addr" --main_process_port "$master_port")
  fi
  cmd+=("$script" "$config")
fi
cmd+=("${overrides[@]}")

printf '%q ' "${cmd[@]}" | sed 's/ $//'
echo
[ $dry_run = 1 ] && exit 0
exec "${cmd[@]}"
