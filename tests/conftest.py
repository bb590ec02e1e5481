"""Settings for the whole suite.

Network safety: `run` pulls a missing image from its registry, as Docker does. No test may ever send
traffic beyond 127.0.0.0/8 (not even a DNS lookup of a public registry), so every pycontain the suite
starts inherits PYCONTAIN_PULL=never; the image tests that pull from their own loopback registry say so
explicitly.

Likewise PYCONTAIN_NETWORK=none: a container's default network is the `pycontain` bridge, which would
add a bridge, nft rules and ip_forward to the machine running the suite. Only the network tests build
bridges, each inside a network namespace it creates, and they name their networks explicitly.
"""

import os

os.environ["PYCONTAIN_PULL"] = "never"
os.environ["PYCONTAIN_NETWORK"] = "none"
