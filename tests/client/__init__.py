"""Tests of the command-line clients in decent/client."""
