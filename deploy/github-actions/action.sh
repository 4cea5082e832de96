#!/usr/bin/env bash
# The steps of the composite action in action.yml (inputs arrive as MJ_* environment variables, never in the script):
#   action.sh install   pip-install migrate-job into a venv under RUNNER_TEMP; writes `bin=…` to GITHUB_OUTPUT
#   action.sh run       run the command (MJ_BIN, or the container image MJ_IMAGE); writes `exit-code=…` to
#                       GITHUB_OUTPUT, adds explain-exit-code.sh's advice to the step summary on failure, and exits
#                       with migrate-job's exit code
set -euo pipefail

here=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)

install() {
    local package=${MJ_PACKAGE:-}
    if [ "$package" = none ]; then
        echo "bin=migrate-job" >> "$GITHUB_OUTPUT"
        return
    fi
    if [ -z "$package" ]; then
        package=$(cd "$here/../.." && pwd) # this action's own repository, at the ref the workflow names
    fi
    local venv="${RUNNER_TEMP:-/tmp}/migrate-job-venv"
    "${MJ_PYTHON:-python3}" -m venv "$venv"
    "$venv/bin/python" -m pip install --quiet --disable-pip-version-check "$package"
    echo "bin=$venv/bin/migrate-job" >> "$GITHUB_OUTPUT"
}

# Run the image like deploy/github-actions/migrate.yml does: read-only, no capabilities, settings by name only
# (-e NAME: a secret never appears on a command line), the step summary through a scratch directory that the
# container's uid 10001 can write.
run_image() {
    local -a pass=()
    local name
    while IFS= read -r name; do
        case $name in
            DATABASE_URL | DATABASE_SSL | MIGRATE_* | PG* | AWS_*) pass+=(-e "$name") ;;
        esac
    done < <(compgen -e)
    local out
    out=$(mktemp -d "${RUNNER_TEMP:-/tmp}/migrate-job.XXXXXX")
    chmod 0777 "$out"
    local status=0
    docker run --rm --read-only --tmpfs /tmp:rw,size=64m \
        --cap-drop ALL --security-opt no-new-privileges \
        "${pass[@]}" -e GITHUB_ACTIONS -e GITHUB_REPOSITORY -e GITHUB_RUN_ID \
        -e GITHUB_STEP_SUMMARY=/github-out/summary.md -v "$out:/github-out" \
        "$MJ_IMAGE" "$@" || status=$?
    if [ -f "$out/summary.md" ] && [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
        cat "$out/summary.md" >> "$GITHUB_STEP_SUMMARY"
    fi
    rm -rf "$out"
    return "$status"
}

run() {
    local -a command extra args
    read -r -a command <<< "${MJ_COMMAND:-migrate}"
    read -r -a extra <<< "${MJ_ARGS:-}"
    if [ "${#command[@]}" -eq 0 ]; then
        command=(migrate)
    fi
    args=("${command[@]}")
    if [ -n "${MJ_DIR:-}" ]; then args+=(--dir "$MJ_DIR"); fi
    if [ -n "${MJ_ENV:-}" ]; then args+=(--env "$MJ_ENV"); fi
    case ${MJ_DRY_RUN:-false} in
        true) args+=(--dry-run) ;;
        false | "") ;;
        *)
            echo "::error::dry-run must be true or false, not '${MJ_DRY_RUN}'"
            echo "exit-code=2" >> "$GITHUB_OUTPUT"
            exit 2
            ;;
    esac
    args+=("${extra[@]}")
    local code=0
    if [ -n "${MJ_IMAGE:-}" ]; then
        run_image "${args[@]}" || code=$?
    else
        "${MJ_BIN:-migrate-job}" "${args[@]}" || code=$?
    fi
    echo "exit-code=$code" >> "$GITHUB_OUTPUT"
    if [ "$code" -ne 0 ] && [ -n "${GITHUB_STEP_SUMMARY:-}" ]; then
        bash "$here/explain-exit-code.sh" "$code" >> "$GITHUB_STEP_SUMMARY"
    fi
    exit "$code"
}

case ${1:-} in
    install) install ;;
    run) run ;;
    *)
        echo "usage: action.sh install|run" >&2
        exit 2
        ;;
esac
