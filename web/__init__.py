"""The Flask server (JSON API and web lab). Not built yet: see the web issue."""
