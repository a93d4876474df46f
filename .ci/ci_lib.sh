# shellcheck shell=bash
# Shared by the CI stages .ci/container and .ci/slurm (sourced, not run): step
# messages, failure reports and the closing "N passed, N failed, N skipped" line.
# The sourcing script sets CI_NAME and may define ci_cleanup (called on exit, before
# the summary, with the exit status as $1).

T0=$SECONDS
STEP="setup"
PASSED=0
SKIPPED=0

say() { printf '[%s %4ds] %s\n' "$CI_NAME" "$((SECONDS - T0))" "$*"; }
fail() {
  printf '\n[%s] FAILED in step "%s": %s\n' "$CI_NAME" "$STEP" "$*" >&2
  exit 1
}
step() { STEP=$1; say "== $1"; }
ok() { PASSED=$((PASSED + 1)); say "ok: $*"; }
skipped() { SKIPPED=$((SKIPPED + 1)); say "SKIPPED: $*"; }

ci_on_exit() {
  local rc=$?
  if declare -F ci_cleanup >/dev/null; then ci_cleanup "$rc" || true; fi
  if [ "$rc" -ne 0 ]; then
    printf '[%s] FAILED in step "%s" (exit %s, after %ss); see the output above\n' \
      "$CI_NAME" "$STEP" "$rc" "$((SECONDS - T0))" >&2
  fi
  # One closing line in the plain "N passed, N failed" form CI logs understand.
  echo "$CI_NAME: $PASSED passed, $((rc != 0)) failed, $SKIPPED skipped"
}
trap ci_on_exit EXIT

# podman_settings DIR: podman settings that work on this machine kind (no systemd, no
# cgroup delegation), given to podman through CONTAINERS_CONF (exported) so the system
# configuration is untouched; sets ULIMITS, explicit limits because podman's defaults
# exceed this machine's hard limits.
podman_settings() {
  cat >"$1/containers.conf" <<'EOF'
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
EOF
  export CONTAINERS_CONF="$1/containers.conf"
  local nofile
  nofile=$(ulimit -Hn)
  [ "$nofile" = unlimited ] && nofile=65536
  [ "$nofile" -gt 65536 ] && nofile=65536
  # shellcheck disable=SC2034  # used by the sourcing script
  ULIMITS=(--ulimit "nofile=$nofile:$nofile" --ulimit nproc=32768:32768)
}
