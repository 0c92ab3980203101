//! The OpenAPI 3.1 document of the collector's HTTP API, served at `GET /openapi.json`. It is
//! generated from the code: each handler's `#[utoipa::path]` (method, path, parameters,
//! responses) and the `ToSchema` derives of the types the handlers answer with, so a field added
//! to an answer appears in the document by itself. Every route of `http::routes` must be listed
//! in `ApiDoc`'s `paths(...)`, and nothing else: the tests below check both ways.
//!
//! To document a new route: annotate its handler with `#[utoipa::path(...)]` (copy a read
//! handler's: `security(("bearer" = []))`, its parameters as an `IntoParams` type, `200` with
//! its answer type, `ReadErrors`), derive `ToSchema` on its answer types, and add the handler to
//! `paths(...)` below.

use std::sync::LazyLock;

use axum::Json;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::{Modify, OpenApi};

use crate::api_error::ErrorBody;
use crate::{access, billing, dashboard, erasure, export, ingest, live, ops, read_api};

#[derive(Debug, OpenApi)]
#[openapi(
    info(
        title = "AgentTally collector",
        description = "Ingest of AgentTally events (wire format v1) and the read API over their \
                       rollups. Money, rates and percentages are decimal strings. Errors are \
                       `{\"error\": {\"code\", \"message\"}}`, the message naming the parameter or \
                       field and the rule."
    ),
    paths(
        ingest::post_batch,
        read_api::summary,
        read_api::timeseries,
        read_api::savings,
        read_api::peaks,
        read_api::recommendations,
        billing::api::usage,
        access::keys::create,
        access::keys::list,
        access::keys::revoke,
        access::audit::list,
        export::api::export,
        export::api::create_link,
        export::api::download_link,
        erasure::erase_tenant,
        erasure::erase_user,
        live::api::token,
        live::api::live,
        ops::healthz,
        ops::metrics,
        openapi_json,
        dashboard::root,
        dashboard::page,
        dashboard::asset,
    ),
    components(schemas(ErrorBody)),
    modifiers(&BearerAuth),
    tags(
        (name = "ingest", description = "Events in (scope `ingest`)."),
        (name = "metrics", description = "Figures out, from the rollups (scope `read`)."),
        (name = "admin", description = "A tenant's API keys and audit log (scope `admin`)."),
        (name = "export", description = "Everything stored of a tenant, as a file (scope \
            `export`)."),
        (name = "erasure", description = "A tenant's or a user's data erased (scope `admin`)."),
        (name = "live", description = "Live updates after each commit (scope `read`, or a live token)."),
        (name = "operations", description = "Health, metrics and this document; no credential."),
        (name = "dashboard", description = "The built-in dashboard page and its assets; no \
                                            credential (the page reads the API with the one \
                                            its user enters)."),
    )
)]
pub struct ApiDoc;

/// The `bearer` security scheme the authenticated operations name.
#[derive(Debug)]
struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some(
                        "An API key (`agenttally-collector keys create`, or `POST /v1/keys`) \
                         or, when the collector is configured for them, a JWT with the claims \
                         `tenant_id`, `role` (admin, developer, viewer), `sub` and `exp`, as \
                         `Authorization: Bearer <key or JWT>`.",
                    ))
                    .build(),
            ),
        );
    }
}

/// Built once: the document is fixed for the life of the binary.
static DOC: LazyLock<utoipa::openapi::OpenApi> = LazyLock::new(ApiDoc::openapi);

/// This document. No credential needed.
#[utoipa::path(
    get,
    path = "/openapi.json",
    tag = "operations",
    responses(
        (status = 200, description = "The OpenAPI 3.1 document of this API.",
            body = Object, content_type = "application/json"),
    )
)]
pub async fn openapi_json() -> Json<&'static utoipa::openapi::OpenApi> {
    Json(&DOC)
}

#[cfg(test)]
mod tests {
    use std::collections::BTreeSet;

    use axum::http::Method;
    use serde_json::Value;

    use super::*;
    use crate::http;

    fn doc() -> Value {
        serde_json::to_value(ApiDoc::openapi()).expect("the document serializes")
    }

    fn operations(doc: &Value) -> BTreeSet<(String, String)> {
        let mut out = BTreeSet::new();
        for (path, item) in doc["paths"].as_object().expect("paths") {
            for method in item.as_object().expect("path item").keys() {
                out.insert((method.to_uppercase(), path.clone()));
            }
        }
        out
    }

    #[test]
    fn every_route_is_documented_and_nothing_else() {
        let routes: BTreeSet<(String, String)> = http::routes()
            .iter()
            .map(|r| (r.method.to_string(), r.path.to_string()))
            .collect();
        let documented = operations(&doc());
        let missing: Vec<_> = routes.difference(&documented).collect();
        assert!(
            missing.is_empty(),
            "routes without a #[utoipa::path] in ApiDoc: {missing:?}"
        );
        let extra: Vec<_> = documented.difference(&routes).collect();
        assert!(extra.is_empty(), "documented but not routed: {extra:?}");
        assert!(routes.contains(&(Method::GET.to_string(), "/openapi.json".to_string())));
    }

    /// The query parameters each read route accepts (any other is a 422).
    const ACCEPTED_PARAMS: &[(&str, &[&str])] = &[
        ("/v1/metrics/summary", read_api::SUMMARY_PARAMS),
        ("/v1/metrics/timeseries", read_api::SERIES_PARAMS),
        ("/v1/metrics/savings", read_api::SAVINGS_PARAMS),
        ("/v1/metrics/peaks", read_api::PEAKS_PARAMS),
        ("/v1/metrics/recommendations", read_api::RECOMMEND_PARAMS),
        ("/v1/billing/usage", crate::billing::api::USAGE_PARAMS),
        ("/v1/live", crate::live::api::LIVE_PARAMS),
    ];

