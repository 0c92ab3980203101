//! Build one event of each family with the builders and print its wire JSON.

use agenttally::{AgentEvent, BillingEvent, CustomerEvent, ProviderEvent, Usage};

fn main() -> Result<(), agenttally::Error> {
    let run = "run-demo-1";
    let events = [
        AgentEvent::started("acme-corp", "bugfix-agent")
            .correlation_id(run)
            .task_type("bug_fix")
            .build()?,
        ProviderEvent::api_call("acme-corp", "openai", "gpt-4o")
            .correlation_id(run)
            .usage(Usage {
                input_tokens: 1_200,
                output_tokens: 300,
                requests: 1,
                ..Usage::default()
            })
            .duration_ms(2_100)
            .build()?,
        AgentEvent::completed("acme-corp", "bugfix-agent")
            .correlation_id(run)
            .duration_ms(2_400)
            .build()?,
        BillingEvent::tier_limit_warning("acme-corp", "agent_executions", 8_000, 10_000).build()?,
        CustomerEvent::dashboard_view("acme-corp", "user-42").build()?,
    ];
    for e in &events {
        println!("{}", e.to_json());
    }
    // Bad input gets an error naming the field and the rule.
    if let Err(err) = AgentEvent::failed("acme corp", "bugfix-agent", "tests_failed").build() {
        println!("rejected: {err}");
    }
    Ok(())
}
