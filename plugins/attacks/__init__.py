"""Built-in attacks, one module per attack, each registered through its own entry point."""
