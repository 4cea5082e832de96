# migrate-job container image.
# Offline build from a local base: `make image` (scripts/container-setup.sh makes localhost/debian:trixie).
# Debian trixie: Python 3.13, and pg_dump/pg_restore 17 (dumps servers up to 17, with TLS).
ARG BASE_IMAGE=docker.io/library/debian:trixie-slim

FROM ${BASE_IMAGE} AS build
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 python3-venv ca-certificates binutils postgresql-client-17 \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /src
COPY pyproject.toml README.md ./
COPY job ./job
# Optional build secret `pip_ca`: a CA bundle for a TLS-intercepting proxy in front of PyPI.
RUN --mount=type=secret,id=pip_ca,target=/run/secrets/pip_ca \
    if [ -s /run/secrets/pip_ca ]; then export PIP_CERT=/run/secrets/pip_ca; fi \
    && python3 -m venv /opt/migrate-job \
    && /opt/migrate-job/bin/pip install --no-cache-dir --no-compile --disable-pip-version-check ".[aws]" \
    && /opt/migrate-job/bin/pip uninstall -y pip
# Trim: strip native extensions, drop tests, keep botocore's models only for the services used
# (Secrets Manager, SSM, RDS, S3, KMS; STS/SSO for IRSA and profiles). Precompile: the root filesystem is
# read-only at run time, and compiling at every start would triple a no-op run's time.
WORKDIR /opt/migrate-job/lib
RUN site=$(echo python3*/site-packages) \
    && find . -depth \( -name 'tests' -o -name '*.pyi' \) -exec rm -rf {} + \
    && find . -name '*.so*' -type f -exec strip --strip-unneeded {} + \
    && find "$site/botocore/data" -mindepth 1 -maxdepth 1 -type d \
         ! -name secretsmanager ! -name ssm ! -name rds ! -name s3 ! -name kms ! -name sts ! -name sso ! -name sso-oidc \
         -exec rm -rf {} + \
    && /opt/migrate-job/bin/python -m compileall -q -j 0 "$site" \
    && mkdir -p /opt/pg/bin \
    && cp /usr/lib/postgresql/17/bin/pg_dump /usr/lib/postgresql/17/bin/pg_restore /opt/pg/bin/

FROM ${BASE_IMAGE}
RUN apt-get update \
    && apt-get install -y --no-install-recommends python3 libpq5 ca-certificates \
    && rm -rf /var/lib/apt/lists/* \
    && useradd --system --uid 10001 --user-group --no-create-home --home-dir /tmp --shell /usr/sbin/nologin migrate
COPY --from=build /opt/migrate-job /opt/migrate-job
COPY --from=build /opt/pg/bin/ /usr/local/bin/
# The AWS RDS CA bundle, when present in the build context (deploy/certs/, fetched by `make image`).
COPY deploy/certs/ /etc/ssl/rds/
COPY migrations /migrations
ENV PATH=/opt/migrate-job/bin:$PATH \
    MIGRATE_DIR=/migrations \
    MIGRATE_LOG_FORMAT=json \
    PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    HOME=/tmp
USER 10001:10001
WORKDIR /tmp
ENTRYPOINT ["migrate-job"]
CMD ["migrate"]
