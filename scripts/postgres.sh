#!/usr/bin/env bash
# PostgreSQL for the registry tests: on 127.0.0.1:5432, trust auth for local TCP
# connections, database `test` (what MAAS_TEST_POSTGRES_URL defaults to).
# Installs Debian's postgresql when the machine has none; safe to run again.
set -euo pipefail

if ! command -v pg_ctlcluster >/dev/null 2>&1 || [ -z "$(ls /etc/postgresql 2>/dev/null)" ]; then
    echo "installing PostgreSQL"
    apt-get update -q
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q postgresql >/dev/null
fi
version=$(ls /etc/postgresql | sort -V | tail -n 1)
hba=/etc/postgresql/$version/main/pg_hba.conf
if ! grep -q '# maas-tests' "$hba"; then
    # First match wins in pg_hba.conf: the test rules go on top.
    sed -i '1i host all all 127.0.0.1/32 trust # maas-tests\nhost all all ::1/128 trust # maas-tests' "$hba"
    pg_ctlcluster --skip-systemctl-redirect "$version" main reload 2>/dev/null || true
fi
if ! pg_isready -h 127.0.0.1 -p 5432 -q; then
    echo "starting PostgreSQL $version"
    pg_ctlcluster --skip-systemctl-redirect "$version" main start
    for _ in $(seq 1 30); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 1; done
fi
psql -h 127.0.0.1 -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname = 'test'" | grep -q 1 \
    || psql -h 127.0.0.1 -U postgres -qc 'CREATE DATABASE test'
echo "PostgreSQL $version ready on 127.0.0.1:5432"
