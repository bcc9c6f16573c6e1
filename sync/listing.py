"""One endpoint's listing: its passes, what each showed, and whether it can be trusted.

A listing pages through one listed endpoint (:class:`~sync.endpoints.EndpointSpec`:
``GET /cvms/paginated`` or ``GET /apps``) and stages what may have changed. What a pass showed
is kept as keys in memory (:class:`ListingPass`): the items staged, the items skipped because
their bytes equal the stored ones, and the ids of quarantined items.
So judging completeness and inferring deletions is set arithmetic, not queries:

- a pass is *complete* when every page agreed on the total, that total equals the distinct items
  listed (valid or quarantined), and no quarantined item lacks an id (any CVM could be it);
- a pass that is not is read again, up to :data:`MAX_PASSES` in all; the staged rows of earlier
  passes are then discarded, since the consistent pass is the truth;
- only a complete listing infers deletions: the target's stored live entities it did not show.

The judgment is made here and nowhere else; :mod:`sync.run` calls :func:`read_listing` once per
endpoint and the apply receives its :class:`ListingResult`.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any, Final

from sync.api.pages import Page, Rejection
from sync.endpoints import EndpointSpec
from sync.store.staging import Stager

log = logging.getLogger(__name__)

#: A drifted listing is read again up to this many times in all before it is called incomplete.
MAX_PASSES: Final = 3

#: Called after each staged page: (endpoint, pages staged, pages planned, items staged).
OnPage = Callable[[str, int, int, int], None]

#: The pages of one pass, given the stored digests of the entities not listed yet.
PageSource = Callable[[dict[str, bytes]], AsyncIterator[Page[Any]]]


@dataclass(frozen=True)
class ListingResult:
    """What one endpoint's listing saw, and whether it may be trusted for deletions.

    ``items`` and ``quarantined`` add up every pass; ``unchanged`` counts the items of the final
    pass whose bytes equal the stored ones (never staged); ``gone`` holds the stored live entities
    of the target that a complete listing did not show.
    """

    endpoint: str  # its EndpointSpec.name
    passes: int
    pages: int
    items: int
    quarantined: int
    api_total: int
    distinct: int
    complete: bool
    reason: str | None = None
    unchanged: int = 0
    gone: tuple[str, ...] = ()


@dataclass
class ListingPass:
    """What one pass of one listing showed: keys only, so a fleet costs a few MB."""

    endpoint: str  # its EndpointSpec.name
    pass_no: int
    #: Stored digest by key of the target's live entities this pass has not shown yet; an entry
    #: leaves it when its entity is listed, so what is left at the end was not seen.
    known: dict[str, bytes] = field(default_factory=dict)
    staged: set[str] = field(default_factory=set)  # new or changed items, written to staging
    skipped: set[str] = field(default_factory=set)  # items whose bytes equal the stored ones
    held: set[str] = field(default_factory=set)  # ids of quarantined items
    unkeyed: int = 0  # quarantined items without an id
    totals: set[int] = field(default_factory=set)  # the totals the pages announced
    planned: int = 0  # the most pages any page announced
    pages: int = 0
    items: int = 0  # items listed validly (staged, skipped or set aside as unstorable)
    quarantined: int = 0  # invalid items plus valid ones with an unstorable value
    unstorable: int = 0

    def note(self, page: Page[Any], staged: list[str], set_aside: list[Rejection]) -> None:
        """Count what one staged page showed; its listed entities leave :attr:`known`.

        ``staged`` are the keys written to staging; ``set_aside`` the valid items the stager
        quarantined for a value no column can hold (held, like the page's invalid items).
        """
        known = self.known
        for key in staged:
            known.pop(key, None)
        for key in page.unchanged:
            known.pop(key, None)
        self.staged.update(staged)
        self.skipped.update(page.unchanged)
        for rejection in (*page.rejections, *set_aside):
            if rejection.entity_id is None:
                self.unkeyed += 1
            else:
                self.held.add(rejection.entity_id)
        self.totals.add(page.total)
        self.planned = max(self.planned, page.pages)
        self.pages += 1
        self.items += len(page.items) + len(page.unchanged)
        self.quarantined += len(page.rejections) + len(set_aside)
        self.unstorable += len(set_aside)

    @property
    def distinct(self) -> int:
        """Distinct entities shown: listed (staged or skipped) or quarantined with an id."""
        return len(self.staged | self.skipped) + len(self.held - self.staged - self.skipped)

    @property
    def api_total(self) -> int:
        return max(self.totals) if self.totals else 0

    def incompleteness(self) -> str | None:
        """Why this pass cannot be trusted for deletions; ``None`` when it can."""
        if self.unkeyed:
            return f"{self.unkeyed} quarantined item(s) carry no id, so any CVM could be among them"
        if len(self.totals) > 1:
            return f"the API total changed while paging ({min(self.totals)}..{max(self.totals)})"
        if self.distinct != self.api_total:
            return (
                f"the API reported {self.api_total} items but {self.distinct} distinct ones "
                "were listed"
            )
        return None

    def gone(self) -> tuple[str, ...]:
        """Stored live entities of the target that this pass did not show, sorted."""
        return tuple(sorted(self.known.keys() - self.held))


async def read_listing(
    spec: EndpointSpec[Any], pages: PageSource, stager: Stager, on_page: OnPage | None = None
) -> ListingResult:
    """List ``spec``'s endpoint through ``pages``, staging each page, until a pass is consistent.

    A pass with quarantined items that carry no id is not read again: the same items would be
    quarantined again.
    """
    endpoint, entity_type = spec.name, spec.entity_type
    pages_read = items = quarantined = unstorable = 0
    for pass_no in range(1, MAX_PASSES + 1):
        listing = ListingPass(endpoint, pass_no, known=stager.load_known(entity_type))
        async for page in pages(listing.known):
            listing.note(page, *stager.stage(page, pass_no))
            if on_page is not None:
                on_page(endpoint, listing.pages, listing.planned, items + listing.items)
        stager.flush()
        log.debug(
            "%s listing pass %d: %d pages, %d items, %d quarantined, total %s",
            endpoint,
            pass_no,
            listing.pages,
            listing.items,
            listing.quarantined,
            "..".join(str(t) for t in sorted({min(listing.totals), max(listing.totals)}))
            if listing.totals
            else "-",
        )
        pages_read += listing.pages
        items += listing.items
        quarantined += listing.quarantined
        unstorable += listing.unstorable
        reason = listing.incompleteness()
        if reason is None and pass_no > 1:
            stager.discard_earlier_passes(entity_type, pass_no)
        if reason is None or listing.unkeyed or pass_no == MAX_PASSES:
            break
        log.warning(
            "%s listing pass %d inconsistent: %s; reading it again", endpoint, pass_no, reason
        )
    if reason is not None:
        log.warning("%s listing incomplete: %s; no deletions will be inferred", endpoint, reason)
    return ListingResult(
        endpoint=endpoint,
        passes=listing.pass_no,
        pages=pages_read,
        items=items - unstorable,
        quarantined=quarantined,
        api_total=listing.api_total,
        distinct=listing.distinct,
        complete=reason is None,
        reason=reason,
        unchanged=len(listing.skipped - listing.staged),
        gone=listing.gone() if reason is None else (),
    )
