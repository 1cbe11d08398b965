"""Model cards through the SDK: methods of ``Client`` and their module functions.

``card`` answers the version's card (facts from lineage, edited fields at their newest
revision); ``edit_card`` writes the next revision; ``export_card`` renders it as JSON, the
SageMaker Model Card shape, HTML or PDF (the ``cards`` extra); ``import_card`` takes the
human-written fields of a SageMaker card.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from clew.domain import cards as rendering
from clew.domain.cards import Card
from clew.domain.records import VersionRecord
from clew.errors import InvalidInputError

if TYPE_CHECKING:
    from clew.client.client import Client
    from clew.service.protocols import Backend

__all__ = ["card", "edit_card", "export_card", "import_card"]

VersionRef = str | VersionRecord


class CardsMixin:
    """Model cards on either backend."""

    if TYPE_CHECKING:
        _service: Backend

        @property
        def actor(self) -> str: ...

    def card(self, ref: VersionRef) -> Card:
        return self._service.cards.card(_ref(ref))

    def edit_card(self, ref: VersionRef, comment: str = "", **changes: Any) -> Card:
        """Set edited fields (overview, intended_uses, out_of_scope_uses, limitations,
        ethical_considerations, owners, business_problem, business_stakeholders,
        line_of_business); the card's next revision, audited."""
        return self._service.cards.edit(_ref(ref), self.actor, changes, comment)

    def import_card(
        self, ref: VersionRef, document: Mapping[str, Any] | str | Path, comment: str = ""
    ) -> Card:
        """Take the human-written fields of a SageMaker Model Card (a dict, or a JSON file)."""
        return self._service.cards.import_sagemaker(
            _ref(ref), self.actor, _document(document), comment
        )

    def export_card(self, ref: VersionRef, format: str = "json") -> bytes:
        """The card as bytes: ``json`` (clew's own), ``sagemaker``, ``html`` or ``pdf``."""
        return render(self.card(ref), format)


def render(found: Card, format: str) -> bytes:
    if format == "json":
        return _json(found.to_dict())
    if format == "sagemaker":
        return _json(rendering.to_sagemaker(found))
    if format == "html":
        return rendering.to_html(found).encode()
    if format == "pdf":
        return to_pdf(found)
    raise InvalidInputError(
        f"cannot export a card as {format!r}; use one of {', '.join(rendering.FORMATS)}."
    )


def to_pdf(card: Card) -> bytes:
    """The card as a PDF (fpdf2, pure Python: no browser). The built-in Helvetica covers
    Latin-1; other characters print as ``?`` (the JSON and HTML forms keep them)."""
    from clew.extras import require_extra

    require_extra("cards", "a PDF model card")
    from fpdf import FPDF

    pdf = FPDF()
    pdf.set_auto_page_break(auto=True, margin=15)
    pdf.add_page()
    pdf.set_font("Helvetica", "B", 16)
    pdf.multi_cell(0, 10, _latin1(f"Model card: {card.ref}"), new_x="LMARGIN", new_y="NEXT")
    for title, lines in rendering.sections(card):
        pdf.set_font("Helvetica", "B", 12)
        pdf.multi_cell(0, 8, _latin1(title), new_x="LMARGIN", new_y="NEXT")
        pdf.set_font("Helvetica", "", 10)
        for line in lines:
            pdf.multi_cell(0, 5, _latin1(str(line)), new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())


def _latin1(text: str) -> str:
    return text.encode("latin-1", "replace").decode("latin-1")


def _json(data: Any) -> bytes:
    return json.dumps(data, indent=2, sort_keys=True, default=str).encode()


def _document(document: Mapping[str, Any] | str | Path) -> Mapping[str, Any]:
    if isinstance(document, Mapping):
        return document
    path = Path(document)
    try:
        loaded = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InvalidInputError(f"no card file {str(path)!r}; check the path.") from None
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidInputError(f"{str(path)!r} is not a JSON model card ({error}).") from None
    if not isinstance(loaded, Mapping):
        raise InvalidInputError(f"{str(path)!r} is not a JSON object of card sections.")
    return loaded


def _ref(ref: VersionRef) -> str:
    return ref.ref if isinstance(ref, VersionRecord) else ref


def _client() -> Client:
    from clew.client.default import get_client

    return get_client()


def card(ref: VersionRef) -> Card:
    return _client().card(ref)


def edit_card(ref: VersionRef, comment: str = "", **changes: Any) -> Card:
    return _client().edit_card(ref, comment, **changes)


def import_card(
    ref: VersionRef, document: Mapping[str, Any] | str | Path, comment: str = ""
) -> Card:
    return _client().import_card(ref, document, comment)


def export_card(ref: VersionRef, format: str = "json") -> bytes:
    return _client().export_card(ref, format)
