#!/bin/bash
# Healthy when the server accepts a TCP login and answers (the initialisation's temporary
# server does not listen on TCP, so "healthy" also means initialised). Accepts and ignores
# the public image's flags (--connect, --innodb_initialized, ...).
set -euo pipefail
export MYSQL_PWD="${MARIADB_ROOT_PASSWORD:-${MYSQL_ROOT_PASSWORD:-}}"
exec mariadb --protocol=tcp --host=127.0.0.1 --port="${MARIADB_PORT:-3306}" --user=root \
  --connect-timeout=2 --batch --skip-column-names --execute='SELECT 1' >/dev/null 2>&1
