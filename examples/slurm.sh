#!/bin/sh
# slurm.sh LIST [VAR=VALUE...]: one task of a Slurm job array over a grid stage: line
# $SLURM_ARRAY_TASK_ID of LIST is a make target of examples/Makefile, built with the given
# settings, from the repository root (sbatch's working directory).
#
# `make -C examples grid-slurm RECIPE=perp` writes one LIST per stage and submits each
# stage as an array that starts when the one before it has succeeded (afterok), then the
# table as one last job. By hand, for a LIST of N lines:
#     sbatch --array=1-N examples/slurm.sh LIST MODEL=hf/opt-125m
#SBATCH --job-name=lmpipe-grid
#SBATCH --cpus-per-task=4
#SBATCH --output=lmpipe-grid-%A_%a.log
set -eu
[ $# -ge 1 ] || { echo "usage: slurm.sh LIST [VAR=VALUE...]" >&2; exit 2; }
list=$1
shift
[ -n "${SLURM_ARRAY_TASK_ID:-}" ] ||
	{ echo "slurm.sh: not a Slurm array task (submit it with sbatch --array)" >&2; exit 2; }
target=$(sed -n "${SLURM_ARRAY_TASK_ID}p" "$list")
[ -n "$target" ] || { echo "slurm.sh: $list: no line $SLURM_ARRAY_TASK_ID" >&2; exit 1; }
# the programs use the CPUs Slurm gave the task
exec make -f examples/Makefile ${SLURM_CPUS_PER_TASK:+THREADS=$SLURM_CPUS_PER_TASK} "$@" "$target"
