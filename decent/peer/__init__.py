"""Sans-I/O LISP-Decent protocol core (RFC 9962, RFC 9301)."""
