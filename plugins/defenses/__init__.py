"""Built-in defenses, one module per defense, each registered through its own entry point."""
