#!/bin/sh
# Append a line to the shared volume twice a second, and say so on stdout (what `compose logs` shows).
# exec'd sleep would leave the loop; a trap makes the container stop at once on SIGTERM.
trap 'exit 0' TERM INT
n=0
while :; do
    n=$((n + 1))
    line="$(hostname) $(date +%s) tick $n"
    echo "$line" >> /data/workers.log
    echo "$line"
    sleep 0.5 &
    wait $!
done
