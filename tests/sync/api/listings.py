"""What a listing yielded, summed up from its pages, for tests of the client.

The client keeps no record of a listing: whether one is complete is judged from the pages it
yields, by the run's own judgment (:class:`sync.listing.ListingPass`). :class:`PagesSeen` gathers
the pages for it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from sync.api.pages import Page
from sync.listing import ListingPass


@dataclass
class PagesSeen:
    """The pages of one listing, in any order: their numbers, items and announcements."""

    #: page numbers, in the order the pages came
    numbers: list[int] = field(default_factory=list)
    #: the run's record of the same pages (what it judges completeness by)
    listed: ListingPass | None = None
    items: int = 0
    quarantined: int = 0
    #: page number -> (total, pages) as that page announced them
    announced: dict[int, tuple[int, int]] = field(default_factory=dict)

    @classmethod
    def of(cls, pages: Iterable[Page[Any]]) -> PagesSeen:
        seen = cls()
        for page in pages:
            seen.add(page)
        return seen

    def add(self, page: Page[Any]) -> None:
        if self.listed is None:
            self.listed = ListingPass(page.endpoint, 1)
        keys = [(b.cvm if page.endpoint == "cvms" else b.app).key for b in page.items]
        self.listed.note(page, keys, [])
        self.numbers.append(page.number)
        self.items += len(page.items)
        self.quarantined += len(page.rejections)
        self.announced[page.number] = (page.total, page.pages)

    @property
    def first_total(self) -> int:
        """The ``total`` page 1 announced."""
        return self.announced[1][0]

    @property
    def planned_pages(self) -> int:
        """The page count page 1 announced (at least 1: page 1 is always fetched)."""
        return max(1, self.announced[1][1])

    @property
    def totals(self) -> set[int]:
        """Every ``total`` some page announced."""
        return {total for total, _ in self.announced.values()}

    @property
    def fleet_changed(self) -> bool:
        """Some page announced another ``total`` or page count than page 1."""
        return len(set(self.announced.values())) > 1

    @property
    def all_planned_pages(self) -> bool:
        """Exactly pages 1..``planned_pages`` came, each once."""
        return sorted(self.numbers) == list(range(1, self.planned_pages + 1))

    @property
    def complete(self) -> bool:
        """Every planned page came and the run would trust the listing for deletions."""
        return (
            self.all_planned_pages
            and self.listed is not None
            and self.listed.incompleteness() is None
        )
