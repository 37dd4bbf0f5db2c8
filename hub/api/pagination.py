"""Pagination exactly as the product's API reference describes it.

``page_size``: empty or below 20 gives 20, above 100 gives 100, ``0`` returns every result. The
``0`` case is streamed (``hub.api.streaming``) so a million-row listing does not build a
million-element list in memory.
"""

from __future__ import annotations

from rest_framework.exceptions import ValidationError
from rest_framework.pagination import PageNumberPagination

DEFAULT_PAGE_SIZE = 20
MIN_PAGE_SIZE = 20
MAX_PAGE_SIZE = 100
UNPAGINATED = 0


def parse_page_size(raw: str | None) -> int:
    """Apply the reference's rules to a raw ``page_size`` value; non-numbers are a 400."""
    if raw is None or raw.strip() == "":
        return DEFAULT_PAGE_SIZE
    try:
        size = int(raw)
    except ValueError:
        raise ValidationError({"page_size": ["A valid integer is required."]}) from None
    if size == UNPAGINATED:
        return UNPAGINATED
    if size < MIN_PAGE_SIZE:
        return DEFAULT_PAGE_SIZE
    return min(size, MAX_PAGE_SIZE)


class HubPagination(PageNumberPagination):
    page_size = DEFAULT_PAGE_SIZE
    page_size_query_param = "page_size"
    max_page_size = MAX_PAGE_SIZE
    page_query_param = "page"

    def wants_everything(self, request) -> bool:
        """True when the caller asked for ``page_size=0`` (every result, unpaginated)."""
        return parse_page_size(request.query_params.get(self.page_size_query_param)) == UNPAGINATED

    def get_page_size(self, request) -> int:
        size = parse_page_size(request.query_params.get(self.page_size_query_param))
        return size or DEFAULT_PAGE_SIZE

    def paginate_queryset(self, queryset, request, view=None):
        raw_page = request.query_params.get(self.page_query_param)
        if raw_page not in (None, "", "last"):
            try:
                if int(raw_page) < 1:
                    raise ValueError
            except ValueError:
                raise ValidationError({"page": ["A positive integer is required."]}) from None
        return super().paginate_queryset(queryset, request, view)

    def get_schema_operation_parameters(self, view):
        parameters = super().get_schema_operation_parameters(view)
        for parameter in parameters:
            if parameter["name"] == self.page_size_query_param:
                parameter["description"] = (
                    "Number of results per page, 20 to 100. Empty or below 20 gives 20; above 100 "
                    "gives 100; 0 returns every result (streamed)."
                )
        return parameters
