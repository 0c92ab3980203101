//! Pricing tiers of the platform's own plans: name, monthly price, monthly limits (executions,
//! tokens, model spend) and overage rates. A documented default set (free / pro / enterprise),
//! or a JSON file given by `--tiers-file` / `AGENTTALLY_TIERS_FILE`:
//!
//! ```json
//! {"default_tier": null,
//!  "tiers": [{"name": "free", "monthly_price_usd": "0",
//!             "limits": {"executions": 1000, "tokens": 2000000, "cost_usd": "25"},
//!             "overage": {"per_execution_usd": "0.02", "per_1k_tokens_usd": "0.01",
//!                         "per_cost_usd": "0.2"}}]}
//! ```
//!
//! A limit left out is unlimited; an overage rate left out is 0. `default_tier` (optional) is
//! the tier of a tenant with none recorded; without one such a tenant has no plan: no limits,
//! no limit events.

use std::path::Path;

use rust_decimal::Decimal;
use serde::Deserialize;

use crate::error::{Error, Result};

/// An amount of USD written as a decimal string (`"0.02"`): a JSON number would pass through a
/// float.
fn amount<'de, D: serde::Deserializer<'de>>(d: D) -> std::result::Result<Decimal, D::Error> {
    let s = String::deserialize(d)?;
    s.trim().parse().map_err(|_| {
        serde::de::Error::custom(format!("`{s}` is not a decimal amount like \"0.02\""))
    })
}

fn optional_amount<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> std::result::Result<Option<Decimal>, D::Error> {
    amount(d).map(Some)
}

/// One monthly plan.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tier {
    pub name: String,
    #[serde(deserialize_with = "amount")]
    pub monthly_price_usd: Decimal,
    #[serde(default)]
    pub limits: Limits,
    #[serde(default)]
    pub overage: Overage,
}

/// Monthly limits; `None` is unlimited.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub executions: Option<u64>,
    pub tokens: Option<u64>,
    #[serde(default, deserialize_with = "optional_amount")]
    pub cost_usd: Option<Decimal>,
}

/// What usage above a limit costs.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Overage {
    #[serde(default, deserialize_with = "optional_amount")]
    pub per_execution_usd: Option<Decimal>,
    #[serde(default, deserialize_with = "optional_amount")]
    pub per_1k_tokens_usd: Option<Decimal>,
    /// Per USD of model spend above the limit (0.1 = a 10% fee on it).
    #[serde(default, deserialize_with = "optional_amount")]
    pub per_cost_usd: Option<Decimal>,
}

/// The plans, and the tier of a tenant that has none recorded.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Tiers {
    #[serde(default)]
    pub default_tier: Option<String>,
    pub tiers: Vec<Tier>,
}

/// The metrics a tier limits, in order.
pub const METRICS: [&str; 3] = ["executions", "tokens", "cost_usd"];

impl Tier {
    /// The limit on `metric` (one of `METRICS`), as a decimal; `None` when unlimited.
    pub fn limit(&self, metric: &str) -> Option<Decimal> {
        match metric {
            "executions" => self.limits.executions.map(Decimal::from),
            "tokens" => self.limits.tokens.map(Decimal::from),
            "cost_usd" => self.limits.cost_usd,
            _ => None,
        }
    }

    /// What `over` units above the limit of `metric` cost.
    pub fn overage_usd(&self, metric: &str, over: Decimal) -> Decimal {
        if over <= Decimal::ZERO {
            return Decimal::ZERO;
        }
        let o = &self.overage;
        match metric {
            "executions" => over * o.per_execution_usd.unwrap_or_default(),
            "tokens" => over / Decimal::ONE_THOUSAND * o.per_1k_tokens_usd.unwrap_or_default(),
            "cost_usd" => over * o.per_cost_usd.unwrap_or_default(),
            _ => Decimal::ZERO,
        }
    }
}

fn usd(s: &str) -> Decimal {
    s.parse().unwrap_or_default()
}

impl Default for Tiers {
    /// The documented default set (docs/billing.md).
    fn default() -> Self {
        let tier =
            |name: &str, price: &str, limits: (u64, u64, &str), over: (&str, &str, &str)| Tier {
                name: name.into(),
                monthly_price_usd: usd(price),
                limits: Limits {
                    executions: Some(limits.0),
                    tokens: Some(limits.1),
                    cost_usd: Some(usd(limits.2)),
                },
                overage: Overage {
                    per_execution_usd: Some(usd(over.0)),
                    per_1k_tokens_usd: Some(usd(over.1)),
                    per_cost_usd: Some(usd(over.2)),
                },
            };
        Tiers {
            default_tier: None,
            tiers: vec![
                tier(
                    "free",
                    "0",
                    (1_000, 2_000_000, "25"),
                    ("0.02", "0.01", "0.2"),
                ),
                tier(
                    "pro",
                    "99",
                    (25_000, 100_000_000, "2000"),
                    ("0.01", "0.005", "0.1"),
                ),
                tier(
                    "enterprise",
                    "999",
                    (500_000, 2_000_000_000, "50000"),
                    ("0.005", "0.002", "0.05"),
                ),
            ],
        }
    }
}

