"""The LISP roles, one object each: Map-Server, Map-Resolver, ITR, ETR, prober."""
