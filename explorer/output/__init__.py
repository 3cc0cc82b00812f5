"""The output wing: result documents in, text and pictures out (tables, Markdown, JSON, PNG
plots, compare, the density report). It reads documents only: it imports neither the side
registry, the backends nor the lifecycle, so a saved result renders the same anywhere."""
