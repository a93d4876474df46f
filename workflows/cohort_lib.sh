# shellcheck shell=bash
# Shared by slurm_array.sh and pbs_array.sh (sourced, not run): preparing a cohort
# submission, and running one participant (or the group level) inside a job.
# The caller sets PROG (its name, for messages) and `set -euo pipefail`.

die() { echo "${PROG:-qsmbids}: error: $*" >&2; exit 64; }

abspath() { (cd "$1" && pwd); }

# cohort_prepare BIDS_DIR OUTPUT_DIR [-- QSMBIDS_ARGS...]
# Checks the inputs and writes LOG_DIR/participants.txt: every participant (or those
# in $QSMBIDS_PARTICIPANTS) not yet done. Sets: bids out sif logs atlas_dir n
# exports (comma-separated NAME=VALUE list for the jobs' environment) and
# qsmbids_args (the arguments after --).
cohort_prepare() {
  [ $# -ge 2 ] || die "usage: QSMBIDS_SIF=IMAGE.sif bash $PROG BIDS_DIR OUTPUT_DIR [-- QSMBIDS_ARGS...]"
  [ -d "$1" ] || die "BIDS_DIR not found: $1"
  bids=$(abspath "$1")
  [ -f "$bids/dataset_description.json" ] \
    || die "not a BIDS dataset (no dataset_description.json): $bids"
  mkdir -p "$2"
  out=$(abspath "$2")
  shift 2
  [ "${1:-}" != -- ] || shift
  # shellcheck disable=SC2034  # used by the sourcing script
  qsmbids_args=("$@")
  : "${QSMBIDS_SIF:?set QSMBIDS_SIF to the Apptainer image (qsmbids.sif)}"
  [ -f "$QSMBIDS_SIF" ] || [ "${QSMBIDS_DRY_RUN:-0}" = 1 ] || die "QSMBIDS_SIF not found: $QSMBIDS_SIF"
  sif=$(abspath "$(dirname "$QSMBIDS_SIF")")/$(basename "$QSMBIDS_SIF")
  logs=${QSMBIDS_LOG_DIR:-$(dirname "$out")/qsmbids_logs}
  mkdir -p "$logs/done"
  logs=$(abspath "$logs")
  atlas_dir=""
  if [ -n "${QSMBIDS_ATLAS_DIR:-}" ]; then
    [ -d "$QSMBIDS_ATLAS_DIR" ] || die "QSMBIDS_ATLAS_DIR not found: $QSMBIDS_ATLAS_DIR"
    atlas_dir=$(abspath "$QSMBIDS_ATLAS_DIR")
  fi
  local all label
  if [ -n "${QSMBIDS_PARTICIPANTS:-}" ]; then
    all=$(sed -e 's/^sub-//' -e '/^[[:space:]]*$/d' "$QSMBIDS_PARTICIPANTS")
  else
    all=$(find "$bids" -mindepth 1 -maxdepth 1 -type d -name 'sub-*' -printf '%f\n' \
      | sed 's/^sub-//' | sort)
  fi
  : >"$logs/participants.txt.tmp"
  while IFS= read -r label; do
    [ -n "$label" ] || continue
    if [ "${QSMBIDS_RERUN_DONE:-0}" != 1 ] && [ -e "$logs/done/sub-$label" ]; then continue; fi
    echo "$label" >>"$logs/participants.txt.tmp"
  done <<<"$all"
  mv "$logs/participants.txt.tmp" "$logs/participants.txt"
  n=$(wc -l <"$logs/participants.txt")
  echo "qsmbids: $n participants to run ($(wc -w <<<"$all") in the cohort); logs in $logs"
  # Paths reach the jobs through the environment (so they must not contain commas).
  exports="QSMBIDS_SIF=$sif,QSMBIDS_BIDS=$bids,QSMBIDS_OUT=$out,QSMBIDS_LOG_DIR=$logs"
  exports+=",QSMBIDS_ATLAS_DIR=$atlas_dir,QSMBIDS_RECIPES=$(abspath "$(dirname "${BASH_SOURCE[0]}")")"
}

# cohort_run group|participant SCRATCH JOB_ID CPUS MEM_GB TASK_INDEX [QSMBIDS_ARGS...]
# Inside a job: runs the container with a clean environment, the input bound
# read-only and a work folder on node-local SCRATCH (deleted afterwards). For a
# participant, TASK_INDEX is its line in LOG_DIR/participants.txt; on success the
# marker LOG_DIR/done/sub-LABEL is written. MEM_GB may be empty.
cohort_run() {
  local mode=$1 scratch=$2 job=$3 cpus=$4 mem_gb=$5 index=$6
  shift 6
  : "${QSMBIDS_SIF:?}" "${QSMBIDS_BIDS:?}" "${QSMBIDS_OUT:?}" "${QSMBIDS_LOG_DIR:?}"
  local binds=(-B "$QSMBIDS_BIDS:/data:ro" -B "$QSMBIDS_OUT:/out") options=()
  if [ -n "${QSMBIDS_ATLAS_DIR:-}" ]; then
    binds+=(-B "$QSMBIDS_ATLAS_DIR:/atlas:ro")
    options+=(--atlas-dir /atlas)
  fi
  work=$(mktemp -d "$scratch/qsmbids-$job.XXXXXX")
  trap 'rm -rf "$work"' EXIT
  binds+=(-B "$work:/work")
  if [ "$mode" = group ]; then
    apptainer exec --cleanenv "${binds[@]}" "$QSMBIDS_SIF" \
      qsmbids /data /out group -w /work "${options[@]}"
    return
  fi
  local label
  label=$(sed -n "${index}p" "$QSMBIDS_LOG_DIR/participants.txt")
  [ -n "$label" ] || die "no participant on line $index of $QSMBIDS_LOG_DIR/participants.txt"
  echo "qsmbids: participant $label (task $index) on $(hostname), $cpus CPUs, work in $work"
  [ -z "$mem_gb" ] || options+=(--mem-gb "$mem_gb")
  apptainer exec --cleanenv "${binds[@]}" "$QSMBIDS_SIF" \
    qsmbids /data /out participant --participant-label "$label" -w /work \
    --nprocs "$cpus" --omp-nthreads "$cpus" "${options[@]}" "$@"
  mkdir -p "$QSMBIDS_LOG_DIR/done"
  touch "$QSMBIDS_LOG_DIR/done/sub-$label"
}
