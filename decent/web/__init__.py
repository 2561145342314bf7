"""The node's web face: JSON API and status pages (aiohttp)."""
