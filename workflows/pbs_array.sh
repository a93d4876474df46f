#!/usr/bin/env bash
# Run qsmbids over a cohort on a PBS Pro / OpenPBS cluster (or Torque, see
# QSMBIDS_PBS_FLAVOUR): one array sub-job per participant (Apptainer, node-local
# work folder), then one `group` job that waits for them all.
#
# Submit from a login node:
#   QSMBIDS_SIF=/path/qsmbids.sif bash workflows/pbs_array.sh BIDS_DIR OUTPUT_DIR [-- QSMBIDS_ARGS...]
#
# Settings (environment variables, all optional except QSMBIDS_SIF):
#   QSMBIDS_SIF           the Apptainer image (see workflows/README.md to build it)
#   QSMBIDS_CPUS          CPUs per participant (default 4)
#   QSMBIDS_MEM           memory per participant (default 16gb)
#   QSMBIDS_TIME          wall time per participant (default 02:00:00)
#   QSMBIDS_CHUNK         sub-jobs per array job, at most the server's max_array_size
#                         (default 1000); bigger cohorts get several arrays
#   QSMBIDS_QUEUE, QSMBIDS_ACCOUNT   passed to qsub (-q, -A) when set
#   QSMBIDS_PBS_FLAVOUR   pbspro (default: -J, PBS_ARRAY_INDEX) or torque (-t, PBS_ARRAYID)
#   QSMBIDS_LOG_DIR       job logs (default OUTPUT_DIR/../qsmbids_logs)
#   QSMBIDS_ATLAS_DIR     an atlas folder to bind and use (--atlas-dir)
#   QSMBIDS_PARTICIPANTS  a file of participant labels, one a line (default: every
#                         sub-* folder of BIDS_DIR)
#   QSMBIDS_RERUN_DONE=1  also resubmit participants that already finished
#   QSMBIDS_DRY_RUN=1     print the qsub commands instead of running them
# Arguments after `--` go to `qsmbids ... participant` unchanged. Resume: rerun the
# same command (finished participants are skipped; see workflows/README.md).
set -euo pipefail
PROG=pbs_array.sh
# shellcheck source=workflows/cohort_lib.sh
. "${QSMBIDS_RECIPES:-$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)}/cohort_lib.sh"

# Inside a job: PBS passes no arguments to a job script, so the mode and the extra
# qsmbids arguments (tab-separated) come in the environment.
if [ -n "${QSMBIDS_MODE:-}" ]; then
  job=${PBS_JOBID:-0}
  if [ "$QSMBIDS_MODE" = group ]; then
    cohort_run group "${TMPDIR:-/tmp}" "${job%%.*}" 1 "" 0
    exit 0
  fi
  extra=()
  if [ -n "${QSMBIDS_EXTRA_ARGS:-}" ]; then
    IFS=$'\t' read -r -a extra <<<"$QSMBIDS_EXTRA_ARGS"
  fi
  task=${PBS_ARRAY_INDEX:-${PBS_ARRAYID:-1}}
  cohort_run participant "${TMPDIR:-/tmp}" "${job%%.*}" "${NCPUS:-${PBS_NUM_PPN:-1}}" "" \
    "$(( ${QSMBIDS_OFFSET:-0} + task ))" "${extra[@]}"
  exit 0
fi

# Submission (login node).
cohort_prepare "$@"
flavour=${QSMBIDS_PBS_FLAVOUR:-pbspro}
case "$flavour" in pbspro | torque) ;; *) die "QSMBIDS_PBS_FLAVOUR must be pbspro or torque" ;; esac
submit() {
  if [ "${QSMBIDS_DRY_RUN:-0}" = 1 ]; then
    echo "qsub $*" >&2
    echo "$((RANDOM + 1000))[].server"
  else
    qsub "$@"
  fi
}
common=()
[ -z "${QSMBIDS_QUEUE:-}" ] || common+=(-q "$QSMBIDS_QUEUE")
[ -z "${QSMBIDS_ACCOUNT:-}" ] || common+=(-A "$QSMBIDS_ACCOUNT")
script=$(abspath "$(dirname "$0")")/$(basename "$0")
cpus=${QSMBIDS_CPUS:-4}
if [ "$flavour" = pbspro ]; then
  resources=(-l "select=1:ncpus=$cpus:mem=${QSMBIDS_MEM:-16gb}")
  group_resources=(-l select=1:ncpus=1:mem=4gb)
else
  resources=(-l "nodes=1:ppn=$cpus,mem=${QSMBIDS_MEM:-16gb}")
  group_resources=(-l "nodes=1:ppn=1,mem=4gb")
fi
# The extra qsmbids arguments reach the sub-jobs through the environment (-V),
# tab-separated: qsub -v splits its list on commas.
export QSMBIDS_EXTRA_ARGS
QSMBIDS_EXTRA_ARGS=$(IFS=$'\t'; echo "${qsmbids_args[*]}")

chunk=${QSMBIDS_CHUNK:-1000}
deps=""
for ((offset = 0; offset < n; offset += chunk)); do
  size=$(( n - offset < chunk ? n - offset : chunk ))
  if [ "$size" -eq 1 ] && [ "$flavour" = pbspro ]; then
    array=()  # PBS Pro refuses a one-element array: a plain job gets index 1
  elif [ "$flavour" = pbspro ]; then
    array=(-J "1-$size")
  else
    array=(-t "1-$size")
  fi
  id=$(submit "${common[@]}" "${array[@]}" -V \
    -v "$exports,QSMBIDS_MODE=participant,QSMBIDS_OFFSET=$offset" \
    -N qsmbids-participant "${resources[@]}" -l "walltime=${QSMBIDS_TIME:-02:00:00}" \
    -j oe -o "$logs/" "$script")
  echo "qsmbids: submitted array job $id (participants $((offset + 1))-$((offset + size)))"
  deps+=":$id"
done

# The group level runs once every sub-job has ended, failed ones included.
dep_args=()
if [ -n "$deps" ] && [ "$flavour" = pbspro ]; then
  dep_args=(-W "depend=afterany$deps")
elif [ -n "$deps" ]; then
  dep_args=(-W "depend=afteranyarray$deps")
fi
gid=$(submit "${common[@]}" "${dep_args[@]}" -v "$exports,QSMBIDS_MODE=group" \
  -N qsmbids-group "${group_resources[@]}" -l walltime=00:30:00 -j oe -o "$logs/" "$script")
echo "qsmbids: submitted group job $gid (after: ${deps:-nothing})"
