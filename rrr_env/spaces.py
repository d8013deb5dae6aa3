"""Gymnasium spaces for text actions and chat-message observations.

``gymnasium.spaces.Text`` only contains strings drawn from its ``charset`` (alphanumerics by
default), so it rejects spaces, punctuation and most Unicode, which every model response has.
These spaces accept any Unicode string up to a length bound.

They also work with ``gymnasium.vector.AsyncVectorEnv``'s default ``shared_memory=True``:
text has no fixed size, so it cannot live in a fixed shared buffer as arrays do; the functions
registered below with Gymnasium's ``create_shared_memory`` / ``write_to_shared_memory`` /
``read_from_shared_memory`` pass each observation through one multiprocessing queue instead,
with a shared counter per env, and the parent reads the newest one per env when the batch is
read.

A vector env's action space over :class:`UnicodeText` is a :class:`TextBatch`, which checks a
batch of actions (one ``str`` per env) before Gymnasium iterates it.
"""

from __future__ import annotations

import copy
import queue
from collections.abc import Iterable, Iterator, Sequence
from types import ModuleType
from typing import Any

from gymnasium import spaces
from gymnasium.vector.utils import (
    batch_space,
    create_shared_memory,
    iterate,
    read_from_shared_memory,
    write_to_shared_memory,
)

# What `sample()` draws from: printable ASCII plus a few non-ASCII letters and symbols, so that
# sampled actions exercise the same code paths as real model text.
_SAMPLE_CHARS = tuple(chr(c) for c in range(32, 127)) + tuple("\néßøπ×÷−∑你好😀")

ROLES = ("system", "user", "assistant", "tool")


class UnicodeText(spaces.Space[str]):
    """Any ``str`` of ``min_length`` to ``max_length`` characters.

    Args:
        max_length: Largest accepted length in characters.
        min_length: Smallest accepted length in characters.
        seed: Seed for ``sample()``.
    """

    def __init__(self, max_length: int, *, min_length: int = 0, seed: int | None = None):
        if not 0 <= min_length <= max_length:
            raise ValueError(f"need 0 <= min_length <= max_length, got {min_length}, {max_length}")
        self.min_length = int(min_length)
        self.max_length = int(max_length)
        super().__init__(dtype=str, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        """Text cannot be flattened to a fixed-size array."""
        return False

    def sample(self, mask: Any = None, probability: Any = None) -> str:
        """A random string of at most ``min(max_length, 64)`` characters."""
        if mask is not None or probability is not None:
            raise NotImplementedError("UnicodeText.sample() takes no mask or probability")
        upper = max(self.min_length, min(self.max_length, 64))
        length = int(self.np_random.integers(self.min_length, upper + 1))
        picks = self.np_random.integers(len(_SAMPLE_CHARS), size=length)
        return "".join(_SAMPLE_CHARS[i] for i in picks)

    def contains(self, x: Any) -> bool:
        """True for a ``str`` whose length is within the bounds."""
        return isinstance(x, str) and self.min_length <= len(x) <= self.max_length

    def __repr__(self) -> str:
        return f"UnicodeText({self.min_length}, {self.max_length})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, UnicodeText)
            and other.min_length == self.min_length
            and other.max_length == self.max_length
        )


class Conversation(spaces.Space[list]):
    """A list of chat messages ``{"role": str, "content": str}``.

    Args:
        max_messages: Largest accepted number of messages.
        max_content_length: Largest accepted length of one message's content.
        seed: Seed for ``sample()``.
    """

    def __init__(
        self, max_messages: int, max_content_length: int, *, seed: int | None = None
    ) -> None:
        if max_messages < 1:
            raise ValueError(f"max_messages must be >= 1, got {max_messages}")
        self.max_messages = int(max_messages)
        self.content = UnicodeText(max_content_length)
        super().__init__(dtype=None, seed=seed)

    @property
    def is_np_flattenable(self) -> bool:
        """Conversations cannot be flattened to a fixed-size array."""
        return False

    def seed(self, seed: int | None = None) -> int | list[int] | dict[str, int]:
        """Seed this space and its content space."""
        seeded = super().seed(seed)
        self.content.seed(int(self.np_random.integers(2**31)))
        return seeded

    def sample(self, mask: Any = None, probability: Any = None) -> list[dict[str, str]]:
        """A random conversation of one to four messages."""
        if mask is not None or probability is not None:
            raise NotImplementedError("Conversation.sample() takes no mask or probability")
        count = int(self.np_random.integers(1, min(self.max_messages, 4) + 1))
        roles = self.np_random.integers(len(ROLES), size=count)
        return [{"role": ROLES[r], "content": self.content.sample()} for r in roles]

    def contains(self, x: Any) -> bool:
        """True for a list of messages with known roles and bounded contents."""
        return (
            isinstance(x, list)
            and len(x) <= self.max_messages
            and all(
                isinstance(m, dict)
                and m.keys() == {"role", "content"}
                and m["role"] in ROLES
                and self.content.contains(m["content"])
                for m in x
            )
        )

    def __repr__(self) -> str:
        return f"Conversation(max_messages={self.max_messages}, content={self.content!r})"

    def __eq__(self, other: object) -> bool:
        return (
            isinstance(other, Conversation)
            and other.max_messages == self.max_messages
            and other.content == self.content
        )


# -- vector envs: a batch of text actions -----------------------------------------------------


