#!/bin/sh
# Entrypoint of the redis:7 stand-in. The official image's server runs with protected mode
# off (other containers connect to it) as the redis user in /data; so does this one.
set -eu
if [ "${1:-}" = redis-server ]; then
    chown redis:redis /data
    shift
    exec setpriv --reuid=redis --regid=redis --init-groups redis-server --protected-mode no "$@"
fi
exec "$@"
