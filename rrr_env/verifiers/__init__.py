"""Pure verifiers ``(response, item data) -> Verdict``. None evaluates model text as code."""
