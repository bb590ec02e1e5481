#!/bin/sh
# One HTTP request on stdin, one response on stdout: the init marker and the workers' last lines.
read -r method path _
while read -r line && [ "${line%$(printf '\r')}" != "" ]; do :; done
body="init $(cat /data/init.marker 2>/dev/null || echo missing)
$(tail -n 20 /data/workers.log 2>/dev/null)"
printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %s\r\n\r\n%s\n' "$((${#body} + 1))" "$body"
