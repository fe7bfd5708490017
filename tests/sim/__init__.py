"""The in-process multi-node simulator (fake network, fake clock) and the convergence tests."""
