"""One sub-package per paper. Each exposes ``SPEC`` (a :class:`paperzoo.api.MethodSpec`)."""
