#!/bin/bash
# Healthy when the server accepts TCP connections (the init's temporary server does not
# listen on TCP, so "healthy" means initialised). Accepts and ignores the public image's
# flags (--connect, --innodb_initialized, ...).
set -euo pipefail
exec mariadb-admin --protocol=tcp --host=127.0.0.1 --port="${MARIADB_PORT:-3306}" \
  --connect-timeout=2 ping >/dev/null 2>&1
