#!/bin/sh
# docker-compose's PostgreSQL, first start only (docker-entrypoint-initdb.d): CES's owner and application roles
# (docs/security.md). The owner owns the database and runs the migrations, which grant the application role.
set -eu
psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
  -v owner_pw="$CES_OWNER_PASSWORD" -v app_pw="$CES_APP_PASSWORD" <<'SQL'
CREATE ROLE ces_owner LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'owner_pw';
CREATE ROLE ces_app LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE PASSWORD :'app_pw';
ALTER DATABASE ces OWNER TO ces_owner;
ALTER SCHEMA public OWNER TO ces_owner;
REVOKE ALL ON DATABASE ces FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
GRANT CONNECT, TEMPORARY ON DATABASE ces TO ces_app;
SQL
