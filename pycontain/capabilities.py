"""Linux capabilities by name: each one's bit (<linux/capability.h>), for capset(2) and PR_CAPBSET_DROP.

prctl(2) and capset(2) are called through csrc/ rather than python-prctl, whose import cost 0.6 ms of
every start (it builds its capability classes).
"""

from __future__ import annotations

CAPABILITIES = {name: bit for bit, name in enumerate((
    "CHOWN", "DAC_OVERRIDE", "DAC_READ_SEARCH", "FOWNER", "FSETID", "KILL", "SETGID", "SETUID", "SETPCAP",
    "LINUX_IMMUTABLE", "NET_BIND_SERVICE", "NET_BROADCAST", "NET_ADMIN", "NET_RAW", "IPC_LOCK", "IPC_OWNER",
    "SYS_MODULE", "SYS_RAWIO", "SYS_CHROOT", "SYS_PTRACE", "SYS_PACCT", "SYS_ADMIN", "SYS_BOOT", "SYS_NICE",
    "SYS_RESOURCE", "SYS_TIME", "SYS_TTY_CONFIG", "MKNOD", "LEASE", "AUDIT_WRITE", "AUDIT_CONTROL", "SETFCAP",
    "MAC_OVERRIDE", "MAC_ADMIN", "SYSLOG", "WAKE_ALARM", "BLOCK_SUSPEND", "AUDIT_READ", "PERFMON", "BPF",
    "CHECKPOINT_RESTORE",
))}


def capability_mask(caps: tuple[str, ...]) -> int:
    mask = 0
    for name in caps:
        mask |= 1 << CAPABILITIES[name]
    return mask
