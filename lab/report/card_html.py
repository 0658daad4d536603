"""The robustness card as one self-contained HTML page: `render_card_html(card) -> str`.

It renders the blocks of `card_layout.layout` with a Jinja2 template (autoescaping on, so class
names and paths from users are escaped by the engine); the page fetches nothing and runs no script.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path

from .card import RobustnessCard
from .card_layout import layout


def render_card_html(card: RobustnessCard) -> str:
    from jinja2 import Environment, FileSystemLoader, StrictUndefined

    env = Environment(loader=FileSystemLoader(Path(__file__).parent / "templates"), autoescape=True,
                      undefined=StrictUndefined, trim_blocks=True, lstrip_blocks=True)
    blocks = [{"kind": type(b).__name__, **asdict(b)} for b in layout(card)]
    return env.get_template("card.html").render(card=card, blocks=blocks)
