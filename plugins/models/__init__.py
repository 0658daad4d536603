"""Built-in named models, each a model plugin registered through its own entry point."""
