#!/bin/sh
# A node of the compose lab: the config mounted at /etc/decent/node.toml
# writes the lab's network as ${DECENT_NET} (compose/.env sets it, once for
# every file); fill it in, then run decent on the result. The image's own
# entrypoint (`decent run`) stays for configs without the placeholder.
set -eu
case "${DECENT_NET:-}" in
    "" | *[!0-9.]* | .* | *. | *..*)
        echo "decent-compose-node: DECENT_NET is '${DECENT_NET:-}'; set the first" \
            "three octets of the lab's /24 in compose/.env" >&2
        exit 2
        ;;
esac
mkdir -p /run/decent
sed "s/\${DECENT_NET}/$DECENT_NET/g" /etc/decent/node.toml >/run/decent/node.toml
exec decent run --config /run/decent/node.toml "$@"
