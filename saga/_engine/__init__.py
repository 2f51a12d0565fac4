"""The engine's internals behind :class:`saga.Coordinator`: drive, decide, execute, leases, worker."""
