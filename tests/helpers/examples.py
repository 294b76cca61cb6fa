"""How many examples a property test tries: the number it names under Hypothesis's default
profile, a fifth of it under the `unit` profile, which `pytest -m unit` loads (tests/conftest.py)
to keep the unit tier a quick loop. `pytest` alone, and CI, try them all; so does
`pytest -m unit --hypothesis-profile=default`."""

from __future__ import annotations

from hypothesis import Phase, settings

UNIT_PROFILE = "unit"
UNIT_SHARE = 5
FEWEST = 10

_DEFAULT = settings.get_profile("default").max_examples
settings.register_profile(UNIT_PROFILE, max_examples=max(FEWEST, _DEFAULT // UNIT_SHARE))


def examples(n: int) -> int:
    """`n` scaled by the profile in force (read when the test module is imported)."""
    return max(min(n, FEWEST), n * settings().max_examples // _DEFAULT)


def story_settings(n: int) -> settings:
    """For a test that tells random producer stories: `examples(n)` of them, no deadline, and
    no shrinking. A failure is read from the story its trace prints; shrinking the random
    stream behind it takes minutes and gives no shorter story."""
    return settings(
        max_examples=examples(n),
        deadline=None,
        phases=[Phase.explicit, Phase.reuse, Phase.generate],
    )
