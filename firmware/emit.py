"""Kernels kept as source and compiled where they run: under a MicroPython code emitter
(`@micropython.viper`: machine words, C-like speed, no allocation) where the build has one,
or as plain Python. Used by mlp (the layer kernel), protocol (the frame CRC) and track (the
model's inputs)."""


def build(source, name, namespace):
    """`name` defined by running `source` in `namespace`."""
    exec(source, namespace)
    return namespace[name]


def same(buf):
    """ptr8/ptr16/ptr32 for the plain-Python build of a viper kernel: the buffer itself."""
    return buf


def under(decorator, source, name, namespace=None):
    """`name` compiled with `decorator` (e.g. "@micropython.viper"), or None where this build has no such emitter.

    The compiler's garbage is collected at once: left in place, the modules imported next settle
    around it and the heap stays in small pieces (measured on the virtual Gen0: ~4 KB contiguous
    after boot instead of ~30 KB; a model blob is one buffer, and so is the hello)."""
    try:
        import micropython  # noqa: F401 (CPython has no emitters)
        kernel = build(decorator + "\n" + source, name, namespace if namespace is not None else {})
    except (ImportError, SyntaxError):  # a build without native emitters rejects the decorator
        return None
    import gc

    gc.collect()
    return kernel
