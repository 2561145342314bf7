"""decent: a LISP-Decent (RFC 9962) node: xTR, Map-Server and Map-Resolver in one."""

__version__ = "0.1.0"
