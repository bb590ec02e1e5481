#!/bin/sh
# What the image's config decides: arguments (ENTRYPOINT + CMD), user, directory, environment.
echo "args=$*"
echo "user=$(id -u):$(id -g)"
echo "pwd=$(pwd)"
echo "greeting=$GREETING"
echo "path=$PATH"
