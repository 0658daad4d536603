"""Égide's built-in plugins. Each module is declared as an entry point in group "egide"."""
