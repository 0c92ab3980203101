"""An agent instrumented with AgentTally: each task is a run, each model call is recorded with
the usage object the provider SDK returned (here an OpenAI-style ``CompletionUsage``).

    AGENTTALLY_ENDPOINT=http://127.0.0.1:8080 AGENTTALLY_API_KEY=... \
        python agent.py [tenant] [tasks]
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import asdict, dataclass, field
from typing import Any

import agenttally


@dataclass
class PromptTokensDetails:
    cached_tokens: int = 0


@dataclass
class CompletionUsage:
    """The fields of ``openai.types.CompletionUsage``; like it, it has ``model_dump()``."""

    prompt_tokens: int
    completion_tokens: int
    total_tokens: int
    prompt_tokens_details: PromptTokensDetails = field(default_factory=PromptTokensDetails)

    def model_dump(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class ChatCompletion:
    model: str
    usage: CompletionUsage
    content: str


def fake_llm(model: str, prompt: str, rng: random.Random) -> ChatCompletion:
    """Stands in for ``openai.OpenAI().chat.completions.create(...)``."""
    prompt_tokens = 400 + rng.randrange(2_000)
    cached = rng.randrange(prompt_tokens)
    completion = 50 + rng.randrange(500)
    usage = CompletionUsage(
        prompt_tokens=prompt_tokens,
        completion_tokens=completion,
        total_tokens=prompt_tokens + completion,
        prompt_tokens_details=PromptTokensDetails(cached_tokens=cached),
    )
    return ChatCompletion(model=model, usage=usage, content=f"patch for {prompt}")


def fix_bug(client: agenttally.Client, tenant: str, issue: str, rng: random.Random) -> str:
    with client.run(tenant_id=tenant, agent_id="bugfix-agent", task_type="bug_fix") as run:
        plan = fake_llm("gpt-4o-mini", f"plan {issue}", rng)
        run.record_call(provider="openai", model=plan.model, usage=plan.usage)
        patch = fake_llm("gpt-4o", plan.content, rng)
        run.record_call(provider="openai", model=patch.model, usage=patch.usage)
        if rng.random() < 0.2:
            raise RuntimeError("tests failed")  # the run is recorded as agent.failed
        return patch.content


def main() -> int:
    tenant = sys.argv[1] if len(sys.argv) > 1 else "acme-corp"
    tasks = int(sys.argv[2]) if len(sys.argv) > 2 else 20
    rng = random.Random(7)
    with agenttally.Client(
        endpoint=os.environ.get("AGENTTALLY_ENDPOINT", "http://127.0.0.1:8080"),
        api_key=os.environ.get("AGENTTALLY_API_KEY"),
        price_book=agenttally.PriceBook.builtin(),
    ) as client:
        fixed = 0
        for i in range(tasks):
            try:
                fix_bug(client, tenant, f"issue-{i}", rng)
                fixed += 1
            except RuntimeError:
                pass
        client.flush(timeout=30)
        stats = client.stats()
    print(f"{tasks} tasks, {fixed} fixed; sent {stats.sent}, dropped {stats.dropped.total()}")
    return 0 if stats.dropped.total() == 0 and stats.rejected == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
