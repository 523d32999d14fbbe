#!/usr/bin/env bash
# Runs once, when the postgres service starts on an empty volume (the image runs every script in
# /docker-entrypoint-initdb.d). One database per purpose, each owned by a role of its own with its
# own password, as devstack/warehouse.py does for the embedded server of `make stack`:
#   warehouse -> etl_warehouse, totesys -> totesys_app, supplychain -> supplychain_app, airflow -> airflow.
# The passwords come from the postgres service's environment in docker-compose.yaml: local-only
# development values. `docker compose down -v` wipes the volume; the next start runs this again.
set -euo pipefail

create_database() {
  local database=$1 role=$2 password=$3
  # psql variables quote the names (:"x") and the password (:'x'); nothing is spliced by the shell.
  psql --no-psqlrc -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname postgres \
    -v database="$database" -v role="$role" -v password="$password" <<'SQL'
CREATE ROLE :"role" LOGIN PASSWORD :'password';
CREATE DATABASE :"database" OWNER :"role";
SQL
}

create_database warehouse etl_warehouse "$WAREHOUSE_DB_PASSWORD"
create_database totesys totesys_app "$TOTESYS_DB_PASSWORD"
create_database supplychain supplychain_app "$SUPPLYCHAIN_DB_PASSWORD"
create_database airflow airflow "$AIRFLOW_DB_PASSWORD"
