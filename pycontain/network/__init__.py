"""Networking: loopback now; bridge, veth, IPAM and NAT build on this package."""
