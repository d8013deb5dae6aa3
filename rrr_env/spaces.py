"""Gymnasium spaces for text actions and chat-message observations.

``gymnasium.spaces.Text`` only contains strings drawn from its ``charset`` (alphanumerics by
default), so it rejects spaces, punctuation and most Unicode, which every model response has.
These spaces accept any Unicode string up to a length bound.
"""

from __future__ import annotations

from typing import Any

from gymnasium import spaces

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
