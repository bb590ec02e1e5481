"""Control groups: one per container, on cgroup v1 or v2 (detected once, see base.detect)."""
