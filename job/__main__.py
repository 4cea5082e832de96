"""`python -m job` is the same as the `migrate-job` command."""

from job.cli import entry

entry()
