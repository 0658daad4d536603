"""The robustness card as a PDF: `render_card_pdf(card) -> bytes`.

fpdf2 draws the blocks of `card_layout.layout` (the same ones the HTML page shows): pure Python,
installed with the rest of egide, no browser or system library needed. The text is set in DejaVu
Sans, the Unicode font matplotlib ships (ε, ∞, ≤ and every class name a user gives print as
they are), embedded in the file so any standard reader shows it the same.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from .card import RobustnessCard
from .card_layout import Bullets, Code, Heading, PageBreak, Paragraph, Table, layout

BODY = 9  # points
SMALL = 7.5
HEADING = {1: 16, 2: 12}
LINE = 4.6  # mm per body line
FLAG_RED = (180, 35, 24)
FLAG_BG = (253, 236, 234)
HEADER_BG = (242, 244, 247)
KEEP_WITH_NEXT = 35  # mm: a heading closer than this to the page's foot starts the next page


def _fonts() -> dict[str, Path]:
    import matplotlib

    ttf = Path(matplotlib.get_data_path()) / "fonts" / "ttf"
    return {"": ttf / "DejaVuSans.ttf", "B": ttf / "DejaVuSans-Bold.ttf", "mono": ttf / "DejaVuSansMono.ttf"}


def render_card_pdf(card: RobustnessCard) -> bytes:
    from fpdf import FPDF

    pdf = FPDF(format="A4", unit="mm")
    pdf.set_margins(16, 16, 16)
    pdf.set_auto_page_break(True, margin=16)
    fonts = _fonts()
    pdf.add_font("DejaVu", "", str(fonts[""]))
    pdf.add_font("DejaVu", "B", str(fonts["B"]))
    pdf.add_font("DejaVuMono", "", str(fonts["mono"]))
    pdf.set_title(card.title)
    pdf.set_author("egide")
    pdf.set_creator(f"egide {card.egide}")
    pdf.set_creation_date(datetime.fromisoformat(card.created))  # the card's date, not the render's
    pdf.alias_nb_pages()
    pdf.footer = lambda: _footer(pdf, card)
    pdf.add_page()
    for block in layout(card):
        _draw(pdf, block)
    return bytes(pdf.output())


def _footer(pdf, card: RobustnessCard) -> None:
    pdf.set_y(-11)
    pdf.set_font("DejaVu", "", SMALL)
    pdf.set_text_color(110, 110, 110)
    sha = card.identity.model_sha256
    pdf.cell(0, 4, f"{card.title} · model SHA-256 {sha[:16] + '…' if sha else 'none'} · {card.created} · "
                   f"page {pdf.page_no()} of {{nb}}", align="C")
    pdf.set_text_color(0, 0, 0)


def _draw(pdf, block) -> None:
    if isinstance(block, PageBreak):
        pdf.add_page()
    elif isinstance(block, Heading):
        if pdf.get_y() > pdf.h - pdf.b_margin - KEEP_WITH_NEXT:
            pdf.add_page()  # a heading never sits alone at the foot of a page
        pdf.ln(2 if block.level > 1 else 0)
        pdf.set_font("DejaVu", "B", HEADING.get(block.level, 11))
        pdf.multi_cell(0, HEADING.get(block.level, 11) * 0.5, block.text, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1.5)
    elif isinstance(block, Paragraph):
        pdf.set_font("DejaVu", "", BODY)
        if block.warning:
            pdf.set_fill_color(*FLAG_BG)
        pdf.multi_cell(0, LINE, block.text, fill=block.warning, align="L", new_x="LMARGIN", new_y="NEXT")
        pdf.ln(1.5)
    elif isinstance(block, Bullets):
        pdf.set_font("DejaVu", "", BODY)
        for item in block.items:
            pdf.cell(5, LINE, "•")
            pdf.multi_cell(pdf.epw - 5, LINE, item, align="L", new_x="LMARGIN", new_y="NEXT")
            pdf.ln(0.6)
        pdf.ln(1.5)
    elif isinstance(block, Table):
        _table(pdf, block)
    elif isinstance(block, Code):
        pdf.set_font("DejaVuMono", "", 6.5)
        pdf.set_fill_color(*HEADER_BG)
        pdf.multi_cell(0, 3.1, block.text, fill=True, new_x="LMARGIN", new_y="NEXT")


def _table(pdf, block: Table) -> None:
    from fpdf.fonts import FontFace

    has_header = any(block.header)
    columns = len(block.header)
    pdf.set_font("DejaVu", "", BODY if columns <= 6 else SMALL)
    widths = tuple(block.widths) if block.widths else None
    with pdf.table(col_widths=widths, first_row_as_headings=has_header, text_align="LEFT", line_height=LINE,
                   headings_style=FontFace(emphasis="BOLD", fill_color=HEADER_BG), padding=1) as table:
        for row in ([block.header] if has_header else []) + block.rows:
            cells = table.row()
            for value in row:
                failed = value == "FAILED"
                cells.cell(value, style=FontFace(emphasis="BOLD", color=(255, 255, 255), fill_color=FLAG_RED)
                           if failed else None)
    if block.caption:
        pdf.set_font("DejaVu", "", SMALL)
        pdf.set_text_color(90, 90, 90)
        pdf.multi_cell(0, 3.6, block.caption, align="L", new_x="LMARGIN", new_y="NEXT")
        pdf.set_text_color(0, 0, 0)
    pdf.ln(2.5)
