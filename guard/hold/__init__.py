"""Hold lifecycle: transitions, timers, the service that wires them (issue 4)."""
