"""How ``[storage] buffer_budget`` is shared out: the memory formula's Arrow bytes, by use.

The Arrow bytes of rows held in memory stay within ``buffer_budget``:

* buffered partitions, up to :data:`SEAL_SHARE_OF_BUDGET` of it: above, the largest are sealed
  early (:class:`~recorder.storage.sealing.SealPolicy`);
* partitions handed to the publisher, up to :data:`PUBLISH_SHARE_OF_BUDGET`: due partitions
  beyond it wait, buffered, for the publisher to make room. When publication lags and the two
  together run over, the largest partitions' rows move to spill files
  (:mod:`recorder.storage.spill`) instead of growing the resident set;
* the rest is the room for rows not yet durable while storage refuses writes; beyond it the
  oldest are dropped and logged as ``storage`` gaps (:mod:`recorder.flush`).
"""

from dataclasses import dataclass

SEAL_SHARE_OF_BUDGET = 0.75
"""The share of ``buffer_budget`` above which buffered partitions are sealed early."""
PUBLISH_SHARE_OF_BUDGET = 0.1
"""The share of ``buffer_budget`` handed to the publisher at once. Above this and the seal share
together, publication lags and the largest partitions' rows are moved to spill files; the rest
of the budget is the room for rows waiting to be logged while storage refuses writes."""


@dataclass(frozen=True, slots=True)
class WriterBudgets:
    """How the service shares ``[storage] buffer_budget`` out to its dataset writer.

    Attributes:
        seal: Arrow bytes buffered above which the largest partitions are sealed early.
        publish: Arrow bytes of partitions handed to the publisher at once.
    """

    seal: int
    publish: int

    @classmethod
    def of(cls, buffer_budget: int) -> "WriterBudgets":
        """The shares of ``buffer_budget``.

        >>> WriterBudgets.of(1000)
        WriterBudgets(seal=750, publish=100)
        """
        return cls(
            round(buffer_budget * SEAL_SHARE_OF_BUDGET),
            round(buffer_budget * PUBLISH_SHARE_OF_BUDGET),
        )
