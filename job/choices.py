"""The fixed choice lists of the command line, kept in a module that imports nothing: `--help` and argument
parsing need them before (and without) the heavy modules that use them."""

LAYOUTS = ("auto", "numbered", "golang", "flyway")  # job.source: MIGRATE_FORMAT / --layout
ORDERS = ("numeric", "lexical")  # job.source: MIGRATE_ORDER / --order
MODES = ("resume", "restart", "mark-applied", "forget")  # job.repair: repair --mode
STYLES = ("markers", "dbmate", "rollback", "updown", "flyway")  # job.scaffold: create --style
FLEET_ACTIONS = ("migrate", "status", "validate", "wait-for-version")  # job.fleet: fleet ACTION
