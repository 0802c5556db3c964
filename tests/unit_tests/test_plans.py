"""Decode plans: the product's named ones, the settings that pick them, the lab's ablations."""

from __future__ import annotations

import dataclasses

import pytest

from daemon.engine.plan import AR, CODESWIFT, LOOKUP, PLANS, REST, DecodePlan
from lsp.settings import METHODS, Settings, parse_settings


def test_the_method_setting_knows_exactly_the_engine_plans() -> None:
    assert set(METHODS) == set(PLANS)
    assert Settings().method == CODESWIFT.name


def test_the_settings_default_model_is_the_engines() -> None:
    from daemon.engine.registry import DEFAULT_MODEL

    assert Settings().model == DEFAULT_MODEL


def test_an_unknown_method_is_reported_and_replaced_by_the_default() -> None:
    settings, problems = parse_settings({"method": "codeswift-no-cache"})
    assert settings.method == "codeswift"
    assert problems == ["setting method='codeswift-no-cache' is invalid; using 'codeswift'"]
    settings, problems = parse_settings({"codeswift": {"method": "lookup"}})
    assert settings.method == "lookup" and problems == []


def test_named_plans_say_what_they_draft_from() -> None:
    assert not AR.drafts and AR.budget is None
    assert LOOKUP.context and not LOOKUP.searches_stores and LOOKUP.budget == 15
    assert REST.general and not (REST.project or REST.context or REST.cache) and REST.budget == 64
    assert CODESWIFT.searches_stores and CODESWIFT.timing and CODESWIFT.budget is None
    assert len({hash(plan) for plan in PLANS.values()}) == len(PLANS)  # state is keyed by plan


@pytest.mark.parametrize(
    "changes",
    [{"budget": 0}, {"max_depth": 0}, {"name": ""}, {"general": False, "project": False}],
)
def test_bad_plans_are_refused(changes: dict[str, object]) -> None:
    with pytest.raises(ValueError):
        dataclasses.replace(CODESWIFT, **changes)  # type: ignore[arg-type]


def test_lab_ablations_are_plans_built_from_codeswift() -> None:
    from daemon.bench.methods import METHODS as LAB_METHODS
    from daemon.bench.methods import lab_plan, needs_stores

    assert set(PLANS) <= set(LAB_METHODS)
    assert lab_plan("pld") is None  # a peer: Hugging Face runs it
    no_cache = lab_plan("codeswift-no-cache")
    assert isinstance(no_cache, DecodePlan)
    assert not no_cache.cache and not no_cache.history and no_cache.general
    assert lab_plan("codeswift-no-budget") == dataclasses.replace(
        CODESWIFT, name="codeswift-no-budget", budget=16, scored=False
    )
    weighted = lab_plan("codeswift", project_weight=6.0)
    assert weighted is not None and weighted.weights.project == 6.0
    assert lab_plan("lookup", project_weight=6.0) == LOOKUP  # no project drafts to weigh
    assert lab_plan("lookup-depth24") == dataclasses.replace(
        LOOKUP, name="lookup-depth24", max_depth=24
    )
    assert lab_plan("lookup-nodes16") == dataclasses.replace(
        LOOKUP, name="lookup-nodes16", budget=16
    )
    assert needs_stores(["ar", "rest"]) and not needs_stores(["ar", "lookup", "pld"])
