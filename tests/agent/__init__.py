"""Agent tests: drivers (contract suite against real local servers), HSM operations, tasks."""