    /// The query parameters documented for each read operation are the ones its handler
    /// accepts (it refuses any other with a 422).
    #[test]
    fn read_parameters_match_the_handlers() {
        let doc = doc();
        for (path, accepted) in ACCEPTED_PARAMS {
            let params: BTreeSet<&str> = doc["paths"][path]["get"]["parameters"]
                .as_array()
                .unwrap_or_else(|| panic!("{path}: no parameters"))
                .iter()
                .map(|p| {
                    assert_eq!(p["in"], "query", "{path}");
                    p["name"].as_str().expect("name")
                })
                .collect();
            let accepted: BTreeSet<&str> = accepted.iter().copied().collect();
            assert_eq!(params, accepted, "{path}");
        }
    }

    /// Every value the document lists for an enumerated parameter is one the handler accepts.
    #[test]
    fn documented_choices_are_accepted() {
        use crate::query::metrics::{GroupBy, Interval, Metric};
        use crate::query::peaks::PeakMetric;
        let doc = doc();
        let choices = |path: &str, name: &str| -> Vec<String> {
            let p = doc["paths"][path]["get"]["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .find(|p| p["name"] == name)
                .unwrap_or_else(|| panic!("{path}: no {name}"))
                .clone();
            let schema = &p["schema"];
            let values = schema["enum"]
                .as_array()
                .or_else(|| {
                    schema["oneOf"]
                        .as_array()
                        .and_then(|o| o.iter().find_map(|s| s["enum"].as_array()))
                })
                .unwrap_or_else(|| panic!("{path} {name}: no enum in {schema}"));
            values
                .iter()
                .map(|v| v.as_str().expect("string").to_string())
                .collect()
        };
        let ts = "/v1/metrics/timeseries";
        for (name, n) in [("metric", 6), ("interval", 3), ("group_by", 5)] {
            let values = choices(ts, name);
            assert_eq!(values.len(), n, "{name}: {values:?}");
            for v in values {
                let accepted = match name {
                    "metric" => Metric::parse(&v).is_some(),
                    "interval" => Interval::parse(&v).is_some(),
                    _ => GroupBy::parse(&v).is_some(),
                };
                assert!(accepted, "{name}={v}");
            }
        }
        let values = choices("/v1/metrics/peaks", "metric");
        assert_eq!(values.len(), 5, "{values:?}");
        for v in values {
            assert!(PeakMetric::parse(&v).is_some(), "metric={v}");
        }
        assert_eq!(choices("/v1/metrics/summary", "format"), ["json", "csv"]);
        let default = |path: &str, name: &str| -> Value {
            doc["paths"][path]["get"]["parameters"]
                .as_array()
                .expect("parameters")
                .iter()
                .find(|p| p["name"] == name)
                .map(|p| p["schema"]["default"].clone())
                .unwrap_or_default()
        };
        // The defaults the handlers apply.
        for (path, name, value) in [
            ("/v1/metrics/summary", "format", serde_json::json!("json")),
            (ts, "interval", serde_json::json!("day")),
            (
                "/v1/metrics/peaks",
                "metric",
                serde_json::json!("executions"),
            ),
            ("/v1/metrics/peaks", "limit", serde_json::json!(10)),
            (
                "/v1/metrics/recommendations",
                "margin",
                serde_json::json!("0.05"),
            ),
            (
                "/v1/metrics/recommendations",
                "min_tasks",
                serde_json::json!(read_api::DEFAULT_MIN_TASKS),
            ),
        ] {
            assert_eq!(default(path, name), value, "{path} {name}");
        }
        assert_eq!(read_api::DEFAULT_MARGIN.to_string(), "0.05");
    }

    #[test]
    fn nullable_and_required_fields_are_marked() {
        let doc = doc();
        let schema = |name: &str| doc["components"]["schemas"][name].clone();
        let required = |s: &Value| -> BTreeSet<String> {
            s["required"]
                .as_array()
                .into_iter()
                .flatten()
                .map(|v| v.as_str().expect("name").to_string())
                .collect()
        };
        let summary = schema("Summary");
        for f in [
            "success_rate",
            "avg_duration_ms",
            "p95_duration_ms",
            "p95_queue_ms",
        ] {
            assert!(required(&summary).contains(f), "Summary.{f} required");
            assert!(
                summary["properties"][f].to_string().contains("null"),
                "Summary.{f} nullable"
            );
        }
        assert_eq!(
            summary["properties"]["cost_usd"]["$ref"],
            "#/components/schemas/DecimalString"
        );
        let figures = schema("Figures");
        for f in ["savings_percent", "cost_per_successful_task"] {
            assert!(required(&figures).contains(f), "Figures.{f} required");
            assert!(figures["properties"][f].to_string().contains("null"), "{f}");
        }
        assert!(!figures["properties"]
            .as_object()
            .expect("props")
            .contains_key("compared_successful"));
        let recs = schema("Recommendations");
        assert!(required(&recs).contains("budget"));
        let advice = schema("TaskTypeAdvice");
        assert!(required(&advice).contains("recommended"));
        assert!(!required(&advice).contains("reason"));
        let point = schema("Point");
        assert!(!required(&point).contains("unpriced_events"));
        assert!(required(&point).contains("group"));
        // Savings carries the figures of the whole range at its top level (`flatten`).
        assert!(schema("Savings")
            .to_string()
            .contains("#/components/schemas/Figures"));
        assert_eq!(
            doc["components"]["securitySchemes"]["bearer"]["scheme"],
            "bearer"
        );
    }
}
