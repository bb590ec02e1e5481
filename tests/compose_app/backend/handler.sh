#!/bin/sh
# One HTTP request on stdin, one response on stdout; /health is what the health check asks.
read -r method path _
while read -r line && [ "${line%$(printf '\r')}" != "" ]; do :; done
if [ "$path" = /health ]; then
    body=ok
else
    body="backend $(hostname) answers $method $path"
fi
printf 'HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\nContent-Length: %s\r\n\r\n%s\n' "$((${#body} + 1))" "$body"