impl Tiers {
    /// The default set, or the file at `path`; errors name the file and the rule.
    pub fn load(path: Option<&Path>) -> Result<Tiers> {
        let Some(path) = path else {
            return Ok(Tiers::default());
        };
        let text = std::fs::read_to_string(path).map_err(|e| {
            Error::Config(format!("tiers_file: cannot read `{}`: {e}", path.display()))
        })?;
        let tiers: Tiers = serde_json::from_str(&text)
            .map_err(|e| Error::Config(format!("tiers_file `{}`: {e}", path.display())))?;
        tiers
            .validate()
            .map_err(|e| Error::Config(format!("tiers_file `{}`: {e}", path.display())))?;
        Ok(tiers)
    }

    /// At least one tier, unique non-empty names, no negative amount, a known default.
    pub fn validate(&self) -> std::result::Result<(), String> {
        if self.tiers.is_empty() {
            return Err("tiers: at least one tier is required".into());
        }
        for (i, t) in self.tiers.iter().enumerate() {
            if t.name.trim().is_empty() || t.name.len() > 64 {
                return Err(format!("tiers[{i}].name: must be 1 to 64 characters"));
            }
            if self.tiers[..i].iter().any(|o| o.name == t.name) {
                return Err(format!("tiers[{i}].name: `{}` is given twice", t.name));
            }
            let amounts = [
                ("monthly_price_usd", Some(t.monthly_price_usd)),
                ("limits.cost_usd", t.limits.cost_usd),
                ("overage.per_execution_usd", t.overage.per_execution_usd),
                ("overage.per_1k_tokens_usd", t.overage.per_1k_tokens_usd),
                ("overage.per_cost_usd", t.overage.per_cost_usd),
            ];
            for (field, v) in amounts {
                if v.is_some_and(|d| d.is_sign_negative() && !d.is_zero()) {
                    return Err(format!("tiers[{i}].{field}: must not be negative"));
                }
            }
        }
        if let Some(d) = self
            .default_tier
            .as_deref()
            .filter(|d| self.get(d).is_none())
        {
            return Err(format!("default_tier: `{d}` is not one of the tiers"));
        }
        Ok(())
    }

    pub fn get(&self, name: &str) -> Option<&Tier> {
        self.tiers.iter().find(|t| t.name == name)
    }

    /// The tier named `name`, or the default tier (if any) for none or a name no longer
    /// configured.
    pub fn resolve(&self, name: Option<&str>) -> Option<&Tier> {
        name.and_then(|n| self.get(n))
            .or_else(|| self.default_tier.as_deref().and_then(|d| self.get(d)))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_default_set_is_valid_and_overage_is_per_unit() {
        let t = Tiers::default();
        t.validate().expect("valid");
        let free = t.get("free").expect("free");
        assert_eq!(free.limit("executions"), Some(Decimal::from(1000)));
        assert_eq!(
            free.overage_usd("tokens", Decimal::from(500_000))
                .normalize(),
            Decimal::from(5)
        );
        assert_eq!(
            free.overage_usd("executions", Decimal::from(-3)),
            Decimal::ZERO
        );
        assert_eq!(t.resolve(Some("gone")), None, "no default tier by default");
        assert_eq!(t.resolve(Some("pro")).map(|t| t.name.as_str()), Some("pro"));
    }

    #[test]
    fn bad_files_are_named() {
        let dir = std::env::temp_dir().join(format!("tiers-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        for (body, want) in [
            ("{", "tiers_file"),
            (r#"{"default_tier": "x", "tiers": []}"#, "at least one tier"),
            (
                r#"{"default_tier": "x", "tiers": [{"name": "a", "monthly_price_usd": "1"}]}"#,
                "default_tier: `x`",
            ),
            (
                r#"{"default_tier": "a", "tiers": [{"name": "a", "monthly_price_usd": "-1"}]}"#,
                "tiers[0].monthly_price_usd: must not be negative",
            ),
            (
                r#"{"default_tier": "a", "tiers": [{"name": "a", "monthly_price_usd": "1", "limit": {}}]}"#,
                "unknown field `limit`",
            ),
        ] {
            let p = dir.join("tiers.json");
            std::fs::write(&p, body).expect("write");
            let e = Tiers::load(Some(&p)).expect_err(body);
            assert!(e.to_string().contains(want), "{body}: {e}");
        }
        let _ = std::fs::remove_dir_all(&dir);
    }
}