class TextBatch(spaces.Tuple):
    """The action space of a vector env over a :class:`UnicodeText` space: one str per env.

    Gymnasium batches a custom space as a ``Tuple`` and iterates a batch of actions with
    ``iter(actions)``, so a ``str`` batch passed as its characters (``step("ab")`` stepped two
    envs with ``"a"`` and ``"b"``) and a wrong count ended in a bare ``zip()`` error. This
    space's ``iterate`` checks the batch first, for ``SyncVectorEnv`` and ``AsyncVectorEnv``.
    """

    def check_batch(self, actions: Any) -> tuple[Any, ...]:
        """``actions`` as a tuple of one action per env, or a clear error.

        Raises:
            TypeError: for a ``str`` / ``bytes`` or a non-iterable batch.
            ValueError: when the batch does not hold one action per env.
        """
        n = len(self.spaces)
        if isinstance(actions, str | bytes) or not isinstance(actions, Iterable):
            raise TypeError(
                f"a vector env of {n} text envs takes a batch of {n} actions, one str per env "
                f"(a list or tuple), got {type(actions).__name__} {_preview(actions)}"
            )
        batch = tuple(actions)
        if len(batch) != n:
            raise ValueError(
                f"a vector env of {n} text envs takes {n} actions, one per env, got {len(batch)}"
            )
        return batch


def _preview(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 40 else text[:37] + "..."


@batch_space.register(UnicodeText)
def _batch_text_space(space: UnicodeText, n: int = 1) -> TextBatch:
    # As Gymnasium batches a custom space (independent copies, seeded from the space's RNG).
    batched = TextBatch(
        tuple(copy.deepcopy(space) for _ in range(n)), seed=copy.deepcopy(space.np_random)
    )
    rng = copy.deepcopy(space.np_random)
    batched.seed([int(s) for s in rng.integers(0, int(1e8), n)])
    return batched


@iterate.register(TextBatch)
def _iterate_text_batch(space: TextBatch, items: Any) -> Iterator[Any]:
    return iter(space.check_batch(items))


# -- AsyncVectorEnv with shared_memory=True ---------------------------------------------------

#: Seconds the parent waits for an observation that a worker has announced but not delivered.
SHARED_READ_TIMEOUT_S = 60.0


class SharedTextChannel:
    """What ``create_shared_memory`` makes for a text space: a queue and a counter per env.

    A worker puts ``(index, observation)`` on the queue, then counts it; the parent, when it
    reads the batch (after the worker has answered the step), takes from the queue until it
    has every counted observation, so no size limit applies and nothing is stale.
    """

    def __init__(self, n: int, ctx: ModuleType) -> None:
        self.n = n
        self.queue = ctx.Queue()
        self.counts = ctx.Array("q", n, lock=False)
        self._worker_ready = False

    def write(self, index: int, value: Any) -> None:
        """Worker side: send the observation of env ``index``."""
        if not self._worker_ready:
            # A worker may exit with observations nobody read (copy=False, unread batch):
            # do not block its exit on flushing them.
            self.queue.cancel_join_thread()
            self._worker_ready = True
        self.queue.put((index, value))
        self.counts[index] += 1


class SharedTextBatch(Sequence):
    """The parent's view of a :class:`SharedTextChannel`: the newest observation of each env.

    Reading an element takes pending observations from the queue first, so the view stays
    current, as a numpy view of shared memory does. ``copy.deepcopy`` (what
    ``AsyncVectorEnv(copy=True)`` returns) gives a plain tuple, as ``SyncVectorEnv`` does.
    """

    def __init__(self, channel: SharedTextChannel) -> None:
        self._channel = channel
        self._seen = [0] * channel.n
        self._latest: list[Any] = [None] * channel.n

    def _sync(self) -> None:
        channel = self._channel
        while any(seen < count for seen, count in zip(self._seen, channel.counts, strict=True)):
            try:
                index, value = channel.queue.get(timeout=SHARED_READ_TIMEOUT_S)
            except queue.Empty:
                raise RuntimeError(
                    "a vector env worker announced an observation but did not deliver it within "
                    f"{SHARED_READ_TIMEOUT_S:.0f} s (did it die?)"
                ) from None
            self._seen[index] += 1
            self._latest[index] = value

    def __len__(self) -> int:
        return self._channel.n

    def __getitem__(self, index: Any) -> Any:
        self._sync()
        if isinstance(index, slice):
            return tuple(self._latest[index])
        return self._latest[index]

    def __iter__(self) -> Iterator[Any]:
        self._sync()
        return iter(list(self._latest))

    def __deepcopy__(self, memo: dict[int, Any]) -> tuple[Any, ...]:
        return tuple(copy.deepcopy(value, memo) for value in self)

    def __eq__(self, other: object) -> bool:
        if isinstance(other, SharedTextBatch | tuple | list):
            return tuple(self) == tuple(other)
        return NotImplemented

    def __repr__(self) -> str:
        return f"SharedTextBatch({tuple(self)!r})"


@create_shared_memory.register(UnicodeText)
@create_shared_memory.register(Conversation)
def _create_text_channel(
    space: UnicodeText | Conversation, n: int = 1, ctx: ModuleType | None = None
) -> SharedTextChannel:
    if ctx is None:
        import multiprocessing as ctx
    return SharedTextChannel(n, ctx)


@read_from_shared_memory.register(UnicodeText)
@read_from_shared_memory.register(Conversation)
def _read_text_channel(
    space: UnicodeText | Conversation, shared_memory: SharedTextChannel, n: int = 1
) -> SharedTextBatch:
    return SharedTextBatch(shared_memory)


@write_to_shared_memory.register(UnicodeText)
@write_to_shared_memory.register(Conversation)
def _write_text_channel(
    space: UnicodeText | Conversation, index: int, value: Any, shared_memory: SharedTextChannel
) -> None:
    shared_memory.write(index, value)
