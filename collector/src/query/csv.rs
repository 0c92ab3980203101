//! The CSV form of the read API's answers (`format=csv`): one table per answer, built from its
//! JSON form so both always carry the same figures. RFC 4180 quoting; a text cell that a
//! spreadsheet would run as a formula (`=`, `+`, `-`, `@`, tab or CR first, and not a number) is
//! prefixed with `'` (tenant data such as a task type reaches these cells).

use serde_json::Value;

/// A table: header row first.
pub type Table = Vec<Vec<String>>;

/// RFC 4180 text of `table`, CRLF line ends.
pub fn render(table: &Table) -> String {
    let mut out = String::new();
    for row in table {
        let cells: Vec<String> = row.iter().map(|c| quote(c)).collect();
        out.push_str(&cells.join(","));
        out.push_str("\r\n");
    }
    out
}

/// One cell, quoted per RFC 4180 and guarded against formulas.
pub(crate) fn quote(cell: &str) -> String {
    let guarded = match cell.chars().next() {
        Some('=' | '+' | '-' | '@' | '\t' | '\r') if cell.parse::<f64>().is_err() => {
            format!("'{cell}")
        }
        _ => cell.to_string(),
    };
    if guarded.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", guarded.replace('"', "\"\""))
    } else {
        guarded
    }
}

/// A JSON scalar as a cell: text as is, `null` empty.
fn cell(v: &Value) -> String {
    match v {
        Value::Null => String::new(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// `field,value` rows, nested objects flattened with dots (`tokens.input_tokens`).
pub fn fields(v: &Value) -> Table {
    fn walk(prefix: &str, v: &Value, out: &mut Table) {
        match v {
            Value::Object(o) => {
                for (k, x) in o {
                    let name = if prefix.is_empty() {
                        k.clone()
                    } else {
                        format!("{prefix}.{k}")
                    };
                    walk(&name, x, out);
                }
            }
            Value::Array(a) => {
                let joined: Vec<String> = a.iter().map(cell).collect();
                out.push(vec![prefix.to_string(), joined.join(" ")]);
            }
            scalar => out.push(vec![prefix.to_string(), cell(scalar)]),
        }
    }
    let mut out = vec![vec!["field".to_string(), "value".to_string()]];
    walk("", v, &mut out);
    out
}

/// One row per element of the array `v[key]`, the columns `columns` of each element.
pub fn rows(v: &Value, key: &str, columns: &[&str]) -> Table {
    let mut out = vec![columns.iter().map(|c| c.to_string()).collect()];
    for item in v[key].as_array().into_iter().flatten() {
        out.push(columns.iter().map(|c| cell(&item[*c])).collect());
    }
    out
}

/// Rows `scope,key,<columns>` for the object `v` itself (scope `total`, key empty) — unless
/// `total` is `None` — and for every entry of each named map of groups.
pub fn groups(v: &Value, total: Option<&str>, maps: &[(&str, &str)], columns: &[&str]) -> Table {
    let mut out = vec![["scope", "key"]
        .iter()
        .chain(columns)
        .map(|c| c.to_string())
        .collect::<Vec<_>>()];
    let row = |scope: &str, key: &str, o: &Value| -> Vec<String> {
        [scope.to_string(), key.to_string()]
            .into_iter()
            .chain(columns.iter().map(|c| cell(&o[*c])))
            .collect()
    };
    if let Some(scope) = total {
        out.push(row(scope, "", v));
    }
    for (field, scope) in maps {
        match &v[*field] {
            Value::Object(m) => {
                for (k, o) in m {
                    out.push(row(scope, k, o));
                }
            }
            Value::Array(a) => {
                for o in a {
                    let key = ["hour", "day", "t"]
                        .iter()
                        .map(|k| cell(&o[*k]))
                        .find(|k| !k.is_empty())
                        .unwrap_or_default();
                    out.push(row(scope, &key, o));
                }
            }
            _ => {}
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn quoting_and_formula_guard() {
        let t = vec![vec![
            "a,b".to_string(),
            "say \"hi\"".to_string(),
            "=HYPERLINK(\"x\")".to_string(),
            "-0.5".to_string(),
            "@sum".to_string(),
            "plain".to_string(),
        ]];
        assert_eq!(
            render(&t),
            "\"a,b\",\"say \"\"hi\"\"\",\"'=HYPERLINK(\"\"x\"\")\",-0.5,'@sum,plain\r\n"
        );
    }

    #[test]
    fn tables_from_json() {
        let v = json!({"n": 1, "cost": "0.5", "none": null, "tokens": {"in": 3}});
        assert_eq!(
            render(&fields(&v)),
            "field,value\r\ncost,0.5\r\nn,1\r\nnone,\r\ntokens.in,3\r\n"
        );
        let v = json!({"points": [{"t": "T1", "value": 2}, {"t": "T2", "value": "3.5"}]});
        assert_eq!(
            render(&rows(&v, "points", &["t", "value"])),
            "t,value\r\nT1,2\r\nT2,3.5\r\n"
        );
        let v = json!({"x": 1, "by_p": {"a": {"x": 2}}, "hours": [{"hour": 0, "x": 3}]});
        assert_eq!(
            render(&groups(
                &v,
                Some("total"),
                &[("by_p", "provider"), ("hours", "hour_of_day")],
                &["x"]
            )),
            "scope,key,x\r\ntotal,,1\r\nprovider,a,2\r\nhour_of_day,0,3\r\n"
        );
    }
}
