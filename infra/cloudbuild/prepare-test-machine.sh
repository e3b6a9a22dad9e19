#!/usr/bin/env bash
# Makes a python:3.12 (Debian) build container a machine `make test` runs on, as the project's own
# machines are: Java 17 and the gcloud SDK's Pub/Sub emulator, and the PostgreSQL and MariaDB
# servers the cross-driver tests use (127.0.0.1, trust auth / root without password, database test).
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive

apt-get update -qq
apt-get install -y -qq --no-install-recommends ca-certificates curl gnupg openjdk-17-jre-headless \
  postgresql mariadb-server >/dev/null

curl -fsSL https://packages.cloud.google.com/apt/doc/apt-key.gpg | gpg --dearmor -o /usr/share/keyrings/cloud.google.gpg
echo "deb [signed-by=/usr/share/keyrings/cloud.google.gpg] https://packages.cloud.google.com/apt cloud-sdk main" \
  > /etc/apt/sources.list.d/google-cloud-sdk.list
apt-get update -qq
apt-get install -y -qq --no-install-recommends google-cloud-cli google-cloud-cli-pubsub-emulator >/dev/null

# PostgreSQL: trust local TCP connections, databases test and root.
version="$(ls /etc/postgresql)"
sed -i -E 's/^(host\s+all\s+all\s+(127\.0\.0\.1\/32|::1\/128)\s+)\S+/\1trust/' "/etc/postgresql/$version/main/pg_hba.conf"
pg_ctlcluster "$version" main start
for db in test root; do
  su postgres -c "psql -tAc \"SELECT 1 FROM pg_database WHERE datname = '$db'\"" | grep -q 1 \
    || su postgres -c "createdb $db"
done

# MariaDB: root without a password over TCP, database test.
start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd -- --user=mysql
for _ in $(seq 30); do mariadb-admin ping >/dev/null 2>&1 && break; sleep 1; done
mariadb -uroot <<'SQL'
CREATE DATABASE IF NOT EXISTS test;
CREATE USER IF NOT EXISTS 'root'@'127.0.0.1' IDENTIFIED BY '';
GRANT ALL PRIVILEGES ON *.* TO 'root'@'127.0.0.1' WITH GRANT OPTION;
ALTER USER 'root'@'localhost' IDENTIFIED VIA mysql_native_password USING PASSWORD('');
FLUSH PRIVILEGES;
SQL
