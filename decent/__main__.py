"""`python -m decent` entry point."""

from decent.cli import main

raise SystemExit(main())
