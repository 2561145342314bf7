"""The asyncio shell: sockets, timers and status snapshots around the core."""
