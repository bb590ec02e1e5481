"""The executor: carries out an OCI runtime-spec document (config.json + rootfs), and nothing else.

spec.py      the document: defaults, validation of an untrusted bundle, resources -> cgroup limits
executor.py  spec -> clone flags, namespaces to join, mounts as data, the process to exec
state.py     pycontain-oci's own records (one directory per container under --root)
hooks.py     prestart/createRuntime/createContainer/startContainer/poststart/poststop
cli.py       `pycontain-oci`: the runc command line that podman, containerd and Kubernetes call
"""
