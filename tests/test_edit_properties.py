"""Property-based tests of an edit's path: bytes -> parse -> validate -> diff -> apply.

Whatever a user or an editor leaves in the live file, the review either accepts a
change that the schema accepts, reports that nothing changed, or refuses with a
``ConfigError`` that says what is wrong; it never fails any other way.
"""

import json
import typing

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tiller.trainer.steering.config import ConfigError, TrainConfig, frozen_keys, hot_keys, validate_config
from tiller.trainer.steering.review import decode_edit, review_edit

CURRENT = validate_config({"num_epochs": 10})
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=False) | st.text(max_size=12),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=6), children, max_size=3),
    max_leaves=6,
)


def choices(key: str) -> list:
    """The values a ``Literal`` field allows, else none."""
    annotation = TrainConfig.model_fields[key].annotation
    return list(typing.get_args(annotation)) if typing.get_origin(annotation) is typing.Literal else []


def plausible(key: str) -> st.SearchStrategy:
    """Values of the key's own type, mostly in range, so edits are often accepted."""
    current = getattr(CURRENT, key)
    if choices(key):
        return st.sampled_from(choices(key))
    if isinstance(current, bool):
        return st.booleans()
    if isinstance(current, int):
        return st.integers(0, 300)
    if isinstance(current, float):
        return st.floats(1e-6, 1.0) | st.floats(-1.0, 100.0)
    return json_values


def key_value(keys: list[str]) -> st.SearchStrategy:
    return st.sampled_from(keys).flatmap(lambda key: st.tuples(st.just(key), plausible(key) | json_values))


def in_type(keys: list[str]) -> st.SearchStrategy:
    return st.sampled_from(keys).flatmap(lambda key: st.tuples(st.just(key), plausible(key)))


odd_keys = ["learning_rat", "bogus", "control", "_note"]
likely_good = st.lists(in_type(hot_keys()), max_size=3).map(dict)  # what a person usually types
messy = st.lists(key_value(hot_keys()) | key_value(frozen_keys()) | st.tuples(st.sampled_from(odd_keys), json_values),
                 max_size=4).map(dict)
edits = likely_good | messy


def review(raw: bytes, epochs_done: int = 2):
    return review_edit(decode_edit(raw), CURRENT, epochs_done)


@SETTINGS
@given(st.binary(max_size=300))
def test_any_bytes_are_accepted_or_refused_with_a_message(raw):
    try:
        review(raw)
    except ConfigError as exc:
        assert exc.problems and all(isinstance(p, str) and p for p in exc.problems)


@SETTINGS
@given(edits, st.integers(0, 12))
def test_an_accepted_edit_is_valid_and_its_diff_is_exactly_what_changed(edit, epochs_done):
    try:
        change = review(json.dumps(edit).encode("utf-8"), epochs_done)
    except ConfigError as exc:
        assert exc.problems
        return
    if change is None:  # nothing new: every edited key already had its value
        return
    assert validate_config(change.config.model_dump()) == change.config  # apply: the schema takes it as is
    before, after = CURRENT.model_dump(), change.config.model_dump()
    assert change.diff == {k: [before[k], after[k]] for k in after if after[k] != before[k]}
    assert not set(change.diff) & set(frozen_keys())  # a fixed key never changes mid-run
    assert change.config.num_epochs >= epochs_done


@SETTINGS
@given(key_value(hot_keys()))
def test_one_key_edits_never_touch_other_keys(key_and_value):
    key, value = key_and_value
    try:
        change = review(json.dumps({key: value}).encode("utf-8"))
    except ConfigError:
        return
    if change is not None:
        assert set(change.diff) <= {key}
