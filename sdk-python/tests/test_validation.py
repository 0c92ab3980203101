"""Validation and configuration errors name the field (or setting) and the rule."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

import pytest

import agenttally


@pytest.fixture(scope="module")
def client() -> Any:
    # A disabled client validates exactly as an enabled one, then discards.
    with agenttally.Client(disabled=True) as c:
        yield c


@pytest.mark.parametrize(
    ("kwargs", "field", "message"),
    [
        ({"duration_ms": -5}, "duration_ms", "event.duration_ms: must be >= 0, got -5"),
        ({"tenant_id": ""}, "tenant_id", "event.tenant_id:"),
        ({"cost_usd": 0.1}, "event.cost_usd", "event.cost_usd: must be a decimal.Decimal"),
        ({"cost_usd": "abc"}, "event.cost_usd", "event.cost_usd: must be a decimal number"),
        ({"usage": {"input_tokens": -1}}, "event.usage.input_tokens", "event.usage.input_tokens:"),
        (
            {"usage": {"prompt_tokens": 5, "prompt_tokens_details": {"cached_tokens": 9}}},
            "usage.prompt_tokens_details.cached_tokens",
            "event.usage.prompt_tokens_details.cached_tokens: must be <= usage.prompt_tokens",
        ),
        ({"metadata": {"k": object()}}, "event.metadata.k", "event.metadata.k: must be JSON"),
        ({"metadata": {1: "v"}}, "event.metadata", "event.metadata: keys must be str"),
        (
            {"timestamp": datetime(2025, 1, 1)},
            "event.timestamp",
            "event.timestamp: must be a timezone-aware datetime",
        ),
        ({"service_tier": "gold"}, "event.service_tier", "event.service_tier: unknown value"),
    ],
)
def test_event_errors_name_the_field(
    client: Any, kwargs: dict[str, Any], field: str, message: str
) -> None:
    args: dict[str, Any] = {"tenant_id": "acme", "provider": "openai", "model": "gpt-4o"}
    args.update(kwargs)
    with pytest.raises(agenttally.ValidationError) as e:
        client.track("provider.api_call", **args)
    assert str(e.value).startswith(message), str(e.value)
    assert e.value.field == field
    assert isinstance(e.value, ValueError)
    assert e.value.kind == "invalid"


def test_unknown_event_type(client: Any) -> None:
    with pytest.raises(agenttally.ValidationError, match=r"^event\.event_type: unknown value"):
        client.track("agent.exploded", tenant_id="acme")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"endpoint": "ftp://x"}, "config.endpoint: must start with http:// or https://"),
        ({"endpoint": "http://x", "flush_at": 0}, "config.flush_at: must be 1..=1000, got 0"),
        ({"endpoint": "http://x", "flush_interval": -1}, "config.flush_interval: must be >= 0"),
        ({"endpoint": "http://x", "flush_interval": 2 * 86400}, "config.flush_interval:"),
        ({"endpoint": "http://x", "overflow": "spool"}, "config.overflow: `spool` needs spool_dir"),
        ({"endpoint": "http://x", "overflow": "block"}, "config.overflow: must be one of"),
        ({"endpoint": "http://x", "api_key": "a b"}, "config.api_key:"),
    ],
)
def test_config_errors_name_the_setting(kwargs: dict[str, Any], message: str) -> None:
    with pytest.raises(agenttally.ConfigError) as e:
        agenttally.Client(**kwargs)
    assert str(e.value).startswith(message), str(e.value)


def test_closed_after_shutdown() -> None:
    c = agenttally.Client(endpoint="http://127.0.0.1:9", exit_timeout=0)
    c.shutdown(timeout=1)
    with pytest.raises(agenttally.ClosedError):
        c.track("agent.created", tenant_id="acme", agent_id="a")


def test_queue_full_error() -> None:
    c = agenttally.Client(
        endpoint="http://127.0.0.1:9", max_queue_events=1, flush_interval=60, exit_timeout=0
    )
    with pytest.raises(agenttally.QueueFullError):
        for _ in range(1_000):
            c.track("agent.created", tenant_id="acme", agent_id="a")
    c.shutdown(timeout=0)


def test_pricing_exact_decimal() -> None:
    book = agenttally.PriceBook.builtin()
    cost = book.cost("gpt-4o", input_tokens=1_000, output_tokens=100)
    assert cost.usd == Decimal("0.0035")
    assert cost.status == "priced"
    assert cost.price_version
    assert "gpt-4o" in cost.explain()
    unknown = book.cost("no-such-model", input_tokens=5)
    assert unknown.usd is None and unknown.status == "unpriced"
    with pytest.raises(agenttally.ValidationError, match="service_tier"):
        book.cost("gpt-4o", service_tier="gold")  # type: ignore[arg-type]


def test_litellm_import_and_savings(tmp_path: Any) -> None:
    text = (
        '{"model-a": {"litellm_provider": "openai", "mode": "chat",'
        ' "input_cost_per_token": 0.000001, "output_cost_per_token": 0.000002},'
        ' "model-b": {"litellm_provider": "openai", "mode": "chat",'
        ' "input_cost_per_token": 0.00001, "output_cost_per_token": 0.00002}}'
    )
    book = agenttally.PriceBook.from_litellm_json(text)
    path = tmp_path / "prices.json"
    path.write_text(text)
    assert len(agenttally.PriceBook.from_litellm_json(path)) == len(book) == 2
    assert book.cost("model-a", input_tokens=1_000).usd == Decimal("0.001")
    report = book.savings(
        [{"model": "model-a", "usage": {"input_tokens": 1_000}, "task_type": "bug_fix"}]
    )
    assert report.total.actual_usd == Decimal("0.001")
    assert report.total.baseline_usd == Decimal("0.01")
    assert report.total.savings_usd == Decimal("0.009")
    assert report.by_task_type["bug_fix"].tasks == 1
    with pytest.raises(agenttally.PricingError):
        agenttally.PriceBook.from_litellm_json(tmp_path / "missing.json")


class FakeOpenAIUsage:
    """The shape of ``openai.types.CompletionUsage`` (a pydantic model): ``model_dump()``."""

    def model_dump(self) -> dict[str, Any]:
        return {
            "prompt_tokens": 1_200,
            "completion_tokens": 300,
            "total_tokens": 1_500,
            "prompt_tokens_details": {"cached_tokens": 1_000, "audio_tokens": None},
            "completion_tokens_details": {"reasoning_tokens": 100},
        }


def test_usage_shapes_are_converted() -> None:
    book = agenttally.PriceBook.builtin()
    with agenttally.Client(disabled=True, price_book=book) as c:
        with c.run(tenant_id="acme", agent_id="a", task_type="t") as run:
            run.record_call(provider="openai", model="gpt-4o", usage=FakeOpenAIUsage())
            expected = book.cost(
                "gpt-4o",
                input_tokens=200,
                cached_input_tokens=1_000,
                output_tokens=300,
                reasoning_tokens=100,
                requests=1,
            ).usd
            assert run.cost == expected
            run.record_call(
                provider="anthropic",
                model="claude-sonnet-4-5",
                usage={"input_tokens": 10, "cache_read_input_tokens": 5, "output_tokens": 2},
            )
            run.record_call(
                provider="google",
                model="gemini-2.5-pro",
                usage={"promptTokenCount": 10, "candidatesTokenCount": 3},
            )
        with pytest.raises(agenttally.ValidationError, match=r"^event\.usage: unknown shape"):
            c.track("provider.api_call", tenant_id="acme", usage={"tokens": 5})


def test_canonical_usage_buckets() -> None:
    book = agenttally.PriceBook.builtin()
    buckets = {
        "input_tokens": 1_001,
        "cached_input_tokens": 2_003,
        "cache_write_tokens": 3_007,
        "cache_write_1h_tokens": 4_013,
        "output_tokens": 5_021,
        "reasoning_tokens": 1_031,
        "requests": 1,
    }
    with agenttally.Client(disabled=True, price_book=book) as c:
        with c.run(tenant_id="acme", agent_id="a", task_type="t") as run:
            run.record_call(provider="anthropic", model="claude-sonnet-4-5", usage=buckets)
            assert run.cost == book.cost("claude-sonnet-4-5", **buckets).usd
