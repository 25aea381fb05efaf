#!/bin/bash
# Entrypoint for chaos-mariadb: initialise the data dir on first start from the environment,
# then run mariadbd in the foreground. The environment follows the public mariadb image.
set -euo pipefail

note() { printf '[entrypoint] %s\n' "$*" >&2; }
fail() {
  note "error: $*"
  exit 1
}

if [[ "${1:-}" == -* ]]; then
  set -- mariadbd "$@"
fi
if [[ "${1:-}" != mariadbd && "${1:-}" != mysqld ]]; then
  exec "$@"
fi
shift
args=("$@")

ROOT_PASSWORD="${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}"
DATABASE="${MARIADB_DATABASE:-${MYSQL_DATABASE:-}}"
APP_USER="${MARIADB_USER:-${MYSQL_USER:-}}"
APP_PASSWORD="${MARIADB_PASSWORD:-${MYSQL_PASSWORD:-}}"
REPL_USER="${MARIADB_REPLICATION_USER:-}"
REPL_PASSWORD="${MARIADB_REPLICATION_PASSWORD:-}"
MASTER_HOST="${MARIADB_MASTER_HOST:-${MARIADB_PRIMARY_HOST:-}}"
MASTER_PORT="${MARIADB_MASTER_PORT:-3306}"
MODE="${MARIADB_REPLICATION_MODE:-}"
DATADIR=/var/lib/mysql
SOCKET=/run/mysqld/mysqld.sock

has_arg() {
  local a
  for a in "${args[@]+"${args[@]}"}"; do
    [[ "$a" == "$1" || "$a" == "$1="* ]] && return 0
  done
  return 1
}

case "$MODE" in
  "") ;;
  primary | master)
    has_arg --log-bin || args+=(--log-bin=mysql-bin)
    has_arg --server-id || args+=("--server-id=${MARIADB_SERVER_ID:-1}")
    ;;
  replica | slave)
    [[ -n "$MASTER_HOST" ]] || fail "MARIADB_REPLICATION_MODE=replica needs MARIADB_MASTER_HOST"
    has_arg --server-id || args+=("--server-id=${MARIADB_SERVER_ID:-2}")
    has_arg --relay-log || args+=(--relay-log=relay-bin)
    ;;
  *) fail "MARIADB_REPLICATION_MODE must be primary or replica, got '$MODE'" ;;
esac

# SQL string literal escaping: backslash, then single quote.
sql_str() {
  local s="${1//\\/\\\\}"
  printf "'%s'" "${s//\'/\\\'}"
}
# shellcheck disable=SC2016 # the backticks are SQL identifier quotes
sql_ident() { printf '`%s`' "${1//\`/\`\`}"; }

mkdir -p /run/mysqld "$DATADIR"
chown mysql:mysql /run/mysqld "$DATADIR"
rm -f "$SOCKET" "$SOCKET.lock"

if [[ ! -d "$DATADIR/mysql" ]]; then
  if [[ -z "$ROOT_PASSWORD" && -z "${MARIADB_ALLOW_EMPTY_ROOT_PASSWORD:-}" ]]; then
    fail "set MARIADB_ROOT_PASSWORD (or MARIADB_ALLOW_EMPTY_ROOT_PASSWORD=1)"
  fi
  if [[ -n "$REPL_USER" && -z "$REPL_PASSWORD" ]]; then
    fail "MARIADB_REPLICATION_USER needs MARIADB_REPLICATION_PASSWORD"
  fi
  note "initialising $DATADIR"
  mariadb-install-db --user=mysql --datadir="$DATADIR" --skip-test-db \
    --auth-root-authentication-method=normal >/dev/null
  mariadbd --user=mysql --datadir="$DATADIR" --socket="$SOCKET" --skip-networking \
    "${args[@]+"${args[@]}"}" &
  temp_pid=$!
  for _ in $(seq 1 60); do
    mariadb-admin --socket="$SOCKET" -uroot ping >/dev/null 2>&1 && break
    kill -0 "$temp_pid" 2>/dev/null || fail "the temporary server died during initialisation"
    sleep 0.5
  done
  mariadb-admin --socket="$SOCKET" -uroot ping >/dev/null 2>&1 ||
    fail "the temporary server did not start within 30 s"

  sql="SET @@SESSION.SQL_LOG_BIN=0;
DELETE FROM mysql.global_priv WHERE User='' OR (User='root' AND Host NOT IN ('localhost'));
SET PASSWORD FOR 'root'@'localhost' = PASSWORD($(sql_str "$ROOT_PASSWORD"));
CREATE USER 'root'@'%' IDENTIFIED BY $(sql_str "$ROOT_PASSWORD");
GRANT ALL ON *.* TO 'root'@'%' WITH GRANT OPTION;
FLUSH PRIVILEGES;
SET @@SESSION.SQL_LOG_BIN=1;
"
  if [[ -n "$DATABASE" ]]; then
    sql+="CREATE DATABASE IF NOT EXISTS $(sql_ident "$DATABASE");
"
  fi
  if [[ -n "$APP_USER" && -n "$APP_PASSWORD" ]]; then
    sql+="CREATE USER $(sql_str "$APP_USER")@'%' IDENTIFIED BY $(sql_str "$APP_PASSWORD");
"
    if [[ -n "$DATABASE" ]]; then
      sql+="GRANT ALL ON $(sql_ident "$DATABASE").* TO $(sql_str "$APP_USER")@'%';
"
    fi
  fi
  if [[ -n "$REPL_USER" && -z "$MASTER_HOST" ]]; then
    sql+="CREATE USER $(sql_str "$REPL_USER")@'%' IDENTIFIED BY $(sql_str "$REPL_PASSWORD");
GRANT REPLICATION SLAVE, REPLICATION CLIENT ON *.* TO $(sql_str "$REPL_USER")@'%';
"
  fi
  if [[ -n "$MASTER_HOST" ]]; then
    [[ -n "$REPL_USER" ]] || fail "MARIADB_MASTER_HOST needs MARIADB_REPLICATION_USER/PASSWORD"
    sql+="CHANGE MASTER TO MASTER_HOST=$(sql_str "$MASTER_HOST"), MASTER_PORT=$((MASTER_PORT)),
  MASTER_USER=$(sql_str "$REPL_USER"), MASTER_PASSWORD=$(sql_str "$REPL_PASSWORD"),
  MASTER_CONNECT_RETRY=2;
START SLAVE;
"
  fi
  printf '%s' "$sql" | MYSQL_PWD="" mariadb --socket="$SOCKET" -uroot --binary-mode

  export MYSQL_PWD="$ROOT_PASSWORD"
  for f in /docker-entrypoint-initdb.d/*; do
    [[ -e "$f" ]] || continue
    case "$f" in
      *.sh)
        note "running $f"
        # shellcheck source=/dev/null
        . "$f"
        ;;
      *.sql)
        note "running $f"
        mariadb --socket="$SOCKET" -uroot ${DATABASE:+"--database=$DATABASE"} <"$f"
        ;;
      *.sql.gz)
        note "running $f"
        gzip -dc "$f" | mariadb --socket="$SOCKET" -uroot ${DATABASE:+"--database=$DATABASE"}
        ;;
      *) note "ignoring $f" ;;
    esac
  done
  mariadb-admin --socket="$SOCKET" -uroot shutdown
  wait "$temp_pid" || true
  unset MYSQL_PWD
  note "initialisation done"
fi

exec mariadbd --user=mysql --datadir="$DATADIR" --socket="$SOCKET" "${args[@]+"${args[@]}"}"
