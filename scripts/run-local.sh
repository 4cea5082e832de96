#!/usr/bin/env bash
# `make run`: apply migrations/ for real. With DATABASE_URL (or PG* variables) set, use that database;
# otherwise start (or reuse) an embedded PostgreSQL under .dev/pgdata and use it.
set -euo pipefail
PY=${1:?python}
PGDATA_DIR=${2:?pgdata dir}
if [[ -z "${DATABASE_URL:-}" && -z "${MIGRATE_DATABASE_URL:-}" && -z "${PGHOST:-}${PGDATABASE:-}${PGSERVICE:-}" ]]; then
    url=$("$PY" -m job.devserver start "$PGDATA_DIR")
    export DATABASE_URL="$url"
    embedded=1
else
    embedded=0
fi
export MIGRATE_LOG_FORMAT=${MIGRATE_LOG_FORMAT:-console}
set +e
"$PY" -m job migrate
code=$?
set -e
echo
"$PY" -m job status || true
echo
if [[ $embedded == 1 ]]; then
    echo "Embedded PostgreSQL is running: psql '$DATABASE_URL'"
    echo "Try: DATABASE_URL='$DATABASE_URL' .venv/bin/migrate-job status     (stop it with: make stop)"
fi
exit $code
