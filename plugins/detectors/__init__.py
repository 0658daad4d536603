"""Built-in detectors, one module per detector, each registered through its own entry point."""
