#!/bin/bash
# coturn's docker/coturn/rootfs/usr/local/bin/docker-entrypoint.sh at tag docker/4.6.3-r3,
# unchanged below these lines. Copyright (C) 2011-2013 Citrix Systems and the coturn
# contributors; BSD 3-Clause License (github.com/coturn/coturn, LICENSE).

# If command starts with an option, prepend it with a `turnserver` binary.
if [ "${1:0:1}" == '-' ]; then
  set -- turnserver "$@"
fi

# Evaluate each argument separately to avoid mixing them up in a single `eval`.
expanded=()
for i in "$@"; do
  expanded+=("$(eval "echo $i")")
done

exec "${expanded[@]}"
