"""Store kinds: one module per kind owns its arrays' meaning, its ``info()`` lines and its sample view.

Adding a kind: write a :class:`SampleView` subclass in a module of its own
and register it in :data:`VIEWS` under the ``kind`` attribute its writer records.
"""

from bigdl.store.kinds._base import SampleView, check_split
from bigdl.store.kinds.image import ImageView
from bigdl.store.kinds.sequence import SequenceView
from bigdl.store.kinds.tabular import TabularView

#: Store kind (the ``kind`` attribute) -> its sample view class.
VIEWS = {"tabular": TabularView, "image": ImageView, "sequence": SequenceView}

__all__ = ["SampleView", "TabularView", "ImageView", "SequenceView", "VIEWS", "check_split"]
