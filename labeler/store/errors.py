"""What the store refuses, as exceptions whose message says what is wrong (shown to labelers and admins)."""


class StoreError(ValueError):
    """A request the store refuses; the message says what is wrong."""


class RankingRejected(StoreError):
    """A submitted ranking failed validation."""


class LeaseGone(RankingRejected):
    """The page's set is not (or no longer) this labeler's to submit: show them their current set instead."""
