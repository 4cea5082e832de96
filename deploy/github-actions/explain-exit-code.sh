#!/usr/bin/env bash
# Print (as Markdown) what a migrate-job exit code means for the deploy. Usage: explain-exit-code.sh CODE
# The codes are job/errors.py's ExitCode; deploy/README.md has the same table.
set -euo pipefail
code=${1:?usage: explain-exit-code.sh CODE}
case $code in
    0) what="success, or nothing to do"; action="roll out" ;;
    1) what="a migration failed and was rolled back (earlier ones stay applied), or lock-timeout retries ran out"; action="stop the rollout; fix the migration" ;;
    2) what="usage or configuration error"; action="fix the task/job definition or the workflow's settings" ;;
    3) what="the advisory lock was not acquired in time: another runner is migrating"; action="retry later" ;;
    4) what="validation failed (bad files, edited or removed applied files, failed entries, out-of-order versions, files that differ from migrate-job.sum, a lint error); nothing was applied"; action="fix the files, or run migrate-job repair (an intended change: migrate-job hash)" ;;
    5) what="database unreachable, or the connection was lost mid-run (the in-flight migration left no trace)"; action="retry; check the network path and security groups" ;;
    6) what="the pre-migration backup/snapshot failed; nothing was applied"; action="investigate the backup (permissions, MIGRATE_BACKUP_TIMEOUT)" ;;
    7) what="the production guard refused"; action="confirm explicitly (MIGRATE_CONFIRM_PRODUCTION=yes)" ;;
    8) what="fleet: some targets failed, the others succeeded (the report and the target.finished log lines name each failed target and why)"; action="fix those targets and rerun: each target's history decides what is left" ;;
    9) what="the database is read-only (a hot standby or replica, a reader endpoint, or default_transaction_read_only=on); nothing changed"; action="point the job at the writer (primary) endpoint; retry after a failover" ;;
    10) what="a callback failed (beforeMigrate: nothing applied; beforeEachMigrate/afterEachMigrate: that migration rolled back; afterMigrate: the migrations stay applied)"; action="fix the callback named in the log and rerun" ;;
    130 | 143) what="interrupted by SIGINT/SIGTERM (rolled back, lock released)"; action="rerun" ;;
    *) what="not a migrate-job exit code (the runner or the task failed before or around the job)"; action="read the step's log" ;;
esac
printf '### migrate-job exit code %s\n\n%s.\n\n**Next:** %s.\n' "$code" "$what" "$action"
