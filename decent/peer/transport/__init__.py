"""Reliable-transport sessions for registrations: the stream and the protocol."""
