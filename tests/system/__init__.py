"""System tests: real daemons in Linux network namespaces the tests create (root only)."""
