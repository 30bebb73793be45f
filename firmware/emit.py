"""Kernels kept as source and compiled where they run: under a MicroPython code emitter
(`@micropython.viper`: machine words, C-like speed, no allocation) where the build has one,
or as plain Python. Used by mlp (the layer kernel) and protocol (the frame CRC)."""


def build(source, name, namespace):
    """`name` defined by running `source` in `namespace`."""
    exec(source, namespace)
    return namespace[name]


def under(decorator, source, name, namespace=None):
    """`name` compiled with `decorator` (e.g. "@micropython.viper"), or None where this build has no such emitter."""
    try:
        import micropython  # noqa: F401 (CPython has no emitters)
        return build(decorator + "\n" + source, name, namespace if namespace is not None else {})
    except (ImportError, SyntaxError):  # a build without native emitters rejects the decorator
        return None
