#!/usr/bin/env bash
# Run qsmbids over a cohort on a SLURM cluster: one array task per participant
# (Apptainer, node-local work folder), then one `group` job that waits for them all.
#
# Submit from a login node:
#   QSMBIDS_SIF=/path/qsmbids.sif bash workflows/slurm_array.sh BIDS_DIR OUTPUT_DIR [-- QSMBIDS_ARGS...]
#
# Settings (environment variables, all optional except QSMBIDS_SIF):
#   QSMBIDS_SIF           the Apptainer image (see workflows/README.md to build it)
#   QSMBIDS_CPUS          CPUs per participant (default 4)
#   QSMBIDS_MEM           memory per participant (default 16G)
#   QSMBIDS_TIME          wall time per participant (default 02:00:00)
#   QSMBIDS_MAX_RUNNING   array tasks running at once (default 100)
#   QSMBIDS_CHUNK         array tasks per array job, at most the cluster's
#                         MaxArraySize (default 1000); bigger cohorts get several arrays
#   QSMBIDS_PARTITION, QSMBIDS_ACCOUNT   passed to sbatch when set
#   QSMBIDS_LOG_DIR       job logs (default OUTPUT_DIR/../qsmbids_logs)
#   QSMBIDS_ATLAS_DIR     an atlas folder to bind and use (--atlas-dir); needed when the
#                         image was built without the default atlas
#   QSMBIDS_PARTICIPANTS  a file of participant labels, one a line (default: every
#                         sub-* folder of BIDS_DIR)
#   QSMBIDS_RERUN_DONE=1  also resubmit participants that already finished
#   QSMBIDS_DRY_RUN=1     print the sbatch commands instead of running them
# Arguments after `--` go to `qsmbids ... participant` unchanged (e.g. --preset fast).
#
# Resume: rerun the same command. Participants whose task finished (a marker in
# LOG_DIR/done/) are not resubmitted, and inside a task qsmbids itself skips runs
# whose outputs are complete.
set -euo pipefail
PROG=slurm_array.sh
# shellcheck source=workflows/cohort_lib.sh
. "${QSMBIDS_RECIPES:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}/cohort_lib.sh"

# Inside a job (sbatch runs a copy of this script, hence QSMBIDS_RECIPES above).
case "${1:-}" in
  --group)
    cohort_run group "${SLURM_TMPDIR:-${TMPDIR:-/tmp}}" "${SLURM_JOB_ID:-0}" 1 "" 0
    exit 0 ;;
  --task)
    shift
    cpus=${SLURM_CPUS_PER_TASK:-1}
    mem_mb=${SLURM_MEM_PER_NODE:-$(( ${SLURM_MEM_PER_CPU:-0} * cpus ))}
    mem_gb=$(( mem_mb / 1024 ))
    [ "$mem_gb" -gt 0 ] || mem_gb=""
    cohort_run participant "${SLURM_TMPDIR:-${TMPDIR:-/tmp}}" \
      "${SLURM_ARRAY_JOB_ID:-${SLURM_JOB_ID:-0}}_${SLURM_ARRAY_TASK_ID:?}" "$cpus" "$mem_gb" \
      "$(( ${QSMBIDS_OFFSET:-0} + SLURM_ARRAY_TASK_ID ))" "$@"
    exit 0 ;;
esac

# Submission (login node).
cohort_prepare "$@"
submit() {
  if [ "${QSMBIDS_DRY_RUN:-0}" = 1 ]; then
    echo "sbatch $*" >&2
    echo "$((RANDOM + 1000))"
  else
    sbatch --parsable "$@" | cut -d';' -f1
  fi
}
common=()
[ -z "${QSMBIDS_PARTITION:-}" ] || common+=(--partition="$QSMBIDS_PARTITION")
[ -z "${QSMBIDS_ACCOUNT:-}" ] || common+=(--account="$QSMBIDS_ACCOUNT")
script=$(abspath "$(dirname "$0")")/$(basename "$0")

chunk=${QSMBIDS_CHUNK:-1000}
deps=""
for ((offset = 0; offset < n; offset += chunk)); do
  size=$(( n - offset < chunk ? n - offset : chunk ))
  id=$(submit "${common[@]}" --export="ALL,$exports,QSMBIDS_OFFSET=$offset" \
    --job-name=qsmbids-participant --array="1-$size%${QSMBIDS_MAX_RUNNING:-100}" \
    --cpus-per-task="${QSMBIDS_CPUS:-4}" --mem="${QSMBIDS_MEM:-16G}" \
    --time="${QSMBIDS_TIME:-02:00:00}" --output="$logs/participant-%A_%a.log" \
    "$script" --task "${qsmbids_args[@]}")
  echo "qsmbids: submitted array job $id (participants $((offset + 1))-$((offset + size)))"
  deps+=":$id"
done

# The group level runs once every array task has ended, failed ones included: it
# tabulates what exists and lists what is missing.
dep_args=()
[ -z "$deps" ] || dep_args=(--dependency="afterany$deps" --kill-on-invalid-dep=yes)
gid=$(submit "${common[@]}" --export="ALL,$exports" "${dep_args[@]}" --job-name=qsmbids-group \
  --cpus-per-task=1 --mem=4G --time=00:30:00 --output="$logs/group-%j.log" \
  "$script" --group)
echo "qsmbids: submitted group job $gid (after: ${deps:-nothing})"
