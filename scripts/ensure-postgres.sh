#!/bin/sh
# Make sure PostgreSQL server binaries exist for the tests, which start their own throwaway
# server with them (tests/postgres.py). Installs Debian's `postgresql` package when none is
# found, without creating or starting Debian's own cluster. Quick and silent when there is
# nothing to do; safe to run any number of times.
set -eu

SERVER_USER=postgres
# Read by postgresql-common's createcluster.conf (include_dir): no "main" cluster on install.
NO_CLUSTER_CONF=/etc/postgresql-common/createcluster.d/spend-tests-no-main-cluster.conf

say() { echo "ensure-postgres: $*" >&2; }

. "$(dirname "$0")/as-root.sh"

server_binaries_present() {
    if [ -n "${PG_BIN:-}" ]; then
        [ -x "$PG_BIN/initdb" ] && [ -x "$PG_BIN/pg_ctl" ] && [ -x "$PG_BIN/postgres" ]
        return
    fi
    for initdb in /usr/lib/postgresql/*/bin/initdb; do
        [ -x "$initdb" ] && return 0
    done
    return 1
}

install_debian_postgresql() {
    if ! command -v apt-get >/dev/null 2>&1; then
        say "no PostgreSQL server found and no apt-get to install one:"
        say "install PostgreSQL's server binaries and set PG_BIN to their bin directory"
        exit 1
    fi
    say "installing Debian's postgresql package (server binaries for the tests)"
    # The tests start their own server on a free port; Debian's default cluster would only
    # occupy 5432 and run a service nobody uses.
    as_root mkdir -p "$(dirname "$NO_CLUSTER_CONF")"
    echo "create_main_cluster = false" | as_root tee "$NO_CLUSTER_CONF" >/dev/null
    as_root apt-get update -qq
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends postgresql
}

# PostgreSQL refuses to run as root, so under root the tests run it as this user; Debian's
# package creates it, a PG_BIN build may not have.
ensure_server_user() {
    if [ "$(id -u)" -eq 0 ] && ! id "$SERVER_USER" >/dev/null 2>&1; then
        say "creating system user $SERVER_USER to run the test server as"
        useradd --system --user-group --home-dir /var/lib/postgresql --no-create-home \
            --shell /bin/bash "$SERVER_USER"
    fi
}

if [ -n "${PG_BIN:-}" ] && ! server_binaries_present; then
    say "PG_BIN=$PG_BIN has no executable initdb, pg_ctl and postgres"
    exit 1
fi
if ! server_binaries_present; then
    install_debian_postgresql
    if ! server_binaries_present; then
        say "postgresql installed, but no /usr/lib/postgresql/*/bin/initdb appeared"
        exit 1
    fi
fi
ensure_server_user
